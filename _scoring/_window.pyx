# cython: language_level=3
"""Streaming window statistics over many series, one call per tick.

`RollingWindow` keeps, for ``n_series`` series, the last ``window`` (H) valid
samples of each and, per :meth:`RollingWindow.push` (one sample per series),
writes five statistics into persistent output arrays. It is the one rolling
window implementation of the project: the scoring kernel (`_kernel.score_tick`)
keeps its five trend series per container (overall, cpu, memory and network
scores, response time) in five of these, one series per slot, and pushes into
them with `push_ptr` (declared in ``_window.pxd``), the code ``push`` runs; their
slopes are the scorer's trends and the response-time window's threshold is its
anomaly band. `resize` follows the scorer's capacity, `configure` its
``trend_window`` and ``jk_k``.

========== ================================================================
mean       mean of the window
std        sample standard deviation of the window (ddof=1); NaN while the
           window holds fewer than 2 samples (always, for ``window`` 1)
slope      least-squares slope of the window against its sample index
           (units per sample); NaN while the window holds fewer than 2
ewma       exponentially weighted moving average, ``e += alpha * (x - e)``,
           started at the first sample
threshold  Jacobson/Karels (RFC 6298) ``SRTT + k * RTTVAR``: the first
           sample R sets ``SRTT = R, RTTVAR = R/2``; then
           ``RTTVAR += beta (|SRTT - R| - RTTVAR)`` and
           ``SRTT += alpha (R - SRTT)``
========== ================================================================

Missing samples: a non-finite sample (NaN or +/-inf) leaves that series'
window, sums, EWMA and Jacobson/Karels state *unchanged*, and its outputs keep
their previous values: a stale container's statistics freeze, they do not
decay. Before its first sample a series' outputs are all NaN.

Layout. The ring is time-major, ``(H, n_series)`` C-contiguous, and every
push writes one row of it (row ``pushes % H``): the series advance together,
so a tick reads and writes one contiguous row. A series that misses samples
falls behind by a *lag* (its own write slot is ``lag`` rows back); when it
gets a sample again its window is rotated back into step, O(H), once per
outage. Per-series state sits in a ``(10, n_series)`` array (one row per
quantity; the EWMA row doubles as the ``ewma`` output) and the other
outputs in a ``(4, n_series)`` array; everything is allocated (and its pages
touched) once, and ``push`` returns the same tuple of read-only row views
each time (overwritten by the next push: copy to keep).

Hot loop. Series are processed in chunks of ``CHUNK``; each chunk remembers
whether its series are in step and at a common count. A chunk of full,
in-step series -- the normal case -- runs one branch-free loop (``_steady``)
over the ring row and the state rows, which gcc vectorizes. Each loop also
scans the *next* chunk's samples for missing ones (an integer OR over their
bits, so the first load of a sample overlaps arithmetic instead of stalling
a separate scan); a chunk known to have none takes ``_clean``, which has no
selects and does not read the outputs back. In a chunk with a missing sample,
``_steady`` handles it by selects (that lane's ring slot, state and outputs
are written back unchanged) and flags it; both loops do the same arithmetic
term for term, so which one ran does not change a result. Warm-up has its
own loops (``_first``, ``_warm``), so no warm-up branch sits in the steady
loop. A chunk that is not uniform
(a series added later and still warming up, one that lags) takes a scalar
pass that feeds such series NaN (leaving them to the selects), runs the same
vector loop, then updates them one by one. The three vector loops are compiled
three times, for x86-64 baseline (SSE2), x86-64-v3 (AVX2, FMA) and x86-64-v4
(AVX-512: twice the lanes, 32 registers, mask selects), and gcc picks one at
load time (``target_clones``). The module is built with ``-ffp-contract=off``
(setup.py): no clone fuses a multiply-add, so every loop and the scalar paths
round alike and a series' results are the same bits whichever path ran and on
every machine. The kernel is memory-bound at N = 10,000: it moves about 240
bytes per series and tick.

Numerics. Sums are kept over shifted values ``y = x - K``, where ``K`` is a
per-series shift (a sample of the window, close to its mean), each sum with
a Kahan compensation term: ``S1 = sum(y)``, ``S2 = sum(y**2)`` and
``SJ = sum(j * y)`` with ``j = 0..n-1`` oldest to newest, updated in O(1)
when the window slides (``SJ' = SJ - (S1 - y_old) + (H-1) y_new``). Then
``M2 = S2 - S1**2 / n`` (the Welford sum of squared deviations),
``std = sqrt(M2 / (n - 1))`` and
``slope = (SJ - (n-1)/2 S1) / (n (n**2 - 1) / 12)``. Shifted sums rather
than a sliding Welford update keep constant windows exact: once a window is
constant its samples equal ``K`` bit for bit (if ``K`` was another value,
the cancellation guard below recomputes on that very push), every sum is
exactly 0, and std and slope are exactly 0.0 (at 100.0 as at 1e9 + 0.1). A series is
recomputed from its ring (new ``K``, fresh sums) when cancellation is
detected -- the shift has drifted far from the mean (``S1**2 > RATIO n M2``,
which includes ``M2 <= 0`` with ``S1 != 0`` and any NaN state) or the
evicted sample dominated what is left (``y_old**2 > RATIO S2``: a spike
leaving the window) -- and, to bound slow drift, every series is recomputed
once per ``refresh_every`` pushes, staggered by index (series i at the pushes
p = i mod ``refresh_every``, about ``n_series / refresh_every`` series per
push), so that a series' schedule does not depend on how many series there are.
"""
cimport cython
from libc.math cimport NAN, fabs, isfinite, sqrt
from libc.stdint cimport int64_t, uint64_t
from libc.string cimport memcpy

import numpy as np

