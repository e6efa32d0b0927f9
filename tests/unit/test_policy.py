"""Table-driven tests of the pure scaling policy: one named scenario per row.

The clock is always passed in; NOW is an arbitrary instant.
"""
from __future__ import annotations

import json
import math
import subprocess
import sys
from dataclasses import dataclass, field, replace
from typing import Any

import pytest

from agent.core.errors import ConfigError
from agent.core.records import Category
from agent.core.policy import (
    DEFAULT_STRATEGY,
    GUARDS,
    REASONS,
    STRATEGIES,
    Context,
    Load,
    Observation,
    PolicyConfig,
    PolicyState,
    decide,
    drain_ready,
    manual_scale,
    pick_sundown,
    plan_reconcile,
)

NOW = 1_000.0
# compat defaults: min 5, max 15, high 55, low 80, critical 20, cooldown 5, step 1, and
# the compat one-step scale-up (SCALE_UP_SIZING=step); DEFAULT is the shipped default
# (shortfall sizing), pinned by the rows of that section.
BASE = PolicyConfig(scale_up_sizing="step")
DEFAULT = PolicyConfig()
NO_WINDOW = replace(BASE, stabilization_window=0.0)
DEFAULT_2_6 = replace(DEFAULT, min_containers=2, max_containers=6)  # the step-load pool
# A worker at its CPU limit under the default weights: overall ≈ 0.25·99 + 0.15·100 +
# 0.25·avail, about 45 here, yet its CPU is 100 % used.
CPU_FULL = (("cpu", 0.0), ("memory", 99.0), ("network", 100.0), ("availability", 20.0))
TARGET = replace(NO_WINDOW, strategy="target")  # target 50 %, tolerance 0.1, limits 4 up / 1 down


def category_of(score: float) -> Category:
    if score >= 70:
        return Category.LU
    return Category.MU if score >= 40 else Category.HU


def obs(name: str, score: float, category: Category | None = None, **kw: Any) -> Observation:
    return Observation(name=name, score=score, category=category or category_of(score), **kw)


def pool(*scores: float, **kw: Any) -> list[Observation]:
    """Containers c1..cn with the given scores."""
    return [obs(f"c{i}", s, **kw) for i, s in enumerate(scores, start=1)]


@dataclass
class Row:
    id: str
    observations: list[Observation]
    action: str
    reason: str
    desired: int
    policy: PolicyConfig = BASE
    state: PolicyState = field(default_factory=lambda: PolicyState(desired=5))
    add: int = 0
    sundown: tuple[str, ...] = ()
    inputs: dict[str, Any] = field(default_factory=dict)


