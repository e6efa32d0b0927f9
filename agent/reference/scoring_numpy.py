"""NumPy version of the full scoring tick, vectorized across containers.

`NumpyScorer` computes what `agent.scoring.Scorer.update_arrays` computes (the
compiled `_scoring._kernel.score_tick` with its trend windows): cpu / memory /
network / availability / overall scores, categories (INIT, SUNDOWN, hysteresis), routing weights, the five
least-squares slopes, the Holt forecast and the Jacobson/Karels anomaly flag, with the
semantics documented in `agent.scoring`. It exists as a yardstick for the kernel
(`benchmarks/bench_kernel.py` section b times the two against each other) and as a
second, independent statement of the streaming arithmetic; `tests/unit/
test_scoring_numpy.py` holds it to the kernel within 1e-9 relative on random inputs.

Same state layout idea as the kernel, transposed for NumPy: one slot per container,
every per-slot scalar a row of a (field, slot) array so a field is one contiguous
vector, the rings as 2-D arrays (``hist[cap, history_size]``, ``best[cap,
best_time_window]``, ``win[cap, H, 4]`` for overall/cpu/memory/network,
``rtw[cap, H]``), each with a per-slot head and count. A tick is a fixed sequence of
whole-array ufunc calls, fancy-index gathers and scatters over the slots concerned
(answered probes, containers past INIT); there is no loop over containers. Python
loops run only over the small fixed window dimensions, and only where the kernel
recomputes a running sum exactly (the rare cancellation guard and the staggered
periodic recompute) and for the 10 newest response times of the availability trend.

Numerics: the compat rings (history, best times) are the kernel's running
statistics -- Kahan-compensated sums of ``x - shift``, the cancellation guard that
recomputes a sum from its ring, the per-slot staggered recompute -- evaluated in the
same order of operations, and the Jacobson/Karels band is RFC 6298 in the kernel's
incremental form (``x += g (target - x)``), so these agree to a few ulps. The trend
windows are an independent statement of a least-squares window: per-slot rings,
shift = a value of the window, a run-length of identical values that makes a
constant window's slope exactly 0 and a largest-|x - shift| cancellation guard,
where the kernel runs `_scoring._window.RollingWindow` (time-major rings, a
nearest-to-mean shift, spread-based guards); both are exact to rounding, so the
slopes agree within ~1e-15 of their scale, not bit for bit. libm and NumPy's
exp/expm1/pow and the order of the weight total (an exact `math.fsum` here) are the
other possible sources of difference. All outputs are produced and all of them are
matched: nothing is restricted. `detail(name)` returns the same `ContainerDetail` as `Scorer.detail`.

Interface (the subset of `Scorer` the benchmark and the tests drive)::

    ns = NumpyScorer(ScorerConfig(), capacity=n)
    slot = ns.add("c0", now=0.0)       # same slot assignment as Scorer.add
    arrays = ns.update_arrays(cpu, mem, net, rt, valid, now=1.0)   # a TickArrays
    ns.set_sundown("c0"); ns.detail("c0"); ns.remove("c0"); ns.slot_of("c0")
"""
from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

from agent.scoring import LATENCY_FLOOR, ContainerDetail, ScorerConfig, TickArrays

__all__ = ["NumpyScorer"]

_CANCEL = 1e3  # the kernel's CANCEL_RATIO
C_INIT, C_LU, C_MU, C_HU, C_SUNDOWN = 0, 1, 2, 3, 4

# float fields, rows of `self.f`
(F_CPU, F_MEM, F_NET, F_EMA, F_THR, F_H_SH, F_H_S, F_H_C, F_H_MAG, F_B_SH, F_B_S, F_B_C,
 F_B_MAG, F_B_LAST, F_SRTT, F_RTTVAR, F_PEAK, F_PEAK_T, F_LEVEL, F_TREND, F_ADDED) = range(21)
