# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""Per-container scoring kernel: one call per tick scores every container.

Why a kernel: a tick must score thousands of containers in a few milliseconds, so the
per-container state lives in slots of preallocated NumPy arrays (rows indexed by slot)
and one `score_tick` call walks all slots with the GIL released. `agent.scoring` owns
the arrays, validates inputs and turns rows into records; this module never raises on
data (NaN in, NaN or a held value out) and allocates nothing per tick.

A tick has three passes:

1. per slot (scalar, branchy): compat scores, availability, peak-EWMA latency, the
   Jacobson/Karels anomaly flag, overall score, category, Holt forecast and the raw
   routing weight; it writes the tick's sample of each trend series into ``xin``
   (NaN where a series does not advance);
2. the five trend windows -- overall, cpu, memory, network scores and the response
   time -- are `_window.RollingWindow` objects (``make_windows``), one series per
   slot, and each gets one `push_ptr` of its ``xin`` row: the vectorized streaming
   code `RollingWindow.push` runs, the very code the kernel benchmark's "same work"
   section times. They give the least-squares slopes and, for the response time,
   the Jacobson/Karels band (their ``threshold``): a slot's band before its sample
   is the window's threshold from the previous push, and the push updates SRTT and
   RTTVAR (RFC 6298: alpha 1/8, beta 1/4);
3. a streaming pass copies the slopes of the series that advanced (0 while a
   window holds fewer than two samples) and normalises the weights.

Layout (all C-contiguous, first axis = slot):

* ``fstate[cap, NF]`` float64 scalars per slot (one row = a few cache lines, read
  sequentially), fields ``F_*`` below;
* ``istate[cap, NI]`` int32 ring heads, counts, flags, fields ``I_*``;
* ``hist[cap, HISTORY_SIZE]``, ``best[cap, BEST_TIME_WINDOW]`` response-time rings;
* ``xin[N_WIN, cap]`` the tick's samples of the trend series (scratch);
* ``out[NOUT, cap]`` float64 outputs (one contiguous row per quantity, so consumers
  get plain 1-D arrays), ``cat[cap]`` int8 categories, ``flags[NFLAG, cap]`` uint8.

Outputs persist between ticks (writing into warm buffers avoids the page faults a
fresh allocation costs at N = 10,000) and double as the "held" values of a stale
container, which keeps them untouched.

