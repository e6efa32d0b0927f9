"""SPEC §3 compat formulas and our documented edge cases, worked out by hand.

Each test drives `agent.scoring.Scorer` through a short, literal sequence; the
comments carry the arithmetic so a reader can check the expected numbers.
"""
from __future__ import annotations

import math

import pytest

from agent.core.records import Category, Sample
from agent.scoring import Scorer, ScorerConfig

NAN = math.nan


def ok(rt: float, cpu: float = 0.0, mem: float = 0.0, net: float = 0.0) -> Sample:
    return Sample(cpu_percent=cpu, memory_percent=mem, network_bps=net, response_time=rt)


def run(times: list[float], config: ScorerConfig | None = None) -> list[float]:
    """Availability score after each response time of `times` (one container)."""
    s = Scorer(config)
    s.add("a", now=0.0)
    return [s.update({"a": ok(t)}, now=float(i + 1))[0].availability_score
            for i, t in enumerate(times)]


def test_cpu_memory_network_scores_are_clamped_headroom():
    s = Scorer()
    s.add("a", now=0.0)
    # cpu 250 % (2.5 cores) -> 100 - 250 clamped to 0; memory 30 % -> 70;
    # network 25e6 B/s of 125e6 -> 20 % used -> 80
    [r] = s.update({"a": ok(0.01, cpu=250.0, mem=30.0, net=25e6)}, now=1.0)
    assert (r.cpu_score, r.memory_score, r.network_score) == (0.0, 70.0, 80.0)
    # negative readings clamp to 100
    [r] = s.update({"a": ok(0.01, cpu=-5.0, mem=-1.0, net=-1.0)}, now=2.0)
    assert (r.cpu_score, r.memory_score, r.network_score) == (100.0, 100.0, 100.0)


def test_availability_three_answers_by_hand():
    # defaults: HISTORY 20, BEST 10, alpha 0.2, thr starts 1.0, ema starts 100
    # t=0.1: hist [.1], best [.1], avg .1, thr = max(.5, .9*1 + .15*.1) = .915
    #        eff = .3*.1 + .7*.1 = .1, base = 100*(.1/.1)^1.5 = 100, eff < thr: no
    #        penalty; raw 100; ema = .2*100 + .8*100 = 100
    # t=0.2: hist [.1 .2], best stays [.1] (.2 is not below .1), avg .15,
    #        thr = .9*.915 + .15*.15 = .846, eff = .06 + .105 = .165,
    #        base = 100*(.1/.165)^1.5 = 47.18175419160745; raw = base;
    #        ema = .2*47.18175 + .8*100 = 89.43635083832149
    # t=0.05: hist [.1 .2 .05], best [.1 .05] (mean .075), avg .35/3 = .116667,
    #        thr = .9*.846 + .15*.116667 = .7789, eff = .015 + .7*.116667 = .096667,
    #        base = 100*(.075/.096667)^1.5 = 68.34028416765948;
    #        ema = .2*68.34028 + .8*89.43635 = 85.21713750418908
    assert run([0.1, 0.2, 0.05]) == pytest.approx(
        [100.0, 89.43635083832149, 85.21713750418908], rel=1e-12)


def test_availability_penalty_above_threshold():
    # alpha 1 makes the score the raw value. t=2: avg 2, thr = max(.5, .9 + .15*2) = 1.2,
    # eff = 2 > thr: penalty = 20*(1 - e^-0.8) = 11.013420717655569; base 100
    cfg = ScorerConfig(ema_alpha=1.0)
    assert run([2.0], cfg) == pytest.approx([88.98657928234444], rel=1e-12)


def test_availability_trend_over_ten_samples():
    # alpha 1; after [.1]*5 + [.2]*5: avg .15, best [.1], eff = .06 + .105 = .165 which is
    # below the threshold's floor .5, so no penalty; base = 100*(20/33)^1.5 = 47.18175;
    # trend = (older - recent)/older = (.1 - .2)/.1 = -1 -> raw = base - 10
    cfg = ScorerConfig(ema_alpha=1.0)
    got = run([0.1] * 5 + [0.2] * 5, cfg)
    assert got[-1] == pytest.approx(37.18175419160745, rel=1e-12)
    # with 9 samples there is no trend term yet
    assert run([0.1] * 5 + [0.2] * 4, cfg)[-1] > got[-1] + 9.0


