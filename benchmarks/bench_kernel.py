"""Kernel benchmark: the scorer's streaming window kernel against NumPy,
bottleneck and pure Python, the full scoring tick and the object path of the
facade, the memory-bandwidth bound and the state size, with the targets of
issue 2 checked as ratios within one run.

    python -m benchmarks.bench_kernel                 # N=10,000, T=200, H=60, 5 runs
    python -m benchmarks.bench_kernel --quick         # a few seconds
    python -m benchmarks.bench_kernel --json out.json

Sections (see benchmarks/README.md):
  a. same work   per tick: ingest one sample per container; produce rolling
                 mean, std, least-squares slope over H, EWMA and the
                 Jacobson/Karels threshold. The kernel is the trend window the
                 scorer pushes into (_scoring._kernel.make_window, one of the
                 five per container score_tick pushes), and a Scorer fed the
                 same samples as response times must report its slopes and
                 bands bit for bit. Every method is checked against the kernel
                 (and the kernel against agent.reference.window) before
                 anything is timed.
  b. full tick   agent.scoring.Scorer.update_arrays for N containers vs the
                 vectorized agent.reference.scoring_numpy.NumpyScorer and the
                 pure-Python agent.reference.scoring.ReferenceScorer, each
                 checked against the kernel on every output before timing;
                 then the facade's object path (Scorer.update: samples by name
                 in, records out) against its array path, per container.
  c. bound       the bytes the same work must move per tick over this
                 machine's copy bandwidth (np.copyto of 256 MiB, best of 5).
  d. memory      state bytes per container.
  e. targets     PASS/MISS per target; the exit status is 0 either way (it is
                 a report), 2 if the methods disagree (nothing is timed then).

Single-threaded: the thread-count variables are set to 1 before NumPy is
imported (OPENBLAS_CORETYPE, set on some processors here, is left alone).
Runs are interleaved (each run times every method once) so that load from
other processes hits all methods alike; the median run is reported.
"""
from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
             "NUMEXPR_NUM_THREADS", "VECLIB_MAXIMUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from collections import deque  # noqa: E402
from collections.abc import Callable  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402

from _scoring import _kernel  # noqa: E402
from _scoring._window import RollingWindow  # noqa: E402
from agent.reference.window import rolling_window_stats  # noqa: E402

STATS = ("mean", "std", "slope", "ewma", "threshold")
EWMA_ALPHA = 0.2
JK = (0.125, 0.25, 4.0)          # RFC 6298 alpha, beta, k
AGREE_REL = 1e-9                 # agreement: |a - b| <= AGREE_REL * (|b| + scale)
ROUND_S = 0.1                    # seconds per method per round, for the fast methods
# bytes one container-tick must move at the least: the sample (8), the ring
# slot read and written (16), six running values read and written -- sums of
# x, x^2 and j*x, EWMA, SRTT, RTTVAR (96; the EWMA is also an output) -- and the
# four other outputs written (32)
MIN_BYTES = 8 + 16 + 6 * 16 + 4 * 8
# what the kernel moves: sample, ring slot, shift K (read), nine state rows
# read and written (three sums, their Kahan terms, EWMA, SRTT, RTTVAR), four
# outputs read (for the missing-sample select; the cache reads them anyway
# before a write) and written
KERNEL_BYTES = 8 + 16 + 8 + 9 * 16 + 4 * 16

Timer = Callable[[], float]


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


@dataclass(frozen=True)
class Params:
    window: int
    alpha: float = EWMA_ALPHA
    jk_alpha: float = JK[0]
    jk_beta: float = JK[1]
    jk_k: float = JK[2]


def make_samples(n: int, t: int, seed: int) -> np.ndarray:
    """CPU-like percentages, shape (t, n): a level per container, AR(1) noise,
    clipped to [0, 100]; 2 % of the containers pinned at 100."""
    rng = np.random.default_rng(seed)
    level = rng.uniform(5.0, 95.0, n)
    x = np.empty((t, n))
    e = rng.normal(0.0, 5.0, n)
    for k in range(t):
        e = 0.8 * e + rng.normal(0.0, 3.0, n)
        x[k] = level + e
    np.clip(x, 0.0, 100.0, out=x)
    x[:, rng.random(n) < 0.02] = 100.0
    return x


# -- the methods: each returns (seconds, outputs or None) ----------------------------

def scorer_window(n: int, p: Params) -> RollingWindow:
    """A trend window of `n` containers built as `agent.scoring.Scorer` builds its
    own (`_kernel.make_window`), set to the same work's EWMA factor: the scorer
    reads no EWMA, and the factor changes no instruction the kernel runs."""
    rw = _kernel.make_window(n, p.window, p.jk_k)
    if (rw.jk_alpha, rw.jk_beta) != (p.jk_alpha, p.jk_beta):
        raise ValueError("the same work's Jacobson/Karels factors are not the scorer's")
    rw.configure(ewma_alpha=p.alpha)
    return rw


def run_kernel(x: np.ndarray, p: Params, collect: bool = False):
    T, N = x.shape
    rw = scorer_window(N, p)
    outs = [np.empty((T, N)) for _ in STATS] if collect else None
    push = rw.push
    t0 = time.perf_counter()
    for t in range(T):
        res = push(x[t])
        if outs is not None:
            for k in range(5):
                outs[k][t] = res[k]
    return time.perf_counter() - t0, outs