cdef extern from *:
    """
    /* Cancellation guard: recompute once the shift's offset (or an evicted
       sample) is this many times the spread; ~12 of 53 bits may go first. */
    #define DA_WINDOW_RATIO 4096.0

    /* Runtime SIMD dispatch for the three vector loops: this declaration adds
       gcc's target_clones to the functions Cython generates below (a
       baseline, an x86-64-v3 and an x86-64-v4 body, chosen by an ifunc resolver at load
       time). It must name Cython's C names for them; the table after it
       takes their addresses, so if those names ever change the module fails
       to import ("undefined symbol") instead of silently losing the clones.
       -DDA_WINDOW_NO_CLONES builds the baseline body only (for testing it). */
    #define DA_R double * __restrict__
    #define DA_CR const double * __restrict__
    #if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__) \
        && !defined(DA_WINDOW_NO_CLONES)
    #define DA_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
    #else
    #define DA_CLONES
    #endif
    static double __pyx_f_8_scoring_7_window__steady(
        Py_ssize_t, DA_CR, DA_R, DA_CR, DA_R, DA_R, DA_R, DA_R, DA_R, DA_R,
        DA_R, DA_R, DA_R, DA_R, DA_R, DA_R, DA_R, DA_R, const double *) DA_CLONES;
    static double __pyx_f_8_scoring_7_window__clean(
        Py_ssize_t, DA_CR, DA_R, DA_CR, DA_R, DA_R, DA_R, DA_R, DA_R, DA_R,
        DA_R, DA_R, DA_R, DA_R, DA_R, DA_R, DA_R, DA_R, const double *,
        const double *) DA_CLONES;
    static double __pyx_f_8_scoring_7_window__warm(
        Py_ssize_t, DA_CR, DA_R, DA_CR, DA_R, DA_R, DA_R, DA_R, DA_R, DA_R,
        DA_R, DA_R, DA_R, DA_R, DA_R, DA_R, DA_R, DA_R, const double *,
        double, const double *) DA_CLONES;
    static void *const da_window_loops[3] __attribute__((used)) = {
        (void *)__pyx_f_8_scoring_7_window__steady,
        (void *)__pyx_f_8_scoring_7_window__clean,
        (void *)__pyx_f_8_scoring_7_window__warm,
    };
    """
    double RATIO "DA_WINDOW_RATIO"
    # gcc only vectorizes a loop over ~20 arrays if it knows they are disjoint
    ctypedef double* dptr "double * __restrict__"
    ctypedef const double* cdptr "const double * __restrict__"

# the enums (CHUNK, state rows R_*, output rows O_*, MODE_MIXED, coefficients CF_*)
# and the RollingWindow attributes are declared in _window.pxd


cdef inline void _coef(double* cf, Py_ssize_t n, double a_ew, double a_jk,
                       double b_jk, double k_jk) noexcept nogil:
    cdef double dn = <double>n
    cf[CF_HM1] = dn - 1.0
    cf[CF_INV_N] = 1.0 / dn
    cf[CF_INV_NM1] = 1.0 / (dn - 1.0) if n >= 2 else NAN
    cf[CF_HALF] = 0.5 * (dn - 1.0)
    cf[CF_INV_D] = 12.0 / (dn * (dn * dn - 1.0)) if n >= 2 else NAN
    cf[CF_RATIO_N] = RATIO * dn
    cf[CF_A_EW] = a_ew
    cf[CF_A_JK] = a_jk
    cf[CF_B_JK] = b_jk
    cf[CF_K_JK] = k_jk


# -- output formulas, shared by the vector loops and the scalar path ---------

cdef inline double _mean(double k, double s1, double inv_n) noexcept nogil:
    return k + s1 * inv_n


cdef inline double _m2(double s1, double s2, double inv_n) noexcept nogil:
    return s2 - s1 * s1 * inv_n


cdef inline double _std(double m2, double inv_nm1) noexcept nogil:
    cdef double var = m2 * inv_nm1
    # a select, not fmax: rounding can leave a tiny negative M2; NaN (a window of
    # one sample, where inv_nm1 is NaN) stays NaN
    return sqrt(0.0 if var < 0.0 else var)


cdef inline double _slope(double s1, double sj, double half,
                          double inv_d) noexcept nogil:
    return (sj - half * s1) * inv_d


cdef inline bint _sound(double s1, double m2, double yo, double s2,
                        double ratio_n) noexcept nogil:
    """False when cancellation is detected: the shift has drifted far from
    the mean (S1^2 > RATIO n M2, including M2 <= 0 with S1 != 0), or the
    evicted sample dominated what is left (y_old^2 > RATIO S2). Written with
    "<=" so that a NaN state is not sound either; "&" keeps it branch-free."""
    return (s1 * s1 <= ratio_n * m2) & (yo * yo <= RATIO * s2)


cdef inline double _pick(int64_t keep, double new, double old) noexcept nogil:
    """``new`` where ``keep`` is all ones, ``old`` where it is 0: a bitwise
    select. (Written as ``c ? new : old`` gcc turns the store into a masked
    store, which is slow on AMD processors.)"""
    cdef int64_t a, b
    cdef double r
    memcpy(&a, &new, 8)
    memcpy(&b, &old, 8)
    a = (a & keep) | (b & ~keep)
    memcpy(&r, &a, 8)
    return r


cdef inline bint _any_missing(const double* x, Py_ssize_t m) noexcept nogil:
    """True if some x[j] is not finite (exponent field all ones). Integer
    arithmetic: ``(bits & EXP) + 2**52`` reaches bit 63 only for that exponent,
    and an OR reduction has no floating-point dependency chain, so the scan
    runs at load speed."""
    cdef uint64_t b, acc = 0
    cdef Py_ssize_t j
    for j in range(m):
        memcpy(&b, &x[j], 8)
        acc |= (b & 0x7ff0000000000000ULL) + 0x0010000000000000ULL
    return (acc >> 63) != 0


cdef inline bint _none_present(const double* x, Py_ssize_t m) noexcept nogil:
    """True if no x[j] is finite: `_any_missing` with an AND reduction."""
    cdef uint64_t b, acc = 0xffffffffffffffffULL
    cdef Py_ssize_t j
    for j in range(m):
        memcpy(&b, &x[j], 8)
        acc &= (b & 0x7ff0000000000000ULL) + 0x0010000000000000ULL
    return (acc >> 63) != 0


