"""The vectorized NumPy scorer agrees with the compiled kernel on random sequences.

`agent.scoring.Scorer.update_arrays` and `agent.reference.scoring_numpy.NumpyScorer`
are fed the same random ticks: NaN cpu/memory/network, NaN / infinite / negative /
zero response times, stale slots, ticks where every slot is valid and answered (the all-slots
paths), a SUNDOWN mark (and its removal), containers added late (slot growth) and
removed (slot reuse), windows small enough to wrap many times,
and a heavy-tailed stretch that trips the cancellation guards. Every output is
compared after every tick: categories, anomaly, stale and active flags exactly, floats
within 1e-9 of the larger of the two values and their natural scale (100 for scores
and score slopes, the data's largest response time for the response-time slope, the
weights' sum of 1 for weights).
"""
from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from agent.reference.scoring_numpy import NumpyScorer
from agent.scoring import Scorer, ScorerConfig

REL = 1e-9
FLOAT_SCALES = {
    "cpu_score": 100.0, "memory_score": 100.0, "network_score": 100.0,
    "availability_score": 100.0, "overall_score": 100.0, "weight": 1.0,
    "slope": 100.0, "slope_cpu": 100.0, "slope_memory": 100.0, "slope_network": 100.0,
    "slope_response_time": None,  # the data's largest time, set per run
    "forecast": 100.0,
}
EXACT = ("category", "anomaly", "stale", "active")


def compare(k, p, rt_scale: float, where: str) -> float:
    """Assert agreement of two TickArrays; return the worst relative error seen."""
    worst = 0.0
    for name in EXACT:
        a, b = getattr(k, name), getattr(p, name)
        assert np.array_equal(a, b), f"{where}: {name} differs at slots {np.flatnonzero(a != b)}"
    for name, scale in FLOAT_SCALES.items():
        scale = rt_scale if scale is None else scale
        a, b = getattr(k, name), getattr(p, name)
        na, nb = np.isnan(a), np.isnan(b)
        assert np.array_equal(na, nb), f"{where}: {name} NaN pattern differs"
        ok = ~na
        err = np.abs(a[ok] - b[ok]) / np.maximum(np.maximum(np.abs(a[ok]), np.abs(b[ok])), scale)
        e = float(err.max()) if err.size else 0.0
        assert e <= REL, f"{where}: {name} relative error {e:.3g} at slot {np.argmax(err)}"
        worst = max(worst, e)
    return worst


def compare_details(ks: Scorer, ns: NumpyScorer, rt_scale: float, where: str) -> None:
    """Internal state too (SRTT, RTTVAR, band, threshold, EMA, peak, Holt)."""
    for name in ks.names():
        a, b = ks.detail(name), ns.detail(name)
        for field in dataclasses.fields(a):
            x, y = getattr(a, field.name), getattr(b, field.name)
            if isinstance(x, str):
                assert x == y
                continue
            if math.isnan(x) or math.isnan(y):
                assert math.isnan(x) and math.isnan(y), f"{where}: {name}.{field.name}"
                continue
            scale = 100.0 if field.name.startswith(("holt", "slope_c", "slope_m", "slope_n",
                                                    "availability")) else rt_scale
            assert abs(x - y) <= REL * max(abs(x), abs(y), scale), \
                f"{where}: {name}.{field.name} {x!r} != {y!r}"