ROWS = [
    # --- SPEC §5 rule 2: scale up -------------------------------------------------
    Row("avg_below_high", pool(40, 40, 40, 40, 40), "scale_up", "avg_below_high", 6, add=1,
        inputs={"avg": 40.0, "active": 5, "critical": []}),
    Row("critical_container", pool(70, 70, 70, 70, 10), "scale_up", "critical_container", 6,
        add=1, inputs={"avg": 58.0, "critical": ["c5"]}),
    Row("avg_and_critical_reports_avg", pool(50, 50, 50, 50, 15), "scale_up",
        "avg_below_high", 6, add=1, inputs={"critical": ["c5"]}),
    Row("avg_just_at_high_no_action", pool(55, 55, 55, 55, 55), "none", "within_band", 5),
    Row("step_adds_several", pool(40, 40, 40, 40, 40), "scale_up", "avg_below_high", 8,
        policy=replace(BASE, scale_step=3), add=3),
    Row("step_clamped_by_max", pool(*[40] * 14), "scale_up", "avg_below_high", 15,
        policy=replace(BASE, scale_step=3), state=PolicyState(desired=14), add=1),
    Row("pending_creations_count_as_current", pool(40, 40, 40, 40, 40), "scale_up",
        "avg_below_high", 8, state=PolicyState(desired=7), add=1, inputs={"current": 7}),
    # --- rule 1 and the cooldown ----------------------------------------------------
    Row("at_max", pool(*[30] * 15), "none", "at_max", 15, state=PolicyState(desired=15)),
    Row("at_max_with_pending_creation", pool(*[30] * 14), "none", "at_max", 15,
        state=PolicyState(desired=15)),
    Row("cooldown_not_passed", pool(40, 40, 40, 40, 40), "none", "cooldown", 5,
        state=PolicyState(desired=5, last_scale_up=NOW - 4.9),
        inputs={"cooldown_remaining": pytest.approx(0.1)}),
    Row("cooldown_boundary_passed", pool(40, 40, 40, 40, 40), "scale_up", "avg_below_high",
        6, state=PolicyState(desired=5, last_scale_up=NOW - 5.0), add=1,
        inputs={"cooldown_remaining": 0.0}),
    Row("cooldown_long_passed", pool(40, 40, 40, 40, 40), "scale_up", "avg_below_high", 6,
        state=PolicyState(desired=5, last_scale_up=NOW - 60), add=1),
    Row("cooldown_from_future_clock_clamped", pool(40, 40, 40, 40, 40), "none", "cooldown",
        5, state=PolicyState(desired=5, last_scale_up=NOW + 1e6),
        inputs={"cooldown_remaining": 5.0}),
    Row("zero_cooldown", pool(40, 40, 40, 40, 40), "scale_up", "avg_below_high", 6,
        policy=replace(BASE, cooldown=0.0), state=PolicyState(desired=5, last_scale_up=NOW),
        add=1),
    # --- warm-up: INIT and stale do not count ------------------------------------------
    Row("init_excluded_from_avg", [*pool(40, 40, 40, 40, 40), obs("new", 100, Category.INIT)],
        "scale_up", "avg_below_high", 7, state=PolicyState(desired=6), add=1,
        inputs={"avg": 40.0, "active": 6, "counted": 5}),
    Row("init_never_critical", [*pool(70, 70, 70, 70, 70), obs("new", 0, Category.INIT)],
        "none", "within_band", 6, state=PolicyState(desired=6), inputs={"critical": []}),
    Row("stale_excluded", [*pool(70, 70, 70, 70), obs("slow", 5, stale=True)], "none",
        "within_band", 5, inputs={"counted": 4, "critical": []}),
    Row("nan_score_excluded", [*pool(70, 70, 70, 70), obs("nan", math.nan, Category.MU)],
        "none", "within_band", 5, inputs={"counted": 4}),
    Row("no_samples_all_init", pool(0, 0, 0, 0, 0, category=Category.INIT), "none",
        "no_samples", 5),
    Row("no_samples_all_stale", pool(10, 10, 10, 10, 10, stale=True), "none", "no_samples",
        5),
    Row("no_active_empty", [], "none", "no_active", 5),
    Row("no_active_all_sundown", pool(90, 90, category=Category.SUNDOWN), "none",
        "no_active", 5, inputs={"sundown_count": 2}),
    Row("sundown_not_active", [*pool(60, 60, 60, 60, 60), obs("old", 0, Category.SUNDOWN)],
        "none", "within_band", 5, inputs={"active": 5, "avg": 60.0}),
    # --- band ----------------------------------------------------------------------------
    Row("within_band", pool(70, 70, 70, 70, 70, 70), "none", "within_band", 6,
        state=PolicyState(desired=6)),
    Row("avg_just_at_low_no_action", pool(80, 80, 80, 80, 80, 80), "none", "within_band", 6,
        state=PolicyState(desired=6)),
    # --- rule 3: scale down ----------------------------------------------------------------
    Row("avg_above_low", pool(85, 95, 90, 88, 86, 84), "scale_down", "avg_above_low", 5,
        policy=NO_WINDOW, state=PolicyState(desired=6), sundown=("c2",),
        inputs={"projected_avg": pytest.approx(100 - (100 - 88) * 6 / 5)}),
    Row("sundown_never_init", [*pool(85, 90, 88, 86, 84, 83), obs("new", 99, Category.INIT)],
        "scale_down", "avg_above_low", 6, policy=NO_WINDOW, state=PolicyState(desired=7),
        sundown=("c2",)),
    Row("sundown_ties_by_name", pool(90, 90, 90, 90, 90, 90), "scale_down", "avg_above_low",
        5, policy=NO_WINDOW, state=PolicyState(desired=6), sundown=("c1",)),
    Row("sundown_prefers_fresh_over_stale",
        [*pool(90, 90, 90, 90, 90), obs("c0", 99, stale=True)], "scale_down",
        "avg_above_low", 5, policy=NO_WINDOW, state=PolicyState(desired=6), sundown=("c1",)),
    Row("step_down_clamped_by_min", pool(90, 91, 92, 93, 94, 95, 96), "scale_down",
        "avg_above_low", 5, policy=replace(NO_WINDOW, scale_step=3),
        state=PolicyState(desired=7), sundown=("c7", "c6")),
    Row("at_min", pool(90, 90, 90, 90, 90), "none", "at_min", 5, policy=NO_WINDOW),
    # --- stabilization window ----------------------------------------------------------------
    Row("stabilizing_higher_rec_in_window", pool(90, 90, 90, 90, 90, 90), "none",
        "stabilizing", 6, state=PolicyState(desired=6, recommendations=((NOW - 10, 6),)),
        inputs={"recommendation": 5, "stabilized_desired": 6}),
    Row("stabilized_all_agree", pool(90, 90, 90, 90, 90, 90), "scale_down", "avg_above_low",
        5, state=PolicyState(desired=6, recommendations=((NOW - 10, 5),)), sundown=("c1",)),
    Row("old_rec_outside_window_ignored", pool(90, 90, 90, 90, 90, 90), "scale_down",
        "avg_above_low", 5,
        state=PolicyState(desired=6, recommendations=((NOW - 15, 6), (NOW - 5, 5))),
        sundown=("c1",)),
    Row("stabilization_allows_partial_step", pool(90, 91, 92, 93, 94, 95, 96, 97), "scale_down",
        "avg_above_low", 7, policy=replace(BASE, scale_step=3),
        state=PolicyState(desired=8, recommendations=((NOW - 10, 7),)), sundown=("c8",),
        inputs={"recommendation": 5, "stabilized_desired": 7}),
    # --- anticipated-flap guard -------------------------------------------------------------
    Row("flap_guard", pool(81, 81, 81, 81), "none", "flap_guard", 4,
        policy=replace(NO_WINDOW, min_containers=1, scale_step=3),
        state=PolicyState(desired=4), inputs={"projected_avg": pytest.approx(24.0)}),
    Row("flap_guard_off", pool(81, 81, 81, 81), "scale_down", "avg_above_low", 1,
        policy=replace(NO_WINDOW, min_containers=1, scale_step=3, flap_guard=False),
        state=PolicyState(desired=4), sundown=("c1", "c2", "c3")),
    Row("flap_guard_projection_just_at_high_allowed", pool(85, 85, 85, 85), "scale_down",
        "avg_above_low", 2, policy=replace(NO_WINDOW, min_containers=1, scale_step=2,
                                           high_threshold=70.0),
        state=PolicyState(desired=4), sundown=("c1", "c2"),
        inputs={"projected_avg": pytest.approx(70.0)}),
    # --- predictive scale-up --------------------------------------------------------------
    Row("predicted_high_load", pool(70, 70, 70, 70, 70, forecast=40.0), "scale_up",
        "predicted_high_load", 6, policy=replace(BASE, predictive=True), add=1,
        inputs={"forecast_avg": 40.0}),
    Row("predictive_off_ignores_forecast", pool(70, 70, 70, 70, 70, forecast=40.0), "none",
        "within_band", 5),
    Row("predictive_without_forecast", pool(70, 70, 70, 70, 70), "none", "within_band", 5,
        policy=replace(BASE, predictive=True), inputs={"forecast_avg": None}),
    Row("predictive_good_forecast_still_scales_down",
        pool(90, 90, 90, 90, 90, 90, forecast=95.0), "scale_down", "avg_above_low", 5,
        policy=replace(NO_WINDOW, predictive=True), state=PolicyState(desired=6),
        sundown=("c1",)),
    Row("predictive_vetoes_scale_down", pool(90, 90, 90, 90, 90, 90, forecast=30.0),
        "scale_up", "predicted_high_load", 7, policy=replace(NO_WINDOW, predictive=True),
        state=PolicyState(desired=6), add=1),
    Row("predictive_respects_cooldown", pool(70, 70, 70, 70, 70, forecast=40.0), "none",
        "cooldown", 5, policy=replace(BASE, predictive=True),
        state=PolicyState(desired=5, last_scale_up=NOW - 1)),
    # --- SCALING_STRATEGY=target: desired = ceil(active × load / target) ----------------------
    # utilization = 100 − score; TARGET 50, tolerance 0.1, up limit 4, down limit 1
    Row("target_above", pool(30, 30, 30, 30, 30), "scale_up", "above_target", 7,
        policy=TARGET, add=2,
        inputs={"utilization": 70.0, "ratio": 1.4, "raw_desired": 7, "signal": "utilization",
                "formula": "desired = ceil(active × utilization / target) = ceil(5 × 70.00 / 50) = 7"}),
    Row("target_jump_limited", pool(0, 0, 0, 0, 0), "scale_up", "above_target", 9,
        policy=TARGET, add=4, inputs={"raw_desired": 10}),
    Row("target_limit_and_ceiling", pool(0, 0, 0, 0, 0), "scale_up", "above_target", 7,
        policy=replace(TARGET, max_containers=7), add=2),
    Row("target_within_tolerance_above", pool(46, 46, 46, 46, 46), "none", "within_tolerance", 5,
        policy=TARGET, inputs={"ratio": pytest.approx(1.08)}),
    Row("target_within_tolerance_below", pool(54, 54, 54, 54, 54, 54), "none", "within_tolerance",
        6, policy=TARGET, state=PolicyState(desired=6)),
    Row("target_below", pool(*[90] * 8), "scale_down", "below_target", 7, policy=TARGET,
        state=PolicyState(desired=8), sundown=("c1",), inputs={"raw_desired": 2}),
    Row("target_below_ceil_keeps_size", pool(60, 60, 60), "none", "within_tolerance", 3,
        policy=replace(TARGET, min_containers=1), state=PolicyState(desired=3),
        inputs={"raw_desired": 3}),
    Row("target_below_at_min", pool(90, 90, 90, 90, 90), "none", "at_min", 5, policy=TARGET),
    Row("target_below_projection_stays_under_one", pool(*[70] * 10), "scale_down",
        "below_target", 9, policy=replace(TARGET, min_containers=1), state=PolicyState(desired=10),
        sundown=("c1",), inputs={"ratio": pytest.approx(0.6), "raw_desired": 6,
                                 "projected_ratio": pytest.approx(0.6667, abs=1e-4)}),
    Row("target_stabilizing", pool(*[90] * 8), "none", "stabilizing", 8,
        policy=replace(TARGET, stabilization_window=15.0),
        state=PolicyState(desired=8, recommendations=((NOW - 5, 8),))),
    Row("target_cooldown", pool(30, 30, 30, 30, 30), "none", "cooldown", 5, policy=TARGET,
        state=PolicyState(desired=5, last_scale_up=NOW - 1), inputs={"strategy": "target"}),
    Row("target_at_max", pool(*[30] * 15), "none", "at_max", 15, policy=TARGET,
        state=PolicyState(desired=15)),
    Row("target_critical_container", pool(60, 60, 60, 60, 10), "scale_up", "critical_container",
        6, policy=TARGET, add=1),
    Row("target_predicted", pool(55, 55, 55, 55, 55, forecast=20.0), "scale_up",
        "predicted_high_load", 6, policy=replace(TARGET, predictive=True), add=1,
        inputs={"forecast_ratio": 1.6}),
    Row("target_in_flight_wins", pool(80, 80, 80, 80, in_flight=12.0), "scale_up",
        "above_target", 8, policy=replace(TARGET, min_containers=4, target_in_flight=6.0),
        state=PolicyState(desired=4), add=4,
        inputs={"signal": "in_flight", "in_flight_avg": 12.0, "ratio": 2.0, "raw_desired": 8}),
    Row("target_in_flight_ignored_without_target", pool(80, 80, 80, 80, in_flight=12.0),
        "none", "within_tolerance", 4, policy=replace(TARGET, min_containers=4,
                                                      target_utilization=20.0),
        state=PolicyState(desired=4), inputs={"signal": "utilization"}),
    Row("target_in_flight_unknown_uses_utilization", pool(30, 30, 30, 30, 30), "scale_up",
        "above_target", 7, policy=replace(TARGET, target_in_flight=6.0), add=2,
        inputs={"signal": "utilization", "in_flight_avg": None}),
    # --- SCALE_UP_SIZING=shortfall (the default): needed = ceil(serving × u / (100 − high)) ---
    # serving = active non-INIT; u = the most-used weighted capacity (CPU, memory,
    # network)'s mean 100 − score over the counted ones (or 100 − avg when higher);
    # high 55 ⇒ u_max 45; add = max(step, min(needed − current, SCALE_UP_LIMIT 4))
    Row("shortfall_from_overall_score", pool(40, 40, 40, 40, 40), "scale_up", "avg_below_high",
        7, policy=DEFAULT, add=2,
        inputs={"scale_up_sizing": "shortfall", "utilization": 60.0,
                "utilization_resource": "overall", "utilization_max": 45.0, "needed": 7}),
    Row("shortfall_from_saturated_cpu", pool(45, 45, resource_scores=CPU_FULL), "scale_up",
        "avg_below_high", 5, policy=DEFAULT_2_6, state=PolicyState(desired=2), add=3,
        inputs={"utilization": 100.0, "utilization_resource": "cpu", "needed": 5}),
    Row("shortfall_ignores_unweighted_resource", pool(45, 45, resource_scores=CPU_FULL),
        "scale_up", "avg_below_high", 3, state=PolicyState(desired=2), add=1,
        policy=replace(DEFAULT_2_6, resource_weights=(("cpu", 0.0), ("memory", 1.0))),
        inputs={"utilization": 55.0, "utilization_resource": "overall", "needed": 3}),
    Row("shortfall_capped_by_up_limit", pool(45, 45, 45, 45, resource_scores=CPU_FULL),
        "scale_up", "avg_below_high", 8, policy=replace(DEFAULT_2_6, max_containers=15),
        state=PolicyState(desired=4), add=4, inputs={"needed": 9}),
    Row("shortfall_capped_by_max", pool(45, 45, 45, 45, resource_scores=CPU_FULL), "scale_up",
        "avg_below_high", 6, policy=DEFAULT_2_6, state=PolicyState(desired=4), add=2,
        inputs={"needed": 9}),
    Row("shortfall_never_below_step", pool(54, 54, 54, 54, 54), "scale_up", "avg_below_high",
        8, policy=replace(DEFAULT, scale_step=3), add=3, inputs={"needed": 6}),
    Row("shortfall_critical_adds_step", pool(70, 70, 70, 70, 10), "scale_up",
        "critical_container", 6, policy=DEFAULT, add=1,
        inputs={"utilization": pytest.approx(42.0), "needed": 5}),
    Row("shortfall_stale_counts_as_loaded",
        [*pool(45, resource_scores=CPU_FULL), obs("slow", 45, stale=True)], "scale_up",
        "avg_below_high", 5, policy=DEFAULT_2_6, state=PolicyState(desired=2), add=3,
        inputs={"needed": 5, "counted": 1}),
    Row("shortfall_availability_not_a_utilization",
        pool(50, 50, resource_scores=(("cpu", 60.0), ("availability", 0.0))), "scale_up",
        "avg_below_high", 3, policy=DEFAULT_2_6, state=PolicyState(desired=2), add=1,
        inputs={"utilization": 50.0, "utilization_resource": "overall", "needed": 3}),
    Row("shortfall_init_counts_idle",
        [*pool(45, 45, resource_scores=CPU_FULL), obs("new", 100, Category.INIT)], "scale_up",
        "avg_below_high", 5, policy=DEFAULT_2_6, state=PolicyState(desired=3), add=2,
        inputs={"needed": 5, "counted": 2, "current": 3}),
    Row("shortfall_pending_creations_count", pool(45, 45, resource_scores=CPU_FULL),
        "scale_up", "avg_below_high", 5, policy=DEFAULT_2_6, state=PolicyState(desired=4),
        add=1, inputs={"needed": 5, "current": 4}),
    Row("shortfall_respects_cooldown", pool(45, 45, resource_scores=CPU_FULL), "none",
        "cooldown", 2, policy=DEFAULT_2_6,
        state=PolicyState(desired=2, last_scale_up=NOW - 1)),
    Row("sizing_step_is_compat", pool(45, 45, resource_scores=CPU_FULL), "scale_up",
        "avg_below_high", 3, policy=replace(DEFAULT_2_6, scale_up_sizing="step"),
        state=PolicyState(desired=2), add=1, inputs={"scale_up_sizing": "step"}),
    # --- bounds changed at run time -------------------------------------------------------------
    Row("below_min", pool(70, 70, 70), "scale_up", "below_min", 5,
        state=PolicyState(desired=3), add=2),
    Row("above_max", pool(50, 60, 70, 80, 90, 95, 55, 65), "scale_down", "above_max", 6,
        policy=replace(BASE, max_containers=6), state=PolicyState(desired=8),
        sundown=("c6", "c5")),
    Row("above_max_pending_only", pool(50, 50, 50, 50, 50, 50), "scale_down", "above_max", 6,
        policy=replace(BASE, max_containers=6), state=PolicyState(desired=8)),
]


