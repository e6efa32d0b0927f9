# cython: language_level=3
"""Streaming window statistics over many series, one call per tick.

`RollingWindow` keeps, for ``n_series`` series, the last ``window`` (H) valid
samples of each and, per :meth:`RollingWindow.push` (one sample per series),
writes five statistics into persistent output arrays:

========== ================================================================
mean       mean of the window
std        sample standard deviation of the window (ddof=1); NaN while the
           window holds fewer than 2 samples
slope      least-squares slope of the window against its sample index
           (units per sample); NaN while the window holds fewer than 2
threshold  Jacobson/Karels (RFC 6298) ``SRTT + k * RTTVAR``
ewma       exponentially weighted moving average, ``e += alpha * (x - e)``
========== ================================================================

Missing samples: a non-finite sample (NaN or +/-inf) leaves that series'
window, sums, EWMA and Jacobson/Karels state *unchanged*, and its outputs keep
their previous values (a stale container's statistics freeze; they do not
decay). Each series therefore has its own write position in the ring.

Layout. The ring is stored time-major, ``(H, n_series)`` C-contiguous, so
that while the series advance together (the normal case) one tick reads and
writes one contiguous row. Per-series state sits in a ``(10, n_series)``
array (one row per quantity) and the outputs in a ``(5, n_series)`` array;
everything is allocated once, and ``push`` returns the same tuple of
read-only row views every time (overwritten by the next push: copy to keep).

Hot loop. The series are processed in chunks of ``CHUNK``. A scalar pass
moves the ring (gather the evicted sample, scatter the new one: positions
are per series) into small chunk-local buffers; a branch-free pass, which gcc
vectorizes, then updates the sums and writes the outputs for the whole chunk.
Series that are warming up (fewer than H samples) or whose sample is missing
are set aside by the first pass (their state is saved) and handled by a
scalar path afterwards, so no warm-up or NaN branch sits in the hot loop.

Numerics. Sums are kept over shifted values ``y = x - K`` where ``K`` is a
per-series shift (a sample of the window close to its mean), each sum with a
Kahan compensation term: ``S1 = sum(y)``, ``S2 = sum(y**2)``,
``SJ = sum(j * y)`` with ``j = 0..n-1`` oldest to newest, updated in O(1)
when the window slides (``SJ' = SJ - (S1 - y_old) + (H-1) * y_new``). Then
``M2 = S2 - S1**2 / n`` (the Welford sum of squared deviations),
``var = M2 / (n - 1)`` and ``slope = (SJ - (n-1)/2 * S1) / (n (n^2-1) / 12)``.
Shifting instead of a sliding Welford update keeps constant windows exact:
once a window is constant its samples equal ``K`` bit for bit, every sum is
exactly 0, and std and slope are exactly 0.0 (at 100.0 as at 1e9 + 0.1).
A series is recomputed from its ring (new ``K``, fresh sums) when
cancellation is detected -- the shift has drifted so far from the mean that
``S1**2 > RATIO * n * M2`` (which includes ``M2 <= 0`` with ``S1 != 0`` and
any NaN state), or an evicted sample dominated what is left
(``y_old**2 > RATIO * S2``, a spike leaving the window) -- and, to bound slow
drift, every series is recomputed once every ``refresh_every`` pushes
(staggered: about ``n_series / refresh_every`` series per push).
"""
cimport cython
from libc.math cimport NAN, fabs, isfinite, sqrt

import numpy as np

cdef extern from *:
    # gcc only vectorizes the hot loop if it knows the ~20 arrays are disjoint
    ctypedef double* dptr "double * __restrict__"
    ctypedef const double* cdptr "const double * __restrict__"

cdef extern from *:
    """
    /* cancellation guard: recompute once the shift's offset (or an evicted
       sample) is this many times the spread; ~12 of 53 bits may go first */
    #define DA_WINDOW_RATIO 4096.0
    """
    double RATIO "DA_WINDOW_RATIO"

cdef enum:
    # series handled per chunk: the chunk-local buffers stay in L1
    CHUNK = 256
    # rows of the state array
    R_K = 0
    R_S1 = 1
    R_C1 = 2
    R_S2 = 3
    R_C2 = 4
    R_SJ = 5
    R_CJ = 6
    R_EW = 7
    R_SRTT = 8
    R_RV = 9
    N_STATE = 10
    # doubles saved for a set-aside series: the 9 state rows after K + 5 outputs
    SAVED = 14