def test_zero_times_base_is_100_and_zero_older_means_no_trend():
    cfg = ScorerConfig(ema_alpha=1.0)
    # all zero: effective 0 -> ratio defined as 1 -> base 100; older mean 0 -> trend 0
    assert run([0.0] * 12, cfg) == [100.0] * 12
    # [0]*5 + [.1]*5: older = 0 -> trend 0 (the prototype divided by zero);
    # best [0] -> base 0 -> raw 0, a number, not NaN
    assert run([0.0] * 5 + [0.1] * 5, cfg)[-1] == 0.0


def test_best_times_drop_oldest_when_full():
    # BEST_TIME_WINDOW 2, alpha 1: times 4, 3, 2 -> best [3, 2] (4 dropped), mean 2.5;
    # history [4 3 2], avg 3; eff = .6 + 2.1 = 2.7; thr: 1 -> max(.5,.9+.6)=1.5 ->
    # 1.35+.525=1.875 -> 1.6875+.45=2.1375; penalty = 20*(1-e^-(2.7-2.1375))
    cfg = ScorerConfig(ema_alpha=1.0, best_time_window=2)
    base = 100.0 * (2.5 / 2.7) ** 1.5
    penalty = 20.0 * (1.0 - math.exp(-(2.7 - 2.1375)))
    assert run([4.0, 3.0, 2.0], cfg)[-1] == pytest.approx(base - penalty, rel=1e-9)


def test_no_answer_scores_zero_and_leaves_state_alone():
    s = Scorer()
    s.add("a", now=0.0)
    s.update({"a": ok(0.1)}, now=1.0)
    [r] = s.update({"a": ok(NAN)}, now=2.0)
    assert r.availability_score == 0.0
    assert r.weight == 0.0  # last probe failed: no traffic
    [r] = s.update({"a": ok(0.2)}, now=3.0)
    # continues from the EMA as if the failed tick never happened (see the hand test)
    assert r.availability_score == pytest.approx(89.43635083832149, rel=1e-12)
    # an infinite time is no answer too
    [r] = s.update({"a": ok(math.inf)}, now=4.0)
    assert r.availability_score == 0.0


def test_overall_is_clamped_weighted_sum():
    # weights need not sum to 1: 0.5+0.5+0.5+0.5 = 2 -> 2*80 = 160 -> clamped to 100
    cfg = ScorerConfig(cpu_weight=0.5, memory_weight=0.5, network_weight=0.5,
                       availability_weight=0.5)
    s = Scorer(cfg)
    s.add("a", now=0.0)
    [r] = s.update({"a": ok(0.01, cpu=20.0, mem=20.0, net=25e6)}, now=1.0)
    assert r.overall_score == 100.0
    # defaults: .35*60 + .25*50 + .15*80 + .25*100 = 21 + 12.5 + 12 + 25 = 70.5
    s = Scorer()
    s.add("a", now=0.0)
    [r] = s.update({"a": ok(0.01, cpu=40.0, mem=50.0, net=25e6)}, now=1.0)
    assert r.overall_score == pytest.approx(70.5, rel=1e-12)
    assert r.category is Category.LU


def cpu_only(**kw: float) -> Scorer:
    """A scorer whose overall score is exactly the cpu score."""
    s = Scorer(ScorerConfig(cpu_weight=1.0, memory_weight=0.0, network_weight=0.0,
                            availability_weight=0.0, **kw))
    s.add("a", now=0.0)
    return s


@pytest.mark.parametrize(
    ("scores", "categories"),
    [
        pytest.param([70.0, 69.99, 40.0, 39.99, 70.0], ["LU", "MU", "MU", "HU", "LU"],
                     id="compat-boundaries"),
        pytest.param([75.0, 70.0, 40.0, 45.0, 39.99, 40.0], ["LU", "LU", "MU", "MU", "HU", "MU"],
                     id="exactly-on-a-boundary-stays-above"),
    ],
)
def test_category_boundaries_without_hysteresis(scores, categories):
    s = cpu_only()
    got = [s.update({"a": ok(0.01, cpu=100.0 - x)}, now=i + 1.0)[0].category
           for i, x in enumerate(scores)]
    assert [str(c) for c in got] == categories