@pytest.mark.parametrize("row", ROWS, ids=[r.id for r in ROWS])
def test_decide(row: Row) -> None:
    d = decide(row.state, row.observations, row.policy, NOW)
    assert (d.action, d.reason) == (row.action, row.reason), d.message
    assert d.desired == row.desired
    assert d.add == row.add
    assert d.sundown == row.sundown
    assert d.state.desired == row.desired
    for key, value in row.inputs.items():
        assert d.inputs[key] == value, key
    assert d.reason in REASONS
    assert d.message
    # every decision is a ledger entry, JSON without NaN
    json.dumps(d.to_event(), allow_nan=False)
    # the recommendation of this evaluation is recorded at `now`
    assert d.state.recommendations[-1][0] == NOW
    if d.action == "scale_up" and d.reason != "below_min":
        assert d.state.last_scale_up == NOW
    else:
        assert d.state.last_scale_up == row.state.last_scale_up


def test_every_reason_is_exercised() -> None:
    seen = {r.reason for r in ROWS} | {"manual"}
    assert seen == set(REASONS)


def test_inputs_carry_the_numbers() -> None:
    d = decide(PolicyState(desired=5), pool(40, 40, 40, 40, 10), BASE, NOW)
    for key in ("avg", "active", "critical", "high_threshold", "low_threshold",
                "critical_threshold", "cooldown_remaining", "min_containers",
                "max_containers", "scale_step", "desired_before"):
        assert key in d.inputs
    assert "34.0" in d.message and "55" in d.message