The compat availability rings (history, best times) keep running means as
Kahan-compensated sums of ``x - shift`` (the shift is a value of the ring, so
magnitudes stay small); a sum is recomputed from its ring when cancellation is
detected (the largest |x - shift| it absorbed dwarfs the ring's mean, e.g. after a
5 s timeout left a ring of millisecond times), and every slot recomputes both once
per ``P_RECOMPUTE`` valid ticks, staggered by slot so no tick pays for all of them.
The trend windows have the same guards in `_window` (see its docstring).
"""
from libc.math cimport exp, expm1, sqrt, pow, fabs, NAN

from _scoring._window cimport RollingWindow
from _scoring._window cimport O_SLOPE as W_SLOPE, O_THR as W_THR

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
    F_PEAK          # peak-EWMA latency and the time it was last updated
    F_PEAK_T
    F_LEVEL         # Holt level and trend of the overall score
    F_TREND
    F_ADDED         # time the container was added (slow start)
    NF

# trend series: rows of xin, the windows' order, and out rows O_SLOPE + k
cdef enum:
    S_OVERALL = 0
    S_CPU
    S_MEM
    S_NET
    S_RT
    N_WIN

# ---- istate fields --------------------------------------------------------------
cdef enum:
    I_H_HEAD = 0
    I_H_N
    I_B_HEAD
    I_B_N
    I_SEEN          # 1 once a complete sample arrived (left INIT)
    I_LAST_OK       # 1 when the last probe answered
    I_CAT           # category code (also mirrored to cat[])
    I_HOLT_N        # 0 until the Holt state is seeded
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
    O_SLOPE         # O_SLOPE + k: the slope of trend series k (S_*)
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

# RFC 6298 smoothing of the response-time band
JK_ALPHA = 0.125
JK_BETA = 0.25

FSTATE_FIELDS = {
    "cpu": F_CPU, "mem": F_MEM, "net": F_NET, "ema": F_EMA, "thr": F_THR,
    "peak": F_PEAK, "peak_t": F_PEAK_T, "level": F_LEVEL, "trend": F_TREND,
    "added": F_ADDED,
}
ISTATE_FIELDS = {
    "seen": I_SEEN, "last_ok": I_LAST_OK, "cat": I_CAT, "holt_n": I_HOLT_N,
    "anomaly": I_ANOM, "recompute": I_RC,
    "hist_head": I_H_HEAD, "hist_n": I_H_N, "best_head": I_B_HEAD, "best_n": I_B_N,
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
TREND_SERIES = ("overall", "cpu", "memory", "network", "response_time")  # S_* order
WIN_SERIES = N_WIN
NF_ = NF
NI_ = NI
NP_ = NP
assert len(PARAMS) == NP and len(OUT_ROWS) == NOUT and len(FLAG_ROWS) == NFLAG
assert len(TREND_SERIES) == N_WIN
assert O_SLOPE + S_RT == O_SLOPE_RT and O_SLOPE + S_CPU == O_SLOPE_CPU


# pushes over which a trend window recomputes each series once (RollingWindow's
# default): the windows' cancellation guards catch every large error at once, so
# this only bounds slow drift, and each recompute reads a series' ring column
WINDOW_REFRESH = 4096


def make_window(Py_ssize_t cap, Py_ssize_t trend_window, double jk_k,
                Py_ssize_t refresh_every=WINDOW_REFRESH):
    """One trend window of `cap` slots as the scorer builds it: Jacobson/Karels with
    RFC 6298's alpha and beta and k = `jk_k` (the anomaly band, read from the
    response-time window only); no one reads its EWMA (factor 1)."""
    return RollingWindow(cap, trend_window, 1.0, JK_ALPHA, JK_BETA, jk_k,
                         refresh_every=refresh_every)


def make_windows(Py_ssize_t cap, Py_ssize_t trend_window, double jk_k,
                 Py_ssize_t refresh_every=WINDOW_REFRESH):
    """The five trend windows of `cap` slots, in S_* order (overall, cpu, memory,
    network, response time): what `score_tick` pushes into."""
    return tuple(make_window(cap, trend_window, jk_k, refresh_every) for _ in range(N_WIN))


# ---- small helpers --------------------------------------------------------------
# Recompute a ring's running sum once the largest |x - shift| it absorbed exceeds
# the ring's mean by this factor: the sums carry errors of a few ulps of that
# magnitude, so this keeps results within ~1e-12 of the mean while recomputing
# only after large swings.
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
                           double cpu_v, double mem_v, double net_v, double rt_v,
                           double band, double now, const Params* P,
                           double* out, signed char* cat, unsigned char* flags,
                           double* xin, Py_ssize_t cap) noexcept nogil:
    """One container's tick (valid sample): scores, band check, Holt, outputs.

    `out`, `cat`, `flags`, `xin` point at this slot's column: row r is at
    [r * cap]. `band` is the response-time window's threshold from its last push
    (NaN before the first answer). Writes this slot's trend samples into `xin`
    (NaN for a series that does not advance); the windows are pushed afterwards.
    """
    cdef double c, mm, nn, t, av, ov, dt, w, prev
    cdef bint answered, complete
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

    # -- availability, band, latency: only on an answered probe
    t = rt_v
    answered = (t - t) == 0.0  # finite
    if answered:
        t = t if t > 0.0 else 0.0
        # Jacobson/Karels: above the band as it stood before this sample (a NaN
        # band, before the first answer, flags nothing)
        ist[I_ANOM] = t > band
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
        xin[S_RT * cap] = t
        ist[I_LAST_OK] = 1
    else:
        av = 0.0
        ist[I_ANOM] = 0
        ist[I_LAST_OK] = 0
        xin[S_RT * cap] = NAN

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

    # -- trend samples and Holt, once the container has a complete sample
    if ist[I_SEEN]:
        xin[S_OVERALL * cap] = ov
        xin[S_CPU * cap] = fs[F_CPU]
        xin[S_MEM * cap] = fs[F_MEM]
        xin[S_NET * cap] = fs[F_NET]
        if ist[I_HOLT_N] > 0:
            prev = fs[F_LEVEL]
            fs[F_LEVEL] = P.ha * ov + (1.0 - P.ha) * (prev + fs[F_TREND])
            fs[F_TREND] = P.hb * (fs[F_LEVEL] - prev) + (1.0 - P.hb) * fs[F_TREND]
        else:
            fs[F_LEVEL] = ov
            fs[F_TREND] = 0.0
            ist[I_HOLT_N] = 1
        out[O_FORECAST * cap] = clamp100(fs[F_LEVEL] + P.horizon * fs[F_TREND])
    else:
        xin[S_OVERALL * cap] = NAN
        xin[S_CPU * cap] = NAN
        xin[S_MEM * cap] = NAN
        xin[S_NET * cap] = NAN

    # -- staggered exact recompute of the availability rings' running sums
    ist[I_RC] -= 1
    if ist[I_RC] <= 0:
        ist[I_RC] = P.period
        ring_recompute(hr, HS, &fs[F_H_SH], &ist[I_H_HEAD])
        ring_recompute(br, BW, &fs[F_B_SH], &ist[I_B_HEAD])

    out[O_CPU * cap] = fs[F_CPU]
    out[O_MEM * cap] = fs[F_MEM]
    out[O_NET * cap] = fs[F_NET]
    out[O_AVAIL * cap] = av
    out[O_OVERALL * cap] = ov
    cat[0] = cc
    flags[G_ANOMALY * cap] = <unsigned char>ist[I_ANOM]


cdef inline double raw_weight(const double* fs, const int* ist, double overall, double now,
                              const Params* P) noexcept nogil:
    """Slow start x headroom^2 / latency; 0 unless the last probe answered and the
    container is not SUNDOWN."""
    cdef double raw, hdr, lat, age, f
    if ist[I_LAST_OK] != 1 or ist[I_CAT] == C_SUNDOWN:
        return 0.0
    hdr = overall * 0.01
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
    return raw


cdef inline void copy_slopes(double* o, const double* sl, const int* cnt,
                             const double* x, Py_ssize_t cap) noexcept nogil:
    """o = the window's slope where the series advanced this tick (its sample `x`
    is not NaN): 0 while the window holds fewer than two samples. Elsewhere o
    keeps its value: a held slope stays what it was when last computed (even if
    `reconfigure` re-cut the window since), a free slot's stays NaN."""
    cdef Py_ssize_t s
    cdef double v
    for s in range(cap):
        v = sl[s] if cnt[s] >= 2 else 0.0
        o[s] = v if x[s] == x[s] else o[s]


