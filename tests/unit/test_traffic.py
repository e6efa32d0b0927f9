"""Per-tick traffic from HAProxy's counters, and the availability input it gives."""
from __future__ import annotations

import math
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.core.balancer import ServerStats
from agent.core.records import Sample
from agent.core.traffic import (
    UNLOADED,
    WINDOW,
    Baseline,
    ServerTraffic,
    TrafficState,
    availability_inputs,
    freshened,
    interval_mean_ms,
    traffic_step,
)


class SlidingSum:
    """HAProxy 2.6's server time average (`swrate_add_dynamic`, shown by `swrate_avg`)."""

    def __init__(self) -> None:
        self.total = 0
        self.count = 0

    def add(self, v_ms: int) -> None:
        n = WINDOW if self.count > WINDOW else 0
        self.total = self.total - ((self.total + n - 1) // n if n else 0) + v_ms
        self.count += 1

    @property
    def shown(self) -> int:
        w = min(self.count, WINDOW)
        return (self.total + w - 1) // w if w else 0


def resolution(c0: int, c1: int) -> float:
    """What whole-millisecond readings allow: half a unit of each sum over the
    requests the interval weighs (fewer than k once the window decays), plus 1 ms."""
    k1 = max(0, min(c1, WINDOW) - c0)
    dk = (1 - 1 / WINDOW) ** (c1 - c0 - k1)
    weight = k1 * dk + WINDOW * (1 - dk)
    return (min(c0, WINDOW) + min(c1, WINDOW)) / (2 * weight) + 1.0


@pytest.mark.parametrize("before, between, mean_before, mean_between", [
    (0, 50, 20, 20),        # first requests
    (100, 300, 10, 40),     # before the window is full
    (900, 300, 15, 60),     # crossing it
    (5000, 300, 13, 13),    # full window, steady
    (5000, 300, 13, 45),    # full window, slowed down
    (5000, 1500, 80, 12),   # recovered, more than a window
])
def test_the_interval_mean_is_recovered_from_two_readings(before, between, mean_before,
                                                          mean_between):
    rng = random.Random(before + between)
    s = SlidingSum()
    for _ in range(before):
        s.add(max(0, round(rng.gauss(mean_before, mean_before / 4))))
    c0, a0 = s.count, s.shown
    values = [max(0, round(rng.gauss(mean_between, mean_between / 4))) for _ in range(between)]
    for v in values:
        s.add(v)
    true = sum(values) / len(values)
    estimate = interval_mean_ms(c0, a0, s.count, s.shown)
    assert abs(estimate - true) <= resolution(c0, s.count), (estimate, true)


@settings(max_examples=200, deadline=None)
@given(before=st.integers(0, 4000), between=st.integers(1, 3000),
       mean=st.floats(0, 500), seed=st.integers(0, 2**16))
def test_the_interval_mean_errs_by_at_most_the_reading_resolution(before, between, mean, seed):
    rng = random.Random(seed)
    s = SlidingSum()
    for _ in range(before):
        s.add(round(rng.uniform(0, 2 * mean)))
    c0, a0 = s.count, s.shown
    values = [round(rng.uniform(0, 2 * mean)) for _ in range(between)]
    for v in values:
        s.add(v)
    estimate = interval_mean_ms(c0, a0, s.count, s.shown)
    assert estimate >= 0
    # what HAProxy's sum holds of the interval: once the window is full, older
    # requests weigh less (by (1 - 1/1024) per request after them)
    k1 = max(0, min(s.count, WINDOW) - c0)
    k2 = between - k1
    d = 1 - 1 / WINDOW
    weights = [d ** k2] * k1 + [d ** (k2 - j) for j in range(1, k2 + 1)]
    weighted = sum(w * v for w, v in zip(weights, values)) / sum(weights)
    assert abs(estimate - weighted) <= resolution(c0, s.count)


def test_no_request_between_readings_is_an_error():
    with pytest.raises(ValueError):
        interval_mean_ms(10, 5, 10, 5)


def stat(name: str, **kw) -> ServerStats:
    kw.setdefault("status", "UP")
    return ServerStats(name=name, **kw)


def reading(s: SlidingSum, **kw) -> ServerStats:
    return stat("w", requests_total=s.count,
                response_time_ms=float(s.shown) if s.count else math.nan, **kw)


def test_traffic_step_counts_rates_errors_and_estimates():
    s = SlidingSum()
    for _ in range(2000):
        s.add(13)
    state, traffic = traffic_step(TrafficState(), {"w": reading(s, rate=100, sessions=2)}, 0.0)
    first = traffic["w"]
    # first sight: no interval, HAProxy's one-second rate says it takes traffic
    assert first.carried and first.requests == 0 and first.in_flight == 2
    assert first.response_time == pytest.approx(0.013)

    for _ in range(100):  # fewer than an estimate needs at a full window: held
        s.add(40)
    state, traffic = traffic_step(state, {"w": reading(s, responses_5xx=3, response_errors=1)},
                                  1.0)
    t = traffic["w"]
    assert (t.carried, t.requests, t.rate, t.responses_5xx, t.errors) == (True, 100, 100.0, 3, 4)
    assert math.isnan(t.response_time)  # 100 of 1024: too few to tell (±5 ms), no estimate yet

    for _ in range(300):
        s.add(40)
    state, traffic = traffic_step(state, {"w": reading(s, responses_5xx=3, response_errors=1)},
                                  2.0)
    t = traffic["w"]
    assert t.requests == 300 and t.errors == 0
    assert t.response_time == pytest.approx(0.040, abs=0.002)  # the 400 requests since
    assert t.estimated
    assert t.average_response_time < 0.030  # HAProxy's own average still lags

    state, traffic = traffic_step(state, {"w": reading(s)}, 3.0)  # idle tick
    assert not traffic["w"].carried and traffic["w"].rate == 0.0
    assert traffic["w"].response_time == pytest.approx(0.040, abs=0.002)  # held
    assert not traffic["w"].estimated
    state, traffic = traffic_step(state, {"w": reading(s)}, 9.0)
    assert math.isnan(traffic["w"].response_time)  # too old to stand: unknown


def test_interval_times_are_the_intervals_means_as_they_are():
    # the embedded haproxy: counters kept cumulative by the adapter, times reset
    state, _ = traffic_step(TrafficState(), {"w": stat("w", requests_total=5000,
                                                       response_time_ms=80.0)}, 0.0,
                            interval_times=True)
    state, traffic = traffic_step(state, {"w": stat("w", requests_total=5003,
                                                    response_time_ms=13.0)}, 1.0,
                                  interval_times=True)
    t = traffic["w"]
    assert (t.requests, t.estimated, t.response_time) == (3, True, 0.013)
    state, traffic = traffic_step(state, {"w": stat("w", requests_total=5003,
                                                    response_time_ms=0.0)}, 2.0,
                                  interval_times=True)
    assert not traffic["w"].carried and traffic["w"].response_time == 0.013  # held


def test_a_slow_server_is_estimated_from_few_requests_even_at_a_full_window():
    s = SlidingSum()
    for _ in range(3000):
        s.add(15)
    state, _ = traffic_step(TrafficState(), {"w": reading(s)}, 0.0)
    for _ in range(30):
        s.add(300)  # saturated: answers in 300 ms
    state, traffic = traffic_step(state, {"w": reading(s)}, 1.0)
    assert traffic["w"].estimated
    assert traffic["w"].response_time == pytest.approx(0.300, rel=0.15)


def test_a_new_server_gets_estimates_from_few_requests():
    s = SlidingSum()
    state, _ = traffic_step(TrafficState(), {"w": reading(s)}, 0.0)
    for _ in range(16):
        s.add(30)
    state, traffic = traffic_step(state, {"w": reading(s)}, 1.0)
    assert traffic["w"].response_time == pytest.approx(0.030, abs=0.001)


def test_a_counter_that_went_down_starts_the_server_over():
    s = SlidingSum()
    for _ in range(500):
        s.add(10)
    state, _ = traffic_step(TrafficState(), {"w": reading(s)}, 0.0)
    fresh = SlidingSum()  # HAProxy restarted: the server was added again
    for _ in range(5):
        fresh.add(50)
    state, traffic = traffic_step(state, {"w": reading(fresh, rate=5)}, 1.0)
    t = traffic["w"]
    assert t.requests == 0 and t.errors == 0 and t.carried
    assert t.response_time == pytest.approx(0.050)
    assert "gone" not in traffic_step(state, {"w": reading(fresh)}, 2.0)[0].tracks


def sample(rt: float = 0.0002, cpu: float = 10.0) -> Sample:
    return Sample(cpu_percent=cpu, memory_percent=5.0, network_bps=100.0, response_time=rt)


def carried(rt: float, requests: int = 100, *, average: float | None = None, errors: int = 0,
            rate: float = 100.0, estimated: bool = True) -> ServerTraffic:
    return ServerTraffic(carried=True, estimated=estimated, requests=requests, answered=5000,
                         rate=rate, response_time=rt, average_response_time=average or rt,
                         errors=errors)


def test_idle_containers_are_fed_the_unloaded_time_and_failed_probes_nan():
    state = TrafficState(fed=frozenset({"a", "b"}))
    samples = {"a": sample(0.0003), "b": sample(math.nan), "c": sample(0.0004)}
    idle = ServerTraffic()
    state, fed = availability_inputs(state, samples, {"a": idle, "b": idle}, {}, 0.0)
    assert fed["a"].response_time == UNLOADED
    assert math.isnan(fed["b"].response_time)  # the probe got no answer: compat 0
    # not a server yet (or the balancer unread): as without traffic, never the
    # probe's own 0.4 ms, which would be a time below the unit of every other input
    assert fed["c"].response_time == UNLOADED
    assert fed["a"].cpu_percent == samples["a"].cpu_percent  # nothing else changes


def test_traffic_is_judged_by_its_slowdown_against_the_learnt_baseline():
    state = TrafficState(fed=frozenset({"a", "b", "c", "d"}))
    traffic = {
        "a": carried(0.012, rate=20.0),                    # 0.24 in flight: it teaches
        "b": carried(0.036, rate=20.0, average=0.300),     # CPU-busy: it does not
        "c": carried(0.009, rate=150.0),                   # crowded (1.35 in flight)
        "d": carried(0.008, rate=5.0, estimated=False),    # a held figure
    }
    samples = {"a": sample(cpu=20.0), "b": sample(cpu=95.0), "c": sample(), "d": sample()}
    state, fed = availability_inputs(state, samples, traffic, {}, 0.0)
    assert state.baseline.seconds == pytest.approx(0.012)
    assert fed["a"].response_time == pytest.approx(UNLOADED)
    assert fed["b"].response_time == pytest.approx(3 * UNLOADED)
    # faster than the baseline is no speed-up: the unloaded time is the least
    assert fed["c"].response_time == fed["d"].response_time == UNLOADED
    state, fed = availability_inputs(state, {"a": sample()}, {"a": carried(0.006, rate=10.0)},
                                     {}, 1.0)
    assert state.baseline.seconds == pytest.approx(0.006)  # learns lower at once


def test_without_a_baseline_only_a_busy_server_shows_waiting():
    state = TrafficState(fed=frozenset({"idle", "io"}))
    traffic = {"io": carried(0.200, rate=20.0), "idle": carried(0.200, rate=2.0, estimated=False)}
    _, fed = availability_inputs(state, {"io": sample(cpu=10.0), "idle": sample(cpu=1.0)},
                                 traffic, {}, 0.0)
    # 4 requests in flight at 10 % CPU: they wait on something scaling out does not
    # fix; nothing says they wait for a CPU
    assert fed["io"].response_time == UNLOADED and fed["idle"].response_time == UNLOADED


def test_mostly_errors_is_no_answer():
    state = TrafficState(fed=frozenset({"a"}), baseline=Baseline(0.010, 0.0))
    _, fed = availability_inputs(state, {"a": sample()}, {"a": carried(0.002, errors=51)}, {}, 0.0)
    assert math.isnan(fed["a"].response_time)
    _, fed = availability_inputs(state, {"a": sample()}, {"a": carried(0.020, errors=50)}, {}, 0.0)
    assert fed["a"].response_time == pytest.approx(2 * UNLOADED)


def test_saturated_from_the_start_the_cpu_cost_of_a_request_is_the_reference():
    # 0.5 core, 100 % of it over the tick, 20 requests answered per second: 25 ms of
    # CPU each, answered in 250 ms: they waited 9 parts in 10
    state = TrafficState(fed=frozenset({"a"}))
    state, fed = availability_inputs(state, {"a": sample(cpu=100.0)},
                                     {"a": carried(0.250, rate=20.0)}, {"a": 0.5}, 0.0)
    assert state.baseline.seconds is None
    assert fed["a"].response_time == pytest.approx(10 * UNLOADED)
    # and 20 is the most that is fed: beyond, a server is saturated whatever the figure
    for t in (1.0, 2.0):  # (two ticks: the median of the last three is fed)
        state, fed = availability_inputs(state, {"a": sample(cpu=100.0)},
                                         {"a": carried(2.5, rate=20.0)}, {"a": 0.5}, t)
    assert fed["a"].response_time == pytest.approx(20 * UNLOADED)


def test_a_server_without_traffic_keeps_its_slowdown_while_its_figure_is_fresh():
    state = TrafficState(fed=frozenset({"slow", "idle"}), baseline=Baseline(0.010, 0.0))
    traffic = {"slow": ServerTraffic(response_time=0.150),  # held: it answered 2 s ago
               "idle": ServerTraffic()}                      # nothing fresh to hold
    _, fed = availability_inputs(state, {"slow": sample(), "idle": sample()}, traffic, {}, 0.0)
    assert fed["slow"].response_time == pytest.approx(15 * UNLOADED)
    assert fed["idle"].response_time == UNLOADED


def test_the_first_answered_input_of_a_container_is_the_unloaded_time():
    state = TrafficState(baseline=Baseline(0.010, 0.0))
    state, fed = availability_inputs(state, {"n": sample()}, {"n": carried(0.050)}, {}, 0.0)
    assert fed["n"].response_time == UNLOADED and state.fed == {"n"}
    for t in (1.0, 2.0):  # then its slowdowns (the median of the last three)
        state, fed = availability_inputs(state, {"n": sample()}, {"n": carried(0.050)}, {}, t)
    assert fed["n"].response_time == pytest.approx(5 * UNLOADED, rel=1e-3)
    # a container that left is forgotten
    state, _ = availability_inputs(state, {}, {}, {}, 2.0)
    assert state.fed == frozenset()


def test_the_baseline_creeps_up_and_drops_at_once():
    b = Baseline().learnt(0.010, 0.0)
    assert b.now(0.0) == pytest.approx(0.010)
    assert b.now(1800.0) == pytest.approx(0.020)  # a factor 2 in 30 minutes
    assert b.learnt(0.015, 900.0) is b  # above the risen value: no change
    assert b.learnt(0.005, 900.0).now(900.0) == pytest.approx(0.005)
    assert Baseline().learnt(0.0, 0.0).seconds == pytest.approx(0.0005)  # sub-ms: floor


def test_the_unit_is_the_kernels_latency_floor():
    from agent.scoring import LATENCY_FLOOR

    assert UNLOADED == LATENCY_FLOOR


def test_fed_slowdowns_make_a_readable_availability_in_the_compat_kernel():
    from agent.scoring import Scorer, ScorerConfig

    scorer = Scorer(ScorerConfig(slow_start_window=0))
    for name in ("idle", "double", "triple"):
        scorer.add(name, now=0.0)
    scores = {}
    for tick in range(60):
        scores = {s.name: s for s in scorer.update({
            "idle": sample(UNLOADED), "double": sample(2 * UNLOADED if tick else UNLOADED),
            "triple": sample(3 * UNLOADED if tick else UNLOADED),
        }, now=float(tick))}
    assert scores["idle"].availability_score == pytest.approx(100.0)
    assert 30 < scores["double"].availability_score < 40  # 100 / 2^1.5 = 35
    assert 15 < scores["triple"].availability_score < 23  # 100 / 3^1.5 = 19
    w = {n: s.weight for n, s in scores.items()}
    assert w["idle"] > 2 * w["double"] > 2 * w["triple"]


def test_what_is_fed_is_the_median_of_the_last_three_slowdowns():
    state = TrafficState(fed=frozenset({"w"}), baseline=Baseline(0.010, 0.0))
    fed = []
    for t, rt in enumerate([0.010, 0.010, 0.200, 0.010, 0.010, 0.080, 0.090, 0.100]):
        state, out = availability_inputs(state, {"w": sample()},
                                         {"w": carried(rt, rate=20.0)}, {}, float(t))
        fed.append(round(out["w"].response_time / UNLOADED, 1))
    # one tick's stall of 20x moves nothing; a sustained slowdown shows at its second tick
    assert fed == [1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 8.0, 9.0]
    _, out = availability_inputs(state, {"w": sample()}, {"w": carried(0.1, errors=90)}, {}, 9.0)
    assert math.isnan(out["w"].response_time)  # a failed answer is not delayed


@pytest.mark.parametrize("name, sample_, seen, fresh", [
    # a saturated worker: its listen queue is full, so the probe missed the deadline,
    # but the balancer timed its requests and its counters arrived
    ("late probe, traffic timed", Sample(cpu_percent=100.0, memory_percent=5.0,
                                          network_bps=1.0, stale=True),
     "timed", True),
    ("late probe, no traffic", Sample(cpu_percent=10.0, memory_percent=5.0,
                                      network_bps=1.0, stale=True),
     "idle", False),
    ("late probe and counters, traffic timed", Sample(stale=True), "timed", False),
    ("late probe, traffic without a time", Sample(cpu_percent=100.0, memory_percent=5.0,
                                                  network_bps=1.0, stale=True),
     "untimed", False),
])
def test_a_late_probe_of_a_container_whose_traffic_was_timed_is_no_stale_sample(
    name, sample_, seen, fresh
):
    traffic = {
        "timed": carried(0.200, rate=20.0),
        "idle": ServerTraffic(),
        "untimed": ServerTraffic(carried=True, requests=3, rate=3.0),
    }[seen]
    state = TrafficState(fed=frozenset({"w"}), baseline=Baseline(0.010, 0.0))
    _, fed = availability_inputs(state, {"w": sample_}, {"w": traffic}, {"w": 0.5}, 0.0)
    assert fed["w"].stale is (not fresh), name
    if fresh:  # judged by its real response time: 20 × the baseline (the cap)
        assert fed["w"].response_time == pytest.approx(20 * UNLOADED)
    out = freshened({"w": sample_}, fed)
    assert out["w"].stale is (not fresh), name
    assert out["w"].cpu_percent == sample_.cpu_percent or math.isnan(sample_.cpu_percent)


def test_freshened_keeps_samples_without_a_fed_value_as_they_are():
    late = Sample(cpu_percent=50.0, stale=True)
    assert freshened({"a": late, "b": sample()}, {"b": sample()}) == {"a": late, "b": sample()}
