# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""The object path of `agent.scoring.Scorer` at C speed: samples in, records out.

Why: `Scorer.update` takes a mapping of `Sample` records and returns one
`ContainerScore` per container. Done in Python that costs ~2.6 µs per container
(a dict walk with four NumPy item stores per sample, the whole output matrix
turned into Python floats, and a frozen dataclass whose ``__init__`` calls
``object.__setattr__`` thirteen times), ten times the kernel itself. Here:

* `gather_samples` walks the mapping once and stores each sample's fields
  straight into the kernel's input arrays;
* `build_records` reads the output arrays and allocates each record without
  running ``__init__``: the type's ``tp_alloc``, then each field's slot
  descriptor ``tp_descr_set`` (what ``object.__setattr__`` ends up doing, minus
  the name lookup). The records are left untracked by the cycle collector: they
  hold only str, float, bool and `Category` values and so cannot be part of a
  reference cycle (CPython untracks tuples of atomic values for the same
  reason), and tracking them made collections that scan them the largest cost.
  A per-slot cache of the last record and of the values it was built from lets a
  container whose outputs did not change (bit for bit) keep its record object, or
  be left out (``changed_only``).

`agent.scoring` checks at import that `ContainerScore` is a slots dataclass with
exactly the fields in `RECORD_FIELDS` and passes its slot descriptors; with
``descs=None`` the records are built by calling the class instead.
"""
from cpython.object cimport PyObject
from cpython.float cimport PyFloat_FromDouble
from cpython.dict cimport PyDict_Next, PyDict_GetItem
from cpython.list cimport PyList_New, PyList_SET_ITEM
from cpython.ref cimport Py_INCREF
from libc.stdint cimport int64_t
from libc.string cimport memcpy

cdef extern from *:
    """
    static int da_descr_set(PyObject *d, PyObject *o, PyObject *v) {
        return Py_TYPE(d)->tp_descr_set(d, o, v);
    }
    static PyObject *da_alloc(PyObject *cls) {
        return ((PyTypeObject *)cls)->tp_alloc((PyTypeObject *)cls, 0);
    }
    """
    int da_descr_set(PyObject* d, object o, object v) except -1
    object da_alloc(PyObject* cls)
    void PyObject_GC_UnTrack(void* op)

# ContainerScore's fields, in order (agent.scoring checks the dataclass against it)
RECORD_FIELDS = ("name", "cpu_score", "memory_score", "network_score",
                 "availability_score", "overall_score", "category", "weight", "anomaly",
                 "slope", "forecast", "stale", "id")
cdef enum:
    N_FIELDS = 13
    N_FLOATS = 8    # the record's float fields
    N_SNAP = 9      # rows of a cache's snapshot: the floats, then one code for the
                    # category, the anomaly and the stale flag
SNAP_ROWS = N_SNAP
assert len(RECORD_FIELDS) == N_FIELDS


def gather_samples(samples, dict slots, double[::1] cpu, double[::1] mem,
                   double[::1] net, double[::1] rt, unsigned char[::1] valid):
    """Store `samples` (name -> Sample) into the input arrays by slot.

    `valid` is cleared first and set for every sample that is not stale; the other
    arrays are written only where valid. KeyError (nothing further stored) for a
    name that `slots` lacks; the caller scores nothing then.
    """
    cdef Py_ssize_t pos = 0, n = valid.shape[0]
    cdef PyObject* key
    cdef PyObject* value
    cdef PyObject* slot
    if cpu.shape[0] != n or mem.shape[0] != n or net.shape[0] != n or rt.shape[0] != n:
        raise ValueError("gather_samples: arrays disagree on capacity")
    cdef double* pc = &cpu[0]
    cdef double* pm = &mem[0]
    cdef double* pn = &net[0]
    cdef double* pr = &rt[0]
    cdef unsigned char* pv = &valid[0]
    valid[:] = 0
    if type(samples) is dict:
        while PyDict_Next(samples, &pos, &key, &value):
            slot = PyDict_GetItem(slots, <object>key)
            if slot is NULL:
                raise KeyError(<object>key)
            _store(<object>value, <object>slot, n, pc, pm, pn, pr, pv)
        return
    for name, sample in samples.items():
        if name not in slots:
            raise KeyError(name)
        _store(sample, slots[name], n, pc, pm, pn, pr, pv)


cdef inline int _store(sample, slot_obj, Py_ssize_t n, double* cpu, double* mem,
                       double* net, double* rt, unsigned char* valid) except -1:
    cdef Py_ssize_t s = slot_obj
    if not 0 <= s < n:
        raise IndexError(f"gather_samples: slot {s} out of range")
    if sample.stale:
        return 0
    cpu[s] = sample.cpu_percent
    mem[s] = sample.memory_percent
    net[s] = sample.network_bps
    rt[s] = sample.response_time
    valid[s] = 1
    return 0


cdef inline int64_t _bits(double x) noexcept nogil:
    cdef int64_t b
    memcpy(&b, &x, 8)
    return b


def build_records(cls, descs, list names, list ids, const Py_ssize_t[::1] order,
                  const double[:, ::1] out, const signed char[::1] cat,
                  const unsigned char[:, ::1] flags, tuple codes,
                  list cache, double[:, ::1] snap, bint changed_only):
    """`cls` records of the slots in `order`, in that order.

    `out`, `cat`, `flags` are the kernel's outputs (rows as `_kernel.OUT_ROWS`);
    `names`, `ids`, `cache` are indexed by slot; `snap` (SNAP_ROWS x capacity)
    holds the values each cached record was built from. A slot whose outputs equal
    its snapshot bit for bit keeps its cached record, or is skipped when
    `changed_only`; the others get a new record, cached with its values. `descs`:
    the slot descriptors of RECORD_FIELDS, or None to call `cls` instead.
    """
    cdef Py_ssize_t i, k, s, m = order.shape[0], cap = out.shape[1], ncodes = len(codes)
    cdef double v[N_FLOATS]
    cdef double code
    cdef int c
    cdef bint same
    cdef PyObject* d[N_FIELDS]
    cdef bint direct = descs is not None
    if direct:
        if len(descs) != N_FIELDS:
            raise ValueError(f"build_records: expected {N_FIELDS} descriptors")
        for k in range(N_FIELDS):
            d[k] = <PyObject*>descs[k]
    if (snap.shape[0] != N_SNAP or snap.shape[1] != cap or cat.shape[0] != cap
            or flags.shape[1] != cap or len(names) < cap or len(ids) < cap
            or len(cache) < cap or out.shape[0] < 12 or flags.shape[0] < 2):
        raise ValueError("build_records: arrays disagree on capacity")
    for i in range(m):
        if not 0 <= order[i] < cap:
            raise IndexError(f"build_records: slot {order[i]} out of range")
    result = [] if changed_only else PyList_New(m)
    for i in range(m):
        s = order[i]
        v[0] = out[0, s]
        v[1] = out[1, s]
        v[2] = out[2, s]
        v[3] = out[3, s]
        v[4] = out[4, s]
        v[5] = out[5, s]    # weight
        v[6] = out[6, s]    # slope
        v[7] = out[11, s]   # forecast
        c = cat[s]
        if not 0 <= c < ncodes:
            raise ValueError(f"build_records: category code {c} at slot {s}")
        code = c + 8.0 * flags[0, s] + 16.0 * flags[1, s]
        r = cache[s]
        same = r is not None and code == snap[N_FLOATS, s]
        k = 0
        while same and k < N_FLOATS:
            same = _bits(v[k]) == _bits(snap[k, s])
            k += 1
        if same and changed_only:
            continue
        if not same:
            if direct:
                r = _make(cls, d, names[s], v, codes[c], flags[0, s], flags[1, s], ids[s])
            else:
                r = cls(names[s], _float(v[0]), _float(v[1]), _float(v[2]), _float(v[3]),
                        _float(v[4]), codes[c], _float(v[5]), bool(flags[0, s]),
                        _float(v[6]), _float(v[7]), bool(flags[1, s]), ids[s])
            cache[s] = r
            for k in range(N_FLOATS):
                snap[k, s] = v[k]
            snap[N_FLOATS, s] = code
        if changed_only:
            result.append(r)
        else:
            Py_INCREF(r)
            PyList_SET_ITEM(result, i, r)
    return result


# every NaN field holds this one object: dataclass equality compares field tuples,
# which take identical objects as equal, so two records with a NaN forecast (a
# container still in INIT) are equal when all else is, and a consumer can tell an
# unchanged record by `==`
cdef object _NAN = float("nan")


cdef inline object _float(double x):
    return PyFloat_FromDouble(x) if x == x else _NAN


cdef inline object _make(cls, PyObject** d, name, const double* v, category,
                         unsigned char anomaly, unsigned char stale, id_):
    r = da_alloc(<PyObject*>cls)
    da_descr_set(d[0], r, name)
    da_descr_set(d[1], r, _float(v[0]))
    da_descr_set(d[2], r, _float(v[1]))
    da_descr_set(d[3], r, _float(v[2]))
    da_descr_set(d[4], r, _float(v[3]))
    da_descr_set(d[5], r, _float(v[4]))
    da_descr_set(d[6], r, category)
    da_descr_set(d[7], r, _float(v[5]))
    da_descr_set(d[8], r, True if anomaly else False)
    da_descr_set(d[9], r, _float(v[6]))
    da_descr_set(d[10], r, _float(v[7]))
    da_descr_set(d[11], r, True if stale else False)
    da_descr_set(d[12], r, id_)
    PyObject_GC_UnTrack(<void*>r)
    return r
