"""`_kernel.score_tick` called directly on hand-built arrays, against naive NumPy."""
from __future__ import annotations

import math
from collections import deque

import numpy as np
import pytest

from _scoring import _kernel
from _scoring._window import RollingWindow
from agent.reference.scoring import AvailabilityState, availability_step
from agent.scoring import ScorerConfig

NAN = math.nan
ROW = {name: i for i, name in enumerate(_kernel.OUT_ROWS)}


class Arrays:
    """The kernel's arrays for `cap` slots, laid out as `agent.scoring.Scorer` does."""

    def __init__(self, cap: int, cfg: ScorerConfig | None = None) -> None:
        self.cfg = cfg = cfg or ScorerConfig(slow_start_window=0.0)
        H = cfg.trend_window
        self.params = cfg._params()
        self.fstate = np.zeros((cap, _kernel.NF_))
        self.istate = np.zeros((cap, _kernel.NI_), np.intc)
        self.hist = np.zeros((cap, cfg.history_size))
        self.best = np.zeros((cap, cfg.best_time_window))
        self.windows = _kernel.make_windows(cap, H, cfg.jk_k)
        self.xin = np.zeros((_kernel.WIN_SERIES, cap))
        self.out = np.zeros((len(_kernel.OUT_ROWS), cap))
        self.cat = np.zeros(cap, np.int8)
        self.flags = np.zeros((len(_kernel.FLAG_ROWS), cap), np.uint8)
        self.active = np.ones(cap, np.uint8)
        for s in range(cap):
            _kernel.reset_slot(self.fstate, self.istate, self.out, self.cat, self.flags,
                               s, 0.0, 1000 + s, 100.0, self.windows)

    def tick(self, cpu, mem, net, rt, valid=None, now=1.0) -> int:
        cap = self.fstate.shape[0]
        f = lambda x: np.ascontiguousarray(np.broadcast_to(np.asarray(x, np.float64), cap))  # noqa: E731
        v = np.ones(cap, np.uint8) if valid is None else np.asarray(valid, np.uint8)
        return _kernel.score_tick(f(cpu), f(mem), f(net), f(rt), v, self.active, now,
                                  self.params, self.fstate, self.istate, self.hist, self.best,
                                  self.out, self.cat, self.flags, self.xin, self.windows)

    def window_state(self, k: int, s: int) -> np.ndarray:
        """Window k's series s: its samples, count, SRTT, RTTVAR and outputs."""
        w = self.windows[k]
        return np.concatenate([w.window_values(s), [w.count[s], w.srtt[s], w.rttvar[s],
                               w.mean[s], w.std[s], w.slope[s], w.threshold[s]]])

    def state(self) -> tuple[np.ndarray, ...]:
        return tuple(a.copy() for a in (self.fstate, self.istate, self.hist, self.best,
                                        self.out, self.cat, self.flags))


def naive_slope(y) -> float:
    y = np.asarray(y, np.float64)
    if y.size < 2:
        return 0.0
    return float(np.polyfit(np.arange(y.size), y, 1)[0])


def test_slopes_match_polyfit_through_fill_and_wrap():
    cfg = ScorerConfig(trend_window=6, slow_start_window=0.0)
    k = Arrays(1, cfg)
    rng = np.random.default_rng(1)
    cpu_hist, rt_hist = [], []
    for t in range(40):  # fills (6), then wraps several times
        cpu, rt = rng.uniform(0, 100), rng.uniform(0.001, 0.1)
        k.tick(cpu, 10.0, 0.0, rt, now=float(t))
        cpu_hist.append(100.0 - cpu)
        rt_hist.append(rt)
        assert k.out[ROW["slope_cpu"], 0] == pytest.approx(naive_slope(cpu_hist[-6:]), abs=1e-9)
        assert k.out[ROW["slope_response_time"], 0] == pytest.approx(
            naive_slope(rt_hist[-6:]), abs=1e-12)
        assert k.out[ROW["slope_memory"], 0] == 0.0