# --- stabilization pace: first scale-down no later than three checks ---------------------


@pytest.mark.parametrize("period", [1.0, 10.0, 30.0], ids=lambda p: f"period={p:g}")
@pytest.mark.parametrize("jitter", [0.0, 0.3, -0.3], ids=lambda j: f"jitter={j:+g}")
def test_first_scale_down_within_three_checks(period: float, jitter: float) -> None:
    """Load gone just before check 1 ⇒ scale-down at check 2 (≤ 3), whatever the jitter."""
    from agent.adapters.config_sources import load_settings

    settings = load_settings(
        environ={"DOCKER_IMAGE": "img", "TARGET_PORT": "80",
                 "SCALE_CHECK_PERIOD": str(period)},
        env_file=None,
    )
    policy = settings.policy_config()
    state = PolicyState(desired=6)
    busy, idle = pool(60, 60, 60, 60, 60, 60), pool(90, 90, 90, 90, 90, 90)
    t = 0.0
    for _ in range(5):  # steady load inside the band
        state = decide(state, busy, policy, t).state
        t += period
    reasons = []
    for check in range(1, 4):
        d = decide(state, idle, policy, t + (jitter * period if check % 2 else 0.0))
        reasons.append(d.reason)
        state = d.state
        if d.action == "scale_down":
            break
        t += period
    assert reasons == ["stabilizing", "avg_above_low"]