cdef inline void _kahan(double* s, double* c, double v) noexcept nogil:
    cdef double t = v - c[0]
    cdef double u = s[0] + t
    c[0] = (u - s[0]) - t
    s[0] = u


cdef struct Coef:
    double hm1        # H - 1: index of the newest sample in a full window
    double inv_n      # 1 / n
    double inv_nm1    # 1 / (n - 1)
    double half_nm1   # (n - 1) / 2: mean index
    double inv_d      # 12 / (n (n^2 - 1)): 1 / sum((j - mean j)^2)
    double ratio_n    # RATIO * n
    double a_ew       # EWMA alpha
    double a_jk       # Jacobson/Karels alpha (SRTT gain)
    double b_jk       # Jacobson/Karels beta (RTTVAR gain)
    double k_jk       # Jacobson/Karels k


cdef inline Coef _coef(Py_ssize_t n, double a_ew, double a_jk, double b_jk,
                       double k_jk) noexcept nogil:
    cdef Coef c
    cdef double dn = <double>n
    c.hm1 = dn - 1.0
    c.inv_n = 1.0 / dn
    c.inv_nm1 = 1.0 / (dn - 1.0) if n >= 2 else NAN
    c.half_nm1 = 0.5 * (dn - 1.0)
    c.inv_d = 12.0 / (dn * (dn * dn - 1.0)) if n >= 2 else NAN
    c.ratio_n = RATIO * dn
    c.a_ew = a_ew
    c.a_jk = a_jk
    c.b_jk = b_jk
    c.k_jk = k_jk
    return c


# -- the output formulas: shared by the vector loop and the scalar path so that
# -- both give the same bits for the same state
cdef inline double _mean(double k, double s1, double inv_n) noexcept nogil:
    return k + s1 * inv_n


cdef inline double _m2(double s1, double s2, double inv_n) noexcept nogil:
    return s2 - s1 * s1 * inv_n


cdef inline double _std(double m2, double inv_nm1) noexcept nogil:
    cdef double var = m2 * inv_nm1
    # a select, not fmax: rounding can leave a tiny negative M2
    return sqrt(var if var > 0.0 else 0.0)


cdef inline double _slope(double s1, double sj, double half_nm1,
                          double inv_d) noexcept nogil:
    return (sj - half_nm1 * s1) * inv_d


cdef inline bint _sound(double s1, double m2, double yo, double s2,
                        double ratio_n) noexcept nogil:
    """False when cancellation is detected: the shift has drifted far from the
    mean (S1^2 > RATIO n M2, including M2 <= 0 with S1 != 0), or the evicted
    sample dominated what is left (y_old^2 > RATIO S2). Written with "<=" so
    that a NaN state is not sound either; "&" keeps it branch-free."""
    return (s1 * s1 <= ratio_n * m2) & (yo * yo <= RATIO * s2)


cdef double _steady(Py_ssize_t m, cdptr xs, cdptr old, cdptr shift,
                        dptr s1, dptr c1, dptr s2, dptr c2, dptr sj, dptr cj,
                        dptr ew, dptr srtt, dptr rv,
                        dptr o_mean, dptr o_std, dptr o_slope, dptr o_ew,
                        dptr o_thr, Coef cf) noexcept nogil:
    """The hot loop: m full-window series, branch-free; returns 1.0 if some
    lane detected cancellation (the caller then looks for it), else 0.0.
    (A conditional reduction into a double is what gcc 12 vectorizes; an
    integer count of double comparisons is not.)"""
    cdef Py_ssize_t j
    cdef double flag = 0.0
    cdef double x, k, y, yo, d, u, t, v, a1, a2, aj, m2, e, s, r
    cdef double hm1 = cf.hm1, inv_n = cf.inv_n, inv_nm1 = cf.inv_nm1
    cdef double half_nm1 = cf.half_nm1, inv_d = cf.inv_d, ratio_n = cf.ratio_n
    cdef double a_ew = cf.a_ew, a_jk = cf.a_jk, b_jk = cf.b_jk, k_jk = cf.k_jk
    for j in range(m):
        x = xs[j]
        k = shift[j]
        y = x - k
        yo = old[j] - k
        d = y - yo
        a1 = s1[j]
        # SJ' = SJ - (S1 - y_old) + (H - 1) y_new, from the S1 before the slide
        u = hm1 * y + yo - a1
        # Kahan: S1 += d
        t = d - c1[j]
        v = a1 + t
        c1[j] = (v - a1) - t
        s1[j] = v
        a1 = v
        # Kahan: S2 += y^2 - y_old^2, factored so equal samples add exactly 0
        a2 = s2[j]
        t = d * (y + yo) - c2[j]
        v = a2 + t
        c2[j] = (v - a2) - t
        s2[j] = v
        a2 = v
        # Kahan: SJ += u
        aj = sj[j]
        t = u - cj[j]
        v = aj + t
        cj[j] = (v - aj) - t
        sj[j] = v
        aj = v
        m2 = _m2(a1, a2, inv_n)
        flag = flag if _sound(a1, m2, yo, a2, ratio_n) else 1.0
        o_mean[j] = _mean(k, a1, inv_n)
        o_std[j] = _std(m2, inv_nm1)
        o_slope[j] = _slope(a1, aj, half_nm1, inv_d)
        e = ew[j]
        e = e + a_ew * (x - e)
        ew[j] = e
        o_ew[j] = e
        # RFC 6298: RTTVAR from the SRTT before this sample, then SRTT
        s = srtt[j]
        r = rv[j]
        r = r + b_jk * (fabs(s - x) - r)
        s = s + a_jk * (x - s)
        srtt[j] = s
        rv[j] = r
        o_thr[j] = s + k_jk * r
    return flag


