# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""Per-container scoring kernel: one call per tick scores every container.

Why a kernel: a tick must score thousands of containers in a few milliseconds, so the
per-container state lives in slots of preallocated NumPy arrays (rows indexed by slot)
and one `score_tick` call walks all slots with the GIL released. `agent.scoring` owns
the arrays, validates inputs and turns rows into records; this module never raises on
data (NaN in, NaN or a held value out) and allocates nothing per tick.

Layout (all C-contiguous, first axis = slot):

* ``fstate[cap, NF]`` float64 scalars per slot (one row = a few cache lines, read
  sequentially), fields ``F_*`` below;
* ``istate[cap, NI]`` int32 ring heads, counts, flags, fields ``I_*``;
* ``hist[cap, HISTORY_SIZE]``, ``best[cap, BEST_TIME_WINDOW]`` response-time rings;
* ``win[cap, H, 4]`` the overall/cpu/memory/network score windows, interleaved so that
  one push touches one cache line; ``rtw[cap, H]`` the response-time window;
* ``out[NOUT, cap]`` float64 outputs (one contiguous row per quantity, so consumers
  get plain 1-D arrays), ``cat[cap]`` int8 categories, ``flags[NFLAG, cap]`` uint8.

Outputs persist between ticks (writing into warm buffers avoids the page faults a
fresh allocation costs at N = 10,000) and double as the "held" values of a stale
container, which keeps them untouched.