def test_stabilization_zero_is_compat_immediate() -> None:
    state = PolicyState(desired=6, recommendations=((NOW - 1, 6),))
    d = decide(state, pool(90, 90, 90, 90, 90, 90), NO_WINDOW, NOW)
    assert d.reason == "avg_above_low"


def test_steady_scale_down_one_step_per_two_checks() -> None:
    """After the first step, each further step needs a second agreeing check."""
    policy = BASE  # window 15 s, checks every 10 s
    state = PolicyState(desired=8)  # fresh state: nothing in the window yet
    observations = pool(*[90] * 8)
    actions = []
    for check in range(8):
        d = decide(state, observations, policy, check * 10.0)
        actions.append(d.action)
        state = d.state
        observations = [o for o in observations if o.name not in d.sundown]
    assert actions == ["scale_down", "none", "scale_down", "none", "scale_down",
                       "none", "none", "none"]
    assert state.desired == 5


def test_scale_up_in_window_blocks_following_scale_down() -> None:
    state = decide(PolicyState(desired=5), pool(40, 40, 40, 40, 40), BASE, 0.0).state
    assert state.desired == 6
    d = decide(state, pool(90, 90, 90, 90, 90, 90), BASE, 10.0)
    assert d.reason == "stabilizing"


def test_window_is_bounded() -> None:
    state = PolicyState(desired=6)
    policy = replace(BASE, stabilization_window=1e9)
    for i in range(1500):
        state = decide(state, pool(70, 70, 70, 70, 70, 70), policy, float(i)).state
    assert len(state.recommendations) == 1000


