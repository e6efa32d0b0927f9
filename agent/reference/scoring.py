"""Plain Python/NumPy reference of the scoring kernel (`_scoring/_kernel.pyx`).

One object per container, deques for the rings, every statistic recomputed from its
window on every tick: slow, obviously correct, and the yardstick the kernel is held
to (tests compare the two within 1e-9 relative on random sequences). The semantics
are the ones documented in `agent.scoring`; keep the two in step.

`ReferenceScorer` has the same driving interface as `agent.scoring.Scorer`
(`add`, `remove`, `set_sundown`, `update`, `scores`, `detail`), so a test can feed
both the same sequence.
"""
from __future__ import annotations

import bisect
import math
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from agent.core.records import Category, ContainerScore, Sample
from agent.scoring import LATENCY_FLOOR, ContainerDetail, ScorerConfig

__all__ = [
    "ReferenceScorer",
    "AvailabilityState",
    "availability_step",
    "least_squares_slope",
    "plain_category",
    "hysteresis_category",
    "swrr_sequence",
    "p2c_pick",
]


def _clamp(x: float, lo: float = 0.0, hi: float = 100.0) -> float:
    return min(max(x, lo), hi)


def least_squares_slope(values: Sequence[float]) -> float:
    """Slope per sample of the least-squares line through `values` (0 with < 2)."""
    y = np.asarray(values, dtype=np.float64)
    n = y.size
    if n < 2:
        return 0.0
    x = np.arange(n, dtype=np.float64) - (n - 1) / 2.0
    return float(np.dot(x, y - y.mean()) / np.dot(x, x))


def plain_category(score: float) -> Category:
    """SPEC §3: >= 70 LU, >= 40 MU, else HU."""
    if score >= 70.0:
        return Category.LU
    if score >= 40.0:
        return Category.MU
    return Category.HU


def hysteresis_category(current: Category, score: float, m: float) -> Category:
    """Leave `current` only when the score is more than `m` past its boundary."""
    if current is Category.LU:
        if score >= 70.0 - m:
            return Category.LU
        return Category.MU if score >= 40.0 - m else Category.HU
    if current is Category.HU:
        if score < 40.0 + m:
            return Category.HU
        return Category.MU if score < 70.0 + m else Category.LU
    if current is Category.MU:
        if score >= 70.0 + m:
            return Category.LU
        if score < 40.0 - m:
            return Category.HU
        return Category.MU
    return plain_category(score)


@dataclass
class AvailabilityState:
    """The compat availability state of one container (SPEC §3)."""

    history: deque[float]
    best: deque[float]
    threshold: float = 1.0
    ema: float = 100.0


def availability_step(state: AvailabilityState, t: float, alpha: float) -> float:
    """Ingest one answered response time `t` (seconds); return the new EMA."""
    state.history.append(t)
    if not state.best or t < state.best[-1]:
        state.best.append(t)  # deque(maxlen) drops the oldest when full
    avg = float(np.mean(state.history))
    state.threshold = max(0.5, 0.9 * state.threshold + 0.1 * 1.5 * avg)
    best = float(np.mean(state.best))
    effective = 0.3 * t + 0.7 * avg
    if effective > 0:
        ratio = best / effective
        base = 100.0 * ratio * math.sqrt(ratio)  # ** 1.5 raises OverflowError; this gives inf
    else:
        base = 100.0
    if effective > state.threshold:
        penalty = -20.0 * math.expm1(-(effective - state.threshold))
    else:
        penalty = 0.0
    trend = 0.0
    if len(state.history) >= 10:
        h = list(state.history)
        recent = float(np.mean(h[-5:]))
        older = float(np.mean(h[-10:-5]))
        if older != 0.0:
            trend = (older - recent) / older
    raw = _clamp(base - penalty + 10.0 * trend)
    state.ema = alpha * raw + (1.0 - alpha) * state.ema
    return state.ema


@dataclass
class _Container:
    name: str
    id: str
    added: float
    avail: AvailabilityState
    window: deque[tuple[float, float, float, float]]  # overall, cpu, memory, network
    rt_window: deque[float]
    cpu: float = 100.0
    memory: float = 100.0
    network: float = 100.0
    availability: float = 100.0
    overall: float = 100.0
    category: Category = Category.INIT
    seen: bool = False
    last_ok: bool = False
    anomaly: bool = False
    stale: bool = False
    srtt: float = math.nan
    rttvar: float = math.nan
    peak: float = math.nan
    peak_t: float = 0.0
    level: float = math.nan
    trend: float = 0.0
    slopes: list[float] = field(default_factory=lambda: [0.0] * 5)
    spreads: list[float] = field(default_factory=lambda: [0.0] * 5)  # of each slope's window
    forecast: float = math.nan
    weight: float = 0.0