cdef inline const double* _ahead(const double* x, Py_ssize_t c0, Py_ssize_t m,
                                  Py_ssize_t N) noexcept nogil:
    """What a loop over chunk [c0, c0 + m) scans for the next chunk: its m
    samples; when the next chunk is the short last one, the last m samples
    (the others are this chunk's, known finite); after the last chunk, this
    chunk again."""
    if c0 + m >= N:
        return x + c0
    if N - (c0 + m) >= m:
        return x + c0 + m
    return x + N - m


cdef inline void _kahan(double* s, double* c, double v) noexcept nogil:
    cdef double t = v - c[0]
    cdef double u = s[0] + t
    c[0] = (u - s[0]) - t
    s[0] = u


def _readonly(a):
    v = a.view()
    v.flags.writeable = False
    return v


# -- the vector loops ---------------------------------------------------------
# One branch-free pass over m series. Flags: fl[j] = 0.0, or 1.0 where
# cancellation was detected, 2.0 where the sample was missing; the return value
# is 1.0 if any lane was flagged. (A conditional reduction into a double is
# what gcc 12 vectorizes here; an integer count of double comparisons is not.)

cdef double _steady(Py_ssize_t m, cdptr x, dptr row, cdptr shift,
                    dptr s1, dptr c1, dptr s2, dptr c2, dptr sj, dptr cj,
                    dptr ew, dptr srtt, dptr rv,
                    dptr o_mean, dptr o_std, dptr o_slope, dptr o_thr,
                    dptr fl, const double* cf) noexcept nogil:
    """Full, in-step windows: evict the oldest sample (``row``), add ``x``; a
    lane whose sample is not finite is written back unchanged."""
    cdef Py_ssize_t j
    cdef int64_t keep
    cdef double flag = 0.0, f
    cdef double xv, old, k, y, yo, d, u, t, v, a1, a2, aj, o1, o2, oj, m2, e, s, r
    cdef double hm1 = cf[CF_HM1], inv_n = cf[CF_INV_N], inv_nm1 = cf[CF_INV_NM1]
    cdef double half = cf[CF_HALF], inv_d = cf[CF_INV_D], ratio_n = cf[CF_RATIO_N]
    cdef double a_ew = cf[CF_A_EW], a_jk = cf[CF_A_JK], b_jk = cf[CF_B_JK]
    cdef double k_jk = cf[CF_K_JK]
    for j in range(m):
        xv = x[j]
        keep = -<int64_t>(xv - xv == 0.0)   # all ones when the sample is finite
        old = row[j]
        row[j] = _pick(keep, xv, old)
        k = shift[j]
        y = xv - k
        yo = old - k
        d = y - yo
        o1 = s1[j]
        # SJ' = SJ - (S1 - y_old) + (H - 1) y_new, with the S1 before the slide
        u = hm1 * y + yo - o1
        t = d - c1[j]                   # Kahan: S1 += d
        a1 = o1 + t
        c1[j] = _pick(keep, (a1 - o1) - t, c1[j])
        s1[j] = _pick(keep, a1, o1)
        o2 = s2[j]                      # Kahan: S2 += y^2 - y_old^2, factored
        t = d * (y + yo) - c2[j]        # so that equal samples add exactly 0
        a2 = o2 + t
        c2[j] = _pick(keep, (a2 - o2) - t, c2[j])
        s2[j] = _pick(keep, a2, o2)
        oj = sj[j]                      # Kahan: SJ += u
        t = u - cj[j]
        aj = oj + t
        cj[j] = _pick(keep, (aj - oj) - t, cj[j])
        sj[j] = _pick(keep, aj, oj)
        m2 = _m2(a1, a2, inv_n)
        f = 0.0 if _sound(a1, m2, yo, a2, ratio_n) else 1.0
        f = f if xv - xv == 0.0 else 2.0
        fl[j] = f
        flag = flag if f == 0.0 else 1.0
        o_mean[j] = _pick(keep, _mean(k, a1, inv_n), o_mean[j])
        o_std[j] = _pick(keep, _std(m2, inv_nm1), o_std[j])
        o_slope[j] = _pick(keep, _slope(a1, aj, half, inv_d), o_slope[j])
        e = ew[j]
        ew[j] = _pick(keep, e + a_ew * (xv - e), e)
        s = srtt[j]                     # RFC 6298: RTTVAR from the old SRTT
        r = rv[j]
        r = _pick(keep, r + b_jk * (fabs(s - xv) - r), r)
        s = _pick(keep, s + a_jk * (xv - s), s)
        srtt[j] = s
        rv[j] = r
        o_thr[j] = _pick(keep, s + k_jk * r, o_thr[j])
    return flag


cdef double _clean(Py_ssize_t m, cdptr x, dptr row, cdptr shift,
                   dptr s1, dptr c1, dptr s2, dptr c2, dptr sj, dptr cj,
                   dptr ew, dptr srtt, dptr rv,
                   dptr o_mean, dptr o_std, dptr o_slope, dptr o_thr,
                   dptr fl, const double* cf, const double* xn) noexcept nogil:
    """``_steady`` for a chunk whose samples are all finite (the caller has
    checked): the same arithmetic, term for term, without the selects, so it
    neither reads the outputs back nor blends every store. It also scans
    ``xn[0..m)`` (the next chunk's samples) for missing ones, so that their
    first load overlaps this chunk's arithmetic: 2.0 is added to the return
    value if one is not finite."""
    cdef Py_ssize_t j
    cdef uint64_t b, acc = 0
    cdef double flag = 0.0, f
    cdef double xv, old, k, y, yo, d, u, t, a1, a2, aj, o1, o2, oj, m2, e, s, r
    cdef double hm1 = cf[CF_HM1], inv_n = cf[CF_INV_N], inv_nm1 = cf[CF_INV_NM1]
    cdef double half = cf[CF_HALF], inv_d = cf[CF_INV_D], ratio_n = cf[CF_RATIO_N]
    cdef double a_ew = cf[CF_A_EW], a_jk = cf[CF_A_JK], b_jk = cf[CF_B_JK]
    cdef double k_jk = cf[CF_K_JK]
    for j in range(m):
        memcpy(&b, &xn[j], 8)           # first, so that its load starts early
        acc |= (b & 0x7ff0000000000000ULL) + 0x0010000000000000ULL
        xv = x[j]
        old = row[j]
        row[j] = xv
        k = shift[j]
        y = xv - k
        yo = old - k
        d = y - yo
        o1 = s1[j]
        u = hm1 * y + yo - o1
        t = d - c1[j]
        a1 = o1 + t
        c1[j] = (a1 - o1) - t
        s1[j] = a1
        o2 = s2[j]
        t = d * (y + yo) - c2[j]
        a2 = o2 + t
        c2[j] = (a2 - o2) - t
        s2[j] = a2
        oj = sj[j]
        t = u - cj[j]
        aj = oj + t
        cj[j] = (aj - oj) - t
        sj[j] = aj
        m2 = _m2(a1, a2, inv_n)
        f = 0.0 if _sound(a1, m2, yo, a2, ratio_n) else 1.0
        fl[j] = f
        flag = flag if f == 0.0 else 1.0
        o_mean[j] = _mean(k, a1, inv_n)
        o_std[j] = _std(m2, inv_nm1)
        o_slope[j] = _slope(a1, aj, half, inv_d)
        e = ew[j]
        ew[j] = e + a_ew * (xv - e)
        s = srtt[j]
        r = rv[j]
        r = r + b_jk * (fabs(s - xv) - r)
        s = s + a_jk * (xv - s)
        srtt[j] = s
        rv[j] = r
        o_thr[j] = s + k_jk * r
    return flag + (2.0 if (acc >> 63) != 0 else 0.0)