def test_policy_state_json_round_trip() -> None:
    state = PolicyState(desired=7, last_scale_up=12.5, recommendations=((1.0, 6), (2.0, 7)))
    assert PolicyState.from_json(json.loads(json.dumps(state.to_json()))) == state
    assert PolicyState.from_json({"desired": "5"}) == PolicyState(desired=5)
    with pytest.raises(ValueError, match="malformed policy state"):
        PolicyState.from_json({"recommendations": []})


# --- drain, reconcile ----------------------------------------------------------------------

DRAIN_ROWS = [
    ("idle_sundown_ready", obs("a", 90, Category.SUNDOWN, drained=True,
                                sundown_since=NOW - 1), True),
    ("busy_sundown_waits", obs("a", 90, Category.SUNDOWN, sundown_since=NOW - 29.9), False),
    ("drain_timeout_boundary", obs("a", 90, Category.SUNDOWN, sundown_since=NOW - 30), True),
    ("drain_timeout_passed", obs("a", 90, Category.SUNDOWN, sundown_since=NOW - 300), True),
    ("busy_unknown_mark_waits", obs("a", 90, Category.SUNDOWN), False),
    ("idle_active_not_drained", obs("a", 90, drained=True), False),
    ("idle_init_not_drained", obs("a", 90, Category.INIT, drained=True), False),
]


@pytest.mark.parametrize(("observation", "ready"), [r[1:] for r in DRAIN_ROWS],
                         ids=[r[0] for r in DRAIN_ROWS])
def test_drain_ready(observation: Observation, ready: bool) -> None:
    assert drain_ready([observation], BASE, NOW) == (["a"] if ready else [])


def test_drain_timeout_zero_drains_at_once() -> None:
    o = obs("a", 90, Category.SUNDOWN, sundown_since=NOW)
    assert drain_ready([o], replace(BASE, drain_timeout=0.0), NOW) == ["a"]


@pytest.mark.parametrize(
    ("desired", "running", "create"),
    [(5, 3, 2), (5, 5, 0), (5, 7, 0), (0, 0, 0), (15, 0, 15)],
    ids=["short_by_two", "exact", "surplus_never_negative", "empty", "cold_start"],
)
def test_plan_reconcile(desired: int, running: int, create: int) -> None:
    assert plan_reconcile(desired, running) == create