Running window statistics are Kahan-compensated sums of ``x - shift`` (the shift is
a value of the window, so magnitudes stay small). Three guards keep them exact:
a run-length of identical values makes a constant window give a slope of exactly 0
(pandas' ``num_consecutive_same_value``); a sum is recomputed from its ring when
cancellation is detected (the largest |x - shift| it absorbed dwarfs the window's
mean or spread, e.g. after a 5 s timeout left a window of millisecond times); and
every slot recomputes all its sums once per ``P_RECOMPUTE`` valid ticks, staggered
by slot so no tick pays for all of them. All three are O(1) amortized.

The per-slot loop is branchy and gathers from per-slot ring positions, so it is not
vectorized; at N = 10,000 it is bound by memory traffic (~15 cache lines per slot),
which is why the state is laid out so that a slot's tick touches few lines and the
weight normalisation is a separate, streaming pass.
"""
from libc.math cimport exp, expm1, sqrt, pow, fabs, NAN

# ---- fstate fields --------------------------------------------------------------
cdef enum:
    F_CPU = 0       # held cpu score
    F_MEM           # held memory score
    F_NET           # held network score
    F_EMA           # availability EMA (starts at 100)
    F_THR           # dynamic threshold (starts at 1.0)
    F_H_SH          # response-time history: shift, Kahan sum of (x - shift), compensation,
    F_H_S           # and the largest |x - shift| since the last exact recompute
    F_H_C
    F_H_MAG
    F_B_SH          # best times: the same four, then the newest entry
    F_B_S
    F_B_C
    F_B_MAG
    F_B_LAST
    F_SRTT          # Jacobson/Karels (RFC 6298)
    F_RTTVAR
    F_PEAK          # peak-EWMA latency and the time it was last updated
    F_PEAK_T
    F_LEVEL         # Holt level and trend of the overall score
    F_TREND
    F_ADDED         # time the container was added (slow start)
    F_WIN           # 5 series x WF fields (see win_push)
    NF = F_WIN + 35

cdef enum:
    WF = 7          # per window series: shift, S, cS, Q, cQ, S2, mag

# series order inside win[..., k] and the F_WIN block; series 4 is the rt window
cdef enum:
    S_OVERALL = 0
    S_CPU
    S_MEM
    S_NET
    S_RT
    N_WIN = 4  # series in win[..., k]

# ---- istate fields --------------------------------------------------------------
cdef enum:
    I_H_HEAD = 0
    I_H_N
    I_B_HEAD
    I_B_N
    I_W_HEAD        # shared head/count of the four score windows
    I_W_N
    I_R_HEAD        # response-time window
    I_R_N
    I_RUN           # 5 run-lengths of identical values, one per series
    I_SEEN = I_RUN + 5  # 1 once a complete sample arrived (left INIT)
    I_LAST_OK       # 1 when the last probe answered
    I_CAT           # category code (also mirrored to cat[])
    I_HOLT_N        # 0 until the Holt state is seeded
    I_JK_N          # 0 until SRTT/RTTVAR are seeded
    I_ANOM
    I_RC            # countdown to the next exact recompute of the running sums
    NI

# ---- params ---------------------------------------------------------------------
cdef enum:
    P_WCPU = 0
    P_WMEM
    P_WNET
    P_WAV
    P_ALPHA
    P_CAPACITY
    P_HOLT_A
    P_HOLT_B
    P_HORIZON
    P_HYST
    P_SS_WINDOW
    P_SS_AGGR
    P_SS_MIN
    P_TAU
    P_JK_K
    P_LAT_FLOOR
    P_RECOMPUTE
    NP

# ---- output rows ----------------------------------------------------------------
cdef enum:
    O_CPU = 0
    O_MEM
    O_NET
    O_AVAIL
    O_OVERALL
    O_WEIGHT
    O_SLOPE
    O_SLOPE_CPU
    O_SLOPE_MEM
    O_SLOPE_NET
    O_SLOPE_RT
    O_FORECAST
    NOUT

cdef enum:
    G_ANOMALY = 0
    G_STALE
    NFLAG

cdef enum:
    C_INIT = 0
    C_LU
    C_MU
    C_HU
    C_SUNDOWN

FSTATE_FIELDS = {
    "cpu": F_CPU, "mem": F_MEM, "net": F_NET, "ema": F_EMA, "thr": F_THR,
    "srtt": F_SRTT, "rttvar": F_RTTVAR, "peak": F_PEAK, "peak_t": F_PEAK_T,
    "level": F_LEVEL, "trend": F_TREND, "added": F_ADDED,
}
ISTATE_FIELDS = {
    "seen": I_SEEN, "last_ok": I_LAST_OK, "cat": I_CAT, "holt_n": I_HOLT_N,
    "jk_n": I_JK_N, "anomaly": I_ANOM, "recompute": I_RC,
    "hist_head": I_H_HEAD, "hist_n": I_H_N, "best_head": I_B_HEAD, "best_n": I_B_N,
    "win_head": I_W_HEAD, "win_n": I_W_N, "rtw_head": I_R_HEAD, "rtw_n": I_R_N,
}
PARAMS = (
    "cpu_weight", "memory_weight", "network_weight", "availability_weight",
    "ema_alpha", "network_capacity_bps", "holt_alpha", "holt_beta",
    "forecast_horizon", "hysteresis", "slow_start_window", "slow_start_aggression",
    "slow_start_min_fraction", "latency_decay", "jk_k", "latency_floor", "recompute_period",
)
OUT_ROWS = (
    "cpu_score", "memory_score", "network_score", "availability_score",
    "overall_score", "weight", "slope", "slope_cpu", "slope_memory", "slope_network",
    "slope_response_time", "forecast",
)
FLAG_ROWS = ("anomaly", "stale")
WIN_SERIES = N_WIN
NF_ = NF
NI_ = NI
NP_ = NP
assert len(PARAMS) == NP and len(OUT_ROWS) == NOUT and len(FLAG_ROWS) == NFLAG


# ---- small helpers --------------------------------------------------------------
# Recompute a running sum once the largest |x - shift| it absorbed exceeds the
# window's scale (mean for a ring, standard deviation for a slope window) by this
# factor: the sums carry errors of a few ulps of that magnitude, so this keeps
# results within ~1e-12 of the scale while recomputing only after large swings.
cdef extern from *:
    """
    #define DA_CANCEL_RATIO 1e3
    """
    double CANCEL_RATIO "DA_CANCEL_RATIO"


cdef inline double clamp100(double x) noexcept nogil:
    # selects, not fmin/fmax: gcc turns these into minsd/maxsd without a call
    x = x if x > 0.0 else 0.0
    return x if x < 100.0 else 100.0


cdef inline void kahan_add(double* s, double* c, double x) noexcept nogil:
    """s - c is the compensated sum (pandas' add_sum/remove_sum)."""
    cdef double y = x - c[0]
    cdef double t = s[0] + y
    c[0] = (t - s[0]) - y
    s[0] = t


cdef inline double ring_push(double* r, int L, double* f, int* hn, double x) noexcept nogil:
    """Push x into a FIFO ring of length L; return the mean of the ring after it.

    f = (shift, S, c, mag): S - c is the Kahan sum of (x - shift); mag the largest
    |x - shift| pushed since the last exact recompute. The rounding error of S is a
    few ulps of mag, so once mag dwarfs the mean (a huge value has left the ring, or
    the data moved far from the shift) the sum is recomputed from the ring.
    """
    cdef int h = hn[0]
    cdef int n = hn[1]
    cdef double d, mean
    if n == 0:
        f[0] = x
        f[1] = 0.0
        f[2] = 0.0
        f[3] = 0.0
    if n == L:
        kahan_add(&f[1], &f[2], -(r[h] - f[0]))
    else:
        n += 1
        hn[1] = n
    d = x - f[0]
    kahan_add(&f[1], &f[2], d)
    d = fabs(d)
    f[3] = d if d > f[3] else f[3]
    r[h] = x
    h += 1
    hn[0] = h if h < L else 0
    mean = f[0] + (f[1] - f[2]) / n
    if f[3] > CANCEL_RATIO * fabs(mean):
        ring_recompute(r, L, f, hn)
        mean = f[0] + (f[1] - f[2]) / n
    return mean


cdef inline double ring_mean(const double* f, int n) noexcept nogil:
    return f[0] + (f[1] - f[2]) / n


cdef inline void ring_recompute(double* r, int L, double* f, const int* hn) noexcept nogil:
    """Exact sum of the ring around its newest value."""
    cdef int n = hn[1]
    cdef int i
    cdef double s = 0.0, c = 0.0, sh, d, mag = 0.0
    if n == 0:
        return
    sh = r[(hn[0] - 1) if hn[0] > 0 else (L - 1)]  # newest value
    for i in range(n):
        d = r[i] - sh  # the n entries occupy r[0..n) whether or not full
        kahan_add(&s, &c, d)
        d = fabs(d)
        mag = d if d > mag else mag
    f[0] = sh
    f[1] = s
    f[2] = c
    f[3] = mag


cdef inline double win_push(double* r, Py_ssize_t stride, int H, int h, int n,
                            double* f, int* run, double y) noexcept nogil:
    """Push y into one least-squares window; return the slope per sample.

    `h`, `n` are the shared head and count before the push (the caller advances them).
    f = (shift, S, cS, Q, cQ, S2, mag) with d = x - shift, S = sum d_i,
    Q = sum i*d_i (i = 0 for the oldest sample), S2 = sum d_i^2, mag = the largest
    |d| since the last exact recompute. slope = (12 Q - 6 (n-1) S) / (n (n^2 - 1)).
    Rounding leaves errors of a few ulps of mag in S and Q; when mag^2 dwarfs the
    window's variance (a far-off value has left it) the sums are recomputed.
    """
    cdef double d, old, prev, m2
    cdef double n1
    cdef int h1
    if n == 0:
        f[0] = y
        f[1] = 0.0
        f[2] = 0.0
        f[3] = 0.0
        f[4] = 0.0
        f[5] = 0.0
        f[6] = 0.0
        run[0] = 1
        r[h * stride] = y
        return 0.0
    prev = r[((h - 1) if h > 0 else (H - 1)) * stride]
    if y == prev:
        run[0] = run[0] + 1 if run[0] < H else H
    else:
        run[0] = 1
    d = y - f[0]
    if n < H:
        kahan_add(&f[3], &f[4], n * d)
        kahan_add(&f[1], &f[2], d)
        f[5] += d * d
        n1 = n + 1
    else:
        old = r[h * stride] - f[0]
        # drop the oldest: every remaining index shifts down by one (Q -= S - old)
        kahan_add(&f[3], &f[4], (H - 1) * d + old - (f[1] - f[2]))
        kahan_add(&f[1], &f[2], d - old)
        f[5] += d * d - old * old
        n1 = H
    r[h * stride] = y
    if run[0] >= n1:
        # constant window: exact zeros, and re-anchor the shift on the value
        f[0] = y
        f[1] = 0.0
        f[2] = 0.0
        f[3] = 0.0
        f[4] = 0.0
        f[5] = 0.0
        f[6] = 0.0
        return 0.0
    d = fabs(d)
    f[6] = d if d > f[6] else f[6]
    m2 = f[5] - (f[1] - f[2]) * (f[1] - f[2]) / n1  # n * variance (garbage if cancelled)
    if f[6] * f[6] > CANCEL_RATIO * CANCEL_RATIO * m2 / n1:
        h1 = h + 1 if h + 1 < H else 0
        win_recompute(r, stride, H, h1, <int>n1, f, run[0])
    return (12.0 * (f[3] - f[4]) - 6.0 * (n1 - 1.0) * (f[1] - f[2])) / (n1 * (n1 * n1 - 1.0))


cdef inline void win_recompute(const double* r, Py_ssize_t stride, int H, int h, int n,
                               double* f, int run) noexcept nogil:
    """Exact sums from the ring (h, n after the push); shift = newest value."""
    cdef int i, start, pos
    cdef double s = 0.0, cs = 0.0, q = 0.0, cq = 0.0, s2 = 0.0, mag = 0.0, sh, d
    if n == 0 or run >= n:
        return  # empty, or already exact zeros
    sh = r[((h - 1) if h > 0 else (H - 1)) * stride]
    start = h if n == H else 0
    for i in range(n):
        pos = start + i
        if pos >= H:
            pos -= H
        d = r[pos * stride] - sh
        kahan_add(&s, &cs, d)
        kahan_add(&q, &cq, i * d)
        s2 += d * d
        d = fabs(d)
        mag = d if d > mag else mag
    f[0] = sh
    f[1] = s
    f[2] = cs
    f[3] = q
    f[4] = cq
    f[5] = s2
    f[6] = mag


cdef inline signed char plain_category(double s) noexcept nogil:
    if s >= 70.0:
        return C_LU
    if s >= 40.0:
        return C_MU
    return C_HU


cdef inline signed char hysteresis_category(signed char cur, double s, double m) noexcept nogil:
    """Leave the current category only when the score is more than m past a boundary.

    Moving down uses boundaries 70 - m and 40 - m, moving up 70 + m and 40 + m; with
    m = 0 this is exactly `plain_category`.
    """
    if cur == C_LU:
        if s >= 70.0 - m:
            return C_LU
        return C_MU if s >= 40.0 - m else C_HU
    if cur == C_HU:
        if s < 40.0 + m:
            return C_HU
        return C_MU if s < 70.0 + m else C_LU
    if cur == C_MU:
        if s >= 70.0 + m:
            return C_LU
        if s < 40.0 - m:
            return C_HU
        return C_MU
    return plain_category(s)


cdef inline double availability(double* fs, int* ist, double* hr, int HS,
                                double* br, int BW, double t, double alpha) noexcept nogil:
    """SPEC §3 availability for an answered probe of `t` seconds; returns the EMA."""
    cdef double avg, v, bm, eff, ratio, base, pen, trend, raw
    cdef double recent, older
    cdef int j, pos, n
    # 1. history
    avg = ring_push(hr, HS, &fs[F_H_SH], &ist[I_H_HEAD], t)
    n = ist[I_H_N]
    # 2. best times: append when empty or lower than the newest entry
    if ist[I_B_N] == 0 or t < fs[F_B_LAST]:
        ring_push(br, BW, &fs[F_B_SH], &ist[I_B_HEAD], t)
        fs[F_B_LAST] = t
    # 3. dynamic threshold, avg including the new time
    v = 0.9 * fs[F_THR] + 0.1 * 1.5 * avg
    fs[F_THR] = v if v > 0.5 else 0.5
    # 4. score
    bm = ring_mean(&fs[F_B_SH], ist[I_B_N])
    eff = 0.3 * t + 0.7 * avg
    if eff > 0.0:
        ratio = bm / eff
        base = 100.0 * ratio * sqrt(ratio)
    else:
        base = 100.0  # t = avg = 0: ratio defined as 1
    if eff > fs[F_THR]:
        pen = -20.0 * expm1(-(eff - fs[F_THR]))  # = 20 (1 - e^-(eff - thr)), accurate near 0
    else:
        pen = 0.0
    trend = 0.0
    if n >= 10:
        recent = 0.0
        older = 0.0
        pos = ist[I_H_HEAD]
        for j in range(10):
            pos = (pos - 1) if pos > 0 else (HS - 1)
            if j < 5:
                recent += hr[pos]
            else:
                older += hr[pos]
        recent = recent / 5.0
        older = older / 5.0
        if older != 0.0:
            trend = (older - recent) / older
    raw = clamp100(base - pen + 10.0 * trend)
    fs[F_EMA] = alpha * raw + (1.0 - alpha) * fs[F_EMA]
    return fs[F_EMA]


cdef struct Params:
    double wc, wm, wn, wa, alpha, inv_capacity, ha, hb, horizon, m
    double ss_window, ss_min, inv_aggr, tau, jk_k, lat_floor
    int period


cdef inline void score_one(double* fs, int* ist, double* hr, int HS, double* br, int BW,
                           double* wr, double* rw, int H, double cpu_v, double mem_v,
                           double net_v, double rt_v, double now, const Params* P,
                           double* out, signed char* cat, unsigned char* flags,
                           Py_ssize_t cap) noexcept nogil:
    """One container's tick (valid sample): scores, bands, windows, Holt, outputs.

    `out`, `cat`, `flags` point at this slot's column: row r is at [r * cap].
    """
    cdef double c, mm, nn, t, av, ov, band, dt, w, prev
    cdef bint answered, complete
    cdef int h, n, k
    cdef signed char cc
    # -- cpu / memory / network: NaN keeps the previous score
    c = cpu_v
    mm = mem_v
    nn = net_v
    if c == c:
        fs[F_CPU] = clamp100(100.0 - c)
    if mm == mm:
        fs[F_MEM] = clamp100(100.0 - mm)
    if nn == nn:
        fs[F_NET] = clamp100(100.0 - nn * P.inv_capacity)
    complete = (c == c) and (mm == mm) and (nn == nn)

    # -- availability, thresholds, latency: only on an answered probe
    t = rt_v
    answered = (t - t) == 0.0  # finite
    if answered:
        t = t if t > 0.0 else 0.0
        # Jacobson/Karels (RFC 6298): the band is the one before this sample
        if ist[I_JK_N] > 0:
            band = fs[F_SRTT] + P.jk_k * fs[F_RTTVAR]
            ist[I_ANOM] = t > band
            fs[F_RTTVAR] = 0.75 * fs[F_RTTVAR] + 0.25 * fabs(fs[F_SRTT] - t)
            fs[F_SRTT] = 0.875 * fs[F_SRTT] + 0.125 * t
        else:
            fs[F_SRTT] = t
            fs[F_RTTVAR] = 0.5 * t
            ist[I_JK_N] = 1
            ist[I_ANOM] = 0
        # peak EWMA (Finagle): jump up at once, decay toward lower values
        if fs[F_PEAK] == fs[F_PEAK] and t <= fs[F_PEAK]:
            dt = now - fs[F_PEAK_T]
            dt = dt if dt > 0.0 else 0.0
            w = exp(-dt / P.tau)
            fs[F_PEAK] = fs[F_PEAK] * w + t * (1.0 - w)
        else:
            fs[F_PEAK] = t
        fs[F_PEAK_T] = now
        av = availability(fs, ist, hr, HS, br, BW, t, P.alpha)
        # response-time window
        h = ist[I_R_HEAD]
        n = ist[I_R_N]
        out[O_SLOPE_RT * cap] = win_push(rw, 1, H, h, n, &fs[F_WIN + WF * S_RT],
                                      &ist[I_RUN + S_RT], t)
        ist[I_R_HEAD] = h + 1 if h + 1 < H else 0
        ist[I_R_N] = n + 1 if n < H else H
        ist[I_LAST_OK] = 1
    else:
        av = 0.0
        ist[I_ANOM] = 0
        ist[I_LAST_OK] = 0

    ov = clamp100(P.wc * fs[F_CPU] + P.wm * fs[F_MEM] + P.wn * fs[F_NET] + P.wa * av)

    # -- category
    cc = <signed char>ist[I_CAT]
    if not ist[I_SEEN]:
        if complete and answered:
            ist[I_SEEN] = 1
            if cc != C_SUNDOWN:
                cc = plain_category(ov)
    elif cc != C_SUNDOWN:
        cc = hysteresis_category(cc, ov, P.m)
    ist[I_CAT] = cc

    # -- trend windows and Holt, once the container has a complete sample
    if ist[I_SEEN]:
        h = ist[I_W_HEAD]
        n = ist[I_W_N]
        out[O_SLOPE * cap] = win_push(wr + S_OVERALL, N_WIN, H, h, n,
                                   &fs[F_WIN + WF * S_OVERALL], &ist[I_RUN + S_OVERALL], ov)
        out[O_SLOPE_CPU * cap] = win_push(wr + S_CPU, N_WIN, H, h, n,
                                       &fs[F_WIN + WF * S_CPU], &ist[I_RUN + S_CPU], fs[F_CPU])
        out[O_SLOPE_MEM * cap] = win_push(wr + S_MEM, N_WIN, H, h, n,
                                       &fs[F_WIN + WF * S_MEM], &ist[I_RUN + S_MEM], fs[F_MEM])
        out[O_SLOPE_NET * cap] = win_push(wr + S_NET, N_WIN, H, h, n,
                                       &fs[F_WIN + WF * S_NET], &ist[I_RUN + S_NET], fs[F_NET])
        ist[I_W_HEAD] = h + 1 if h + 1 < H else 0
        ist[I_W_N] = n + 1 if n < H else H
        if ist[I_HOLT_N] > 0:
            prev = fs[F_LEVEL]
            fs[F_LEVEL] = P.ha * ov + (1.0 - P.ha) * (prev + fs[F_TREND])
            fs[F_TREND] = P.hb * (fs[F_LEVEL] - prev) + (1.0 - P.hb) * fs[F_TREND]
        else:
            fs[F_LEVEL] = ov
            fs[F_TREND] = 0.0
            ist[I_HOLT_N] = 1
        out[O_FORECAST * cap] = clamp100(fs[F_LEVEL] + P.horizon * fs[F_TREND])

    # -- staggered exact recompute of every running sum of this slot
    ist[I_RC] -= 1
    if ist[I_RC] <= 0:
        ist[I_RC] = P.period
        ring_recompute(hr, HS, &fs[F_H_SH], &ist[I_H_HEAD])
        ring_recompute(br, BW, &fs[F_B_SH], &ist[I_B_HEAD])
        for k in range(N_WIN):
            win_recompute(wr + k, N_WIN, H, ist[I_W_HEAD], ist[I_W_N],
                          &fs[F_WIN + WF * k], ist[I_RUN + k])
        win_recompute(rw, 1, H, ist[I_R_HEAD], ist[I_R_N],
                      &fs[F_WIN + WF * S_RT], ist[I_RUN + S_RT])

    out[O_CPU * cap] = fs[F_CPU]
    out[O_MEM * cap] = fs[F_MEM]
    out[O_NET * cap] = fs[F_NET]
    out[O_AVAIL * cap] = av
    out[O_OVERALL * cap] = ov
    cat[0] = cc
    flags[G_ANOMALY * cap] = <unsigned char>ist[I_ANOM]


def score_tick(const double[::1] cpu, const double[::1] mem, const double[::1] net,
               const double[::1] rt, const unsigned char[::1] valid,
               const unsigned char[::1] active, double now, const double[::1] params,
               double[:, ::1] fstate, int[:, ::1] istate,
               double[:, ::1] hist, double[:, ::1] best,
               double[:, :, ::1] win, double[:, ::1] rtw,
               double[:, ::1] out, signed char[::1] cat, unsigned char[:, ::1] flags):
    """Score every active slot for one tick; return how many slots take traffic.

    Inputs per slot: cpu %, memory %, network bytes/s (NaN = not measured: the
    previous score is kept), response time in seconds (NaN or inf = no answer:
    availability 0 this tick, running state untouched; negative = 0), `valid` 0 =
    stale sample (nothing advances, outputs keep their values). Inactive slots are
    skipped and get weight 0. Shapes are checked here (a programming error, not
    data); the loop itself never raises.
    """
    cdef Py_ssize_t cap = fstate.shape[0]
    cdef int HS = <int>hist.shape[1]
    cdef int BW = <int>best.shape[1]
    cdef int H = <int>win.shape[1]
    if (cpu.shape[0] != cap or mem.shape[0] != cap or net.shape[0] != cap
            or rt.shape[0] != cap or valid.shape[0] != cap or active.shape[0] != cap
            or istate.shape[0] != cap or hist.shape[0] != cap or best.shape[0] != cap
            or win.shape[0] != cap or rtw.shape[0] != cap or out.shape[1] != cap
            or cat.shape[0] != cap or flags.shape[1] != cap):
        raise ValueError("score_tick: arrays disagree on capacity")
    if (fstate.shape[1] != NF or istate.shape[1] != NI or params.shape[0] != NP
            or out.shape[0] != NOUT or flags.shape[0] != NFLAG or win.shape[2] != N_WIN
            or rtw.shape[1] != H or HS < 1 or BW < 1 or H < 1):
        raise ValueError("score_tick: array shapes do not match the kernel layout")

    cdef Params P
    P.wc = params[P_WCPU]
    P.wm = params[P_WMEM]
    P.wn = params[P_WNET]
    P.wa = params[P_WAV]
    P.alpha = params[P_ALPHA]
    P.inv_capacity = 100.0 / params[P_CAPACITY]
    P.ha = params[P_HOLT_A]
    P.hb = params[P_HOLT_B]
    P.horizon = params[P_HORIZON]
    P.m = params[P_HYST]
    P.ss_window = params[P_SS_WINDOW]
    P.ss_min = params[P_SS_MIN]
    P.inv_aggr = 1.0 / params[P_SS_AGGR]
    P.tau = params[P_TAU]
    P.jk_k = params[P_JK_K]
    P.lat_floor = params[P_LAT_FLOOR]
    P.period = <int>params[P_RECOMPUTE]

    cdef Py_ssize_t s
    cdef double* fs
    cdef int* ist
    cdef double raw, total, ctot, age, f, lat, hdr, inv
    cdef int takes = 0

    with nogil:
        total = 0.0
        ctot = 0.0
        for s in range(cap):
            if not active[s]:
                out[O_WEIGHT, s] = 0.0
                continue
            fs = &fstate[s, 0]
            ist = &istate[s, 0]
            if valid[s]:
                flags[G_STALE, s] = 0
                score_one(fs, ist, &hist[s, 0], HS, &best[s, 0], BW, &win[s, 0, 0],
                          &rtw[s, 0], H, cpu[s], mem[s], net[s], rt[s], now, &P,
                          &out[0, s], &cat[s], &flags[0, s], cap)
            else:
                flags[G_STALE, s] = 1
            # routing weight while the row is in cache: slow start x headroom^2 / latency
            raw = 0.0
            if ist[I_LAST_OK] == 1 and ist[I_CAT] != C_SUNDOWN:
                hdr = out[O_OVERALL, s] * 0.01
                hdr = hdr if hdr > 0.01 else 0.01
                lat = fs[F_PEAK]
                lat = lat if lat > P.lat_floor else P.lat_floor
                raw = hdr * hdr / lat
                age = now - fs[F_ADDED]
                if age < P.ss_window:
                    age = age if age > 0.0 else 0.0
                    f = age / P.ss_window
                    if P.inv_aggr != 1.0:
                        f = pow(f, P.inv_aggr)
                    f = f if f > P.ss_min else P.ss_min
                    raw = raw * f
                takes += raw > 0.0
            out[O_WEIGHT, s] = raw
            kahan_add(&total, &ctot, raw)
        total = total - ctot
        inv = 1.0 / total if total > 0.0 else 0.0
        for s in range(cap):
            out[O_WEIGHT, s] = out[O_WEIGHT, s] * inv

    return takes


def reset_slot(double[:, ::1] fstate, int[:, ::1] istate, double[:, ::1] out,
               signed char[::1] cat, unsigned char[:, ::1] flags, Py_ssize_t slot,
               double now, int countdown, double overall0):
    """Give `slot` a fresh container: O(1), the rings are reused as they are.

    Scores start as full headroom (100, like the compat availability EMA), the
    threshold at 1.0; counts are zero so old ring contents are never read.
    `countdown` staggers the slot's periodic recompute.
    """
    cdef Py_ssize_t i
    for i in range(NF):
        fstate[slot, i] = 0.0
    for i in range(NI):
        istate[slot, i] = 0
    fstate[slot, F_CPU] = 100.0
    fstate[slot, F_MEM] = 100.0
    fstate[slot, F_NET] = 100.0
    fstate[slot, F_EMA] = 100.0
    fstate[slot, F_THR] = 1.0
    fstate[slot, F_B_LAST] = NAN
    fstate[slot, F_SRTT] = NAN
    fstate[slot, F_RTTVAR] = NAN
    fstate[slot, F_PEAK] = NAN
    fstate[slot, F_PEAK_T] = now
    fstate[slot, F_LEVEL] = NAN
    fstate[slot, F_ADDED] = now
    istate[slot, I_CAT] = C_INIT
    istate[slot, I_RC] = countdown
    for i in range(NOUT):
        out[i, slot] = 0.0
    out[O_CPU, slot] = 100.0
    out[O_MEM, slot] = 100.0
    out[O_NET, slot] = 100.0
    out[O_AVAIL, slot] = 100.0
    out[O_OVERALL, slot] = overall0
    out[O_FORECAST, slot] = NAN
    cat[slot] = C_INIT
    for i in range(NFLAG):
        flags[i, slot] = 0


def clear_slot(double[:, ::1] out, signed char[::1] cat, unsigned char[:, ::1] flags,
               Py_ssize_t slot):
    """Blank the outputs of a freed slot (NaN scores, weight 0) so stale rows never leak."""
    cdef Py_ssize_t i
    for i in range(NOUT):
        out[i, slot] = NAN
    out[O_WEIGHT, slot] = 0.0
    cat[slot] = C_INIT
    for i in range(NFLAG):
        flags[i, slot] = 0


def set_category(int[:, ::1] istate, signed char[::1] cat, const double[:, ::1] out,
                 Py_ssize_t slot, bint sundown):
    """Mark or unmark SUNDOWN; unmarking returns to INIT or to the plain category.

    Idempotent: marking a SUNDOWN slot or unmarking one that is not SUNDOWN changes
    nothing (so a caller may re-assert the mark every tick without resetting the
    hysteresis state).
    """
    cdef signed char c = <signed char>istate[slot, I_CAT]
    if sundown:
        c = C_SUNDOWN
    elif c != C_SUNDOWN:
        return
    elif istate[slot, I_SEEN]:
        c = plain_category(out[O_OVERALL, slot])
    else:
        c = C_INIT
    istate[slot, I_CAT] = c
    cat[slot] = c


def recompute_slot(double[:, ::1] fstate, int[:, ::1] istate, double[:, ::1] hist,
                   double[:, ::1] best, double[:, :, ::1] win, double[:, ::1] rtw,
                   Py_ssize_t slot):
    """Rebuild every running sum and run-length of `slot` from its rings.

    Used after the rings were re-laid out (a window size changed): ring entries must
    be oldest-first at [0, n) or, when full, start at the head.
    """
    cdef double* fs = &fstate[slot, 0]
    cdef int* ist = &istate[slot, 0]
    cdef int H = <int>win.shape[1]
    cdef int k, n, h, run, pos, stride
    cdef double* r
    cdef double newest
    ring_recompute(&hist[slot, 0], <int>hist.shape[1], &fs[F_H_SH], &ist[I_H_HEAD])
    ring_recompute(&best[slot, 0], <int>best.shape[1], &fs[F_B_SH], &ist[I_B_HEAD])
    for k in range(N_WIN + 1):
        if k < N_WIN:
            r = &win[slot, 0, 0] + k
            stride = N_WIN
            h = ist[I_W_HEAD]
            n = ist[I_W_N]
        else:
            r = &rtw[slot, 0]
            stride = 1
            h = ist[I_R_HEAD]
            n = ist[I_R_N]
        if n == 0:
            continue
        pos = (h - 1) if h > 0 else (H - 1)
        newest = r[pos * stride]
        run = 1
        while run < n:
            pos = (pos - 1) if pos > 0 else (H - 1)
            if r[pos * stride] != newest:
                break
            run += 1
        ist[I_RUN + k] = run
        if run >= n:
            fs[F_WIN + WF * k] = newest
            for pos in range(1, WF):
                fs[F_WIN + WF * k + pos] = 0.0
        else:
            win_recompute(r, stride, H, h, n, &fs[F_WIN + WF * k], run)


def slot_detail(const double[:, ::1] fstate, const int[:, ::1] istate, Py_ssize_t slot):
    """Internal per-slot quantities as a dict (for `Scorer.detail` and tests)."""
    cdef dict d = {}
    cdef Py_ssize_t i
    for name, index in FSTATE_FIELDS.items():
        i = index
        d[name] = fstate[slot, i]
    for name, index in ISTATE_FIELDS.items():
        i = index
        d[name] = istate[slot, i]
    d["best_last"] = fstate[slot, F_B_LAST]
    return d


# ---- pickers --------------------------------------------------------------------
cdef inline Py_ssize_t swrr_one(const double* w, double* cur, Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t i, best = -1
    cdef double total = 0.0, bv = 0.0
    for i in range(n):
        if w[i] > 0.0:
            cur[i] += w[i]
            total += w[i]
            if best < 0 or cur[i] > bv:
                best = i
                bv = cur[i]
    if best >= 0:
        cur[best] -= total
    return best


def swrr_fill(const double[::1] weights, double[::1] current, long long[::1] out):
    """Smooth weighted round robin (nginx): fill `out` with successive picks.

    Each pick adds every positive weight to its `current`, takes the largest (first
    on ties) and subtracts the total from it; {5, 1, 1} gives a a b a c a a. `current`
    carries the state between calls. Picks are -1 when no weight is positive.
    """
    cdef Py_ssize_t n = weights.shape[0], k, i
    if current.shape[0] != n:
        raise ValueError("swrr_fill: weights and current differ in length")
    with nogil:
        for k in range(out.shape[0]):
            if n == 0:
                out[k] = -1
            else:
                out[k] = swrr_one(&weights[0], &current[0], n)
    return out.shape[0]


cdef inline Py_ssize_t upper_bound(const double* cum, Py_ssize_t n, double t) noexcept nogil:
    """First i with cum[i] > t (n if none): zero-weight entries are never returned."""
    cdef Py_ssize_t lo = 0, hi = n, mid
    while lo < hi:
        mid = (lo + hi) >> 1
        if cum[mid] > t:
            hi = mid
        else:
            lo = mid + 1
    return lo


cdef inline Py_ssize_t last_positive(const double* w, Py_ssize_t n, Py_ssize_t skip) noexcept nogil:
    cdef Py_ssize_t i = n - 1
    while i >= 0 and (w[i] <= 0.0 or i == skip):
        i -= 1
    return i


cdef inline Py_ssize_t p2c_one(const double* w, const double* cum, Py_ssize_t n,
                               double u1, double u2, const double* load) noexcept nogil:
    cdef double total, start, t
    cdef Py_ssize_t a, b
    if n == 0:
        return -1
    total = cum[n - 1]
    if not total > 0.0:
        return -1
    a = upper_bound(cum, n, u1 * total)
    if a >= n:
        a = last_positive(w, n, -1)
    if w[a] >= total:
        return a  # the only backend with a positive weight
    # second, distinct: draw over the total without a's interval, then skip it
    start = cum[a - 1] if a > 0 else 0.0
    t = u2 * (total - w[a])
    if t >= start:
        t = t + (cum[a] - start)
    b = upper_bound(cum, n, t)
    if b >= n or b == a:
        b = last_positive(w, n, a)
    if b < 0:
        return a
    # Lower load per unit of weight wins; ties (and no load at all) keep the first
    # draw, so without load the picks follow the weights exactly.
    if load != NULL and load[b] * w[a] < load[a] * w[b]:
        return b
    return a


def p2c_fill(const double[::1] weights, const double[::1] cum, const double[::1] u,
             const double[::1] load, long long[::1] out):
    """Weighted power of two choices: fill `out` with picks, two uniforms each.

    Two distinct indices are drawn with probability proportional to weight
    (`cum` = cumulative weights, `u` = 2 * len(out) uniforms in [0, 1)); the one with
    the lower load per unit of weight wins, ties keep the first draw. Without a load
    array that is the first draw: picks then follow the weights exactly (keeping the
    heavier of two would starve light backends). -1 when no weight is positive.
    """
    cdef Py_ssize_t n = weights.shape[0], k
    cdef const double* lp = NULL
    if cum.shape[0] != n:
        raise ValueError("p2c_fill: weights and cum differ in length")
    if u.shape[0] < 2 * out.shape[0]:
        raise ValueError("p2c_fill: need two uniforms per pick")
    if load is not None:
        if load.shape[0] != n:
            raise ValueError("p2c_fill: weights and load differ in length")
        if n > 0:
            lp = &load[0]
    if n == 0:
        for k in range(out.shape[0]):
            out[k] = -1
        return out.shape[0]
    with nogil:
        for k in range(out.shape[0]):
            out[k] = p2c_one(&weights[0], &cum[0], n, u[2 * k], u[2 * k + 1], lp)
    return out.shape[0]
