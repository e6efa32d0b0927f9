"""Limits a token cannot lift: the start-up ceiling MAX_CONTAINERS_LIMIT and the
run-time range of every mutable number (issue 10 §1), from the settings table."""
from __future__ import annotations

import math
from typing import Any

import pytest

from agent.adapters.config_sources import load_settings
from agent.core.errors import ConfigError
from agent.core.settings import RUNTIME_MUTABLE, Settings, describe
from agent.core.settings_table import spec

REQUIRED = {"DOCKER_IMAGE": "worker:latest", "TARGET_PORT": "8080"}

# Mutable numbers whose run-time upper end is a relation to a start-up ceiling,
# not a range of their own.
CEILED = {"DEFAULT_CONTAINER", "MAX_CONTAINERS"}


def load(**env: str) -> Settings:
    return load_settings(environ={**REQUIRED, **env}, env_file=None)


def refusal(settings: Settings, partial: dict[str, Any]) -> str:
    with pytest.raises(ConfigError) as exc:
        settings.with_updates(partial)
    return str(exc.value)


def test_the_ceiling_defaults_to_the_start_up_max() -> None:
    s = load(MAX_CONTAINERS="10")
    assert (s.max_containers_limit, s.sources["MAX_CONTAINERS_LIMIT"]) == (10, "derived")
    assert refusal(s, {"MAX_CONTAINERS": 100_000_000}) == (
        "MAX_CONTAINERS: must be an integer in 1..10 (MAX_CONTAINERS_LIMIT, fixed at "
        "start-up), got 100000000")


def test_lowering_the_max_does_not_lower_the_ceiling() -> None:
    s = load(MAX_CONTAINERS="10").with_updates({"MAX_CONTAINERS": 6})
    assert (s.max_containers, s.max_containers_limit) == (6, 10)
    back = s.with_updates({"MAX_CONTAINERS": 10})
    assert (back.max_containers, back.max_containers_limit) == (10, 10)
    assert "MAX_CONTAINERS_LIMIT" in refusal(back, {"MAX_CONTAINERS": 11})


def test_an_explicit_ceiling_allows_growth_up_to_it() -> None:
    s = load(DEFAULT_CONTAINER="2", MAX_CONTAINERS="4", MAX_CONTAINERS_LIMIT="12")
    assert s.with_updates({"MAX_CONTAINERS": 12}).max_containers == 12
    assert "1..12" in refusal(s, {"MAX_CONTAINERS": 13})
    # DEFAULT_CONTAINER ≤ MAX_CONTAINERS ≤ the ceiling: the floor cannot pass it either
    assert "MAX_CONTAINERS (4)" in refusal(s, {"DEFAULT_CONTAINER": 13})


def test_the_ceiling_is_start_up_only_and_checked_at_start_up() -> None:
    assert "MAX_CONTAINERS_LIMIT" not in RUNTIME_MUTABLE
    with pytest.raises(ConfigError) as exc:
        load(MAX_CONTAINERS="10", MAX_CONTAINERS_LIMIT="5")
    assert str(exc.value) == "MAX_CONTAINERS_LIMIT: must be an integer ≥ MAX_CONTAINERS (10), got '5'"
    assert refusal(load(), {"MAX_CONTAINERS_LIMIT": 100}) == (
        "MAX_CONTAINERS_LIMIT: cannot be changed at run time; restart the agent with the new value")


def test_a_constructed_settings_takes_its_ceiling_from_its_own_max() -> None:
    s = Settings(docker_image="x", target_port=80, max_containers=40)
    assert s.with_updates({"MAX_CONTAINERS": 30}).max_containers_limit == 40
    assert "1..40" in refusal(s, {"MAX_CONTAINERS": 41})


def test_every_mutable_number_has_a_finite_range_at_run_time() -> None:
    for row in describe():
        if not row.mutable or row.kind not in ("int", "float") or row.name in CEILED:
            continue
        bounds = row.runtime_range
        assert bounds is not None and bounds.lo is not None and bounds.hi is not None, row.name
        assert math.isfinite(bounds.hi), row.name
        if row.runtime is not None:  # inside the start-up bounds
            assert row.bounds is not None and row.bounds.contains(bounds.lo if not bounds.lo_open
                                                                  else bounds.lo + 1e-9), row.name


RANGES = [
    ("COOLDOWN_PERIOD", 1e9, "must be a number in [0, 3600] at run time"),
    ("SCALE_CHECK_PERIOD", 0.001, "must be a number in [0.1, 3600] at run time"),
    ("SCALE_STEP", 1000, "must be an integer in 1..100 at run time"),
    ("PROBE_TIMEOUT", 3600, "must be a number in [0.01, 60] at run time"),
    ("DRAIN_TIMEOUT", 1e7, "must be a number in [0, 86400] at run time"),
    ("CPU_WEIGHT", 1e6, "must be a number in [0, 10] at run time"),
    ("NETWORK_CAPACITY_BPS", 1, "must be a number in [1000, 1e+12] at run time"),
    ("SCALE_DOWN_STABILIZATION", 1e6, "must be a number in [0, 3600] at run time"),
    ("SCALE_UP_LIMIT", 10_000, "must be an integer in 1..100 at run time"),
    ("FORECAST_HORIZON", 10**6, "must be an integer in 1..3600 at run time"),
    ("SLOW_START_WINDOW", 1e9, "must be a number in [0, 3600] at run time"),
    ("TARGET_IN_FLIGHT", 1e9, "must be a number in (0, 100000] at run time"),
]


@pytest.mark.parametrize(("name", "value", "message"), RANGES, ids=[r[0] for r in RANGES])
def test_out_of_range_at_run_time_names_the_setting_and_the_range(
        name: str, value: float, message: str) -> None:
    text = refusal(load(), {name: value})
    assert text.startswith(f"{name}: {message}"), text
    assert text.endswith(f"got {value!r}")


@pytest.mark.parametrize(("name", "value", "message"), RANGES, ids=[r[0] for r in RANGES])
def test_start_up_may_use_the_whole_range(name: str, value: float, message: str) -> None:
    """The run-time range binds a token holder, not the operator at start-up."""
    if spec(name).bounds is not None and not spec(name).bounds.contains(value):  # type: ignore[union-attr]
        pytest.fail(f"{name}={value} is outside the start-up bounds too")
    env = {name: str(value)}
    if name == "SCALE_CHECK_PERIOD":
        env["SCALE_DOWN_STABILIZATION"] = "1"
    assert getattr(load(**env), name.lower()) == value


def test_inside_the_range_is_accepted_and_the_edges_are_inclusive() -> None:
    s = load().with_updates({"COOLDOWN_PERIOD": 3600, "SCALE_STEP": 100, "CPU_WEIGHT": 0})
    assert (s.cooldown_period, s.scale_step, s.cpu_weight) == (3600.0, 100, 0.0)


def test_null_unsets_an_optional_setting_only() -> None:
    s = load().with_updates({"TARGET_IN_FLIGHT": 8})
    assert s.target_in_flight == 8.0
    assert s.with_updates({"TARGET_IN_FLIGHT": None}).target_in_flight is None
    assert refusal(s, {"SCALE_STEP": None}) == "SCALE_STEP: must have a value, got None"


def test_a_runtime_layer_keeps_start_up_derived_values_pinned() -> None:
    s = load(TICK_INTERVAL="2")
    t = s.with_updates({"SCALE_STEP": 2}).with_token("tok")
    assert (t.tick_deadline, t.max_containers_limit, t.data_dir) == (1.6, 15, s.data_dir)
    assert t.sources["TICK_DEADLINE"] == "derived"