def test_category_hysteresis():
    # m = 5: leave LU below 65, enter LU from MU at >= 75; leave HU at >= 45, enter HU < 35
    s = cpu_only(hysteresis=5.0)
    seq = [(75, "LU"), (68, "LU"), (65, "LU"), (64, "MU"), (40, "MU"), (35, "MU"), (44.99, "MU"), (72, "MU"), (75, "LU"), (36, "MU"),
           (38, "MU"), (34, "HU"), (44, "HU"), (45, "MU"), (20, "HU"), (80, "LU")]
    for i, (score, expected) in enumerate(seq):
        [r] = s.update({"a": ok(0.01, cpu=100.0 - score)}, now=i + 1.0)
        assert str(r.category) == expected, (i, score)


def test_unmarking_a_container_that_is_not_sundown_changes_nothing():
    # the runtime re-asserts every container's mark each tick; that must not reset
    # the hysteresis: at 66 with m = 5 the container stays LU (plain would say MU)
    s = cpu_only(hysteresis=5.0)
    s.update({"a": ok(0.01, cpu=25.0)}, now=1.0)
    [r] = s.update({"a": ok(0.01, cpu=34.0)}, now=2.0)
    assert r.category is Category.LU
    for i in range(3):
        s.set_sundown("a", False)
        [r] = s.update({"a": ok(0.01, cpu=34.0)}, now=3.0 + i)
        assert r.category is Category.LU


def test_init_until_first_complete_sample_and_nan_metric_keeps_score():
    s = Scorer()
    s.add("a", now=0.0)
    # first CPU reading has no delta (NaN): still INIT, cpu score held at 100
    [r] = s.update({"a": Sample(NAN, 10.0, 0.0, 0.01)}, now=1.0)
    assert r.category is Category.INIT and r.cpu_score == 100.0 and math.isnan(r.forecast)
    # complete but the probe did not answer: still INIT
    [r] = s.update({"a": Sample(10.0, 10.0, 0.0, NAN)}, now=2.0)
    assert r.category is Category.INIT
    [r] = s.update({"a": Sample(10.0, 10.0, 0.0, 0.01)}, now=3.0)
    assert r.category is Category.LU and r.forecast == r.overall_score
    # a NaN metric later keeps that metric's previous score
    [r] = s.update({"a": Sample(NAN, 20.0, NAN, 0.01)}, now=4.0)
    assert (r.cpu_score, r.memory_score, r.network_score) == (90.0, 80.0, 100.0)


def test_stale_sample_changes_nothing():
    s = Scorer()
    s.add("a", now=0.0)
    s.add("b", now=0.0)
    first = s.update({"a": ok(0.01, cpu=10.0), "b": ok(0.02, cpu=50.0)}, now=40.0)
    d0 = s.detail("a")
    # "a" missing from the samples, then explicitly stale
    for now, samples in ((41.0, {"b": ok(0.03, cpu=60.0)}),
                         (42.0, {"a": Sample(1.0, 1.0, 1.0, 9.0, stale=True)})):
        r = s.update(samples, now=now)
        assert r[0].stale and not first[0].stale
        for field in ("cpu_score", "memory_score", "network_score", "availability_score",
                      "overall_score", "category", "slope", "forecast", "anomaly"):
            assert getattr(r[0], field) == getattr(first[0], field), field
        assert s.detail("a") == d0
        assert r[0].weight > 0  # its last probe answered: it keeps its share


def test_sundown_is_sticky_and_gets_no_traffic():
    s = Scorer()
    s.add("a", now=0.0)
    s.add("b", now=0.0)
    s.update({"a": ok(0.01), "b": ok(0.01)}, now=100.0)
    s.set_sundown("a")
    for i in range(3):
        ra, rb = s.update({"a": ok(0.01), "b": ok(0.01)}, now=101.0 + i)
        assert ra.category is Category.SUNDOWN and ra.weight == 0.0 and rb.weight == 1.0
    s.set_sundown("a", False)
    ra, rb = s.update({"a": ok(0.01), "b": ok(0.01)}, now=110.0)
    assert ra.category is Category.LU and ra.weight == pytest.approx(0.5)