class ReferenceScorer:
    """Same driving interface and results as `agent.scoring.Scorer`, computed naively."""

    def __init__(self, config: ScorerConfig | None = None) -> None:
        self.config = config if config is not None else ScorerConfig()
        self._c: dict[str, _Container] = {}
        self._scores: list[ContainerScore] = []

    def add(self, name: str, *, now: float, id: str = "") -> None:
        if name in self._c:
            raise ValueError(f"container {name!r} is already registered")
        cfg = self.config
        c = _Container(
            name=name, id=id, added=now,
            avail=AvailabilityState(deque(maxlen=cfg.history_size), deque(maxlen=cfg.best_time_window)),
            window=deque(maxlen=cfg.trend_window), rt_window=deque(maxlen=cfg.trend_window),
            peak_t=now,
        )
        c.overall = _clamp(100.0 * (cfg.cpu_weight + cfg.memory_weight + cfg.network_weight
                                    + cfg.availability_weight))
        self._c[name] = c

    def remove(self, name: str) -> None:
        del self._c[name]

    def set_sundown(self, name: str, flag: bool = True) -> None:
        c = self._c[name]
        if flag:
            c.category = Category.SUNDOWN
        elif c.category is Category.SUNDOWN:
            c.category = plain_category(c.overall) if c.seen else Category.INIT

    def reconfigure(self, config: ScorerConfig) -> None:
        """New parameters from the next tick; rings keep their newest entries."""
        self.config = config
        for c in self._c.values():
            c.avail.history = deque(c.avail.history, maxlen=config.history_size)
            c.avail.best = deque(c.avail.best, maxlen=config.best_time_window)
            c.window = deque(c.window, maxlen=config.trend_window)
            c.rt_window = deque(c.rt_window, maxlen=config.trend_window)

    def __contains__(self, name: object) -> bool:
        return name in self._c

    def __len__(self) -> int:
        return len(self._c)

    def names(self) -> list[str]:
        return list(self._c)

    def update(self, samples: Mapping[str, Sample], now: float) -> list[ContainerScore]:
        for name in samples:
            if name not in self._c:
                raise KeyError(name)
        for name, c in self._c.items():
            sample = samples.get(name)
            if sample is None or sample.stale:
                c.stale = True
            else:
                c.stale = False
                self._step(c, sample, now)
        self._weights(now)
        self._scores = [self._record(c) for c in self._c.values()]
        return list(self._scores)

    def scores(self) -> list[ContainerScore]:
        return list(self._scores)

    def _step(self, c: _Container, s: Sample, now: float) -> None:
        cfg = self.config
        if not math.isnan(s.cpu_percent):
            c.cpu = _clamp(100.0 - s.cpu_percent)
        if not math.isnan(s.memory_percent):
            c.memory = _clamp(100.0 - s.memory_percent)
        if not math.isnan(s.network_bps):
            c.network = _clamp(100.0 - s.network_bps * (100.0 / cfg.network_capacity_bps))
        complete = not (math.isnan(s.cpu_percent) or math.isnan(s.memory_percent)
                        or math.isnan(s.network_bps))
        t = s.response_time
        answered = math.isfinite(t)
        if answered:
            t = max(t, 0.0)
            if math.isnan(c.srtt):
                c.srtt, c.rttvar, c.anomaly = t, 0.5 * t, False
            else:
                c.anomaly = t > c.srtt + cfg.jk_k * c.rttvar
                # RFC 6298 (alpha 1/8, beta 1/4), written as the kernel's window
                # writes it: x += g (target - x), exact on constant input
                c.rttvar += 0.25 * (abs(c.srtt - t) - c.rttvar)
                c.srtt += 0.125 * (t - c.srtt)
            if not math.isnan(c.peak) and t <= c.peak:
                w = math.exp(-max(now - c.peak_t, 0.0) / cfg.latency_decay)
                c.peak = c.peak * w + t * (1.0 - w)
            else:
                c.peak = t
            c.peak_t = now
            c.availability = availability_step(c.avail, t, cfg.ema_alpha)
            c.rt_window.append(t)
            c.slopes[4] = least_squares_slope(c.rt_window)
            c.spreads[4] = max(c.rt_window) - min(c.rt_window)
            c.last_ok = True
        else:
            c.availability = 0.0
            c.anomaly = False
            c.last_ok = False
        c.overall = _clamp(cfg.cpu_weight * c.cpu + cfg.memory_weight * c.memory
                           + cfg.network_weight * c.network + cfg.availability_weight * c.availability)
        if not c.seen:
            if complete and answered:
                c.seen = True
                if c.category is not Category.SUNDOWN:
                    c.category = plain_category(c.overall)
        elif c.category is not Category.SUNDOWN:
            c.category = hysteresis_category(c.category, c.overall, cfg.hysteresis)
        if c.seen:
            c.window.append((c.overall, c.cpu, c.memory, c.network))
            cols = list(zip(*c.window))
            for k in range(4):
                c.slopes[k] = least_squares_slope(cols[k])
                c.spreads[k] = max(cols[k]) - min(cols[k])
            if math.isnan(c.level):
                c.level, c.trend = c.overall, 0.0
            else:
                prev = c.level
                c.level = cfg.holt_alpha * c.overall + (1.0 - cfg.holt_alpha) * (prev + c.trend)
                c.trend = cfg.holt_beta * (c.level - prev) + (1.0 - cfg.holt_beta) * c.trend
            c.forecast = _clamp(c.level + cfg.forecast_horizon * c.trend)

    def _weights(self, now: float) -> None:
        cfg = self.config
        raw: list[float] = []
        for c in self._c.values():
            r = 0.0
            if c.last_ok and c.category is not Category.SUNDOWN:
                headroom = max(c.overall / 100.0, 0.01)
                r = headroom ** 2 / max(c.peak, LATENCY_FLOOR)
                age = now - c.added
                if age < cfg.slow_start_window:
                    f = (max(age, 0.0) / cfg.slow_start_window) ** (1.0 / cfg.slow_start_aggression)
                    r *= max(cfg.slow_start_min_fraction, f)
            raw.append(r)
        total = math.fsum(raw)
        for c, r in zip(self._c.values(), raw):
            c.weight = r / total if total > 0 else 0.0

    def _record(self, c: _Container) -> ContainerScore:
        return ContainerScore(
            c.name, c.cpu, c.memory, c.network, c.availability, c.overall, c.category,
            c.weight, c.anomaly, c.slopes[0], c.forecast, c.stale, c.id,
        )

    def window_spreads(self, name: str) -> tuple[float, ...]:
        """max - min of the windows the current slopes were computed over.

        Order: overall, cpu, memory, network, response time. The natural scale of a
        slope's rounding error: tests compare slopes relative to it (a slope near 0
        over noisy data has no meaningful relative precision).
        """
        return tuple(self._c[name].spreads)

    def detail(self, name: str) -> ContainerDetail:
        c = self._c[name]
        return ContainerDetail(
            name=name, slope_cpu=c.slopes[1], slope_memory=c.slopes[2],
            slope_network=c.slopes[3], slope_response_time=c.slopes[4],
            holt_level=c.level, holt_trend=c.trend, srtt=c.srtt, rttvar=c.rttvar,
            band=c.srtt + self.config.jk_k * c.rttvar, threshold=c.avail.threshold,
            availability_ema=c.avail.ema, peak_latency=c.peak, added=c.added,
        )