cdef double _warm(Py_ssize_t m, cdptr x, dptr row, cdptr shift,
                  dptr s1, dptr c1, dptr s2, dptr c2, dptr sj, dptr cj,
                  dptr ew, dptr srtt, dptr rv,
                  dptr o_mean, dptr o_std, dptr o_slope, dptr o_thr,
                  dptr fl, const double* cf, double c,
                  const double* xn) noexcept nogil:
    """Windows holding c >= 1 samples (all the same c, all samples finite):
    add ``x``, evict nothing; ``cf`` is for n = c + 1. Scans ``xn`` like
    ``_clean``."""
    cdef Py_ssize_t j
    cdef uint64_t b, acc = 0
    cdef double flag = 0.0
    cdef double xv, k, y, t, v, a1, a2, aj, m2, e, s, r
    cdef double inv_n = cf[CF_INV_N], inv_nm1 = cf[CF_INV_NM1]
    cdef double half = cf[CF_HALF], inv_d = cf[CF_INV_D], ratio_n = cf[CF_RATIO_N]
    cdef double a_ew = cf[CF_A_EW], a_jk = cf[CF_A_JK], b_jk = cf[CF_B_JK]
    cdef double k_jk = cf[CF_K_JK]
    for j in range(m):
        memcpy(&b, &xn[j], 8)
        acc |= (b & 0x7ff0000000000000ULL) + 0x0010000000000000ULL
        xv = x[j]
        row[j] = xv
        k = shift[j]
        y = xv - k
        a1 = s1[j]
        t = y - c1[j]
        v = a1 + t
        c1[j] = (v - a1) - t
        s1[j] = v
        a1 = v
        a2 = s2[j]
        t = y * y - c2[j]
        v = a2 + t
        c2[j] = (v - a2) - t
        s2[j] = v
        a2 = v
        aj = sj[j]
        t = c * y - cj[j]
        v = aj + t
        cj[j] = (v - aj) - t
        sj[j] = v
        aj = v
        m2 = _m2(a1, a2, inv_n)
        fl[j] = 0.0 if _sound(a1, m2, 0.0, a2, ratio_n) else 1.0
        flag = flag if _sound(a1, m2, 0.0, a2, ratio_n) else 1.0
        o_mean[j] = _mean(k, a1, inv_n)
        o_std[j] = _std(m2, inv_nm1)
        o_slope[j] = _slope(a1, aj, half, inv_d)
        e = ew[j]
        ew[j] = e + a_ew * (xv - e)
        s = srtt[j]
        r = rv[j]
        r = r + b_jk * (fabs(s - xv) - r)
        s = s + a_jk * (xv - s)
        srtt[j] = s
        rv[j] = r
        o_thr[j] = s + k_jk * r
    return flag + (2.0 if (acc >> 63) != 0 else 0.0)


cdef void _first(Py_ssize_t m, cdptr x, dptr row, dptr shift,
                 dptr s1, dptr c1, dptr s2, dptr c2, dptr sj, dptr cj,
                 dptr ew, dptr srtt, dptr rv,
                 dptr o_mean, dptr o_std, dptr o_slope, dptr o_thr,
                 double k_jk) noexcept nogil:
    """Empty windows, all samples finite: the first sample starts every
    statistic."""
    cdef Py_ssize_t j
    cdef double xv
    for j in range(m):
        xv = x[j]
        row[j] = xv
        shift[j] = xv
        s1[j] = 0.0
        c1[j] = 0.0
        s2[j] = 0.0
        c2[j] = 0.0
        sj[j] = 0.0
        cj[j] = 0.0
        ew[j] = xv
        srtt[j] = xv
        rv[j] = 0.5 * xv              # RFC 6298: RTTVAR <- R/2
        o_mean[j] = xv
        o_std[j] = NAN
        o_slope[j] = NAN
        o_thr[j] = xv + k_jk * (0.5 * xv)


def _check_window(Py_ssize_t window):
    if not 1 <= window <= 1_000_000:
        raise ValueError(f"window must be in 1..1000000, got {window}")


def _check_rate(str name, double value):
    if not 0.0 < value <= 1.0:
        raise ValueError(f"{name} must be in (0, 1], got {value!r}")


def _check_jk_k(double value):
    if not 0.0 <= value < float("inf"):
        raise ValueError(f"jk_k must be finite and >= 0, got {value!r}")


def _check_refresh(Py_ssize_t value):
    if value < 0:
        raise ValueError(f"refresh_every must be >= 0 (0 = never), got {value}")