cdef int check_windows(tuple windows, Py_ssize_t cap) except -1:
    cdef Py_ssize_t k
    cdef RollingWindow w
    if len(windows) != N_WIN:
        raise ValueError(f"score_tick: expected {N_WIN} trend windows, got {len(windows)}")
    for k in range(N_WIN):
        w = windows[k]
        if w.n_series != cap or w.window != (<RollingWindow>windows[0]).window:
            raise ValueError("score_tick: trend windows disagree with the capacity")
    return 0


def score_tick(const double[::1] cpu, const double[::1] mem, const double[::1] net,
               const double[::1] rt, const unsigned char[::1] valid,
               const unsigned char[::1] active, double now, const double[::1] params,
               double[:, ::1] fstate, int[:, ::1] istate,
               double[:, ::1] hist, double[:, ::1] best,
               double[:, ::1] out, signed char[::1] cat, unsigned char[:, ::1] flags,
               double[:, ::1] xin, tuple windows):
    """Score every active slot for one tick; return how many slots take traffic.

    Inputs per slot: cpu %, memory %, network bytes/s (NaN = not measured: the
    previous score is kept), response time in seconds (NaN or inf = no answer:
    availability 0 this tick, running state untouched; negative = 0), `valid` 0 =
    stale sample (nothing advances, outputs keep their values). Inactive slots are
    skipped and get weight 0. `windows` are the five trend windows of
    `make_windows`, `xin` (N_WIN x cap) their scratch input. Shapes are checked
    here (a programming error, not data); the loops themselves never raise.
    """
    cdef Py_ssize_t cap = fstate.shape[0]
    cdef int HS = <int>hist.shape[1]
    cdef int BW = <int>best.shape[1]
    if (cpu.shape[0] != cap or mem.shape[0] != cap or net.shape[0] != cap
            or rt.shape[0] != cap or valid.shape[0] != cap or active.shape[0] != cap
            or istate.shape[0] != cap or hist.shape[0] != cap or best.shape[0] != cap
            or out.shape[1] != cap or cat.shape[0] != cap or flags.shape[1] != cap
            or xin.shape[1] != cap):
        raise ValueError("score_tick: arrays disagree on capacity")
    if (fstate.shape[1] != NF or istate.shape[1] != NI or params.shape[0] != NP
            or out.shape[0] != NOUT or flags.shape[0] != NFLAG or xin.shape[0] != N_WIN
            or HS < 1 or BW < 1):
        raise ValueError("score_tick: array shapes do not match the kernel layout")
    check_windows(windows, cap)
    cdef RollingWindow w_ov = windows[S_OVERALL], w_cpu = windows[S_CPU]
    cdef RollingWindow w_mem = windows[S_MEM], w_net = windows[S_NET]
    cdef RollingWindow w_rt = windows[S_RT]
    cdef const double* band = &w_rt._out[W_THR, 0]
    cdef const double* w_slope[N_WIN]
    cdef const int* w_cnt[N_WIN]
    cdef RollingWindow w
    cdef Py_ssize_t k
    for k in range(N_WIN):
        w = windows[k]
        w_slope[k] = &w._out[W_SLOPE, 0]
        w_cnt[k] = &w._cnt[0]

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
    cdef double raw, total, ctot, inv
    cdef int takes = 0

    with nogil:
        # 1. per slot
        total = 0.0
        ctot = 0.0
        for s in range(cap):
            if not active[s]:
                out[O_WEIGHT, s] = 0.0
                for k in range(N_WIN):
                    xin[k, s] = NAN
                continue
            if valid[s]:
                flags[G_STALE, s] = 0
                score_one(&fstate[s, 0], &istate[s, 0], &hist[s, 0], HS, &best[s, 0], BW,
                          cpu[s], mem[s], net[s], rt[s], band[s], now, &P,
                          &out[0, s], &cat[s], &flags[0, s], &xin[0, s], cap)
            else:
                flags[G_STALE, s] = 1
                for k in range(N_WIN):
                    xin[k, s] = NAN
            # routing weight while the row is in cache
            raw = raw_weight(&fstate[s, 0], &istate[s, 0], out[O_OVERALL, s], now, &P)
            takes += raw > 0.0
            out[O_WEIGHT, s] = raw
            kahan_add(&total, &ctot, raw)
        # 2. the trend windows
        w_ov.push_ptr(&xin[S_OVERALL, 0])
        w_cpu.push_ptr(&xin[S_CPU, 0])
        w_mem.push_ptr(&xin[S_MEM, 0])
        w_net.push_ptr(&xin[S_NET, 0])
        w_rt.push_ptr(&xin[S_RT, 0])
        # 3. slopes out, weights normalised
        for k in range(N_WIN):
            copy_slopes(&out[O_SLOPE + k, 0], w_slope[k], w_cnt[k], &xin[k, 0], cap)
        total = total - ctot
        inv = 1.0 / total if total > 0.0 else 0.0
        for s in range(cap):
            out[O_WEIGHT, s] = out[O_WEIGHT, s] * inv

    return takes