def swrr_sequence(weights: Sequence[float], k: int) -> list[int]:
    """nginx smooth weighted round robin, `k` picks (-1 when no weight is positive)."""
    current = [0.0] * len(weights)
    picks = []
    for _ in range(k):
        total, best = 0.0, -1
        for i, w in enumerate(weights):
            if w > 0:
                current[i] += w
                total += w
                if best < 0 or current[i] > current[best]:
                    best = i
        if best >= 0:
            current[best] -= total
        picks.append(best)
    return picks


def p2c_pick(weights: Sequence[float], u1: float, u2: float,
             load: Sequence[float] | None = None) -> int:
    """Weighted power of two choices with given uniforms (same draw as the kernel).

    The first index is drawn by inverting the cumulative weights at u1 * total; the
    second by inverting them at u2 * (total - w_a) with a's interval cut out, so it
    is distinct and proportional to weight among the rest.
    """
    cum = np.cumsum(np.asarray(weights, dtype=np.float64)).tolist()
    n = len(cum)
    if n == 0 or not cum[-1] > 0:
        return -1
    total = cum[-1]

    def last_positive(skip: int) -> int:
        return max((i for i in range(n) if weights[i] > 0 and i != skip), default=-1)

    a = bisect.bisect_right(cum, u1 * total)
    if a >= n:
        a = last_positive(-1)
    if weights[a] >= total:
        return a
    start = cum[a - 1] if a > 0 else 0.0
    t = u2 * (total - weights[a])
    if t >= start:
        t = t + (cum[a] - start)
    b = bisect.bisect_right(cum, t)
    if b >= n or b == a:
        b = last_positive(a)
    if b < 0:
        return a
    if load is not None and load[b] * weights[a] < load[a] * weights[b]:
        return b
    return a