def drive(cfg: ScorerConfig, n: int, ticks: int, seed: int, capacity: int) -> float:
    rng = np.random.default_rng(seed)
    ks, ns = Scorer(cfg, capacity=capacity), NumpyScorer(cfg, capacity=capacity)
    names = [f"c{i}" for i in range(n)]
    live: list[str] = []
    for name in names[: n - 5]:
        assert ks.add(name, now=0.0) == ns.add(name, now=0.0)
        live.append(name)
    worst = 0.0
    rt_scale = 0.0
    anomalies = sundowns = 0
    for t in range(ticks):
        now = float(t + 1)
        if t == 3:  # late arrivals: growth beyond the initial capacity
            for name in names[n - 5:]:
                assert ks.add(name, now=now) == ns.add(name, now=now)
                live.append(name)
        if t == 7:
            for s in (ks, ns):
                s.set_sundown(live[0])
                s.set_sundown(live[1])
        if t == 15:
            for s in (ks, ns):
                s.set_sundown(live[1], False)
        if t == 20:  # removal and slot reuse
            gone = live.pop(2)
            for s in (ks, ns):
                s.remove(gone)
            assert ks.add("late", now=now) == ns.add("late", now=now)
            live.append("late")
        cap = ks.capacity
        assert ns.capacity == cap
        cpu = rng.normal(50.0, 30.0, cap)            # beyond [0, 100] too: clamped
        mem = rng.normal(60.0, 20.0, cap)
        net = rng.uniform(0.0, 2e8, cap)
        rt = rng.lognormal(np.log(0.005), 0.7, cap)
        if 30 <= t < 34:                             # timeouts: the cancellation guards
            rt[rng.random(cap) < 0.3] = 5.0
        rt[rng.random(cap) < 0.05] = np.nan          # failed probes
        rt[rng.random(cap) < 0.01] = np.inf
        rt[rng.random(cap) < 0.01] = -1.0
        rt[rng.random(cap) < 0.01] = 0.0
        for a in (cpu, mem, net):
            a[rng.random(cap) < 0.05] = np.nan       # unmeasured: score held
        cpu[rng.random(cap) < 0.05] = 0.0            # runs of identical scores
        valid = rng.random(cap) >= 0.1               # stale slots
        if t < 2:
            valid[:3] = False                        # some start stale (longer INIT)
        if t % 4 == 0 and t > 4:                     # every slot valid, answered, complete
            valid[:] = True
            rt = rng.lognormal(np.log(0.005), 0.7, cap)
            cpu, mem, net = (np.nan_to_num(a, nan=50.0) for a in (cpu, mem, net))
        fin = rt[np.isfinite(rt)]
        rt_scale = max(rt_scale, float(fin.max()) if fin.size else 0.0)
        a = ks.update_arrays(cpu, mem, net, rt, valid, now)
        b = ns.update_arrays(cpu, mem, net, rt, valid, now)
        worst = max(worst, compare(a, b, rt_scale, f"tick {t}"))
        anomalies += int(np.count_nonzero(a.anomaly))
        sundowns += int(np.count_nonzero(a.category == 4))
        if t % 5 == 0 or t == ticks - 1:
            compare_details(ks, ns, rt_scale, f"tick {t}")
    assert anomalies > 0 and sundowns > 0                # the flags were exercised
    return worst


@pytest.mark.parametrize("cfg", [
    ScorerConfig(),
    ScorerConfig(history_size=12, best_time_window=3, trend_window=5, hysteresis=3.0,
                 slow_start_aggression=2.5, latency_decay=0.5, holt_beta=1.0),
    ScorerConfig(history_size=4, best_time_window=1, trend_window=2, ema_alpha=1.0,
                 slow_start_window=0.0),
], ids=["default", "small-windows", "tiny-windows"])
def test_numpy_scorer_matches_kernel(cfg):
    ticks = 150 if cfg.trend_window > 10 else 80
    # 64 names fill the capacity (32, grown to 64): the all-slots fast paths run too
    worst = drive(cfg, n=64, ticks=ticks, seed=cfg.trend_window, capacity=32)
    assert worst <= REL


def test_recompute_period_is_reached():
    # recompute period 64 with tiny windows: every slot recomputes several times
    cfg = ScorerConfig(history_size=3, best_time_window=2, trend_window=3)
    assert cfg._recompute_period() == 64
    drive(cfg, n=16, ticks=200, seed=7, capacity=8)


def test_interface_mirrors_scorer():
    ns = NumpyScorer(ScorerConfig(), capacity=2)
    assert [ns.add(x, now=0.0) for x in "abc"] == [0, 1, 2]
    assert ns.capacity == 4 and ns.slot_of("c") == 2 and len(ns) == 3
    ns.remove("b")
    assert ns.add("d", now=1.0) == 1
    arr = ns.update_arrays(np.zeros(4), np.zeros(4), np.zeros(4), np.full(4, 0.001),
                           np.ones(4, bool), 2.0)
    assert arr.active.tolist() == [True, True, True, False]
    assert abs(arr.weight.sum() - 1.0) < 1e-12 and arr.weight[3] == 0.0
    with pytest.raises(ValueError):
        ns.update_arrays(np.zeros(3), np.zeros(4), np.zeros(4), np.zeros(4), np.ones(4), 3.0)