@cython.final
cdef class RollingWindow:
    """Rolling mean / std / slope, EWMA and Jacobson/Karels threshold for
    ``n_series`` series over the last ``window`` valid samples of each.

    ``push(x)`` ingests one float64 sample per series (NaN/inf = missing: the
    series is left unchanged) and returns ``(mean, std, slope, ewma,
    threshold)``, read-only views of persistent arrays that the next push
    overwrites. ``refresh_every``: pushes over which every series is
    recomputed once from its ring (0 = only when cancellation is detected).
    ``resize`` and ``configure`` change the number of series and the
    parameters in place, keeping every series' state. See the module
    docstring for layout and numerics.
    """

    def __init__(self, Py_ssize_t n_series, Py_ssize_t window, double ewma_alpha,
                 double jk_alpha=0.125, double jk_beta=0.25, double jk_k=4.0,
                 *, Py_ssize_t refresh_every=4096):
        if n_series < 1:
            raise ValueError(f"n_series must be >= 1, got {n_series}")
        _check_window(window)
        _check_rate("ewma_alpha", ewma_alpha)
        _check_rate("jk_alpha", jk_alpha)
        _check_rate("jk_beta", jk_beta)
        _check_jk_k(jk_k)
        _check_refresh(refresh_every)
        self.ewma_alpha = ewma_alpha
        self.jk_alpha = jk_alpha
        self.jk_beta = jk_beta
        self.jk_k = jk_k
        self.refresh_every = refresh_every
        self.pushes = 0
        self._head = 0
        self._allocate(n_series, window)
        self.reset()

    cdef int _allocate(self, Py_ssize_t n_series, Py_ssize_t window) except -1:
        """Bind fresh arrays for `n_series` series of `window` samples (contents
        unset: the caller resets or fills them) and the views over them."""
        self.n_series = n_series
        self.window = window
        _coef(self._cf_full, window, self.ewma_alpha, self.jk_alpha, self.jk_beta,
              self.jk_k)
        # np.empty + fill, not np.zeros: calloc'd pages would fault in during
        # the first pushes (at N = 10,000 that cost more than the arithmetic)
        self._ring_arr = np.empty((window, n_series), dtype=np.float64)
        self._state_arr = np.empty((N_STATE, n_series), dtype=np.float64)
        self._out_arr = np.empty((N_OUT, n_series), dtype=np.float64)
        self._cnt_arr = np.empty(n_series, dtype=np.intc)
        self._lag_arr = np.empty(n_series, dtype=np.intc)
        self._mode_arr = np.empty((n_series + CHUNK - 1) // CHUNK, dtype=np.intc)
        self._scratch_arr = np.zeros((2, CHUNK), dtype=np.float64)
        self._col_arr = np.zeros(window, dtype=np.float64)
        self._xbuf_arr = None
        self._ring = self._ring_arr
        self._state = self._state_arr
        self._out = self._out_arr
        self._cnt = self._cnt_arr
        self._lag = self._lag_arr
        self._mode = self._mode_arr
        self._scratch = self._scratch_arr
        self._col = self._col_arr
        views = []
        for v in (self._out_arr[O_MEAN], self._out_arr[O_STD], self._out_arr[O_SLOPE],
                  self._state_arr[R_EW], self._out_arr[O_THR]):
            views.append(_readonly(v))
        self._views = tuple(views)
        self._count_view = _readonly(self._cnt_arr)
        return 0

    # -- public API -----------------------------------------------------------

    def push(self, const double[:] x not None):
        """Ingest one sample per series; return (mean, std, slope, ewma, threshold).

        ``x``: float64, length ``n_series``, any stride; non-finite = missing.
        The returned arrays are read-only views, overwritten by the next push.
        """
        cdef const double* xp
        cdef Py_ssize_t i
        if x.shape[0] != self.n_series:
            raise ValueError(f"expected {self.n_series} samples, got {x.shape[0]}")
        if x.strides[0] == sizeof(double):
            xp = &x[0]
        else:
            if self._xbuf_arr is None:
                self._xbuf_arr = np.empty(self.n_series, dtype=np.float64)
                self._xbuf = self._xbuf_arr
            for i in range(self.n_series):
                self._xbuf[i] = x[i]
            xp = &self._xbuf[0]
        with nogil:
            self.push_ptr(xp)
        return self._views

    cdef void push_ptr(self, const double* x) noexcept nogil:
        self._push(x)
        self.pushes += 1

    def reset(self, series=None):
        """Forget one series (a slot freed for reuse), or all when None."""
        cdef Py_ssize_t i
        if series is None:
            self._ring_arr.fill(0.0)
            self._state_arr.fill(0.0)
            self._state_arr[R_EW].fill(np.nan)
            self._out_arr.fill(np.nan)
            self._cnt_arr.fill(0)
            self._lag_arr.fill(0)
            self._mode_arr.fill(0)
            return
        i = series
        if not 0 <= i < self.n_series:
            raise IndexError(f"series {series} out of range 0..{self.n_series - 1}")
        self._ring_arr[:, i] = 0.0
        self._state_arr[:, i] = 0.0
        self._state_arr[R_EW, i] = np.nan
        self._out_arr[:, i] = np.nan
        self._cnt[i] = 0
        self._lag[i] = 0
        self._mode[i // CHUNK] = MODE_MIXED

    def resize(self, Py_ssize_t n_series):
        """Hold `n_series` series from now on (a scorer's capacity grew): series
        below min(old, new) keep everything, added ones start empty. The arrays,
        and so the views `push` returns, are replaced: re-read them."""
        cdef Py_ssize_t m
        if n_series < 1:
            raise ValueError(f"n_series must be >= 1, got {n_series}")
        m = min(n_series, self.n_series)
        old = (self._ring_arr, self._state_arr, self._out_arr, self._cnt_arr, self._lag_arr)
        self._allocate(n_series, self.window)
        self.reset()
        ring, state, out, cnt, lag = old
        self._ring_arr[:, :m] = ring[:, :m]
        self._state_arr[:, :m] = state[:, :m]
        self._out_arr[:, :m] = out[:, :m]
        self._cnt_arr[:m] = cnt[:m]
        self._lag_arr[:m] = lag[:m]
        self._set_modes()

    def configure(self, *, window=None, ewma_alpha=None, jk_alpha=None, jk_beta=None,
                  jk_k=None, refresh_every=None):
        """Change parameters in place, keeping every series' state.

        A new ``window`` keeps each series' newest min(count, window) samples and
        rebuilds its sums from them (the arrays are replaced: re-read the views);
        EWMA and Jacobson/Karels state are kept. New smoothing factors apply from
        the next push; the threshold output is recomputed with a new ``jk_k`` at
        once. Invalid values raise ValueError and change nothing.
        """
        cdef Py_ssize_t i, N = self.n_series
        if window is not None:
            _check_window(window)
        for name, value in (("ewma_alpha", ewma_alpha), ("jk_alpha", jk_alpha),
                            ("jk_beta", jk_beta)):
            if value is not None:
                _check_rate(name, value)
        if jk_k is not None:
            _check_jk_k(jk_k)
        if refresh_every is not None:
            _check_refresh(refresh_every)
        if ewma_alpha is not None:
            self.ewma_alpha = ewma_alpha
        if jk_alpha is not None:
            self.jk_alpha = jk_alpha
        if jk_beta is not None:
            self.jk_beta = jk_beta
        if jk_k is not None:
            self.jk_k = jk_k
        if refresh_every is not None:
            self.refresh_every = refresh_every
        _coef(self._cf_full, self.window, self.ewma_alpha, self.jk_alpha, self.jk_beta,
              self.jk_k)
        if window is not None and window != self.window:
            self._rewindow(window)
        elif jk_k is not None:
            for i in range(N):
                if self._cnt[i] > 0:
                    self._out[O_THR, i] = (self._state[R_SRTT, i]
                                           + self.jk_k * self._state[R_RV, i])

    def _rewindow(self, Py_ssize_t H1):
        """New ring of H1 rows, head 0: series i keeps its newest k = min(n, H1)
        samples, in step, at rows H1 - k .. H1 - 1; then exact sums."""
        cdef Py_ssize_t N = self.n_series, H0 = self.window, g = self._head
        cdef Py_ssize_t i, j, n, k, nxt
        cdef double[:, ::1] src = self._ring_arr
        new = np.zeros((H1, N), dtype=np.float64)
        cdef double[:, ::1] dst = new
        for i in range(N):
            n = self._cnt[i]
            k = n if n < H1 else H1
            nxt = g - self._lag[i]
            for j in range(k):
                dst[H1 - k + j, i] = src[(nxt - k + j + 2 * H0) % H0, i]
            self._cnt[i] = <int>k
            self._lag[i] = 0
        self._ring_arr = new
        self._ring = new
        self._col_arr = np.zeros(H1, dtype=np.float64)
        self._col = self._col_arr
        self.window = H1
        self._head = 0
        _coef(self._cf_full, H1, self.ewma_alpha, self.jk_alpha, self.jk_beta, self.jk_k)
        for i in range(N):
            if self._cnt[i] > 0:
                self._recompute(i)
                self._finalize(i)
        self._set_modes()

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
    def srtt(self):
        """Jacobson/Karels SRTT of each series (read-only; meaningless where
        ``count`` is 0)."""
        return _readonly(self._state_arr[R_SRTT])

    @property
    def rttvar(self):
        """Jacobson/Karels RTTVAR of each series (as ``srtt``)."""
        return _readonly(self._state_arr[R_RV])

    @property
    def count(self):
        """Samples currently in each series' window (a read-only view)."""
        return self._count_view

    @property
    def nbytes(self):
        """Bytes held per series, times n_series: ring, state, counters and
        outputs (the fixed scratch, 4 KiB + 8 H bytes, is left out)."""
        return (self._ring_arr.nbytes + self._state_arr.nbytes + self._out_arr.nbytes
                + self._cnt_arr.nbytes + self._lag_arr.nbytes)

    @staticmethod
    def bytes_per_series(Py_ssize_t window):
        """Bytes one series costs at this window length (see ``nbytes``)."""
        return 8 * window + 8 * N_STATE + 8 * N_OUT + 2 * sizeof(int)

    def window_values(self, Py_ssize_t series):
        """Series ``series``' window, oldest first (a copy; for tests and debugging)."""
        cdef Py_ssize_t n, nxt, H = self.window
        if not 0 <= series < self.n_series:
            raise IndexError(f"series {series} out of range 0..{self.n_series - 1}")
        n = self._cnt[series]
        nxt = self._head - self._lag[series]
        idx = (nxt - n + np.arange(n)) % H
        return self._ring_arr[idx, series].copy()

    # -- internals ------------------------------------------------------------

    cdef void _set_modes(self) noexcept nogil:
        """Every chunk's mode from its series' counts and lags."""
        cdef Py_ssize_t N = self.n_series, c0 = 0, c = 0, m
        while c0 < N:
            m = CHUNK if c0 + CHUNK <= N else N - c0
            self._mode[c] = self._uniform(c0, m)
            c0 += m
            c += 1


    cdef void _push(self, const double* x) noexcept nogil:
        cdef Py_ssize_t N = self.n_series, H = self.window
        cdef Py_ssize_t g = self._head, c0, m, c, j, i
        cdef double* st = &self._state[0, 0]
        cdef double* out = &self._out[0, 0]
        cdef double* row = &self._ring[g, 0]
        cdef double* fl = &self._scratch[1, 0]
        cdef int* cnt = &self._cnt[0]
        cdef int* mode = &self._mode[0]
        cdef double flag
        cdef int nbad = -1     # the next chunk has a missing sample: 1, 0, -1 unknown
        cdef int cm
        cdef double cf[N_CF]

        self._head = g + 1 if g + 1 < H else 0
        c = 0
        c0 = 0
        while c0 < N:
            m = CHUNK if c0 + CHUNK <= N else N - c0
            cm = mode[c]
            if cm == 0 and _none_present(x + c0, m):
                # empty series that get no sample (a scorer's free slots): nothing
                # changes, not even a lag
                nbad = -1
                c0 += m
                c += 1
                continue
            if cm == H:
                # the normal case: full and in step. A chunk with no missing
                # sample (one vectorized scan of x) takes the loop without
                # selects; otherwise missing samples are handled inside the
                # loop and flagged
                if nbad < 0:
                    nbad = _any_missing(x + c0, m)
                if nbad == 0:
                    flag = _clean(m, x + c0, row + c0, st + R_K * N + c0,
                                  st + R_S1 * N + c0, st + R_C1 * N + c0,
                                  st + R_S2 * N + c0, st + R_C2 * N + c0,
                                  st + R_SJ * N + c0, st + R_CJ * N + c0,
                                  st + R_EW * N + c0, st + R_SRTT * N + c0,
                                  st + R_RV * N + c0,
                                  out + O_MEAN * N + c0, out + O_STD * N + c0,
                                  out + O_SLOPE * N + c0, out + O_THR * N + c0,
                                  fl, self._cf_full, _ahead(x, c0, m, N))
                    if flag >= 2.0:
                        flag -= 2.0
                        nbad = 1
                else:
                    nbad = -1
                    flag = _steady(m, x + c0, row + c0, st + R_K * N + c0,
                                   st + R_S1 * N + c0, st + R_C1 * N + c0,
                                   st + R_S2 * N + c0, st + R_C2 * N + c0,
                                   st + R_SJ * N + c0, st + R_CJ * N + c0,
                                   st + R_EW * N + c0, st + R_SRTT * N + c0,
                                   st + R_RV * N + c0,
                                   out + O_MEAN * N + c0, out + O_STD * N + c0,
                                   out + O_SLOPE * N + c0, out + O_THR * N + c0,
                                   fl, self._cf_full)
                if flag != 0.0:
                    for j in range(m):
                        if fl[j] == 1.0:
                            self._recompute(c0 + j)
                            self._finalize(c0 + j)
                        elif fl[j] == 2.0:
                            # missing: unchanged, and now one row behind
                            self._lag[c0 + j] = 1
                            mode[c] = MODE_MIXED
            else:
                if cm != MODE_MIXED and nbad < 0:
                    nbad = _any_missing(x + c0, m)
                if cm == MODE_MIXED or nbad != 0:
                    nbad = -1
                    self._mixed(x, g, c0, m)
                    mode[c] = self._uniform(c0, m)
                elif cm == 0:
                    nbad = -1
                    _first(m, x + c0, row + c0, st + R_K * N + c0,
                           st + R_S1 * N + c0, st + R_C1 * N + c0,
                           st + R_S2 * N + c0, st + R_C2 * N + c0,
                           st + R_SJ * N + c0, st + R_CJ * N + c0,
                           st + R_EW * N + c0, st + R_SRTT * N + c0,
                           st + R_RV * N + c0,
                           out + O_MEAN * N + c0, out + O_STD * N + c0,
                           out + O_SLOPE * N + c0, out + O_THR * N + c0, self.jk_k)
                    for j in range(m):
                        cnt[c0 + j] = 1
                    mode[c] = 1
                else:
                    _coef(cf, cm + 1, self.ewma_alpha, self.jk_alpha,
                          self.jk_beta, self.jk_k)
                    flag = _warm(m, x + c0, row + c0, st + R_K * N + c0,
                                 st + R_S1 * N + c0, st + R_C1 * N + c0,
                                 st + R_S2 * N + c0, st + R_C2 * N + c0,
                                 st + R_SJ * N + c0, st + R_CJ * N + c0,
                                 st + R_EW * N + c0, st + R_SRTT * N + c0,
                                 st + R_RV * N + c0,
                                 out + O_MEAN * N + c0, out + O_STD * N + c0,
                                 out + O_SLOPE * N + c0, out + O_THR * N + c0,
                                 fl, cf, <double>cm, _ahead(x, c0, m, N))
                    if flag >= 2.0:
                        flag -= 2.0
                        nbad = 1
                    for j in range(m):
                        cnt[c0 + j] = cm + 1
                    mode[c] = cm + 1
                    if flag != 0.0:
                        for j in range(m):
                            if fl[j] != 0.0:
                                self._recompute(c0 + j)
                                self._finalize(c0 + j)
            c0 += m
            c += 1

        # staggered refresh: series i is recomputed at the pushes p with
        # p = i (mod refresh_every), about n_series / refresh_every per push. The
        # schedule of a series depends on its index only, not on n_series, so a
        # window that grew (`resize`) computes what a larger one would have.
        if self.refresh_every > 0:
            i = <Py_ssize_t>(self.pushes % <unsigned long long>self.refresh_every)
            while i < N:
                if cnt[i] >= 2 and isfinite(x[i]):
                    self._recompute(i)
                    self._finalize(i)
                i += self.refresh_every

    cdef int _uniform(self, Py_ssize_t c0, Py_ssize_t m) noexcept nogil:
        """The chunk's mode: its series' common count if all are in step."""
        cdef int* cnt = &self._cnt[c0]
        cdef int* lag = &self._lag[c0]
        cdef int cmin = cnt[0], cmax = cnt[0], lor = 0, v
        cdef Py_ssize_t j
        for j in range(m):
            v = cnt[j]
            cmin = v if v < cmin else cmin
            cmax = v if v > cmax else cmax
            lor = lor | lag[j]
        return cmin if cmin == cmax and lor == 0 else MODE_MIXED

    cdef void _mixed(self, const double* x, Py_ssize_t g, Py_ssize_t c0,
                     Py_ssize_t m) noexcept nogil:
        """A chunk with lagging, warming-up or empty series."""
        cdef Py_ssize_t N = self.n_series, H = self.window
        cdef Py_ssize_t i, j
        cdef double* st = &self._state[0, 0]
        cdef double* out = &self._out[0, 0]
        cdef double* row = &self._ring[g, 0]
        cdef double* xs = &self._scratch[0, 0]
        cdef double* fl = &self._scratch[1, 0]
        cdef int* cnt = &self._cnt[0]
        cdef int* lag = &self._lag[0]
        cdef double xv, flag
        # pass 1 (scalar): full windows with a sample go through the vector
        # loop, in step; the others are fed NaN, which leaves them untouched
        for j in range(m):
            i = c0 + j
            xv = x[i]
            if isfinite(xv) and cnt[i] == H:
                if lag[i] != 0:
                    self._realign(i, g)
                xs[j] = xv
            else:
                xs[j] = NAN
        # pass 2: the vector loop over the whole chunk
        flag = _steady(m, xs, row + c0, st + R_K * N + c0,
                       st + R_S1 * N + c0, st + R_C1 * N + c0,
                       st + R_S2 * N + c0, st + R_C2 * N + c0,
                       st + R_SJ * N + c0, st + R_CJ * N + c0,
                       st + R_EW * N + c0, st + R_SRTT * N + c0,
                       st + R_RV * N + c0,
                       out + O_MEAN * N + c0, out + O_STD * N + c0,
                       out + O_SLOPE * N + c0, out + O_THR * N + c0,
                       fl, self._cf_full)
        # pass 3 (scalar): the series left out
        for j in range(m):
            if fl[j] == 2.0:
                i = c0 + j
                xv = x[i]
                if isfinite(xv):
                    if lag[i] != 0:
                        self._realign(i, g)
                    self._warm_add(i, xv, g)
                    self._finalize(i)
                elif cnt[i] > 0:
                    # missing: the series stays as it is and falls one row behind
                    lag[i] = lag[i] + 1 if lag[i] + 1 < H else 0
            elif fl[j] == 1.0:
                self._recompute(c0 + j)
                self._finalize(c0 + j)

    cdef void _realign(self, Py_ssize_t i, Py_ssize_t g) noexcept nogil:
        """Rotate series i's window so that its next slot is row g (lag 0)."""
        cdef Py_ssize_t N = self.n_series, H = self.window
        cdef Py_ssize_t n = self._cnt[i], L = self._lag[i], k, src, dst
        cdef double* ring = &self._ring[0, 0]
        cdef double* col = &self._col[0]
        src = (g - L - n + 2 * H) % H
        for k in range(n):
            col[k] = ring[src * N + i]
            src = src + 1 if src + 1 < H else 0
        dst = (g - n + H) % H
        for k in range(n):
            ring[dst * N + i] = col[k]
            dst = dst + 1 if dst + 1 < H else 0
        self._lag[i] = 0

    cdef void _warm_add(self, Py_ssize_t i, double x, Py_ssize_t g) noexcept nogil:
        """Add a finite sample at row g to series i (in step, window not full)."""
        cdef Py_ssize_t N = self.n_series
        cdef double* st = &self._state[0, 0]
        cdef int n = self._cnt[i]
        cdef double y, e, s, r, a1, a2
        cdef Py_ssize_t q
        self._ring[g, i] = x
        self._cnt[i] = n + 1
        if n == 0:
            st[R_K * N + i] = x
            for q in range(R_S1, R_CJ + 1):
                st[q * N + i] = 0.0
            st[R_EW * N + i] = x
            st[R_SRTT * N + i] = x
            st[R_RV * N + i] = 0.5 * x      # RFC 6298: RTTVAR <- R/2
            return
        y = x - st[R_K * N + i]
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
        if not _sound(a1, _m2(a1, a2, 1.0 / <double>(n + 1)), 0.0, a2,
                      RATIO * <double>(n + 1)):
            self._recompute(i)

    cdef void _recompute(self, Py_ssize_t i) noexcept nogil:
        """Fresh sums for series i from its ring, shifted by the sample nearest
        the window's mean (so a constant window sums to exactly 0, and the
        shift's offset from the mean is at most the spread)."""
        cdef Py_ssize_t N = self.n_series, H = self.window
        cdef double* st = &self._state[0, 0]
        cdef double* ring = &self._ring[0, 0]
        cdef double* col = &self._col[0]
        cdef Py_ssize_t n = self._cnt[i], j, slot
        cdef double acc = 0.0, mu, k, best, dist, y, a1 = 0.0, a2 = 0.0, aj = 0.0
        if n == 0:
            return
        slot = (self._head - self._lag[i] - n + 2 * H) % H
        for j in range(n):
            col[j] = ring[slot * N + i]
            acc += col[j]
            slot = slot + 1 if slot + 1 < H else 0
        mu = acc / <double>n
        k = col[0]
        best = fabs(k - mu)
        for j in range(1, n):
            dist = fabs(col[j] - mu)
            if dist < best:
                best = dist
                k = col[j]
        for j in range(n):
            y = col[j] - k
            a1 += y
            a2 += y * y
            aj += <double>j * y
        st[R_K * N + i] = k
        st[R_S1 * N + i] = a1
        st[R_C1 * N + i] = 0.0
        st[R_S2 * N + i] = a2
        st[R_C2 * N + i] = 0.0
        st[R_SJ * N + i] = aj
        st[R_CJ * N + i] = 0.0

    cdef void _finalize(self, Py_ssize_t i) noexcept nogil:
        """Write series i's outputs from its state (the scalar path)."""
        cdef Py_ssize_t N = self.n_series, n = self._cnt[i], r
        cdef double* st = &self._state[0, 0]
        cdef double* out = &self._out[0, 0]
        cdef double cfl[N_CF]
        cdef const double* cf
        cdef double k, a1, a2, aj
        if n == 0:
            for r in range(N_OUT):
                out[r * N + i] = NAN
            return
        if n == self.window:
            cf = self._cf_full
        else:
            _coef(cfl, n, self.ewma_alpha, self.jk_alpha, self.jk_beta, self.jk_k)
            cf = cfl
        k = st[R_K * N + i]
        a1 = st[R_S1 * N + i]
        a2 = st[R_S2 * N + i]
        aj = st[R_SJ * N + i]
        out[O_MEAN * N + i] = _mean(k, a1, cf[CF_INV_N])
        if n >= 2:
            out[O_STD * N + i] = _std(_m2(a1, a2, cf[CF_INV_N]), cf[CF_INV_NM1])
            out[O_SLOPE * N + i] = _slope(a1, aj, cf[CF_HALF], cf[CF_INV_D])
        else:
            out[O_STD * N + i] = NAN
            out[O_SLOPE * N + i] = NAN
        out[O_THR * N + i] = st[R_SRTT * N + i] + self.jk_k * st[R_RV * N + i]