# --- manual scale -----------------------------------------------------------------------------

MANUAL_ROWS = [
    ("grow", 8, pool(60, 60, 60, 60, 60), 5, "scale_up", 3, ()),
    ("shrink_highest_first", 5, pool(60, 95, 70, 90, 65, 80, 50), 7, "scale_down", 0,
     ("c2", "c4")),
    ("shrink_skips_init_when_possible",
     5, [*pool(60, 70, 80, 90, 50), obs("new", 99, Category.INIT)], 6, "scale_down", 0,
     ("c4",)),
    ("shrink_takes_init_as_last_resort",
     5, [*pool(60), *(obs(f"n{i}", 0, Category.INIT) for i in range(1, 7))], 7,
     "scale_down", 0, ("c1", "n1")),
    ("shrink_pending_only", 6, pool(60, 60, 60, 60, 60, 60), 8, "scale_down", 0, ()),
    ("unchanged", 6, pool(60, 60, 60, 60, 60, 60), 6, "none", 0, ()),
    ("sundown_ignored", 5, [*pool(60, 60, 60, 60, 60), obs("x", 99, Category.SUNDOWN)], 5,
     "none", 0, ()),
]


@pytest.mark.parametrize(("count", "observations", "desired_before", "action", "add",
                          "sundown"), [r[1:] for r in MANUAL_ROWS],
                         ids=[r[0] for r in MANUAL_ROWS])
def test_manual_scale(count: int, observations: list[Observation], desired_before: int,
                      action: str, add: int, sundown: tuple[str, ...]) -> None:
    state = PolicyState(desired=desired_before, last_scale_up=3.0,
                        recommendations=((NOW - 1, 9),))
    d = manual_scale(state, count, BASE, observations, NOW)
    assert (d.action, d.reason) == (action, "manual")
    assert d.desired == d.state.desired == count
    assert d.add == add
    assert d.sundown == sundown
    assert d.state.recommendations == ((NOW, count),)
    assert d.state.last_scale_up == 3.0
    json.dumps(d.to_event(), allow_nan=False)


@pytest.mark.parametrize(
    "count",
    [4, 16, 0, -1, True, 5.5, "6"],
    ids=["below_min", "above_max", "zero", "negative", "bool", "float", "string"],
)
def test_manual_scale_out_of_range(count: Any) -> None:
    with pytest.raises(ConfigError) as exc:
        manual_scale(PolicyState(desired=5), count, BASE, pool(60, 60, 60, 60, 60), NOW)
    assert str(exc.value) == (
        "count: must be an integer between DEFAULT_CONTAINER (5) and MAX_CONTAINERS (15), "
        f"got {count!r}"
    )
    assert exc.value.variable == "count"


def test_manual_scale_is_then_respected_by_the_window() -> None:
    d = manual_scale(PolicyState(desired=5), 8, BASE, pool(*[90] * 5), NOW)
    after = decide(d.state, pool(*[90] * 8), BASE, NOW + 10)
    assert after.reason == "stabilizing"


# --- config of the policy -----------------------------------------------------------------