class NumpyStreaming:
    """Ring buffer (H x N, one shared head) + running sums of shifted samples,
    vectorized across containers: O(N) ufunc calls per tick, all into
    preallocated buffers. No NaN handling and no Kahan terms or recomputes
    (the benchmark data needs neither): a stable version would cost more."""

    def __init__(self, n: int, p: Params) -> None:
        H = p.window
        self.p = p
        self.t = 0
        # np.full, not np.zeros: pages are touched now, not during the timed ticks
        self.ring = np.full((H, n), 0.0)
        z = lambda: np.full(n, 0.0)  # noqa: E731
        self.k, self.s1, self.s2, self.sj = z(), z(), z(), z()
        self.ew, self.srtt, self.rv = z(), z(), z()
        self.y, self.yo, self.d, self.tmp = z(), z(), z(), z()
        self.mean, self.std, self.slope, self.thr = z(), z(), z(), z()
        self.std.fill(np.nan)
        self.slope.fill(np.nan)

    def push(self, x: np.ndarray):
        p, H = self.p, self.p.window
        h = self.t % H
        n = min(self.t + 1, H)
        row = self.ring[h]
        y, yo, d, tmp = self.y, self.yo, self.d, self.tmp
        if self.t == 0:
            np.copyto(self.k, x)
            np.copyto(self.ew, x)
            np.copyto(self.srtt, x)
            np.multiply(x, 0.5, out=self.rv)
            np.copyto(row, x)
            np.copyto(self.mean, x)
            np.multiply(self.rv, p.jk_k, out=self.thr)
            self.thr += self.srtt
            self.t += 1
            return self.mean, self.std, self.slope, self.ew, self.thr
        np.subtract(x, self.k, out=y)
        if self.t < H:                          # warm-up: nothing leaves the window
            np.multiply(y, n - 1, out=tmp)
            self.sj += tmp
            self.s1 += y
            np.multiply(y, y, out=tmp)
            self.s2 += tmp
        else:                                   # slide: row h holds the oldest
            np.subtract(row, self.k, out=yo)
            np.multiply(y, H - 1, out=tmp)      # SJ += (H-1) y + y_old - S1
            tmp += yo
            tmp -= self.s1
            self.sj += tmp
            np.subtract(y, yo, out=d)
            self.s1 += d
            np.add(y, yo, out=tmp)              # S2 += (y - y_old)(y + y_old)
            tmp *= d
            self.s2 += tmp
        np.copyto(row, x)
        inv_n = 1.0 / n
        np.multiply(self.s1, inv_n, out=self.mean)
        self.mean += self.k
        np.multiply(self.s1, self.s1, out=tmp)
        tmp *= inv_n
        np.subtract(self.s2, tmp, out=tmp)
        tmp *= 1.0 / (n - 1)
        np.maximum(tmp, 0.0, out=tmp)
        np.sqrt(tmp, out=self.std)
        np.multiply(self.s1, 0.5 * (n - 1), out=tmp)
        np.subtract(self.sj, tmp, out=self.slope)
        self.slope *= 12.0 / (n * (n * n - 1.0))
        np.subtract(x, self.ew, out=tmp)
        tmp *= p.alpha
        self.ew += tmp
        np.subtract(self.srtt, x, out=tmp)      # RTTVAR from the old SRTT
        np.abs(tmp, out=tmp)
        tmp -= self.rv
        tmp *= p.jk_beta
        self.rv += tmp
        np.subtract(x, self.srtt, out=tmp)
        tmp *= p.jk_alpha
        self.srtt += tmp
        np.multiply(self.rv, p.jk_k, out=self.thr)
        self.thr += self.srtt
        self.t += 1
        return self.mean, self.std, self.slope, self.ew, self.thr


def run_numpy(x: np.ndarray, p: Params, collect: bool = False):
    T, N = x.shape
    m = NumpyStreaming(N, p)
    outs = [np.empty((T, N)) for _ in STATS] if collect else None
    t0 = time.perf_counter()
    for t in range(T):
        res = m.push(x[t])
        if outs is not None:
            for k in range(5):
                outs[k][t] = res[k]
    return time.perf_counter() - t0, outs