def reset_slot(double[:, ::1] fstate, int[:, ::1] istate, double[:, ::1] out,
               signed char[::1] cat, unsigned char[:, ::1] flags, Py_ssize_t slot,
               double now, int countdown, double overall0, tuple windows):
    """Give `slot` a fresh container: the rings are reused as they are.

    Scores start as full headroom (100, like the compat availability EMA), the
    threshold at 1.0; counts are zero so old ring contents are never read; the
    slot's series in the trend `windows` are emptied. `countdown` staggers the
    slot's periodic recompute.
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
    for w in windows:
        (<RollingWindow?>w).reset(slot)


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
                   double[:, ::1] best, Py_ssize_t slot):
    """Rebuild the availability rings' running sums of `slot` from the rings.

    Used after the rings were re-laid out (a ring size changed): entries must be
    oldest-first at [0, n) or, when full, start at the head. (The trend windows
    rebuild themselves: `RollingWindow.configure(window=...)`.)
    """
    cdef double* fs = &fstate[slot, 0]
    cdef int* ist = &istate[slot, 0]
    ring_recompute(&hist[slot, 0], <int>hist.shape[1], &fs[F_H_SH], &ist[I_H_HEAD])
    ring_recompute(&best[slot, 0], <int>best.shape[1], &fs[F_B_SH], &ist[I_B_HEAD])


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