@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"min_containers": 0}, "min_containers: must be an integer ≥ 1, got 0"),
        ({"max_containers": 4}, "max_containers: must be an integer ≥ min_containers (5), got 4"),
        ({"scale_step": 0}, "scale_step: must be an integer ≥ 1, got 0"),
        ({"high_threshold": 90.0}, "high_threshold: thresholds must satisfy 0 ≤ critical < "
                                   "high < low ≤ 100, got critical=20.0, high=90.0, low=80.0"),
        ({"cooldown": -1.0}, "cooldown: must be a number ≥ 0, got -1.0"),
        ({"stabilization_window": math.nan}, "stabilization_window: must be a number ≥ 0, "
                                             "got nan"),
        ({"scale_up_sizing": "double"}, "scale_up_sizing: must be one of shortfall, step, "
                                        "got 'double'"),
        ({"resource_weights": (("disk", 1.0),)}, "resource_weights: must be (resource, "
         "weight ≥ 0) pairs of cpu, memory, network, availability, got (('disk', 1.0),)"),
    ],
    ids=["min_zero", "max_below_min", "step_zero", "thresholds_order", "negative_cooldown",
         "nan_window", "unknown_sizing", "unknown_resource"],
)
def test_policy_config_validation(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as exc:
        PolicyConfig(**changes)
    assert str(exc.value) == message


def test_pure_modules_import_no_io() -> None:
    code = (
        "import sys, agent.core.policy, agent.core.plan, agent.core.pool, agent.core.queue, agent.core.settings, agent.core.cgroups, agent.core.store_codec\n"
        "bad = {'trio', 'docker', 'redis', 'quart', 'numpy'} & set(sys.modules)\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


# --- the one drain ordering (scale-down, ceiling, manual scale, reconcile) -------------------

PICK_ROWS = [
    ("highest_score_first", [obs("a", 60), obs("b", 95), obs("c", 80)], 2, False, ["b", "c"]),
    ("init_last_when_allowed", [obs("new", 99, Category.INIT), obs("a", 60)], 2, True,
     ["a", "new"]),
    ("init_never_when_not_allowed", [obs("new", 99, Category.INIT), obs("a", 60)], 2, False,
     ["a"]),
    ("fresh_before_stale", [obs("s", 99, stale=True), obs("a", 60)], 1, True, ["a"]),
    ("ties_newest_first", [obs("a", 90, created=1), obs("b", 90, created=3),
                           obs("c", 90, created=2)], 2, False, ["b", "c"]),
    ("ties_same_age_by_name", [obs("b", 90), obs("a", 90)], 1, False, ["a"]),
    ("score_beats_age", [obs("old", 95, created=1), obs("new", 90, created=9)], 1, False,
     ["old"]),
    ("non_finite_score_last", [obs("nan", math.nan, Category.MU), obs("a", 10)], 1, False, ["a"]),
    ("init_ranked_by_the_same_rules",
     [obs("i1", math.nan, Category.INIT, created=1), obs("i2", math.nan, Category.INIT, created=2)],
     1, True, ["i2"]),
    ("sundown_never_chosen", [obs("x", 99, Category.SUNDOWN), obs("a", 60)], 2, True, ["a"]),
    ("none_wanted", [obs("a", 60)], 0, True, []),
    ("negative_wanted", [obs("a", 60)], -2, True, []),
    ("more_wanted_than_there_are", [obs("a", 60), obs("b", 70)], 5, True, ["b", "a"]),
]


@pytest.mark.parametrize(("observations", "n", "allow_init", "names"),
                         [r[1:] for r in PICK_ROWS], ids=[r[0] for r in PICK_ROWS])
def test_pick_sundown(observations: list[Observation], n: int, allow_init: bool,
                      names: list[str]) -> None:
    assert pick_sundown(observations, n, allow_init=allow_init) == names


def test_scale_down_ties_go_newest_first() -> None:
    observations = [obs(f"c{i}", 90, created=float(t)) for i, t in enumerate([5, 1, 9, 3, 7, 2])]
    d = decide(PolicyState(desired=6), observations, NO_WINDOW, NOW)
    assert (d.reason, d.sundown) == ("avg_above_low", ("c2",))


# --- decide as a sequence of rules ---------------------------------------------------------

RULE_ROWS = [
    # id, observations, desired, the first rule that decides
    ("floor_guard", pool(70, 70, 70), 3, "_below_floor"),
    ("ceiling_guard", pool(*[70] * 16), 16, "_above_ceiling"),
    ("no_active_guard", [], 5, "_no_active"),
    ("no_samples_guard", pool(70, 70, 70, 70, 70, category=Category.INIT), 5, "_no_samples"),
    ("scale_up_rule", pool(40, 40, 40, 40, 40), 5, "_scale_up"),
    ("scale_up_rule_refusing_at_max", pool(*[40] * 15), 15, "_scale_up"),
    ("scale_down_rule", pool(90, 90, 90, 90, 90, 90), 6, "_scale_down"),
    ("scale_down_rule_at_floor", pool(90, 90, 90, 90, 90), 5, "_scale_down"),
    ("within_band_rule", pool(70, 70, 70, 70, 70), 5, "_within_band"),
]


@pytest.mark.parametrize(("observations", "desired", "rule"), [r[1:] for r in RULE_ROWS],
                         ids=[r[0] for r in RULE_ROWS])
def test_rules_pass_until_one_decides(observations: list[Observation], desired: int,
                                      rule: str) -> None:
    state = PolicyState(desired=desired)
    ctx = Context.build(state, observations, BASE, NOW)
    verdicts = [(g.__name__, g(ctx)) for g in GUARDS]
    if all(v is None for _, v in verdicts):
        load = Load.of(ctx)
        verdicts += [(r.__name__, r(ctx, load)) for r in STRATEGIES[DEFAULT_STRATEGY]]
    name, verdict = next((n, v) for n, v in verdicts if v is not None)
    assert name == rule
    assert verdict is not None
    assert decide(state, observations, BASE, NOW).reason == verdict.reason


def test_the_last_rule_of_every_strategy_always_decides() -> None:
    for rules in STRATEGIES.values():
        for scores in ([10] * 5, [55] * 5, [70] * 5, [99] * 8):
            ctx = Context.build(PolicyState(desired=len(scores)), pool(*scores), BASE, NOW)
            assert rules[-1](ctx, Load.of(ctx)) is not None