def test_constant_input_gives_exactly_zero_slopes():
    # a container pinned at 100 % CPU after a noisy start: every slope exactly 0
    cfg = ScorerConfig(trend_window=8, slow_start_window=0.0)
    k = Arrays(2, cfg)
    rng = np.random.default_rng(2)
    for t in range(30):
        k.tick(rng.uniform(0, 100, 2), rng.uniform(0, 100, 2), rng.uniform(0, 1e8, 2),
               rng.uniform(0.001, 0.1, 2), now=float(t))
    for t in range(30, 30 + 8):
        k.tick(100.0, 37.5, 1e7, 0.0123, now=float(t))
    for name in ("slope_cpu", "slope_memory", "slope_network", "slope_response_time"):
        assert (k.out[ROW[name]] == 0.0).all(), name
    # overall is constant only once the availability EMA settles; run until it has
    for t in range(38, 400):
        k.tick(100.0, 37.5, 1e7, 0.0123, now=float(t))
    assert (k.out[ROW["slope"]] == 0.0).all()


def test_constant_from_the_start_is_exact():
    k = Arrays(1, ScorerConfig(trend_window=60, slow_start_window=0.0))
    for t in range(200):
        k.tick(0.1, 0.1, 0.1, 0.1, now=float(t))
        assert k.out[ROW["slope_cpu"], 0] == 0.0
        assert k.out[ROW["slope_response_time"], 0] == 0.0


def test_big_swing_leaves_no_residue():
    # a 1e6 s answer passes through the windows and the history; once it has left,
    # the slope and the availability score are as exact as if computed afresh
    cfg = ScorerConfig(trend_window=4, history_size=4, best_time_window=3,
                       slow_start_window=0.0, ema_alpha=1.0)
    k = Arrays(1, cfg)
    state = AvailabilityState(deque(maxlen=4), deque(maxlen=3))
    rts = [0.002, 0.003, 1e6, 0.004, 0.001, 0.005, 0.002, 0.003, 0.006, 0.0015]
    for t, rt in enumerate(rts):
        k.tick(0.0, 0.0, 0.0, rt, now=float(t))
        want = availability_step(state, rt, 1.0)
    assert k.out[ROW["slope_response_time"], 0] == pytest.approx(naive_slope(rts[-4:]), rel=1e-12)
    assert k.out[ROW["availability_score"], 0] == pytest.approx(want, rel=1e-12)


def test_stale_and_inactive_slots_are_untouched():
    k = Arrays(3)
    k.tick([10.0, 20.0, 30.0], 10.0, 0.0, 0.01, now=1.0)
    k.active[2] = 0
    before = k.state()
    before_w = {(j, s): k.window_state(j, s) for j in range(_kernel.WIN_SERIES) for s in range(3)}
    k.tick([50.0, 60.0, 70.0], 10.0, 0.0, 0.02, valid=[0, 1, 1], now=2.0)
    after = k.state()
    names = ("fstate", "istate", "hist", "best")
    for name, b, a in zip(names, before, after):
        assert np.array_equal(b[0], a[0], equal_nan=True), name  # stale slot 0
        assert np.array_equal(b[2], a[2], equal_nan=True), name  # inactive slot 2
    for j in range(_kernel.WIN_SERIES):  # their trend windows did not move either
        for s in (0, 2):
            assert np.array_equal(before_w[(j, s)], k.window_state(j, s), equal_nan=True), (j, s)
        assert not np.array_equal(before_w[(j, 1)], k.window_state(j, 1), equal_nan=True)
    out_b, out_a = before[4], after[4]
    keep = [i for i, r in enumerate(_kernel.OUT_ROWS) if r != "weight"]
    assert np.array_equal(out_b[keep, 0], out_a[keep, 0], equal_nan=True)
    assert out_a[ROW["weight"], 2] == 0.0
    assert k.flags[1].tolist() == [1, 0, 0]  # stale flag
    assert not np.array_equal(out_b[:, 1], out_a[:, 1])


def test_nan_and_garbage_never_raise_and_keep_state_finite():
    k = Arrays(4)
    bad = [NAN, math.inf, -math.inf, -1.0]
    for t in range(30):
        takes = k.tick(bad, bad[::-1], bad, bad[1:] + bad[:1], now=float(t))
        assert 0 <= takes <= 4
    finite_rows = [ROW[r] for r in ("cpu_score", "memory_score", "network_score",
                                    "availability_score", "overall_score", "weight")]
    assert np.isfinite(k.out[finite_rows]).all()
    assert ((k.out[finite_rows[:5]] >= 0) & (k.out[finite_rows[:5]] <= 100)).all()