def test_jacobson_karels_band_flags_against_the_band_before_the_sample():
    # t1 = .1: SRTT .1, RTTVAR .05 -> band = .1 + 4*.05 = .3
    # t2 = .31 > .3 -> anomaly; RTTVAR = .75*.05 + .25*|.1 - .31| = .09,
    #                 SRTT = .875*.1 + .125*.31 = .12625 -> band .48625
    # t3 = .48 < .48625 -> no anomaly
    s = Scorer()
    s.add("a", now=0.0)
    flags = [s.update({"a": ok(t)}, now=i + 1.0)[0].anomaly for i, t in enumerate([0.1, 0.31])]
    assert flags == [False, True]
    d = s.detail("a")
    assert (d.srtt, d.rttvar) == pytest.approx((0.12625, 0.09), rel=1e-12)
    assert d.band == pytest.approx(0.48625, rel=1e-12)
    assert not s.update({"a": ok(0.48)}, now=3.0)[0].anomaly
    assert not s.update({"a": ok(NAN)}, now=4.0)[0].anomaly  # a failure, not an anomaly


def test_peak_ewma_jumps_up_and_decays_down():
    # .01 at t=0; .05 at t=1 jumps to .05; .01 at t=11 (dt 10 = tau):
    # .05*e^-1 + .01*(1 - e^-1) = .01 + .04/e = .024715177646857694
    s = Scorer(ScorerConfig(latency_decay=10.0))
    s.add("a", now=0.0)
    for now, t in ((0.0, 0.01), (1.0, 0.05)):
        s.update({"a": ok(t)}, now=now)
    assert s.detail("a").peak_latency == 0.05
    s.update({"a": ok(0.01)}, now=11.0)
    assert s.detail("a").peak_latency == pytest.approx(0.024715177646857694, rel=1e-12)


@pytest.mark.parametrize(
    ("aggression", "age_b", "factor_b"),
    [
        pytest.param(1.0, 15.0, 0.5, id="linear-half-way"),
        pytest.param(2.0, 15.0, 0.5 ** 0.5, id="aggressive-half-way"),
        pytest.param(1.0, 1.0, 0.1, id="min-fraction"),
        pytest.param(1.0, 30.0, 1.0, id="window-over"),
    ],
)
def test_slow_start_shape(aggression, age_b, factor_b):
    # equal scores and latencies: the weights are 1 : factor_b
    s = Scorer(ScorerConfig(slow_start_window=30.0, slow_start_aggression=aggression,
                            slow_start_min_fraction=0.1))
    s.add("a", now=-100.0)
    s.add("b", now=100.0 - age_b)
    ra, rb = s.update({"a": ok(0.01), "b": ok(0.01)}, now=100.0)
    assert rb.weight / ra.weight == pytest.approx(factor_b, rel=1e-12)
    assert ra.weight + rb.weight == pytest.approx(1.0, rel=1e-15)


def test_weights_prefer_headroom_and_low_latency():
    s = Scorer(ScorerConfig(slow_start_window=0.0))
    for n in "abc":
        s.add(n, now=0.0)
    # equal latency: a has overall 100 - .35*50 = 82.5 versus c's 100
    ra, rb, rc = s.update({"a": ok(0.01, cpu=50.0), "b": ok(0.02), "c": ok(0.01)}, now=1.0)
    assert ra.weight / rc.weight == pytest.approx((82.5 / 100.0) ** 2, rel=1e-12)
    assert rb.weight / rc.weight == pytest.approx(0.5, rel=1e-12)  # twice the latency
    assert ra.weight + rb.weight + rc.weight == pytest.approx(1.0, rel=1e-15)


def test_no_traffic_anywhere_means_all_weights_zero():
    s = Scorer()
    s.add("a", now=0.0)
    s.add("b", now=0.0)
    [ra, rb] = s.update({"a": ok(NAN), "b": ok(NAN)}, now=1.0)  # INIT, never answered
    assert (ra.weight, rb.weight) == (0.0, 0.0)
    s.update({"a": ok(0.01), "b": ok(0.01)}, now=2.0)
    s.set_sundown("a")
    [ra, rb] = s.update({"a": ok(0.01), "b": ok(NAN)}, now=3.0)
    assert (ra.weight, rb.weight) == (0.0, 0.0)


def test_saturated_pool_still_routes():
    # every container at overall 0 would give 0/0; the 0.01 headroom floor keeps them
    s = cpu_only(slow_start_window=0.0)
    s.add("b", now=0.0)
    ra, rb = s.update({"a": ok(0.01, cpu=100.0), "b": ok(0.01, cpu=100.0)}, now=1.0)
    assert ra.overall_score == 0.0 and (ra.weight, rb.weight) == (0.5, 0.5)
