"""The step-load benchmark's figures (`benchmarks.step_analysis`) and the open-loop
generator's schedule across a rate change: pure logic on literal inputs."""
from __future__ import annotations

import math

import pytest

from benchmarks.open_loop import OpenLoop, Request
from benchmarks.step_analysis import (
    Check,
    Phase,
    RunRecord,
    container_seconds,
    figures,
    needed,
    phase_stats,
    reversals,
    scale_in_window,
    verdicts,
)


def up(t: float, reason: str = "avg_below_high") -> Check:
    return Check(t, "scale_up", reason, 0)


def down(t: float, reason: str = "avg_above_low") -> Check:
    return Check(t, "scale_down", reason, 0)


def none(t: float) -> Check:
    return Check(t, "none", "within_band", 0)


REVERSALS = [
    # (scenario, checks, expected direction, reversals in [10, 20))
    ("nothing decided", [none(11), none(15)], +1, 0),
    ("ups as the high hold asks", [up(11), up(15)], +1, 0),
    ("a scale-down in the high hold", [up(11), down(15)], +1, 1),
    ("down then up again in the high hold", [down(12), up(15)], +1, 2),
    ("a scale-up after the step down", [down(11), up(15), down(18)], -1, 2),
    ("outside the hold ignored", [down(5), up(25)], +1, 0),
    ("floor, ceiling and manual are not load decisions",
     [down(11, "above_max"), up(12, "below_min"), up(13, "manual")], +1, 0),
    ("no expectation: only changes count", [down(11), up(15)], 0, 1),
]


@pytest.mark.parametrize(("checks", "expected", "count"), [r[1:] for r in REVERSALS],
                         ids=[r[0] for r in REVERSALS])
def test_reversals(checks, expected, count):
    assert reversals(checks, 10.0, 20.0, expected) == count


@pytest.mark.parametrize(("rate", "capacity", "workers"), [
    (44.0, 22.0, 2), (44.1, 22.0, 3), (77.0, 22.0, 4), (1.0, 22.0, 1), (0.0, 22.0, 1),
])
def test_needed_is_the_fewest_workers_that_keep_up(rate, capacity, workers):
    assert needed(rate, capacity) == workers


def test_container_seconds_integrate_the_running_count_as_a_step_function():
    history = [(0.0, 2, 2), (10.0, 3, 3), (12.0, 3, 4), (20.0, 2, 2)]
    assert container_seconds(history, 0.0, 30.0) == 2 * 10 + 3 * 2 + 4 * 8 + 2 * 10
    assert container_seconds(history, 11.0, 13.0) == 3 + 4


def record(**kw) -> RunRecord:
    base = dict(
        policy="ours",
        phases=(Phase("baseline", 0, 10, 20), Phase("step", 10, 30, 70),
                Phase("after", 30, 60, 20)),
        requests=[], checks=[], created=[], removed=[], first_traffic={},
        history=[(0.0, 2, 2)], capacity=22.0, tick=1.0, check_period=10.0,
    )
    base.update(kw)
    return RunRecord(**base)


def test_scale_in_window_runs_from_the_first_scale_down_to_the_last_removal():
    r = record(checks=[up(15), down(40), down(50)], removed=[(42.0, "a"), (53.0, "b")])
    assert scale_in_window(r) == (40.0, 54.0)
    assert scale_in_window(record(checks=[up(15)])) is None


def test_phase_stats_count_failures_and_take_percentiles_of_the_answered():
    reqs = [Request(1.0, 200, 0.010), Request(2.0, 200, 0.030), Request(3.0, 0, 30.0),
            Request(4.0, -1, math.nan), Request(12.0, 200, 1.0)]
    stats = phase_stats(reqs, 0.0, 10.0)
    assert (stats["sent"], stats["answered_200"], stats["failed"]) == (3, 2, 2)
    assert stats["p50"] == pytest.approx(0.020)
    assert stats["achieved_rate"] == pytest.approx(0.3)


def test_figures_of_a_run_that_reacts():
    r = record(
        checks=[none(5), up(11), up(21), down(45), none(55)],
        created=[(11.1, "w3"), (21.1, "w4")], removed=[(47.0, "w4")],
        first_traffic={"w1": 0.5, "w3": 12.0, "w4": 22.0},
        history=[(0.0, 2, 2), (11.1, 3, 3), (21.1, 4, 4), (45.0, 3, 4), (47.0, 3, 3)],
        requests=[Request(44.0, 0, 4.0), Request(46.0, 200, 0.1), Request(20.0, 0, 1.0)],
    )
    f = figures(r)
    assert f["seen_check_s"] == 1.0 and f["decision_s"] == 1.0
    assert f["decision_ticks_after_seeing"] == 0.0
    assert f["traffic_after_decision_s"] == pytest.approx(1.0)
    assert f["needed"] == {"baseline": 1, "step": 4, "after": 1}
    assert (f["peak_running"], f["overshoot"]) == (4, 0)
    assert f["reversals"] == {"baseline": 0, "step": 0, "after": 0}
    # the failure open across the window's start counts; the one at t=20 does not
    assert f["scale_in"]["failed"] == 1 and f["failed"] == 2
    assert f["seen_and_answered"]