def run_bottleneck(x: np.ndarray, xt: np.ndarray, p: Params, collect: bool = False):
    """Batch: bn.move_mean / move_std over the whole N x T matrix (time axis
    contiguous; the transpose is made before timing), the slope from rolling
    sums (move_sum of x and of j*x), EWMA and Jacobson/Karels vectorized over
    containers in a loop over ticks."""
    import bottleneck as bn

    T, N = x.shape
    H = p.window
    t0 = time.perf_counter()
    mean = bn.move_mean(xt, H, min_count=1, axis=1)
    std = bn.move_std(xt, H, min_count=2, axis=1, ddof=1)
    ticks = np.arange(T, dtype=np.float64)
    s1 = bn.move_sum(xt, H, min_count=1, axis=1)
    sk = bn.move_sum(xt * ticks, H, min_count=1, axis=1)
    n = np.minimum(ticks + 1.0, H)
    start = np.maximum(ticks - H + 1.0, 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        inv_d = np.where(n >= 2, 12.0 / (n * (n * n - 1.0)), np.nan)
    # sum_j j x_j (j from the window's start) - (n-1)/2 sum x
    slope = (sk - (start + 0.5 * (n - 1.0)) * s1) * inv_d
    ew = np.empty((T, N))
    thr = np.empty((T, N))
    e = x[0].copy()
    s = x[0].copy()
    r = 0.5 * x[0]
    tmp = np.empty(N)
    ew[0] = e
    np.multiply(r, p.jk_k, out=thr[0])
    thr[0] += s
    for t in range(1, T):
        xv = x[t]
        np.subtract(xv, e, out=tmp)
        tmp *= p.alpha
        e += tmp
        ew[t] = e
        np.subtract(s, xv, out=tmp)
        np.abs(tmp, out=tmp)
        tmp -= r
        tmp *= p.jk_beta
        r += tmp
        np.subtract(xv, s, out=tmp)
        tmp *= p.jk_alpha
        s += tmp
        np.multiply(r, p.jk_k, out=thr[t])
        thr[t] += s
    elapsed = time.perf_counter() - t0
    if not collect:
        return elapsed, None
    return elapsed, [mean.T, std.T, slope.T, ew, thr]


class PyWindow:
    """One container, pure Python: a deque of the last H samples and running
    sums of the samples shifted by the first one."""

    __slots__ = ("H", "ring", "k", "s1", "s2", "sj", "ew", "srtt", "rv", "p")

    def __init__(self, p: Params) -> None:
        self.H = p.window
        self.p = p
        self.ring: deque[float] = deque()
        self.k = math.nan
        self.s1 = self.s2 = self.sj = 0.0
        self.ew = self.srtt = self.rv = math.nan

    def push(self, x: float) -> tuple[float, float, float, float, float]:
        p = self.p
        ring = self.ring
        if not ring:
            self.k = x
            self.ew = self.srtt = x
            self.rv = 0.5 * x
            ring.append(x)
            return x, math.nan, math.nan, x, x + p.jk_k * self.rv
        y = x - self.k
        if len(ring) == self.H:
            yo = ring.popleft() - self.k
            self.sj += (self.H - 1) * y + yo - self.s1
            self.s1 += y - yo
            self.s2 += y * y - yo * yo
        else:
            self.sj += len(ring) * y
            self.s1 += y
            self.s2 += y * y
        ring.append(x)
        n = len(ring)
        mean = self.k + self.s1 / n
        var = (self.s2 - self.s1 * self.s1 / n) / (n - 1)
        std = math.sqrt(var) if var > 0.0 else 0.0
        slope = (self.sj - 0.5 * (n - 1) * self.s1) * 12.0 / (n * (n * n - 1.0))
        self.ew += p.alpha * (x - self.ew)
        self.rv += p.jk_beta * (abs(self.srtt - x) - self.rv)
        self.srtt += p.jk_alpha * (x - self.srtt)
        return mean, std, slope, self.ew, self.srtt + p.jk_k * self.rv


def run_python(x: np.ndarray, p: Params, n_sub: int, collect: bool = False):
    """Per-container loop over the first n_sub containers, all ticks."""
    T = x.shape[0]
    rows = x[:, :n_sub].tolist()
    wins = [PyWindow(p) for _ in range(n_sub)]
    outs = [np.empty((T, n_sub)) for _ in STATS] if collect else None
    t0 = time.perf_counter()
    for t in range(T):
        row = rows[t]
        if outs is None:
            for i in range(n_sub):
                wins[i].push(row[i])
        else:
            for i in range(n_sub):
                res = wins[i].push(row[i])
                for k in range(5):
                    outs[k][t, i] = res[k]
    return time.perf_counter() - t0, outs


# -- agreement ------------------------------------------------------------------------

def rel_error(g: np.ndarray, r: np.ndarray, scale: float) -> float:
    """max |g - r| / (|r| + scale); inf if the NaN patterns differ."""
    if not np.array_equal(np.isnan(g), np.isnan(r)):
        return math.inf
    ok = ~np.isnan(r)
    e = np.abs(g[ok] - r[ok]) / (np.abs(r[ok]) + scale)
    return float(e.max()) if e.size else 0.0


def max_rel_error(got: list[np.ndarray], ref: list[np.ndarray], scale: float) -> dict[str, float]:
    """Per statistic: `rel_error`."""
    return {name: rel_error(g, r, scale) for name, g, r in zip(STATS, got, ref)}


def run_scorer(x: np.ndarray, p: Params, n: int) -> tuple[np.ndarray, np.ndarray]:
    """A Scorer of `n` containers fed x[:, :n] as their response times: the slope of
    their response-time trend and their anomaly band after every tick (T, n)."""
    from agent.core.records import Sample
    from agent.scoring import Scorer, ScorerConfig

    T = x.shape[0]
    sc = Scorer(ScorerConfig(trend_window=p.window, jk_k=p.jk_k), capacity=n)
    names = [f"c{i}" for i in range(n)]
    for name in names:
        sc.add(name, now=0.0)
    slope, band = np.empty((T, n)), np.empty((T, n))
    rows = x[:, :n].tolist()
    for t in range(T):
        arr = sc.update_samples({name: Sample(0.0, 0.0, 0.0, v)
                                 for name, v in zip(names, rows[t])}, float(t + 1))
        slope[t] = arr.slope_response_time
        band[t] = [sc.detail(name).band for name in names]
    return slope, band


def scorer_errors(x: np.ndarray, p: Params, n: int, k: list[np.ndarray],
                  scale: float) -> tuple[dict[str, float], bool]:
    """The scorer against the kernel on the same samples: the relative errors and
    whether they are the same bits (the slope is 0 where the kernel's is NaN:
    fewer than two samples)."""
    slope, band = run_scorer(x, p, n)
    want = [np.nan_to_num(k[2][:, :n], nan=0.0), k[4][:, :n]]
    errs = {name: rel_error(g, w, scale)
            for name, g, w in zip(("slope", "threshold"), (slope, band), want)}
    return errs, all(np.array_equal(g, w) for g, w in zip((slope, band), want))


def check_agreement(x: np.ndarray, p: Params, n_sub: int, n_ref: int) -> dict[str, Any]:
    log("checking that the methods agree ...")
    scale = float(np.max(np.abs(x)))
    _, k = run_kernel(x, p, collect=True)
    _, nump = run_numpy(x, p, collect=True)
    _, bnk = run_bottleneck(x, np.ascontiguousarray(x.T), p, collect=True)
    _, py = run_python(x, p, n_sub, collect=True)
    ref = rolling_window_stats(x[:, :n_ref], p.window, p.alpha, p.jk_alpha, p.jk_beta, p.jk_k)
    result = {
        "tolerance": f"|a - b| <= {AGREE_REL:g} * (|b| + max|x|), max|x| = {scale:g}",
        "kernel vs reference": max_rel_error([o[:, :n_ref] for o in k], list(ref), scale),
        "numpy vs kernel": max_rel_error(nump, k, scale),
        "bottleneck vs kernel": max_rel_error(bnk, k, scale),
        "python vs kernel": max_rel_error(py, [o[:, :n_sub] for o in k], scale),
        "reference columns": n_ref,
        "python columns": n_sub,
    }
    result["scorer vs kernel"], bitwise = scorer_errors(x, p, n_ref, k, scale)
    worst = {key: max(v.values()) for key, v in result.items() if isinstance(v, dict)}
    result["ok"] = all(w <= AGREE_REL for w in worst.values()) and bitwise
    result["scorer bitwise"] = bitwise
    result["worst"] = worst
    return result


# -- full scoring tick ---------------------------------------------------------------------

# outputs of a scoring tick compared before timing: floats within AGREE_REL of the
# larger value or the natural scale (scores and their slopes 100, weights 1, the
# response-time slope the data's largest time); categories and flags exactly
TICK_FLOATS = {
    "cpu_score": 100.0, "memory_score": 100.0, "network_score": 100.0,
    "availability_score": 100.0, "overall_score": 100.0, "weight": 1.0, "slope": 100.0,
    "slope_cpu": 100.0, "slope_memory": 100.0, "slope_network": 100.0,
    "slope_response_time": None, "forecast": 100.0,
}
TICK_EXACT = ("category", "anomaly", "stale", "active")


def tick_errors(got: Any, ref: Any, rt_scale: float, errs: dict[str, float]) -> None:
    """Fold the worst relative error per output of two TickArrays into `errs`
    (inf for a differing NaN pattern, category or flag)."""
    for name in TICK_EXACT:
        e = 0.0 if np.array_equal(getattr(got, name), getattr(ref, name)) else math.inf
        errs[name] = max(errs.get(name, 0.0), e)
    for name, scale in TICK_FLOATS.items():
        scale = rt_scale if scale is None else scale
        g, r = getattr(got, name), getattr(ref, name)
        if not np.array_equal(np.isnan(g), np.isnan(r)):
            errs[name] = math.inf
            continue
        ok = ~np.isnan(r)
        e = np.abs(g[ok] - r[ok]) / np.maximum(np.maximum(np.abs(g[ok]), np.abs(r[ok])), scale)
        errs[name] = max(errs.get(name, 0.0), float(e.max()) if e.size else 0.0)


def record_errors(got: list[Any], ref: list[Any], errs: dict[str, float]) -> None:
    """The same for ContainerScore records (pure-Python reference vs kernel)."""
    for a, b in zip(got, ref, strict=True):
        for name, scale in (("cpu_score", 100.0), ("memory_score", 100.0),
                            ("network_score", 100.0), ("availability_score", 100.0),
                            ("overall_score", 100.0), ("weight", 1.0), ("slope", 100.0),
                            ("forecast", 100.0)):
            x, y = getattr(a, name), getattr(b, name)
            if math.isnan(x) or math.isnan(y):
                e = 0.0 if (math.isnan(x) and math.isnan(y)) else math.inf
            else:
                e = float(abs(x - y) / max(abs(x), abs(y), scale))
            errs[name] = max(errs.get(name, 0.0), e)
        for name in ("category", "anomaly", "stale"):
            e = 0.0 if getattr(a, name) == getattr(b, name) else math.inf
            errs[name] = max(errs.get(name, 0.0), e)


def full_tick(n: int, ticks: int, runs: int, n_sub: int, seed: int) -> dict[str, Any]:
    try:
        from agent.core.records import Sample
        from agent.reference.scoring import ReferenceScorer
        from agent.scoring import Scorer, ScorerConfig
    except ImportError as exc:
        return {"available": False, "reason": f"skipped: agent.scoring not available ({exc})"}
    if not hasattr(Scorer, "update_arrays"):
        return {"available": False, "reason": "skipped: Scorer.update_arrays not available"}
    try:
        from agent.reference.scoring_numpy import NumpyScorer
    except ImportError:
        NumpyScorer = None
    log(f"full scoring tick: N={n}, {ticks} ticks x {runs} runs ...")
    rng = np.random.default_rng(seed)
    cfg = ScorerConfig()
    cpu = np.clip(rng.normal(50.0, 20.0, (ticks, n)), 0.0, 100.0)
    mem = np.clip(rng.normal(60.0, 10.0, (ticks, n)), 0.0, 100.0)
    net = rng.uniform(0.0, 1e8, (ticks, n))
    rt = rng.lognormal(math.log(0.005), 0.5, (ticks, n))
    rt[rng.random((ticks, n)) < 0.01] = math.nan          # failed probes
    valid = np.ones(n, dtype=bool)
    rt_scale = float(np.nanmax(rt))

    def make(cls: Any, count: int) -> Any:
        sc = cls(cfg, capacity=count)
        for i in range(count):
            sc.add(f"c{i}", now=0.0)
        return sc

    def array_run(cls: Any) -> float:
        sc = make(cls, n)
        t0 = time.perf_counter()
        for t in range(ticks):
            sc.update_arrays(cpu[t], mem[t], net[t], rt[t], valid, now=float(t + 1))
        return (time.perf_counter() - t0) / ticks

    samples = [{f"c{i}": Sample(cpu[t, i], mem[t, i], net[t, i], rt[t, i]) for i in range(n_sub)}
               for t in range(ticks)]

    def python_run() -> float:
        ref = ReferenceScorer(cfg)
        for i in range(n_sub):
            ref.add(f"c{i}", now=0.0)
        t0 = time.perf_counter()
        for t in range(ticks):
            ref.update(samples[t], now=float(t + 1))
        return (time.perf_counter() - t0) / ticks * (n / n_sub)

    # agreement first, every output of every tick: NumPy vs kernel on all N
    # containers, pure Python vs a kernel scorer of the same n_sub containers
    log("  checking that the full-tick methods agree ...")
    agreement: dict[str, Any] = {
        "tolerance": f"|a - b| <= {AGREE_REL:g} * max(|a|, |b|, scale); scale 100 for "
                     f"scores and score slopes, 1 for weights, max response time "
                     f"({rt_scale:.3g} s) for its slope; categories and flags exact",
    }
    if NumpyScorer is not None:
        ks, ns = make(Scorer, n), make(NumpyScorer, n)
        errs: dict[str, float] = {}
        for t in range(ticks):
            a = ks.update_arrays(cpu[t], mem[t], net[t], rt[t], valid, now=float(t + 1))
            b = ns.update_arrays(cpu[t], mem[t], net[t], rt[t], valid, now=float(t + 1))
            tick_errors(b, a, rt_scale, errs)
        agreement["numpy vs kernel"] = errs
    ks, ref = make(Scorer, n_sub), ReferenceScorer(cfg)
    for i in range(n_sub):
        ref.add(f"c{i}", now=0.0)
    errs = {}
    for t in range(ticks):
        record_errors(ref.update(samples[t], now=float(t + 1)),
                      ks.update(samples[t], now=float(t + 1)), errs)
    agreement["python vs kernel"] = errs
    agreement["worst"] = {k: float(max(v.values()))
                          for k, v in agreement.items() if isinstance(v, dict)}
    numpy_ok = bool(NumpyScorer is not None and agreement["worst"]["numpy vs kernel"] <= AGREE_REL)
    python_ok = bool(agreement["worst"]["python vs kernel"] <= AGREE_REL)
    agreement["ok"] = numpy_ok and python_ok
    if NumpyScorer is None:
        numpy_label = "not available: agent.reference.scoring_numpy cannot be imported"
    elif numpy_ok:
        numpy_label = "all outputs agree with the kernel"
    else:
        numpy_label = (f"NOT TIMED: disagrees with the kernel (worst relative error "
                       f"{agreement['worst']['numpy vs kernel']:.3g})")

    kernel_s: list[float] = []
    numpy_s: list[float] = []
    python_s: list[float] = []
    for r in range(runs):
        kernel_s.append(array_run(Scorer))
        if numpy_ok:
            numpy_s.append(array_run(NumpyScorer))
        if python_ok:
            python_s.append(python_run())
        log(f"  run {r + 1}/{runs}: kernel {kernel_s[-1] * 1e3:.3f} ms/tick"
            + (f", NumPy {numpy_s[-1] * 1e3:.2f} ms/tick" if numpy_ok else "")
            + (f", pure Python {python_s[-1] * 1e3:.1f} ms/tick (scaled)" if python_ok else ""))
    sc = Scorer(cfg, capacity=n)
    scorer_bytes = sc.state_bytes_per_slot() if hasattr(sc, "state_bytes_per_slot") else None
    return {
        "available": True,
        "n": n,
        "ticks_per_run": ticks,
        "agreement": agreement,
        "kernel_s_per_tick": statistics.median(kernel_s),
        "kernel_runs": kernel_s,
        "numpy_s_per_tick": statistics.median(numpy_s) if numpy_s else None,
        "numpy_runs": numpy_s,
        "numpy_label": numpy_label,
        "python_s_per_tick": statistics.median(python_s) if python_s else None,
        "python_runs": python_s,
        "python_subset": n_sub,
        "scorer_bytes_per_slot": scorer_bytes,
    }


# -- the facade: object path against array path -----------------------------------------------

FACADE_METHODS = {
    "update": "Scorer.update: samples by name -> records",
    "update_samples": "Scorer.update_samples: samples by name -> arrays",
    "update_arrays": "Scorer.update_arrays: arrays by slot -> arrays",
    "records": "Scorer.records(): every record, on demand",
}


def facade(n: int, ticks: int, runs: int, seed: int) -> dict[str, Any]:
    """What one tick costs through each entry of `agent.scoring.Scorer`, per
    container: the object path (`update`, `Sample` records in and `ContainerScore`
    records out), the array path (`update_samples`, `update_arrays`) and building
    every record on demand after an array tick (`records`, all of them changed).
    Each run scores `ticks` ticks on a fresh scorer; runs are interleaved."""
    from agent.core.records import Sample
    from agent.scoring import Scorer, ScorerConfig

    log(f"facade: object path vs array path, N={n}, {ticks} ticks x {runs} runs ...")
    rng = np.random.default_rng(seed + 1)
    cpu = np.clip(rng.normal(50.0, 20.0, (ticks, n)), 0.0, 100.0)
    mem = np.clip(rng.normal(60.0, 10.0, (ticks, n)), 0.0, 100.0)
    net = rng.uniform(0.0, 1e8, (ticks, n))
    rt = rng.lognormal(math.log(0.005), 0.5, (ticks, n))
    rt[rng.random((ticks, n)) < 0.01] = math.nan
    valid = np.ones(n, dtype=bool)
    names = [f"c{i}" for i in range(n)]
    samples = [dict(zip(names, map(Sample, cpu[t].tolist(), mem[t].tolist(), net[t].tolist(),
                                   rt[t].tolist())))
               for t in range(ticks)]

    def run(method: str) -> float:
        sc = Scorer(ScorerConfig(), capacity=n)
        for name in names:
            sc.add(name, now=0.0)
        spent = 0.0
        for t in range(ticks):
            now = float(t + 1)
            if method == "records":
                sc.update_arrays(cpu[t], mem[t], net[t], rt[t], valid, now)
            t0 = time.perf_counter()
            if method == "update":
                sc.update(samples[t], now)
            elif method == "update_samples":
                sc.update_samples(samples[t], now)
            elif method == "update_arrays":
                sc.update_arrays(cpu[t], mem[t], net[t], rt[t], valid, now)
            else:
                sc.records()
            spent += time.perf_counter() - t0
        return spent / ticks

    times: dict[str, list[float]] = {m: [] for m in FACADE_METHODS}
    for r in range(runs):
        for m in FACADE_METHODS:
            times[m].append(run(m))
        log(f"  run {r + 1}/{runs}: " + ", ".join(
            f"{m} {times[m][-1] * 1e3:.2f} ms/tick" for m in FACADE_METHODS))
    per_tick = {m: statistics.median(v) for m, v in times.items()}
    return {
        "n": n, "ticks_per_run": ticks,
        "s_per_tick": per_tick,
        "us_per_container": {m: v / n * 1e6 for m, v in per_tick.items()},
        "runs_s": times,
        "object_over_array": per_tick["update"] / per_tick["update_arrays"],
    }


# -- bandwidth ---------------------------------------------------------------------------------

def copy_bandwidth(mib: float, repeats: int = 5) -> float:
    """Best (read + write) bytes per second of np.copyto over `mib` MiB."""
    n = int(mib * 2**20) // 8
    src = np.ones(n)
    dst = np.empty(n)
    np.copyto(dst, src)                       # fault the pages in
    inner = max(1, int(64 // max(mib, 1e-9)))
    best = math.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(inner):
            np.copyto(dst, src)
        best = min(best, (time.perf_counter() - t0) / inner)
    return 2 * n * 8 / best


# -- report ---------------------------------------------------------------------------------------

def fmt_time(s: float) -> str:
    if s < 1e-3:
        return f"{s * 1e6:8.1f} µs"
    if s < 1.0:
        return f"{s * 1e3:8.2f} ms"
    return f"{s:8.2f} s "


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.bench_kernel",
                                 description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=10_000, help="containers (default 10000)")
    ap.add_argument("--t", type=int, default=200, help="ticks per run (default 200)")
    ap.add_argument("--h", type=int, default=60, help="window length H (default 60)")
    ap.add_argument("--runs", type=int, default=5, help="timed runs, median reported (default 5)")
    ap.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    ap.add_argument("--quick", action="store_true",
                    help="small sizes (N=2000, T=120, 32 Python containers, 64 MiB copy)")
    ap.add_argument("--py-containers", type=int, default=256,
                    help="containers the pure-Python methods are timed on (default 256)")
    ap.add_argument("--bw-mib", type=float, default=256.0,
                    help="MiB copied to measure bandwidth (default 256)")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args(argv)
    if args.quick:
        args.n, args.t = min(args.n, 2000), min(args.t, 120)
        args.py_containers = min(args.py_containers, 32)
        args.bw_mib = min(args.bw_mib, 64.0)
    for name in ("n", "t", "runs", "py_containers"):
        if getattr(args, name) < 1:
            ap.error(f"--{name.replace('_', '-')} must be >= 1")
    if args.h < 2:
        ap.error("--h must be >= 2")
    N, T, H, runs = args.n, args.t, args.h, args.runs
    n_sub = min(args.py_containers, N)
    p = Params(window=H)
    import bottleneck

    meta = {
        "command": " ".join([os.path.basename(sys.executable), "-m", "benchmarks.bench_kernel",
                             *(sys.argv[1:] if argv is None else argv)]),
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "bottleneck": bottleneck.__version__,
        "machine": platform.machine(),
        "cpu": _cpu_model(),
        "cpus": os.cpu_count(),
        "load_average": os.getloadavg() if hasattr(os, "getloadavg") else None,
        "n": N, "t": T, "h": H, "runs": runs,
        "ewma_alpha": p.alpha, "jk": list(JK),
        "threads": {v: os.environ.get(v) for v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                                                  "OPENBLAS_CORETYPE")},
    }
    x = make_samples(N, T, args.seed)
    xt = np.ascontiguousarray(x.T)

    # a. agreement first, then timing
    agree = check_agreement(x, p, n_sub=min(n_sub, 64), n_ref=min(N, 64 if not args.quick else 16))
    if not agree["ok"]:
        print("ABORT: the methods disagree beyond the tolerance; nothing was timed.")
        print(f"  tolerance: {agree['tolerance']}")
        for key, worst in agree["worst"].items():
            print(f"  {key:22s} worst relative error {worst:.3g}  {agree[key]}")
        if not agree["scorer bitwise"]:
            print("  the Scorer's response-time slopes or bands are not the kernel's bits")
        if args.json:
            _write_json(args.json, {"meta": meta, "agreement": agree, "aborted": True})
        return 2

    methods: dict[str, Callable[[], float]] = {
        "kernel": lambda: run_kernel(x, p)[0],
        "numpy": lambda: run_numpy(x, p)[0],
        "bottleneck": lambda: run_bottleneck(x, xt, p)[0],
        "python": lambda: run_python(x, p, n_sub)[0] * (N / n_sub),
    }
    # one run of a fast method takes milliseconds: repeat it within each round
    # (about ROUND_S) so that its median is not one scheduling accident
    reps = {}
    for name, fn in methods.items():
        t1 = fn() if name != "python" else math.inf
        reps[name] = 1 if name == "python" else max(1, min(50, int(ROUND_S / max(t1, 1e-9))))
    times: dict[str, list[float]] = {m: [] for m in methods}
    for r in range(runs):
        for name, fn in methods.items():
            times[name].extend(fn() for _ in range(reps[name]))
        log(f"same work round {r + 1}/{runs}: " + ", ".join(
            f"{m} {statistics.median(times[m][-reps[m]:]) / T * 1e6:.1f} µs/tick"
            for m in methods))
    per_tick = {m: statistics.median(v) / T for m, v in times.items()}
    same_work = {
        m: {"s_per_tick": per_tick[m], "ns_per_container_tick": per_tick[m] / N * 1e9,
            "best_s_per_tick": min(times[m]) / T, "runs_s": times[m],
            "speedup_of_kernel": per_tick[m] / per_tick["kernel"]}
        for m in methods
    }
    same_work["python"]["scaled_from"] = f"{n_sub} containers x {T} ticks"

    # b. full scoring tick
    ft = full_tick(N, min(T, 100) if not args.quick else 20, runs,
                   min(n_sub, 100), args.seed)
    if ft.get("available"):
        ft["facade"] = facade(N, min(T, 20) if not args.quick else 10, runs, args.seed)

    # c. bandwidth bound
    log(f"copy bandwidth: np.copyto of {args.bw_mib:g} MiB, best of 5 ...")
    bw = copy_bandwidth(args.bw_mib)
    ws_mib = RollingWindow.bytes_per_series(H) * N / 2**20
    bw_ws = copy_bandwidth(max(ws_mib, 0.25))
    bound = MIN_BYTES * N / bw
    bandwidth = {
        "copy_mib": args.bw_mib,
        "copy_bytes_per_s": bw,
        "min_bytes_per_container_tick": MIN_BYTES,
        "kernel_bytes_per_container_tick": KERNEL_BYTES,
        "bound_s_per_tick": bound,
        "ratio_to_bound": {m: per_tick[m] / bound for m in methods},
        "working_set_mib": ws_mib,
        "copy_bytes_per_s_at_working_set": bw_ws,
        "kernel_effective_bytes_per_s": KERNEL_BYTES * N / per_tick["kernel"],
    }

    # d. memory
    memory = {
        "kernel_bytes_per_container": RollingWindow.bytes_per_series(H),
        "scorer_bytes_per_slot": ft.get("scorer_bytes_per_slot"),
    }

    # e. targets
    targets = [
        _target("kernel >= 3x faster than NumPy streaming", ">= 3",
                same_work["numpy"]["speedup_of_kernel"], lambda v: v >= 3.0, "x"),
        _target("kernel >= 5x faster than bottleneck", ">= 5",
                same_work["bottleneck"]["speedup_of_kernel"], lambda v: v >= 5.0, "x"),
        _target("kernel >= 300x faster than pure Python", ">= 300",
                same_work["python"]["speedup_of_kernel"], lambda v: v >= 300.0, "x"),
        _target("kernel within 2.5x of the bandwidth bound", "<= 2.5",
                bandwidth["ratio_to_bound"]["kernel"], lambda v: v <= 2.5, "x"),
    ]
    if ft.get("available"):
        targets.append(_target(f"full scoring tick < 5 ms at N={N}", "< 5 ms",
                               ft["kernel_s_per_tick"] * 1e3, lambda v: v < 5.0, " ms"))
    else:
        targets.append({"name": "full scoring tick < 5 ms", "target": "< 5 ms",
                        "value": None, "pass": None, "detail": ft["reason"]})
    targets.append(_target(f"kernel state <= 4 KiB per container at H={H}", "<= 4096 B",
                           memory["kernel_bytes_per_container"], lambda v: v <= 4096, " B"))

    report = {"meta": meta, "agreement": agree, "same_work": same_work, "full_tick": ft,
              "bandwidth": bandwidth, "memory": memory, "targets": targets}
    print_report(report)
    if args.json:
        _write_json(args.json, report)
        print(f"\nJSON written to {args.json}")
    return 0


def _target(name: str, target: str, value: float, ok: Callable[[float], bool],
            unit: str) -> dict[str, Any]:
    return {"name": name, "target": target, "value": value, "pass": bool(ok(value)),
            "detail": f"{value:.3g}{unit}"}


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def _write_json(path: str, data: dict[str, Any]) -> None:
    def clean(v: Any) -> Any:
        if isinstance(v, float) and not math.isfinite(v):
            return None if math.isnan(v) else ("inf" if v > 0 else "-inf")
        if isinstance(v, dict):
            return {k: clean(u) for k, u in v.items()}
        if isinstance(v, (list, tuple)):
            return [clean(u) for u in v]
        return v

    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(clean(data), f, indent=2)
        f.write("\n")
    os.replace(tmp, path)


def print_facade(fc: dict[str, Any]) -> None:
    print()
    print(f"   object path vs array path (agent.scoring.Scorer, N={fc['n']:,}; median of "
          f"{len(fc['runs_s']['update'])} runs x {fc['ticks_per_run']} ticks)")
    print(f"   {'entry':52s} {'per tick':>12s} {'µs/container':>13s}")
    for key, label in FACADE_METHODS.items():
        print(f"   {label:52s} {fmt_time(fc['s_per_tick'][key]):>12s} "
              f"{fc['us_per_container'][key]:13.3f}")
    print(f"   the object path costs {fc['object_over_array']:.1f}x the array path")


def print_report(rep: dict[str, Any]) -> None:
    m = rep["meta"]
    N, T, H = m["n"], m["t"], m["h"]
    sw, bw, ft = rep["same_work"], rep["bandwidth"], rep["full_tick"]
    print(f"deployment-agent kernel benchmark  ({m['cpu']}, {m['cpus']} CPUs, "
          f"Python {m['python']}, NumPy {m['numpy']}, bottleneck {m['bottleneck']})")
    print(f"command: {m['command']}")
    print()
    nruns = {k: len(v["runs_s"]) for k, v in sw.items()}
    print(f"a. SAME WORK  N={N:,} containers, T={T} ticks, H={H}; one thread; median of "
          f"{m['runs']} interleaved rounds")
    print("   (runs per method: " + ", ".join(f"{k} {v}" for k, v in nruns.items()) + ")")
    print("   per tick: ingest one sample per container -> rolling mean, std, LS slope, "
          "EWMA, JK threshold")
    print("   the kernel is the scorer's trend window (_kernel.make_window: score_tick pushes "
          "five per container)")
    ag = rep["agreement"]
    print(f"   agreement checked first: worst relative error "
          f"{max(ag['worst'].values()):.2g} (tolerance {AGREE_REL:g}); a Scorer fed the samples "
          f"as response times: slopes and bands {'bit for bit' if ag['scorer bitwise'] else 'DIFFER'}")
    print()
    rows = [
        ("kernel", "kernel (the scorer's window)"),
        ("numpy", "NumPy streaming (vectorized)"),
        ("bottleneck", "bottleneck move_* (batch)"),
        ("python", "pure Python, deques *"),
    ]
    print(f"   {'method':32s} {'per tick':>12s} {'ns/container-tick':>18s} "
          f"{'kernel is':>11s} {'vs bound':>9s}")
    for key, label in rows:
        r = sw[key]
        print(f"   {label:32s} {fmt_time(r['s_per_tick']):>12s} "
              f"{r['ns_per_container_tick']:18.2f} {r['speedup_of_kernel']:10.1f}x "
              f"{bw['ratio_to_bound'][key]:8.2f}x")
    print(f"   * timed on {sw['python']['scaled_from']}, scaled per container-tick to N={N:,}")
    print()
    print(f"b. FULL SCORING TICK  (agent.scoring.Scorer.update_arrays, N={N:,})")
    if ft.get("available"):
        ag = ft["agreement"]
        print("   per tick: every score, category, weight, slope, forecast and anomaly flag")
        print(f"   agreement checked first on every output of every tick (tolerance {AGREE_REL:g}):")
        print("   worst relative error " + ", ".join(f"{k} {v:.2g}" for k, v in ag["worst"].items()))
        print()
        k_s = ft["kernel_s_per_tick"]
        print(f"   {'method':32s} {'per tick':>12s} {'kernel is':>11s}")
        print(f"   {'kernel (Scorer.update_arrays)':32s} {fmt_time(k_s):>12s} {1.0:10.1f}x"
              f"   median of {len(ft['kernel_runs'])} runs x {ft['ticks_per_run']} ticks")
        if ft["numpy_s_per_tick"] is not None:
            print(f"   {'NumPy (vectorized, NumpyScorer)':32s} "
                  f"{fmt_time(ft['numpy_s_per_tick']):>12s} "
                  f"{ft['numpy_s_per_tick'] / k_s:10.1f}x   {ft['numpy_label']}")
        else:
            print(f"   {'NumPy (vectorized, NumpyScorer)':32s} {'n/a':>12s} {'':>11s}   "
                  f"{ft['numpy_label']}")
        if ft["python_s_per_tick"] is not None:
            print(f"   {'pure Python (ReferenceScorer) *':32s} "
                  f"{fmt_time(ft['python_s_per_tick']):>12s} "
                  f"{ft['python_s_per_tick'] / k_s:10.0f}x")
        else:
            print(f"   {'pure Python (ReferenceScorer) *':32s} {'n/a':>12s} {'':>11s}   "
                  "NOT TIMED: disagrees with the kernel")
        print(f"   * timed on {ft['python_subset']} containers, scaled per container to N={N:,}")
        print_facade(ft["facade"])
    else:
        print(f"   {ft['reason']}")
    print()
    print("c. PHYSICAL LIMIT")
    print(f"   copy bandwidth (np.copyto {bw['copy_mib']:g} MiB, read+write, best of 5): "
          f"{bw['copy_bytes_per_s'] / 1e9:.1f} GB/s")
    print(f"   bytes per container-tick the same work must move: {bw['min_bytes_per_container_tick']}"
          f" (the kernel moves {bw['kernel_bytes_per_container_tick']})")
    print(f"   bound: {fmt_time(bw['bound_s_per_tick']).strip()} per tick at N={N:,}; "
          f"ratios to it are in the table above")
    print(f"   (the kernel's working set, {bw['working_set_mib']:.1f} MiB, copies at "
          f"{bw['copy_bytes_per_s_at_working_set'] / 1e9:.1f} GB/s: when it fits in cache the "
          f"kernel can beat the bound;")
    print(f"    it moved {bw['kernel_effective_bytes_per_s'] / 1e9:.1f} GB/s)")
    print()
    print("d. MEMORY")
    print(f"   kernel state per container at H={H}: {rep['memory']['kernel_bytes_per_container']} B "
          "(ring 8H + 10 state + 4 output doubles + 2 int32)")
    sb = rep["memory"]["scorer_bytes_per_slot"]
    print(f"   Scorer per slot: {sb} B" if sb is not None else "   Scorer per slot: n/a")
    print()
    print("e. TARGETS (ratios within this run)")
    for t in rep["targets"]:
        status = "PASS" if t["pass"] else ("MISS" if t["pass"] is False else "SKIP")
        print(f"   {status}  {t['name']:48s} {t['detail']:>12s}  (target {t['target']})")


if __name__ == "__main__":
    sys.exit(main())