@cython.final
cdef class RollingWindow:
    """Rolling mean / std / slope, EWMA and Jacobson/Karels threshold for
    ``n_series`` series over a window of the last ``window`` valid samples.

    ``push(x)`` ingests one float64 sample per series (NaN/inf = missing, the
    series is left unchanged) and returns ``(mean, std, slope, ewma,
    threshold)``: read-only views of persistent arrays, overwritten by the
    next push. See the module docstring for layout and numerics.
    """
    cdef readonly Py_ssize_t n_series
    cdef readonly Py_ssize_t window
    cdef readonly double ewma_alpha
    cdef readonly double jk_alpha
    cdef readonly double jk_beta
    cdef readonly double jk_k
    cdef readonly Py_ssize_t refresh_every
    cdef readonly unsigned long long pushes
    cdef Py_ssize_t _cursor

    cdef object _ring_arr, _state_arr, _out_arr, _pos_arr, _cnt_arr
    cdef object _scratch_arr, _saved_arr, _aside_arr
    cdef tuple _views
    cdef object _count_view

    cdef double[:, ::1] _ring      # (H, n_series): time-major
    cdef double[:, ::1] _state     # (N_STATE, n_series)
    cdef double[:, ::1] _out       # (5, n_series): mean, std, slope, ewma, threshold
    cdef int[::1] _pos             # next write slot (= oldest sample when full)
    cdef int[::1] _cnt             # valid samples in the window, 0..H
    cdef double[:, ::1] _scratch   # (2, CHUNK): new and evicted samples
    cdef double[:, ::1] _saved     # (CHUNK, SAVED): state of set-aside series
    cdef Py_ssize_t[::1] _aside    # (CHUNK,): indices of set-aside series
    cdef Coef _full                # coefficients for a full window

    def __init__(self, Py_ssize_t n_series, Py_ssize_t window, double ewma_alpha,
                 double jk_alpha=0.125, double jk_beta=0.25, double jk_k=4.0,
                 *, Py_ssize_t refresh_every=1024):
        if n_series < 1:
            raise ValueError(f"n_series must be >= 1, got {n_series}")
        if window < 2:
            raise ValueError(f"window must be >= 2, got {window}")
        if window > 0x7FFFFFFF:
            raise ValueError(f"window must be < 2**31, got {window}")
        for name, value in (("ewma_alpha", ewma_alpha), ("jk_alpha", jk_alpha),
                            ("jk_beta", jk_beta)):
            if not (0.0 < value <= 1.0):
                raise ValueError(f"{name} must be in (0, 1], got {value!r}")
        if not (0.0 <= jk_k < float("inf")):
            raise ValueError(f"jk_k must be finite and >= 0, got {jk_k!r}")
        if refresh_every < 0:
            raise ValueError(f"refresh_every must be >= 0 (0 = never), got {refresh_every}")
        self.n_series = n_series
        self.window = window
        self.ewma_alpha = ewma_alpha
        self.jk_alpha = jk_alpha
        self.jk_beta = jk_beta
        self.jk_k = jk_k
        self.refresh_every = refresh_every
        self.pushes = 0
        self._cursor = 0
        self._full = _coef(window, ewma_alpha, jk_alpha, jk_beta, jk_k)

        self._ring_arr = np.zeros((window, n_series), dtype=np.float64)
        self._state_arr = np.zeros((N_STATE, n_series), dtype=np.float64)
        self._out_arr = np.full((5, n_series), np.nan, dtype=np.float64)
        self._pos_arr = np.zeros(n_series, dtype=np.intc)
        self._cnt_arr = np.zeros(n_series, dtype=np.intc)
        self._scratch_arr = np.zeros((2, CHUNK), dtype=np.float64)
        self._saved_arr = np.zeros((CHUNK, SAVED), dtype=np.float64)
        self._aside_arr = np.zeros(CHUNK, dtype=np.intp)
        self._ring = self._ring_arr
        self._state = self._state_arr
        self._out = self._out_arr
        self._pos = self._pos_arr
        self._cnt = self._cnt_arr
        self._scratch = self._scratch_arr
        self._saved = self._saved_arr
        self._aside = self._aside_arr

        views = []
        for row in range(5):
            v = self._out_arr[row]
            v.flags.writeable = False
            views.append(v)
        self._views = tuple(views)
        cnt_view = self._cnt_arr.view()
        cnt_view.flags.writeable = False
        self._count_view = cnt_view

    # -- public API ---------------------------------------------------------

    def push(self, const double[:] x not None):
        """Ingest one sample per series; return (mean, std, slope, ewma, threshold).

        ``x``: float64, length ``n_series``, any stride. Non-finite = missing.
        The returned arrays are read-only views, overwritten by the next push.
        """
        if x.shape[0] != self.n_series:
            raise ValueError(f"expected {self.n_series} samples, got {x.shape[0]}")
        with nogil:
            self._push(x)
        self.pushes += 1
        return self._views

    def reset(self, series=None):
        """Forget series ``series`` (a slot freed for reuse), or all if None."""
        cdef Py_ssize_t i
        if series is None:
            self._ring_arr.fill(0.0)
            self._state_arr.fill(0.0)
            self._out_arr.fill(np.nan)
            self._pos_arr.fill(0)
            self._cnt_arr.fill(0)
            return
        i = series
        if not 0 <= i < self.n_series:
            raise IndexError(f"series {series} out of range 0..{self.n_series - 1}")
        self._ring_arr[:, i] = 0.0
        self._state_arr[:, i] = 0.0
        self._out_arr[:, i] = np.nan
        self._pos[i] = 0
        self._cnt[i] = 0

    @property
    def mean(self):
        return self._views[0]

    @property
    def std(self):
        return self._views[1]

    @property
    def slope(self):
        return self._views[2]

    @property
    def ewma(self):
        return self._views[3]

    @property
    def threshold(self):
        return self._views[4]

    @property
    def count(self):
        """Valid samples currently in each series' window (read-only view)."""
        return self._count_view

    @property
    def nbytes(self):
        """Bytes held per series times n_series: ring, state, positions, outputs
        (the fixed chunk buffers, about 12 KiB, are not included)."""
        return (self._ring_arr.nbytes + self._state_arr.nbytes + self._out_arr.nbytes
                + self._pos_arr.nbytes + self._cnt_arr.nbytes)

    @staticmethod
    def bytes_per_series(Py_ssize_t window):
        """State bytes one series costs at this window length."""
        return 8 * window + 8 * N_STATE + 8 * 5 + 2 * sizeof(int)

    def window_values(self, Py_ssize_t series):
        """Series ``series``' window, oldest first (a copy; for tests and debugging)."""
        cdef Py_ssize_t n, p, H = self.window, start
        if not 0 <= series < self.n_series:
            raise IndexError(f"series {series} out of range 0..{self.n_series - 1}")
        n = self._cnt[series]
        p = self._pos[series]
        start = (p - n + H) % H
        idx = (start + np.arange(n)) % H
        return self._ring_arr[idx, series].copy()

    # -- internals ----------------------------------------------------------

    cdef void _push(self, const double[:] x) noexcept nogil:
        cdef Py_ssize_t N = self.n_series, H = self.window
        cdef Py_ssize_t c0, c1, m, i, j, e, n_aside, idx, r, b
        cdef int p, cnt
        cdef double xv, flag
        cdef double* ring = &self._ring[0, 0]
        cdef double* st = &self._state[0, 0]
        cdef double* out = &self._out[0, 0]
        cdef int* pos = &self._pos[0]
        cdef int* cntp = &self._cnt[0]
        cdef double* xs = &self._scratch[0, 0]
        cdef double* old = &self._scratch[1, 0]
        cdef double* saved = &self._saved[0, 0]
        cdef Py_ssize_t* aside = &self._aside[0]
        cdef double* row

        c0 = 0
        while c0 < N:
            c1 = c0 + CHUNK if c0 + CHUNK < N else N
            m = c1 - c0
            # pass 1 (scalar): move the ring for full windows; set the rest aside
            n_aside = 0
            for i in range(c0, c1):
                j = i - c0
                xv = x[i]
                cnt = cntp[i]
                if isfinite(xv) and cnt == H:
                    p = pos[i]
                    idx = <Py_ssize_t>p * N + i
                    old[j] = ring[idx]
                    ring[idx] = xv
                    xs[j] = xv
                    p = p + 1
                    pos[i] = 0 if p == H else p
                else:
                    # y = y_old = 0 keeps the lane finite; its state is restored below
                    xs[j] = st[R_K * N + i]
                    old[j] = st[R_K * N + i]
                    row = saved + n_aside * SAVED
                    for r in range(N_STATE - 1):
                        row[r] = st[(r + 1) * N + i]
                    for r in range(5):
                        row[N_STATE - 1 + r] = out[r * N + i]
                    aside[n_aside] = i
                    n_aside += 1
            # pass 2 (vectorized): every lane of the chunk
            flag = _steady(m, xs, old, st + R_K * N + c0,
                            st + R_S1 * N + c0, st + R_C1 * N + c0,
                            st + R_S2 * N + c0, st + R_C2 * N + c0,
                            st + R_SJ * N + c0, st + R_CJ * N + c0,
                            st + R_EW * N + c0, st + R_SRTT * N + c0,
                            st + R_RV * N + c0,
                            out + c0, out + N + c0, out + 2 * N + c0,
                            out + 3 * N + c0, out + 4 * N + c0, self._full)
            # pass 3 (scalar): restore the set-aside series, then update them
            for e in range(n_aside):
                i = aside[e]
                row = saved + e * SAVED
                for r in range(N_STATE - 1):
                    st[(r + 1) * N + i] = row[r]
                for r in range(5):
                    out[r * N + i] = row[N_STATE - 1 + r]
                xv = x[i]
                if isfinite(xv):
                    self._warm_add(i, xv)
                    self._finalize(i)
            # pass 4 (rare): recompute the lanes that detected cancellation
            if flag != 0.0:
                for i in range(c0, c1):
                    j = i - c0
                    # (a set-aside lane that just filled is checked too: harmless)
                    if cntp[i] == H and isfinite(x[i]):
                        self._check_full(i, old[j])
            c0 = c1

        # staggered refresh: each series is recomputed once per refresh_every pushes
        if self.refresh_every > 0:
            b = (N + self.refresh_every - 1) // self.refresh_every
            i = self._cursor
            for j in range(b):
                if cntp[i] >= 2 and isfinite(x[i]):
                    self._recompute(i)
                    self._finalize(i)
                i += 1
                if i == N:
                    i = 0
            self._cursor = i

    cdef inline void _check_full(self, Py_ssize_t i, double old_x) noexcept nogil:
        cdef Py_ssize_t N = self.n_series
        cdef double* st = &self._state[0, 0]
        cdef double k = st[R_K * N + i]
        cdef double a1 = st[R_S1 * N + i], a2 = st[R_S2 * N + i]
        cdef double m2 = _m2(a1, a2, self._full.inv_n)
        if not _sound(a1, m2, old_x - k, a2, self._full.ratio_n):
            self._recompute(i)
            self._finalize(i)

    cdef void _warm_add(self, Py_ssize_t i, double x) noexcept nogil:
        """Add a finite sample to a series whose window is not full."""
        cdef Py_ssize_t N = self.n_series, H = self.window
        cdef double* st = &self._state[0, 0]
        cdef int n = self._cnt[i]
        cdef int p = self._pos[i]
        cdef double k, y, e, s, r, a1, a2, m2
        cdef Py_ssize_t row
        self._ring[p, i] = x
        p = p + 1
        self._pos[i] = 0 if p == H else p
        self._cnt[i] = n + 1
        if n == 0:
            st[R_K * N + i] = x
            for row in range(R_S1, R_CJ + 1):
                st[row * N + i] = 0.0
            st[R_EW * N + i] = x
            st[R_SRTT * N + i] = x
            st[R_RV * N + i] = 0.5 * x   # RFC 6298: RTTVAR <- R/2
            return
        k = st[R_K * N + i]
        y = x - k
        _kahan(st + R_S1 * N + i, st + R_C1 * N + i, y)
        _kahan(st + R_S2 * N + i, st + R_C2 * N + i, y * y)
        _kahan(st + R_SJ * N + i, st + R_CJ * N + i, <double>n * y)
        e = st[R_EW * N + i]
        st[R_EW * N + i] = e + self.ewma_alpha * (x - e)
        s = st[R_SRTT * N + i]
        r = st[R_RV * N + i]
        st[R_RV * N + i] = r + self.jk_beta * (fabs(s - x) - r)
        st[R_SRTT * N + i] = s + self.jk_alpha * (x - s)
        a1 = st[R_S1 * N + i]
        a2 = st[R_S2 * N + i]
        m2 = _m2(a1, a2, 1.0 / <double>(n + 1))
        if not _sound(a1, m2, 0.0, a2, RATIO * <double>(n + 1)):
            self._recompute(i)

    cdef void _recompute(self, Py_ssize_t i) noexcept nogil:
        """Fresh sums for series i from its ring, shifted by the sample nearest
        the mean (so a constant window sums to exactly 0)."""
        cdef Py_ssize_t N = self.n_series, H = self.window
        cdef double* st = &self._state[0, 0]
        cdef double* ring = &self._ring[0, 0]
        cdef Py_ssize_t n = self._cnt[i], j, slot
        cdef Py_ssize_t start = (self._pos[i] - n + H) % H
        cdef double acc = 0.0, mu, k, best, dist, y, a1 = 0.0, a2 = 0.0, aj = 0.0
        if n == 0:
            return
        slot = start
        for j in range(n):
            acc += ring[slot * N + i]
            slot += 1
            if slot == H:
                slot = 0
        mu = acc / <double>n
        k = ring[start * N + i]
        best = fabs(k - mu)
        slot = start
        for j in range(n):
            y = ring[slot * N + i]
            dist = fabs(y - mu)
            if dist < best:
                best = dist
                k = y
            slot += 1
            if slot == H:
                slot = 0
        slot = start
        for j in range(n):
            y = ring[slot * N + i] - k
            a1 += y
            a2 += y * y
            aj += <double>j * y
            slot += 1
            if slot == H:
                slot = 0
        st[R_K * N + i] = k
        st[R_S1 * N + i] = a1
        st[R_C1 * N + i] = 0.0
        st[R_S2 * N + i] = a2
        st[R_C2 * N + i] = 0.0
        st[R_SJ * N + i] = aj
        st[R_CJ * N + i] = 0.0

    cdef void _finalize(self, Py_ssize_t i) noexcept nogil:
        """Write series i's outputs from its state (the scalar path)."""
        cdef Py_ssize_t N = self.n_series, n = self._cnt[i]
        cdef double* st = &self._state[0, 0]
        cdef double* out = &self._out[0, 0]
        cdef Coef cf
        cdef double k, a1, a2, aj
        cdef Py_ssize_t r
        if n == 0:
            for r in range(5):
                out[r * N + i] = NAN
            return
        cf = self._full if n == self.window else _coef(
            n, self.ewma_alpha, self.jk_alpha, self.jk_beta, self.jk_k)
        k = st[R_K * N + i]
        a1 = st[R_S1 * N + i]
        a2 = st[R_S2 * N + i]
        aj = st[R_SJ * N + i]
        out[i] = _mean(k, a1, cf.inv_n)
        if n >= 2:
            out[N + i] = _std(_m2(a1, a2, cf.inv_n), cf.inv_nm1)
            out[2 * N + i] = _slope(a1, aj, cf.half_nm1, cf.inv_d)
        else:
            out[N + i] = NAN
            out[2 * N + i] = NAN
        out[3 * N + i] = st[R_EW * N + i]
        out[4 * N + i] = st[R_SRTT * N + i] + self.jk_k * st[R_RV * N + i]