def test_verdicts_judge_ours_and_compare_with_the_others():
    fast = figures(record(checks=[up(11), down(40)], created=[(11.2, "w3")],
                          removed=[(41.0, "w3")], first_traffic={"w3": 12.0},
                          history=[(0.0, 2, 2), (11.2, 4, 4), (41.0, 3, 3)],
                          requests=[Request(15.0, 200, 0.2), Request(40.5, 200, 0.1)]))
    slow = figures(record(checks=[none(11), up(21)], history=[(0.0, 2, 2), (21.0, 6, 6)],
                          requests=[Request(15.0, 200, 2.0)]))
    rows = {name: verdict for name, _, verdict in verdicts({"ours": fast, "hpa": slow})}
    assert all(v.startswith(("PASS", "(info)")) for v in rows.values()), rows
    rows = {name: verdict for name, _, verdict in verdicts({"ours": slow, "hpa": fast})}
    assert rows["ours: lowest p99 in the step-up phase"].startswith("MISS")
    assert rows["ours: scale-up decided, ticks after the check that sees the step"].startswith("MISS")
    # no scale-in in the hold is no evidence of a clean one
    assert rows["ours: failed requests during scale-in"].startswith("MISS")


# A step at t=10 to 70 req/s (needed 4 at 22/s), ticks of 1 s, checks every 10 s.
REACTIONS = [
    # (scenario, checks, created, first traffic,
    #  (seen_check_s, decision_s, ticks after seeing, traffic_after_decision_s))
    ("decided at the check that sees the step", [none(5), up(15)], [(15.5, "w3")],
     {"w3": 16.0}, (5.0, 5.0, 0.0, 1.0)),
    ("a check within the step's first tick does not see it",
     [none(10.5), none(12), up(14)], [(14.2, "w3")], {"w3": 15.0}, (2.0, 4.0, 2.0, 1.0)),
    ("decided a check later", [none(11), up(21)], [(21.3, "w3")], {"w3": 23.0},
     (1.0, 11.0, 10.0, 2.0)),
    ("never decided", [none(11), none(21)], [], {}, (1.0, None, None, None)),
    ("decided, its container never took traffic", [up(11)], [(11.2, "w3")], {},
     (1.0, 1.0, 0.0, None)),
    ("the floor's scale-up is not the answer", [up(11, "below_min"), up(21)],
     [(11.1, "w2"), (21.2, "w3")], {"w2": 11.5, "w3": 22.0}, (1.0, 11.0, 10.0, 1.0)),
]


@pytest.mark.parametrize(("checks", "created", "first", "expected"),
                         [r[1:] for r in REACTIONS], ids=[r[0] for r in REACTIONS])
def test_reaction_to_the_step(checks, created, first, expected):
    f = figures(record(checks=checks, created=created, first_traffic=first))
    got = (f["seen_check_s"], f["decision_s"], f["decision_ticks_after_seeing"],
           f["traffic_after_decision_s"])
    assert tuple(None if g is None else round(g, 6) for g in got) == expected


OVERSHOOTS = [
    # (scenario, history, (peak running, overshoot, reached needed s after the step))
    ("exactly what is needed", [(0.0, 2, 2), (12.0, 4, 4)], (4, 0, 2.0)),
    ("two more than needed", [(0.0, 2, 2), (12.0, 4, 4), (22.0, 6, 6)], (6, 2, 2.0)),
    ("never reached", [(0.0, 2, 2), (12.0, 3, 3)], (3, -1, None)),
    ("a peak after the step down counts", [(0.0, 2, 2), (25.0, 4, 4), (35.0, 5, 5)],
     (5, 1, 15.0)),
]


@pytest.mark.parametrize(("history", "expected"), [r[1:] for r in OVERSHOOTS],
                         ids=[r[0] for r in OVERSHOOTS])
def test_overshoot_is_the_most_running_minus_the_needed(history, expected):
    f = figures(record(history=history))
    assert (f["peak_running"], f["overshoot"], f["reached_needed_s"]) == expected


SCALE_INS = [
    # (scenario, checks, removed, requests, (requests in the window, failed in it) or None)
    ("clean", [down(40)], [(42.0, "w4")], [Request(41.0, 200, 0.05)], (1, 0)),
    ("one cut by the removal", [down(40)], [(42.0, "w4")],
     [Request(41.0, 200, 0.05), Request(41.5, 0, 0.6)], (2, 1)),
    ("open across the window's start", [down(40)], [(42.0, "w4")],
     [Request(39.0, 0, 2.0)], (1, 1)),
    ("finished before the window", [down(40)], [(42.0, "w4")], [Request(35.0, 0, 1.0)],
     (0, 0)),
    ("no scale-down: no window", [none(40)], [], [Request(41.0, 0, 1.0)], None),
    ("a scale-down during the step is not the scale-in", [down(15)], [(16.0, "w3")],
     [Request(15.5, 0, 1.0)], None),
]


@pytest.mark.parametrize(("checks", "removed", "requests", "expected"),
                         [r[1:] for r in SCALE_INS], ids=[r[0] for r in SCALE_INS])
def test_failed_requests_during_scale_in(checks, removed, requests, expected):
    f = figures(record(checks=checks, removed=removed, requests=requests))
    si = f["scale_in"]
    assert (None if si is None else (si["requests"], si["failed"])) == expected


def test_open_loop_keeps_its_schedule_across_a_rate_change():
    gen = OpenLoop(1, 10.0)
    gen._anchor = (100.0, 0)
    assert [gen._due(i) for i in range(3)] == [100.0, 100.1, 100.2]
    gen.set_rate(2.0)
    assert gen._due(3) == pytest.approx(100.3)  # the change applies from the next one on
    assert gen._due(4) == pytest.approx(100.8) and gen.rate == 2.0
    with pytest.raises(ValueError):
        gen.set_rate(0)