NF = 21
# int fields, rows of `self.i`
(I_H_HEAD, I_H_N, I_B_HEAD, I_B_N, I_W_HEAD, I_W_N, I_R_HEAD, I_R_N, I_SEEN, I_LAST_OK,
 I_CAT, I_HOLT_N, I_JK_N, I_ANOM, I_RC) = range(15)
NI = 15
# output rows (as agent.scoring / the kernel)
(O_CPU, O_MEM, O_NET, O_AVAIL, O_OVERALL, O_WEIGHT, O_SLOPE, O_SLOPE_CPU, O_SLOPE_MEM,
 O_SLOPE_NET, O_SLOPE_RT, O_FORECAST) = range(12)
NOUT = 12
S_OVERALL, S_CPU, S_MEM, S_NET, S_RT = range(5)
WF = 7  # per window series: shift, S, cS, Q, cQ, S2, mag


def _kahan(s: np.ndarray, c: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Vectorized kahan_add: returns the new (s, c); s - c is the sum."""
    y = x - c
    t = s + y
    return t, (t - s) - y


def _clamp100(x: np.ndarray) -> np.ndarray:
    x = np.where(x > 0.0, x, 0.0)  # NaN -> 0, like the kernel's selects
    return np.where(x < 100.0, x, 100.0)


def _plain(s: np.ndarray) -> np.ndarray:
    return np.where(s >= 70.0, C_LU, np.where(s >= 40.0, C_MU, C_HU)).astype(np.int8)


def _hysteresis(cur: np.ndarray, s: np.ndarray, m: float) -> np.ndarray:
    down = np.where(s >= 40.0 - m, C_MU, C_HU)
    lu = np.where(s >= 70.0 - m, C_LU, down)
    hu = np.where(s < 40.0 + m, C_HU, np.where(s < 70.0 + m, C_MU, C_LU))
    mu = np.where(s >= 70.0 + m, C_LU, np.where(s < 40.0 - m, C_HU, C_MU))
    out = np.where(cur == C_LU, lu, np.where(cur == C_HU, hu,
                                             np.where(cur == C_MU, mu, _plain(s))))
    return out.astype(np.int8)


_F = npt.NDArray[np.float64]
_I = npt.NDArray[np.int64]


class NumpyScorer:
    """`Scorer.update_arrays` in NumPy: same slots, same outputs, no per-container loop."""

    f: _F  # (NF, cap) float fields
    wf: _F  # (5, WF, cap) window sums per series
    i: _I  # (NI, cap) heads, counts, flags
    run: _I  # (5, cap) run-lengths of identical values
    hist: _F
    best: _F
    win: _F  # (cap, H, 4)
    rtw: _F
    out: _F  # (NOUT, cap)
    cat: npt.NDArray[np.int8]
    flags: npt.NDArray[np.uint8]
    active: npt.NDArray[np.uint8]

    def __init__(self, config: ScorerConfig | None = None, capacity: int = 16) -> None:
        self.config = cfg = config if config is not None else ScorerConfig()
        if not (isinstance(capacity, int) and capacity >= 1):
            raise ValueError(f"capacity must be an integer >= 1, got {capacity!r}")
        self._period = cfg._recompute_period()
        self._overall0 = cfg._initial_overall()
        self._slots: dict[str, int] = {}
        self._free: list[int] = []
        self._cap = 0
        self._allocate(capacity)

    # -- storage / membership (mirrors Scorer so slots line up) ----------------------
    def _allocate(self, cap: int) -> None:
        cfg = self.config
        H = cfg.trend_window
        new = {
            "f": np.zeros((NF, cap)),
            "wf": np.zeros((5, WF, cap)),
            "i": np.zeros((NI, cap), np.int64),
            "run": np.zeros((5, cap), np.int64),
            "hist": np.zeros((cap, cfg.history_size)),
            "best": np.zeros((cap, cfg.best_time_window)),
            "win": np.zeros((cap, H, 4)),
            "rtw": np.zeros((cap, H)),
            "out": np.full((NOUT, cap), np.nan),
            "cat": np.zeros(cap, np.int8),
            "flags": np.zeros((2, cap), np.uint8),
            "active": np.zeros(cap, np.uint8),
        }
        new["out"][O_WEIGHT] = 0.0
        old = self._cap
        if old:
            for key, arr in new.items():
                src = getattr(self, key)
                if arr.ndim >= 2 and key in ("f", "wf", "i", "run", "out", "flags"):
                    arr[..., :old] = src
                else:
                    arr[:old] = src
        for key, arr in new.items():
            setattr(self, key, arr)
        self._free.extend(range(cap - 1, old - 1, -1))
        self._cap = cap
        ro = []
        for a in list(self.out) + [self.cat, self.flags[0].view(np.bool_),
                                   self.flags[1].view(np.bool_), self.active.view(np.bool_)]:
            v = a.view()
            v.flags.writeable = False
            ro.append(v)
        self._views = TickArrays(*ro)

    @property
    def capacity(self) -> int:
        return self._cap

    @property
    def arrays(self) -> TickArrays:
        return self._views

    def slot_of(self, name: str) -> int:
        return self._slots[name]

    def names(self) -> list[str]:
        return list(self._slots)

    def __len__(self) -> int:
        return len(self._slots)

    def add(self, name: str, *, now: float, id: str = "") -> int:
        if name in self._slots:
            raise ValueError(f"container {name!r} is already registered")
        if not self._free:
            self._allocate(2 * self._cap)
        s = self._free.pop()
        f, i = self.f, self.i
        f[:, s] = 0.0
        self.wf[:, :, s] = 0.0
        i[:, s] = 0
        self.run[:, s] = 0
        f[[F_CPU, F_MEM, F_NET, F_EMA], s] = 100.0
        f[F_THR, s] = 1.0
        f[[F_B_LAST, F_SRTT, F_RTTVAR, F_PEAK, F_LEVEL], s] = np.nan
        f[F_PEAK_T, s] = now
        f[F_ADDED, s] = now
        i[I_CAT, s] = C_INIT
        i[I_RC, s] = self._period - s % self._period
        self.out[:, s] = 0.0
        self.out[[O_CPU, O_MEM, O_NET, O_AVAIL], s] = 100.0
        self.out[O_OVERALL, s] = self._overall0
        self.out[O_FORECAST, s] = np.nan
        self.cat[s] = C_INIT
        self.flags[:, s] = 0
        self.active[s] = 1
        self._slots[name] = s
        return s

    def remove(self, name: str) -> None:
        s = self._slots.pop(name)
        self.active[s] = 0
        self.out[:, s] = np.nan
        self.out[O_WEIGHT, s] = 0.0
        self.cat[s] = C_INIT
        self.flags[:, s] = 0
        self._free.append(s)

    def set_sundown(self, name: str, flag: bool = True) -> None:
        s = self._slots[name]
        c = int(self.i[I_CAT, s])
        if flag:
            c = C_SUNDOWN
        elif c != C_SUNDOWN:
            return
        elif self.i[I_SEEN, s]:
            c = int(_plain(np.array([self.out[O_OVERALL, s]]))[0])
        else:
            c = C_INIT
        self.i[I_CAT, s] = c
        self.cat[s] = c

    def detail(self, name: str) -> ContainerDetail:
        """Trend, band and latency internals of one container, as `Scorer.detail`."""
        s = self._slots[name]
        f, out = self.f[:, s], self.out[:, s]
        return ContainerDetail(
            name=name, slope_cpu=float(out[O_SLOPE_CPU]), slope_memory=float(out[O_SLOPE_MEM]),
            slope_network=float(out[O_SLOPE_NET]), slope_response_time=float(out[O_SLOPE_RT]),
            holt_level=float(f[F_LEVEL]), holt_trend=float(f[F_TREND]),
            srtt=float(f[F_SRTT]), rttvar=float(f[F_RTTVAR]),
            band=float(f[F_SRTT] + self.config.jk_k * f[F_RTTVAR]),
            threshold=float(f[F_THR]), availability_ema=float(f[F_EMA]),
            peak_latency=float(f[F_PEAK]), added=float(f[F_ADDED]),
        )

    def _ix(self, idx: np.ndarray) -> np.ndarray | slice:
        """`idx` for a field row (f[F, ix]); a slice when it holds every slot (sorted,
        unique), which spares a gather/scatter."""
        return slice(None) if idx.size == self._cap else idx

    # -- running sums over rings (vectorized over the slots in `idx`) -----------------
    def _ring_recompute(self, ring: np.ndarray, fb: int, hb: int, idx: np.ndarray) -> None:
        """Exact Kahan sum of each ring in `idx` around its newest value."""
        f, i = self.f, self.i
        n = i[hb + 1, idx]
        keep = n > 0
        idx, n = idx[keep], n[keep]
        if idx.size == 0:
            return
        L = ring.shape[1]
        sh = ring[idx, (i[hb, idx] - 1) % L]
        s = np.zeros(idx.size)
        c = np.zeros(idx.size)
        mag = np.zeros(idx.size)
        for j in range(L):
            m = j < n
            d = ring[idx, j] - sh
            s2, c2 = _kahan(s, c, d)
            s = np.where(m, s2, s)
            c = np.where(m, c2, c)
            ad = np.abs(d)
            mag = np.where(m & (ad > mag), ad, mag)
        f[fb, idx] = sh
        f[fb + 1, idx] = s
        f[fb + 2, idx] = c
        f[fb + 3, idx] = mag

    def _ring_push(self, ring: np.ndarray, fb: int, hb: int, idx: np.ndarray,
                   x: np.ndarray) -> np.ndarray:
        """ring_push for every slot in `idx`; returns the ring means after the push."""
        X_idx = self._ix(idx)
        f, i = self.f, self.i
        L = ring.shape[1]
        h = i[hb, X_idx]
        n = i[hb + 1, X_idx]
        empty = n == 0
        sh = np.where(empty, x, f[fb, X_idx])
        s = np.where(empty, 0.0, f[fb + 1, X_idx])
        c = np.where(empty, 0.0, f[fb + 2, X_idx])
        mag = np.where(empty, 0.0, f[fb + 3, X_idx])
        full = n == L
        s2, c2 = _kahan(s, c, -(ring[idx, h] - sh))
        s = np.where(full, s2, s)
        c = np.where(full, c2, c)
        n = np.where(full, n, n + 1)
        d = x - sh
        s, c = _kahan(s, c, d)
        ad = np.abs(d)
        mag = np.where(ad > mag, ad, mag)
        ring[idx, h] = x
        h = h + 1
        h = np.where(h < L, h, 0)
        mean = sh + (s - c) / n
        f[fb, X_idx] = sh
        f[fb + 1, X_idx] = s
        f[fb + 2, X_idx] = c
        f[fb + 3, X_idx] = mag
        i[hb, X_idx] = h
        i[hb + 1, X_idx] = n
        bad = mag > _CANCEL * np.abs(mean)
        if bad.any():
            sub = idx[bad]
            self._ring_recompute(ring, fb, hb, sub)
            mean[bad] = f[fb, sub] + (f[fb + 1, sub] - f[fb + 2, sub]) / n[bad]
        return mean

    # -- least-squares windows ---------------------------------------------------------
    def _win_recompute(self, jobs: list[tuple[np.ndarray, int, np.ndarray, np.ndarray,
                                              np.ndarray, np.ndarray]]) -> None:
        """Exact sums of window series from their rings, all `jobs` in one pass.

        A job is (ring, series k, slots, h, n, run) with h, n after the push; the
        shift becomes the newest value. The jobs are stacked into one (H, B) matrix
        of oldest-first values so the sequential Kahan sums loop once over H.
        """
        blocks, metas = [], []
        for R, k, idx, h, n, run in jobs:
            keep = (n > 0) & (run < n)
            if not keep.any():
                continue
            idx, h, n = idx[keep], h[keep], n[keep]
            H = R.shape[1]
            sh = R[idx, (h - 1) % H]
            start = np.where(n == H, h, 0)
            pos = (start[:, None] + np.arange(H)) % H
            blocks.append(R[idx[:, None], pos] - sh[:, None])
            metas.append((k, idx, n, sh))
        if not blocks:
            return
        D = np.ascontiguousarray(np.concatenate(blocks).T)  # (H, B)
        n = np.concatenate([m[2] for m in metas])
        B = n.size
        z = lambda: np.zeros(B)  # noqa: E731
        s, cs, q, cq, s2, mag = z(), z(), z(), z(), z(), z()
        for j in range(D.shape[0]):
            d = D[j]
            m = j < n
            a, b = _kahan(s, cs, d)
            s, cs = np.where(m, a, s), np.where(m, b, cs)
            a, b = _kahan(q, cq, j * d)
            q, cq = np.where(m, a, q), np.where(m, b, cq)
            s2 = np.where(m, s2 + d * d, s2)
            ad = np.abs(d)
            mag = np.where(m & (ad > mag), ad, mag)
        lo = 0
        for k, idx, nk, sh in metas:
            hi = lo + idx.size
            wf = self.wf[k]
            wf[0, idx] = sh
            for r, a in enumerate((s, cs, q, cq, s2, mag), start=1):
                wf[r, idx] = a[lo:hi]
            lo = hi

    def _win_push(self, R: np.ndarray, k: int, idx: np.ndarray, h: np.ndarray,
                  n: np.ndarray, y: np.ndarray) -> np.ndarray:
        """win_push of series k for `idx` (h, n before the push); returns the slopes."""
        X_idx = self._ix(idx)
        H = R.shape[1]
        wf = self.wf[k]
        sh, S, cS, Q, cQ, S2, mag = (wf[j, X_idx] for j in range(WF))
        run = self.run[k, X_idx]
        first = n == 0
        prev = R[idx, (h - 1) % H]
        run = np.where(y == prev, np.where(run < H, run + 1, H), 1)
        run = np.where(first, 1, run)
        d = y - sh
        notfull = n < H
        some_notfull = bool(notfull.any())
        some_full = not bool(notfull.all())
        if some_notfull:  # n < H: nothing leaves the window
            qa, cqa = _kahan(Q, cQ, n * d)
            sa, csa = _kahan(S, cS, d)
            s2a = S2 + d * d
        if some_full:  # n == H: the oldest leaves, every index shifts down by one
            old = R[idx, h] - sh
            qb, cqb = _kahan(Q, cQ, (H - 1) * d + old - (S - cS))
            sb, csb = _kahan(S, cS, d - old)
            s2b = S2 + (d * d - old * old)
        if some_notfull and some_full:
            Q, cQ = np.where(notfull, qa, qb), np.where(notfull, cqa, cqb)
            S, cS = np.where(notfull, sa, sb), np.where(notfull, csa, csb)
            S2 = np.where(notfull, s2a, s2b)
        elif some_notfull:
            Q, cQ, S, cS, S2 = qa, cqa, sa, csa, s2a
        else:
            Q, cQ, S, cS, S2 = qb, cqb, sb, csb, s2b
        n1 = np.where(notfull, n + 1, H)
        R[idx, h] = y
        const = first | (run >= n1)
        ad = np.abs(d)
        mag = np.where(ad > mag, ad, mag)
        # exact zeros (and the shift re-anchored on the value) for a constant window
        sh = np.where(const, y, sh)
        zero = lambda a: np.where(const, 0.0, a)  # noqa: E731
        S, cS, Q, cQ, S2, mag = zero(S), zero(cS), zero(Q), zero(cQ), zero(S2), zero(mag)
        for j, a in enumerate((sh, S, cS, Q, cQ, S2, mag)):
            wf[j, X_idx] = a
        self.run[k, X_idx] = run
        n1f = n1.astype(np.float64)
        m2 = S2 - (S - cS) * (S - cS) / n1f
        need = ~const & (mag * mag > _CANCEL * _CANCEL * m2 / n1f)
        if need.any():
            h1 = h + 1
            h1 = np.where(h1 < H, h1, 0)
            self._win_recompute([(R, k, idx[need], h1[need], n1[need], run[need])])
            S, cS = wf[1, X_idx], wf[2, X_idx]
            Q, cQ = wf[3, X_idx], wf[4, X_idx]
        slope = (12.0 * (Q - cQ) - 6.0 * (n1f - 1.0) * (S - cS)) / (n1f * (n1f * n1f - 1.0))
        return np.where(const, 0.0, slope)

    # -- the tick ------------------------------------------------------------------------
    def update_arrays(self, cpu: npt.ArrayLike, mem: npt.ArrayLike, net: npt.ArrayLike,
                      rt: npt.ArrayLike, valid: npt.ArrayLike, now: float) -> TickArrays:
        """Score one tick from arrays indexed by slot (length `capacity`)."""
        cap = self._cap
        cpu, mem, net, rt = (np.asarray(a, dtype=np.float64) for a in (cpu, mem, net, rt))
        valid = np.asarray(valid).astype(bool)
        for a in (cpu, mem, net, rt, valid):
            if a.shape != (cap,):
                raise ValueError(f"inputs must have shape ({cap},), got {a.shape}")
        if not math.isfinite(now):
            raise ValueError(f"now must be a finite number, got {now!r}")
        with np.errstate(all="ignore"):
            self._tick(cpu, mem, net, rt, valid, float(now))
        return self._views

    def _tick(self, cpu: _F, mem: _F, net: _F, rt: _F, valid: npt.NDArray[np.bool_],
              now: float) -> int:
        cfg = self.config
        f, i, out = self.f, self.i, self.out
        active = self.active.astype(bool)
        V = active & valid
        self.flags[1] = np.where(active, ~valid, self.flags[1]).astype(np.uint8)
        vi = np.flatnonzero(V)
        X_vi = self._ix(vi)

        # cpu / memory / network: NaN keeps the previous score
        c, m, nb = cpu[vi], mem[vi], net[vi]
        c_ok, m_ok, n_ok = c == c, m == m, nb == nb
        f[F_CPU, X_vi] = np.where(c_ok, _clamp100(100.0 - c), f[F_CPU, X_vi])
        f[F_MEM, X_vi] = np.where(m_ok, _clamp100(100.0 - m), f[F_MEM, X_vi])
        inv_cap = 100.0 / cfg.network_capacity_bps
        f[F_NET, X_vi] = np.where(n_ok, _clamp100(100.0 - nb * inv_cap), f[F_NET, X_vi])
        complete = c_ok & m_ok & n_ok

        # answered probes
        t_all = rt[vi]
        answered = (t_all - t_all) == 0.0
        ai = vi[answered]
        X_ai = self._ix(ai)
        t = t_all[answered]
        t = np.where(t > 0.0, t, 0.0)
        # Jacobson/Karels: the band before this sample
        srtt, rttvar = f[F_SRTT, X_ai], f[F_RTTVAR, X_ai]
        seeded = i[I_JK_N, X_ai] > 0
        band = srtt + cfg.jk_k * rttvar
        i[I_ANOM, X_ai] = np.where(seeded, t > band, 0)
        # RFC 6298 in the incremental form of the kernel's window: x += g (target - x)
        f[F_RTTVAR, X_ai] = np.where(seeded, rttvar + 0.25 * (np.abs(srtt - t) - rttvar), 0.5 * t)
        f[F_SRTT, X_ai] = np.where(seeded, srtt + 0.125 * (t - srtt), t)
        i[I_JK_N, X_ai] = 1
        # peak EWMA
        peak = f[F_PEAK, X_ai]
        dt = now - f[F_PEAK_T, X_ai]
        dt = np.where(dt > 0.0, dt, 0.0)
        w = np.exp(-dt / cfg.latency_decay)
        f[F_PEAK, X_ai] = np.where((peak == peak) & (t <= peak), peak * w + t * (1.0 - w), t)
        f[F_PEAK_T, X_ai] = now
        av_a = self._availability(ai, t)
        # response-time window
        out[O_SLOPE_RT, X_ai] = self._win_push(self.rtw, S_RT, ai, i[I_R_HEAD, X_ai],
                                             i[I_R_N, X_ai], t)
        hh = i[I_R_HEAD, X_ai] + 1
        i[I_R_HEAD, X_ai] = np.where(hh < cfg.trend_window, hh, 0)
        i[I_R_N, X_ai] = np.minimum(i[I_R_N, X_ai] + 1, cfg.trend_window)
        i[I_LAST_OK, X_ai] = 1
        ni = vi[~answered]
        X_ni = self._ix(ni)
        i[I_ANOM, X_ni] = 0
        i[I_LAST_OK, X_ni] = 0
        av = np.zeros(vi.size)
        av[answered] = av_a

        ov = _clamp100(cfg.cpu_weight * f[F_CPU, X_vi] + cfg.memory_weight * f[F_MEM, X_vi]
                       + cfg.network_weight * f[F_NET, X_vi] + cfg.availability_weight * av)

        # category
        cc = i[I_CAT, X_vi].astype(np.int8)
        seen0 = i[I_SEEN, X_vi] > 0
        newly = ~seen0 & complete & answered
        notsd = cc != C_SUNDOWN
        cc = np.where(newly & notsd, _plain(ov), cc)
        cc = np.where(seen0 & notsd, _hysteresis(cc, ov, cfg.hysteresis), cc)
        i[I_CAT, X_vi] = cc
        seen = seen0 | newly
        i[I_SEEN, X_vi] = seen

        # trend windows and Holt
        si = vi[seen]
        X_si = self._ix(si)
        if si.size:
            ovs = ov[seen]
            h, n = i[I_W_HEAD, X_si], i[I_W_N, X_si]
            win = self.win
            out[O_SLOPE, X_si] = self._win_push(win[:, :, S_OVERALL], S_OVERALL, si, h, n, ovs)
            out[O_SLOPE_CPU, X_si] = self._win_push(win[:, :, S_CPU], S_CPU, si, h, n, f[F_CPU, X_si])
            out[O_SLOPE_MEM, X_si] = self._win_push(win[:, :, S_MEM], S_MEM, si, h, n, f[F_MEM, X_si])
            out[O_SLOPE_NET, X_si] = self._win_push(win[:, :, S_NET], S_NET, si, h, n, f[F_NET, X_si])
            H = cfg.trend_window
            i[I_W_HEAD, X_si] = np.where(h + 1 < H, h + 1, 0)
            i[I_W_N, X_si] = np.where(n < H, n + 1, H)
            holt = i[I_HOLT_N, X_si] > 0
            prev, tr = f[F_LEVEL, X_si], f[F_TREND, X_si]
            ha, hb = cfg.holt_alpha, cfg.holt_beta
            lev = np.where(holt, ha * ovs + (1.0 - ha) * (prev + tr), ovs)
            tr = np.where(holt, hb * (lev - prev) + (1.0 - hb) * tr, 0.0)
            f[F_LEVEL, X_si], f[F_TREND, X_si] = lev, tr
            i[I_HOLT_N, X_si] = 1
            out[O_FORECAST, X_si] = _clamp100(lev + float(cfg.forecast_horizon) * tr)

        # staggered exact recompute
        i[I_RC, X_vi] -= 1
        ri = vi[i[I_RC, X_vi] <= 0]
        X_ri = self._ix(ri)
        if ri.size:
            i[I_RC, X_ri] = self._period
            self._ring_recompute(self.hist, F_H_SH, I_H_HEAD, ri)
            self._ring_recompute(self.best, F_B_SH, I_B_HEAD, ri)
            h, n = i[I_W_HEAD, X_ri], i[I_W_N, X_ri]
            jobs = [(self.win[:, :, k], k, ri, h, n, self.run[k, X_ri]) for k in range(4)]
            jobs.append((self.rtw, S_RT, ri, i[I_R_HEAD, X_ri], i[I_R_N, X_ri], self.run[S_RT, X_ri]))
            self._win_recompute(jobs)

        out[O_CPU, X_vi] = f[F_CPU, X_vi]
        out[O_MEM, X_vi] = f[F_MEM, X_vi]
        out[O_NET, X_vi] = f[F_NET, X_vi]
        out[O_AVAIL, X_vi] = av
        out[O_OVERALL, X_vi] = ov
        self.cat[vi] = cc
        self.flags[0, X_vi] = i[I_ANOM, X_vi]

        # routing weights over every active slot (stale ones keep their held scores)
        takes = active & (i[I_LAST_OK] == 1) & (i[I_CAT] != C_SUNDOWN)
        hdr = out[O_OVERALL] * 0.01
        hdr = np.where(hdr > 0.01, hdr, 0.01)
        lat = f[F_PEAK]
        lat = np.where(lat > LATENCY_FLOOR, lat, LATENCY_FLOOR)
        raw = hdr * hdr / lat
        age = now - f[F_ADDED]
        young = age < cfg.slow_start_window
        a = np.where(age > 0.0, age, 0.0) / cfg.slow_start_window
        inv_aggr = 1.0 / cfg.slow_start_aggression
        if inv_aggr != 1.0:
            a = np.power(a, inv_aggr)
        a = np.where(a > cfg.slow_start_min_fraction, a, cfg.slow_start_min_fraction)
        raw = np.where(young, raw * a, raw)
        raw = np.where(takes, raw, 0.0)
        total = math.fsum(raw.tolist())
        inv = 1.0 / total if total > 0.0 else 0.0
        np.multiply(raw, inv, out=out[O_WEIGHT])
        return int(np.count_nonzero(raw > 0.0))

    def _availability(self, ai: np.ndarray, t: np.ndarray) -> np.ndarray:
        """SPEC §3 availability for the answered slots `ai`; returns their EMAs."""
        X_ai = self._ix(ai)
        cfg = self.config
        f, i = self.f, self.i
        avg = self._ring_push(self.hist, F_H_SH, I_H_HEAD, ai, t)
        n = i[I_H_N, X_ai]
        bp = (i[I_B_N, X_ai] == 0) | (t < f[F_B_LAST, X_ai])
        if bp.any():
            bi = ai[bp]
            self._ring_push(self.best, F_B_SH, I_B_HEAD, bi, t[bp])
            f[F_B_LAST, bi] = t[bp]
        v = 0.9 * f[F_THR, X_ai] + 0.1 * 1.5 * avg
        thr = np.where(v > 0.5, v, 0.5)
        f[F_THR, X_ai] = thr
        bm = f[F_B_SH, X_ai] + (f[F_B_S, X_ai] - f[F_B_C, X_ai]) / i[I_B_N, X_ai]
        eff = 0.3 * t + 0.7 * avg
        ratio = bm / eff
        base = np.where(eff > 0.0, 100.0 * ratio * np.sqrt(ratio), 100.0)
        pen = np.where(eff > thr, -20.0 * np.expm1(-(eff - thr)), 0.0)
        trend = np.zeros(ai.size)
        HS = self.hist.shape[1]
        if HS >= 10:
            head = i[I_H_HEAD, X_ai]
            recent = np.zeros(ai.size)
            older = np.zeros(ai.size)
            for j in range(10):
                x = self.hist[ai, (head - 1 - j) % HS]
                if j < 5:
                    recent += x
                else:
                    older += x
            recent = recent / 5.0
            older = older / 5.0
            trend = np.where((n >= 10) & (older != 0.0), (older - recent) / older, 0.0)
        raw = _clamp100(base - pen + 10.0 * trend)
        a = cfg.ema_alpha
        ema = a * raw + (1.0 - a) * f[F_EMA, X_ai]
        f[F_EMA, X_ai] = ema
        return ema