def test_weights_sum_to_one_over_takers():
    k = Arrays(5)
    n = k.tick([0, 50, 90, 10, 20], 0.0, 0.0, [0.01, 0.02, 0.03, NAN, 0.05], now=1.0)
    w = k.out[ROW["weight"]]
    assert n == 4 and w[3] == 0.0 and math.isclose(w.sum(), 1.0, rel_tol=1e-15)


def test_shape_mismatch_is_an_error_not_a_crash():
    k = Arrays(2)
    args = (k.params, k.fstate, k.istate, k.hist, k.best, k.out, k.cat, k.flags, k.xin)
    with pytest.raises(ValueError, match="capacity"):
        _kernel.score_tick(np.zeros(3), np.zeros(2), np.zeros(2), np.zeros(2),
                           np.ones(2, np.uint8), k.active, 0.0, *args, k.windows)
    with pytest.raises(ValueError, match="layout"):
        _kernel.score_tick(np.zeros(2), np.zeros(2), np.zeros(2), np.zeros(2),
                           np.ones(2, np.uint8), k.active, 0.0, k.params[:-1], *args[1:],
                           k.windows)
    with pytest.raises(ValueError, match="trend windows"):
        _kernel.score_tick(np.zeros(2), np.zeros(2), np.zeros(2), np.zeros(2),
                           np.ones(2, np.uint8), k.active, 0.0, *args, k.windows[:4])
    with pytest.raises(ValueError, match="trend windows disagree"):
        _kernel.score_tick(np.zeros(2), np.zeros(2), np.zeros(2), np.zeros(2),
                           np.ones(2, np.uint8), k.active, 0.0, *args,
                           _kernel.make_windows(3, 60, 4.0))


def test_periodic_recompute_runs_staggered():
    # reset_slot's countdown staggers the exact recompute; after it fires the
    # countdown restarts at the configured period
    cfg = ScorerConfig(trend_window=3, history_size=3, best_time_window=2, slow_start_window=0.0)
    period = cfg._recompute_period()
    k = Arrays(2, cfg)
    rc = _kernel.ISTATE_FIELDS["recompute"]
    k.istate[0, rc], k.istate[1, rc] = 1, 2
    k.tick(10.0, 10.0, 0.0, 0.01)
    assert k.istate[:, rc].tolist() == [period, 1]


def test_trend_windows_are_the_rolling_window_kernel():
    # one rolling-window implementation: the kernel's five trend series are
    # RollingWindow series, and a standalone RollingWindow pushed what the kernel
    # pushed (xin after each tick) holds the same bits: the slopes the scorer
    # reports and the Jacobson/Karels band its anomaly flag compares against
    cfg = ScorerConfig(trend_window=5, slow_start_window=0.0)
    cap = 300  # more than one chunk of the window kernel
    k = Arrays(cap, cfg)
    assert [type(w) for w in k.windows] == [RollingWindow] * _kernel.WIN_SERIES
    mirror = [RollingWindow(cap, 5, 1.0, _kernel.JK_ALPHA, _kernel.JK_BETA, cfg.jk_k,
                            refresh_every=_kernel.WINDOW_REFRESH)
              for _ in range(_kernel.WIN_SERIES)]
    rng = np.random.default_rng(40)
    for t in range(40):
        rt = rng.lognormal(np.log(0.01), 0.8, cap)
        rt[rng.random(cap) < 0.1] = NAN                       # failed probes
        cpu = np.where(rng.random(cap) < 0.05, NAN, rng.uniform(0, 100, cap))
        band_before = k.windows[-1].threshold.copy()
        k.tick(cpu, rng.uniform(0, 100, cap), rng.uniform(0, 1e8, cap), rt,
               valid=rng.random(cap) < 0.9, now=float(t))
        for j, w in enumerate(mirror):
            w.push(k.xin[j])
            moved = ~np.isnan(k.xin[j])
            want = np.where(w.count >= 2, w.slope, 0.0)
            assert np.array_equal(k.out[ROW["slope"] + j][moved], want[moved]), (t, j)
            assert np.array_equal(k.windows[j].threshold, w.threshold, equal_nan=True)
        answered = ~np.isnan(k.xin[_kernel.WIN_SERIES - 1])
        assert np.array_equal(k.flags[0][answered] == 1,
                              k.xin[-1][answered] > band_before[answered])
    assert k.out[ROW["slope_cpu"]].any() and k.flags[0].any()
