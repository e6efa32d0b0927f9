"""Table-driven tests of the pure tick plan (agent.core.plan, agent.core.pool):
one named scenario per row.

NOW is the wall clock (epoch seconds: SUNDOWN marks, drain timeout, policy
state); T0 is the monotonic clock of the tick (scale-check period only).
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field, replace
from typing import Any

import pytest

from agent.core.errors import ConfigError, ContainerNotFound
from agent.core.plan import (
    Plan,
    create_failed_event,
    created_event,
    engine_back_event,
    engine_down_event,
    plan_manual_drain,
    plan_manual_scale,
    plan_tick,
    scale_check_due,
)
from agent.core.policy import PolicyConfig, PolicyState
from agent.core.pool import (
    DEAD_STATES,
    IDLE_NETWORK_BPS,
    PoolState,
    clamp_desired,
    drained_names,
    is_drained,
)
from agent.core.records import Category, ContainerInfo, ContainerScore, Sample

NOW = 1_700_000_000.0
T0 = 500.0
PERIOD = 10.0
POLICY = PolicyConfig(
    min_containers=2, max_containers=6, high_threshold=55.0, low_threshold=80.0,
    critical_threshold=20.0, cooldown=5.0, scale_step=1, stabilization_window=0.0,
    flap_guard=True, predictive=False, drain_timeout=30.0,
    scale_up_sizing="step",  # the compat one-step scale-up: the rows count single steps
)


def category_of(score: float) -> Category:
    if score >= 70:
        return Category.LU
    return Category.MU if score >= 40 else Category.HU


@dataclass(frozen=True)
class C:
    """One container of a scenario."""

    name: str
    score: float | None = 70.0  # None: not scored yet (INIT)
    status: str = "running"
    sundown: float | None = None  # wall time of its SUNDOWN mark
    drained: bool = False
    stale: bool = False
    created: float = 0.0


def pool_of(*cs: C, desired: int, due: bool = False, engine_error: str | None = None,
            policy: PolicyState | None = None) -> PoolState:
    infos = {c.name: ContainerInfo(name=c.name, id=f"id-{c.name}", image="img", status=c.status,
                                   created=c.created, host_port=30000 + i)
             for i, c in enumerate(cs)}
    running = [c for c in cs if c.status == "running"]
    scores = {c.name: ContainerScore(
        name=c.name, cpu_score=c.score, memory_score=c.score, network_score=c.score,
        availability_score=c.score, overall_score=c.score, category=category_of(c.score),
        id=f"id-{c.name}") for c in running if c.score is not None}
    samples = {c.name: Sample(network_bps=0.0 if c.drained else 1e6, stale=c.stale)
               for c in running}
    return PoolState(
        policy=policy if policy is not None else PolicyState(desired=desired),
        containers=infos, samples=samples, scores=scores,
        drained=frozenset(c.name for c in running if c.drained),
        sundown={c.name: c.sundown for c in cs if c.sundown is not None},
        last_check=None if due else T0 - 1.0,
        engine_error=engine_error,
    )


def tick(pool: PoolState, policy: PolicyConfig = POLICY) -> Plan:
    return plan_tick(pool, policy, now=NOW, started=T0, check_period=PERIOD)


def strict_json(plan: Plan) -> None:
    """Every ledger entry and reply of a plan is strict JSON."""
    for event in (*plan.events, *(r.event for r in plan.removals)):
        json.dumps(dict(event.data), allow_nan=False)
        assert event.data["message"]
    if plan.reply is not None:
        json.dumps(dict(plan.reply), allow_nan=False)


# --------------------------------------------------------------------------- the tick


@dataclass
class Row:
    id: str
    pool: PoolState
    removals: list[tuple[str, str, str]] = field(default_factory=list)  # name, reason, kind
    marks: tuple[str, ...] = ()
    creations: list[tuple[int, str]] = field(default_factory=list)
    events: tuple[str, ...] = ()
    decision: str | None = None  # reason
    write_ahead: bool = False
    desired: int | None = None  # after the plan; None: unchanged


THREE = (C("c1", created=1), C("c2", created=2), C("c3", created=3))

TICK_ROWS = [
    Row("steady_nothing_to_do", pool_of(*THREE, desired=3)),
    # --- dead states: removed; reconcile replaces unless it was draining ------------------
    Row("dead_exited_replaced", pool_of(C("c1", status="exited"), *THREE[1:], desired=3),
        removals=[("c1", "dead", "replaced")], creations=[(1, "reconcile")]),
    Row("dead_dead_replaced", pool_of(C("c1", status="dead"), *THREE[1:], desired=3),
        removals=[("c1", "dead", "replaced")], creations=[(1, "reconcile")]),
    Row("dead_never_started_replaced", pool_of(C("c1", status="created"), *THREE[1:], desired=3),
        removals=[("c1", "dead", "replaced")], creations=[(1, "reconcile")]),
    Row("swarm_worker_on_a_down_node_replaced",
        pool_of(C("c1", status="lost"), *THREE[1:], desired=3),
        removals=[("c1", "dead", "replaced")], creations=[(1, "reconcile")]),
    Row("dead_while_draining_removed_only",
        pool_of(C("c1", status="exited", sundown=NOW - 5), *THREE[1:], desired=2),
        removals=[("c1", "dead", "removed")]),
    Row("paused_not_dead_but_not_active", pool_of(C("c1", status="paused"), *THREE[1:], desired=3),
        creations=[(1, "reconcile")]),
    # --- drained vs drain timeout ----------------------------------------------------------
    Row("drained_removed", pool_of(*THREE[:2], C("c3", sundown=NOW - 1, drained=True), desired=2),
        removals=[("c3", "drained", "removed")]),
    Row("busy_sundown_waits", pool_of(*THREE[:2], C("c3", sundown=NOW - 29.9), desired=2)),
    Row("drain_timeout_boundary", pool_of(*THREE[:2], C("c3", sundown=NOW - 30), desired=2),
        removals=[("c3", "drain_timeout", "removed")]),
    Row("drained_but_active_stays", pool_of(C("c1", drained=True), *THREE[1:], desired=3)),
    Row("floor_drain_gets_a_replacement", pool_of(C("c1", sundown=NOW - 1), THREE[1], desired=2),
        creations=[(1, "reconcile")]),
    # --- scale check due / not due -------------------------------------------------------
    Row("check_due_decides", pool_of(*THREE, desired=3, due=True), events=("scale_check",),
        decision="within_band", write_ahead=True),
    Row("check_not_due_high_load_waits",
        pool_of(*(replace(c, score=30.0) for c in THREE), desired=3)),
    Row("scale_up_not_doubled_by_reconcile",
        pool_of(*(replace(c, score=30.0) for c in THREE), desired=3, due=True),
        creations=[(1, "avg_below_high")], events=("scale_check",), decision="avg_below_high",
        write_ahead=True, desired=4),
    Row("scale_up_plus_reconcile_shortfall",
        pool_of(*(replace(c, score=30.0) for c in THREE), desired=4, due=True),
        creations=[(1, "avg_below_high"), (1, "reconcile")], events=("scale_check",),
        decision="avg_below_high", write_ahead=True, desired=5),
    Row("scale_down_marks_newest_of_ties",
        pool_of(*(replace(c, score=90.0) for c in THREE), C("c4", 90.0, created=4),
                desired=4, due=True),
        marks=("c4",), events=("scale_check",), decision="avg_above_low", write_ahead=True,
        desired=3),
    Row("decision_sees_pool_without_removed",
        pool_of(C("c0", status="exited"), *(replace(c, score=30.0) for c in THREE),
                desired=4, due=True),
        removals=[("c0", "dead", "replaced")], creations=[(1, "avg_below_high"), (1, "reconcile")],
        events=("scale_check",), decision="avg_below_high", write_ahead=True, desired=5),
    # --- reconcile, both ways ---------------------------------------------------------------
    Row("reconcile_short_creates", pool_of(*THREE[:2], desired=4), creations=[(2, "reconcile")]),
    Row("reconcile_excess_highest_score_first",
        pool_of(C("c1", 60.0), C("c2", 95.0), C("c3", 75.0), C("c4", 90.0), desired=2),
        marks=("c2", "c4"), events=("reconcile",), write_ahead=True),
    Row("reconcile_excess_init_last",
        pool_of(C("c1", None, created=9), C("c2", 60.0), C("c3", 50.0), desired=2),
        marks=("c2",), events=("reconcile",), write_ahead=True),
    Row("reconcile_excess_takes_init_when_needed",
        pool_of(C("c1", None), C("c2", None), C("c3", 50.0), desired=1),
        marks=("c3", "c1"), events=("reconcile",), write_ahead=True),
    Row("reconcile_excess_fresh_before_stale",
        pool_of(C("c1", 99.0, stale=True), C("c2", 60.0), C("c3", 50.0), desired=2),
        marks=("c2",), events=("reconcile",), write_ahead=True),
    Row("reconcile_excess_ties_newest_first",
        pool_of(C("c1", 80.0, created=1), C("c2", 80.0, created=5), C("c3", 80.0, created=3),
                desired=2),
        marks=("c2",), events=("reconcile",), write_ahead=True),
    Row("reconcile_ignores_draining", pool_of(*THREE[:2], C("c3", sundown=NOW - 1), desired=2)),
    # --- the engine did not answer: actuation paused ------------------------------------------
    Row("engine_down_plans_nothing",
        pool_of(C("c0", status="exited"), *THREE, C("c4", sundown=NOW - 99, drained=True),
                desired=1, due=True, engine_error="engine unreachable")),
]


@pytest.mark.parametrize("row", TICK_ROWS, ids=[r.id for r in TICK_ROWS])
def test_plan_tick(row: Row) -> None:
    plan = tick(row.pool)
    assert [(r.info.name, r.reason, r.event.kind) for r in plan.removals] == row.removals
    assert plan.marks == row.marks
    assert [(c.count, c.reason) for c in plan.creations] == row.creations
    assert tuple(e.kind for e in plan.events) == row.events
    assert (plan.decision.reason if plan.decision else None) == row.decision
    assert plan.write_ahead is row.write_ahead
    desired = row.pool.desired if row.desired is None else row.desired
    assert plan.state.desired == desired
    # marks carry the wall time of this tick; older marks keep theirs
    for name in plan.marks:
        assert plan.state.sundown[name] == NOW
    for name, since in row.pool.sundown.items():
        assert plan.state.sundown[name] == since
    # the state is the one written ahead: engine actions have not happened yet
    assert plan.state.containers == row.pool.containers
    if plan.decision is not None:
        assert plan.state.last_check == T0
        assert plan.state.last_decision == plan.decision.to_event()
        assert plan.state.policy == plan.decision.state
    else:
        assert plan.state.last_check == row.pool.last_check
    strict_json(plan)


def test_every_removal_reason_and_dead_state_is_exercised() -> None:
    reasons = {r[1] for row in TICK_ROWS for r in row.removals}
    assert reasons == {"dead", "drained", "drain_timeout"}
    statuses = {c.status for row in TICK_ROWS for c in row.pool.containers.values()}
    assert DEAD_STATES <= statuses


@pytest.mark.parametrize(
    ("pool", "message"),
    [
        (pool_of(C("c1", status="exited"), desired=2),
         "c1 was exited; removed, reconcile replaces it"),
        (pool_of(C("c1", sundown=NOW - 1, drained=True), desired=2), "c1 removed after draining"),
        (pool_of(C("c1", sundown=NOW - 31), desired=2),
         "c1 removed after draining (DRAIN_TIMEOUT 30s)"),
    ],
    ids=["dead", "drained", "drain_timeout"],
)
def test_removal_messages(pool: PoolState, message: str) -> None:
    (removal,) = tick(pool).removals
    assert removal.event.data["message"] == message
    assert removal.info is pool.containers["c1"]


def test_reconcile_event_names_the_victims() -> None:
    plan = tick(pool_of(C("c1", 60.0), C("c2", 95.0), C("c3", 75.0), desired=2))
    (event,) = plan.events
    assert dict(event.data) == {
        "sundown": ["c2"],
        "message": "3 active containers for a desired 2; draining c2",
    }


def test_scale_check_event_is_the_decision_record() -> None:
    plan = tick(pool_of(*(replace(c, score=30.0) for c in THREE), desired=3, due=True))
    assert plan.decision is not None
    assert dict(plan.events[0].data) == plan.decision.to_event()
    assert plan.decision.inputs["avg"] == 30.0


def test_a_plan_is_a_value_the_pool_is_untouched() -> None:
    pool = pool_of(C("c0", status="exited"), C("c1", 60.0), C("c2", 95.0), C("c3", 75.0),
                   desired=2, due=True)
    before = (dict(pool.containers), dict(pool.sundown), pool.policy, pool.last_check)
    assert tick(pool) == tick(pool)
    assert (dict(pool.containers), dict(pool.sundown), pool.policy, pool.last_check) == before


# --------------------------------------------------------------------------- scale check due


@pytest.mark.parametrize(
    ("last_check", "started", "due"),
    [(None, 0.0, True), (100.0, 109.99, False), (100.0, 110.0, True), (100.0, 250.0, True),
     (100.0, 100.0, False)],
    ids=["first_tick", "inside_period", "period_boundary", "long_after", "same_tick"],
)
def test_scale_check_due(last_check: float | None, started: float, due: bool) -> None:
    assert scale_check_due(last_check, started, PERIOD) is due


# --------------------------------------------------------------------------- drained


@pytest.mark.parametrize(
    ("sample", "sessions", "drained"),
    [
        (Sample(network_bps=10.0), None, True),
        (Sample(network_bps=IDLE_NETWORK_BPS), None, False),
        (Sample(network_bps=1e6), None, False),
        (Sample(), None, False),
        (None, None, False),
        (Sample(network_bps=1e6), 0, True),
        (Sample(network_bps=0.0), 3, False),
        (None, 0, True),
    ],
    ids=["network_idle", "network_at_threshold_busy", "network_busy", "nan_rate_unknown",
         "no_sample", "balancer_no_sessions_beats_busy_network",
         "balancer_sessions_beat_idle_network", "balancer_without_sample"],
)
def test_is_drained(sample: Sample | None, sessions: int | None, drained: bool) -> None:
    assert is_drained(sample, sessions) is drained


def test_drained_names_prefers_the_balancer_where_it_knows_the_server() -> None:
    samples = {"idle": Sample(network_bps=0.0), "busy": Sample(network_bps=1e6),
               "quiet_at_lb": Sample(network_bps=1e6), "busy_at_lb": Sample(network_bps=0.0)}
    assert drained_names(samples) == {"idle", "busy_at_lb"}
    assert drained_names(samples, {"quiet_at_lb": 0, "busy_at_lb": 2}) == {"idle", "quiet_at_lb"}


# --------------------------------------------------------------------------- manual drain


DRAIN_ROWS = [
    # id, pool, name, reply (subset), desired after, marks
    ("above_floor_lowers_desired", pool_of(*THREE, desired=3), "c1",
     {"action": "sundown", "reason": "manual_drain", "replacement": False,
      "message": "c1 drains on request"}, 2, ("c1",)),
    ("at_floor_keeps_desired_for_a_replacement", pool_of(*THREE[:2], desired=2), "c1",
     {"action": "sundown", "reason": "manual_drain", "replacement": True,
      "message": "c1 drains on request; a replacement keeps the pool at its floor"}, 2, ("c1",)),
    ("already_draining_is_left_alone", pool_of(C("c1", sundown=NOW - 3), *THREE[1:], desired=2),
     "c1", {"action": "none", "reason": "already_sundown",
            "message": "c1 is already draining"}, 2, ()),
]


@pytest.mark.parametrize(("pool", "name", "reply", "desired", "marks"),
                         [r[1:] for r in DRAIN_ROWS], ids=[r[0] for r in DRAIN_ROWS])
def test_plan_manual_drain(pool: PoolState, name: str, reply: dict[str, Any], desired: int,
                           marks: tuple[str, ...]) -> None:
    plan = plan_manual_drain(pool, name, POLICY, NOW)
    assert plan.reply is not None
    assert {k: plan.reply[k] for k in reply} == reply
    assert plan.reply["desired"] == plan.state.desired == desired
    assert plan.marks == marks
    assert plan.state.sundown[name] == (NOW if marks else pool.sundown[name])
    assert not plan.removals and not plan.creations and plan.decision is None
    if marks:  # a drain is written ahead, with its ledger entry being the reply
        assert plan.write_ahead
        assert [(e.kind, dict(e.data)) for e in plan.events] == [("drain", dict(plan.reply))]
    else:
        assert not plan.write_ahead and not plan.events and plan.state == pool
    strict_json(plan)


@pytest.mark.parametrize(
    ("pool", "name"),
    [(pool_of(*THREE, desired=3), "nope"), (pool_of(C("c1", status="exited"), desired=2), "c1")],
    ids=["unknown", "not_running"],
)
def test_plan_manual_drain_not_found(pool: PoolState, name: str) -> None:
    with pytest.raises(ContainerNotFound) as exc:
        plan_manual_drain(pool, name, POLICY, NOW)
    assert str(exc.value) == f"no running container named {name!r} in this pool"


def test_drain_then_tick_removes_once_drained() -> None:
    plan = plan_manual_drain(pool_of(*THREE, desired=3), "c2", POLICY, NOW)
    later = plan.state.observed(
        {n: Sample(network_bps=0.0 if n == "c2" else 1e6) for n in ("c1", "c2", "c3")},
        plan.state.scores.values(), frozenset({"c2"}))
    assert [(r.info.name, r.reason) for r in tick(later).removals] == [("c2", "drained")]


# --------------------------------------------------------------------------- manual scale


SCALE_ROWS = [
    # id, pool, count, action, creations, marks
    ("grow", pool_of(*THREE, desired=3), 5, "scale_up", [(2, "manual")], ()),
    ("shrink_by_the_one_ordering",
     pool_of(C("c1", 60.0), C("c2", 90.0, created=1), C("c3", 90.0, created=2), C("c4", 70.0),
             desired=4), 2, "scale_down", [], ("c3", "c2")),
    ("shrink_skips_draining", pool_of(*THREE, C("c4", 99.0, sundown=NOW - 1), desired=3), 2,
     "scale_down", [], ("c3",)),
    ("unchanged", pool_of(*THREE, desired=3), 3, "none", [], ()),
]


@pytest.mark.parametrize(("pool", "count", "action", "creations", "marks"),
                         [r[1:] for r in SCALE_ROWS], ids=[r[0] for r in SCALE_ROWS])
def test_plan_manual_scale(pool: PoolState, count: int, action: str,
                           creations: list[tuple[int, str]], marks: tuple[str, ...]) -> None:
    plan = plan_manual_scale(pool, count, POLICY, NOW)
    assert plan.decision is not None and plan.reply is not None
    assert (plan.decision.action, plan.decision.reason) == (action, "manual")
    assert [(c.count, c.reason) for c in plan.creations] == creations
    assert plan.marks == marks
    assert plan.state.desired == count == plan.reply["desired"]
    assert [(e.kind, dict(e.data)) for e in plan.events] == [("manual_scale", dict(plan.reply))]
    assert plan.state.last_decision == plan.reply
    assert plan.state.last_check == pool.last_check  # a request is not a scale check
    assert plan.write_ahead  # the stabilization window restarts from `count`
    assert not plan.removals
    strict_json(plan)


def test_plan_manual_scale_out_of_range() -> None:
    with pytest.raises(ConfigError) as exc:
        plan_manual_scale(pool_of(*THREE, desired=3), 7, POLICY, NOW)
    assert exc.value.variable == "count"


# --------------------------------------------------------------------------- the pool value


def test_listed_replaces_the_listing_and_drops_marks_of_vanished_containers() -> None:
    pool = pool_of(C("c1", sundown=NOW - 1), C("c2", sundown=NOW - 2), desired=2,
                   engine_error="down")
    listed = pool.listed([pool.containers["c2"]])
    assert list(listed.containers) == ["c2"] and dict(listed.sundown) == {"c2": NOW - 2}
    assert listed.engine_ok


def test_unlisted_keeps_the_last_listing() -> None:
    pool = pool_of(*THREE, desired=3)
    down = pool.unlisted("connection refused")
    assert not down.engine_ok and down.engine_error == "connection refused"
    assert down.containers == pool.containers


def test_observed_keeps_scores_of_listed_containers_with_their_ids() -> None:
    pool = pool_of(C("c1"), desired=2)
    stray = replace(pool.scores["c1"], name="gone", id="")
    fresh = replace(pool.scores["c1"], id="")
    seen = pool.observed({"c1": Sample()}, [fresh, stray], frozenset())
    assert list(seen.scores) == ["c1"] and seen.scores["c1"].id == "id-c1"


def test_observations_carry_the_signals() -> None:
    pool = pool_of(C("a", 80.0, created=7, drained=True), C("b", None, sundown=NOW - 4),
                   C("x", status="exited"), desired=2)
    pool = replace(pool, samples={"a": Sample()})  # b has no sample this tick
    a, b = pool.observations()
    assert (a.name, a.score, a.category, a.drained, a.created, a.stale, a.sundown_since) == (
        "a", 80.0, Category.LU, True, 7.0, False, None)
    assert (b.category, b.sundown_since, b.stale, math.isnan(b.score)) == (
        Category.SUNDOWN, NOW - 4, True, True)
    # the per-resource scores the shortfall sizing reads; none without a score
    assert a.resource_scores == (("cpu", 80.0), ("memory", 80.0), ("network", 80.0),
                                 ("availability", 80.0))
    assert b.resource_scores == ()
    assert [o.name for o in pool.observations(active_only=True)] == ["a"]


def test_probe_targets_skip_the_probe_of_draining_containers() -> None:
    pool = pool_of(C("a"), C("b", sundown=NOW), C("x", status="exited"), desired=2)
    targets = {i.name: i.host_port for i in pool.probe_targets()}
    assert targets == {"a": 30000, "b": None}


def test_without_and_with_created() -> None:
    pool = pool_of(C("a", sundown=NOW, drained=True), C("b"), desired=2)
    gone = pool.without(["a"])
    assert list(gone.containers) == list(gone.scores) == list(gone.samples) == ["b"]
    assert not gone.sundown and not gone.drained
    new = ContainerInfo(name="c", id="id-c", image="img", status="running", created=9.0)
    grown = gone.with_created(new)
    assert grown.containers["c"] is new and grown.category("c") is Category.INIT
    assert pool.without([]) is pool


@pytest.mark.parametrize(("desired", "clamped"), [(1, 2), (2, 2), (4, 4), (6, 6), (9, 6)],
                         ids=["below_floor", "floor", "inside", "ceiling", "above_ceiling"])
def test_clamp_desired(desired: int, clamped: int) -> None:
    assert clamp_desired(desired, POLICY) == clamped


def test_outcome_events() -> None:
    info = ContainerInfo(name="w1", id="i", image="img", status="running", created=1.0,
                         host_port=32768)
    assert dict(created_event(info, "reconcile").data) == {
        "name": "w1", "reason": "reconcile", "host_port": 32768,
        "message": "created w1 on 127.0.0.1:32768 (reconcile)"}
    assert created_event(info, "reconcile").kind == "created"
    failed = create_failed_event("no such image", "avg_below_high")
    assert (failed.kind, dict(failed.data)) == ("create_failed", {
        "error": "no such image", "reason": "avg_below_high",
        "message": "could not create a worker: no such image"})
    down = engine_down_event("refused")
    assert (down.kind, down.data["message"]) == (
        "engine_error", "engine unreachable, actuation paused: refused")
    assert engine_back_event().kind == "engine_recovered"
