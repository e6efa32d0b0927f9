"""What a restarted agent believes of the state read back from Redis
(`agent.core.recovery.vet`, `agent.core.store_codec.decode_state`): one named
scenario a row, each a bad stored value left out or corrected, the rest kept."""
from __future__ import annotations

from typing import Any

import pytest

from agent.adapters.config_sources import load_settings
from agent.core.policy import PolicyState
from agent.core.recovery import MAX_RECOMMENDATIONS, vet, vet_config
from agent.core.settings import Settings
from agent.core.store_codec import StoredState, decode_state

NOW = 1_700_000_000.0


def settings(**env: str) -> Settings:
    return load_settings(environ={"DOCKER_IMAGE": "w:1", "TARGET_PORT": "80",
                                  "DEFAULT_CONTAINER": "2", "MAX_CONTAINERS": "8", **env},
                         env_file=None)


def vetted(**stored: Any) -> Any:
    s = settings()
    return vet(StoredState(**stored), s, PolicyState(desired=s.default_container), NOW)


def test_a_clean_state_is_taken_whole() -> None:
    v = vetted(desired=4, sundown={"w-1": NOW - 5}, config={"SCALE_STEP": 2},
               policy={"desired": 4, "last_scale_up": NOW - 10, "recommendations": [[NOW - 1, 3]]},
               containers={"w-1": {"name": "w-1", "id": "abc"}})
    assert (v.policy.desired, v.policy.last_scale_up, v.policy.recommendations) == (
        4, NOW - 10, ((NOW - 1, 3),))
    assert v.sundown == {"w-1": NOW - 5}
    assert v.settings.scale_step == 2 and v.overrides == {"SCALE_STEP": 2}
    assert v.known == ("w-1",) and v.warnings == () and not v.config_changed


CONFIG_CASES = [
    ("start_up_only_key", {"DOCKER_IMAGE": "evil:1", "SCALE_STEP": 3},
     {"SCALE_STEP": 3}, "config DOCKER_IMAGE dropped: start-up only"),
    ("unknown_key", {"NOPE": 1, "SCALE_STEP": 3}, {"SCALE_STEP": 3}, "config 'NOPE' dropped: unknown"),
    ("over_the_ceiling", {"MAX_CONTAINERS": 100_000_000, "SCALE_STEP": 3},
     {"SCALE_STEP": 3}, "config MAX_CONTAINERS dropped: must be an integer in 1..8"),
    ("out_of_run_time_range", {"COOLDOWN_PERIOD": 1e12, "SCALE_STEP": 3},
     {"SCALE_STEP": 3}, "config COOLDOWN_PERIOD dropped: must be a number in [0, 3600] at run time"),
    ("wrong_type", {"SCALE_STEP": [1], "COOLDOWN_PERIOD": 7},
     {"COOLDOWN_PERIOD": 7}, "config SCALE_STEP dropped: must be an integer"),
    ("token", {"AGENT_API_TOKEN": "mine", "SCALE_STEP": 3}, {"SCALE_STEP": 3},
     "config AGENT_API_TOKEN dropped: start-up only"),
    ("other_spelling", {"scale-step": 3}, {"SCALE_STEP": 3}, None),
]


@pytest.mark.parametrize(("config", "kept", "warning"), [c[1:] for c in CONFIG_CASES],
                         ids=[c[0] for c in CONFIG_CASES])
def test_one_bad_config_key_is_dropped_and_the_rest_kept(
        config: dict[str, object], kept: dict[str, object], warning: str | None) -> None:
    s, accepted, warnings = vet_config(settings(), config)
    assert accepted == kept
    for name, value in kept.items():
        assert getattr(s, name.lower()) == value
    if warning is None:
        assert warnings == []
    else:
        assert len(warnings) == 1 and warnings[0].startswith(warning), warnings
    assert s.docker_image == "w:1"


def test_keys_valid_only_together_stay_together() -> None:
    s, accepted, warnings = vet_config(settings(), {"DEFAULT_CONTAINER": 3, "MAX_CONTAINERS": 3})
    assert (s.default_container, s.max_containers, warnings) == (3, 3, [])


def test_a_relation_broken_by_the_stored_key_drops_it() -> None:
    s, accepted, warnings = vet_config(settings(), {"HIGH_LOAD_THRESHOLD": 99, "SCALE_STEP": 2})
    assert accepted == {"SCALE_STEP": 2} and s.high_load_threshold == 55.0
    assert warnings[0].startswith("config HIGH_LOAD_THRESHOLD dropped")


def test_all_weights_zero_drops_the_weights_named() -> None:
    zero = {n: 0 for n in ("CPU_WEIGHT", "MEMORY_WEIGHT", "NETWORK_WEIGHT", "AVAILABILITY_WEIGHT")}
    s, accepted, warnings = vet_config(settings(), {**zero, "SCALE_STEP": 2})
    assert accepted == {"SCALE_STEP": 2} and s.cpu_weight == 0.35
    assert len(warnings) == 1


def test_a_dropped_key_asks_for_the_stored_config_to_be_rewritten() -> None:
    assert vetted(config={"DOCKER_IMAGE": "x"}).config_changed
    undecodable = decode_state(None, {}, {}, {"SCALE_STEP": "{"}, {}, {})
    assert vet(undecodable, settings(), PolicyState(desired=2), NOW).config_changed
    assert not vetted(config={"SCALE_STEP": 2}).config_changed


DESIRED_CASES = [("above_max", 100_000_000, 8), ("below_floor", 0, 2), ("inside", 5, 5)]


@pytest.mark.parametrize(("stored", "used"), [c[1:] for c in DESIRED_CASES],
                         ids=[c[0] for c in DESIRED_CASES])
def test_desired_is_clamped_into_the_range(stored: int, used: int) -> None:
    v = vetted(desired=stored)
    assert v.policy.desired == used
    assert bool(v.warnings) == (stored != used)


def test_a_future_last_scale_up_is_dropped_so_the_cooldown_can_pass() -> None:
    v = vetted(policy={"desired": 3, "last_scale_up": NOW + 10 * 365 * 86400})
    assert v.policy.last_scale_up is None and v.policy.desired == 3
    assert "last_scale_up" in v.warnings[0]


def test_bad_recommendations_are_dropped_and_their_number_bounded() -> None:
    recs = [[NOW - 1, 3], [NOW + 1e9, 3], [NOW - 2, 10**9]]
    v = vetted(policy={"desired": 3, "recommendations": recs})
    assert v.policy.recommendations == ((NOW - 1, 3),)
    many = [[NOW - i, 3] for i in range(MAX_RECOMMENDATIONS + 50, 0, -1)]
    v = vetted(policy={"desired": 3, "recommendations": many})
    assert len(v.policy.recommendations) == MAX_RECOMMENDATIONS
    assert v.policy.recommendations[-1] == (NOW - 1, 3)


def test_a_malformed_policy_state_falls_back_to_the_default() -> None:
    v = vetted(policy={"desired": "lots"}, desired=4)
    assert v.policy.desired == 4 and v.policy.last_scale_up is None
    assert v.warnings[0].startswith("policy state dropped")


def test_sundown_marks_keep_their_time_and_lose_only_what_is_bad() -> None:
    v = vetted(sundown={"w-1": NOW - 20, "w-2": NOW + 1e6, "../etc": NOW, "w-3": float("nan")})
    assert v.sundown == {"w-1": NOW - 20, "w-2": NOW}
    assert any("moved to now" in w and "w-2" in w for w in v.warnings)
    assert any("'../etc'" in w and "'w-3'" in w for w in v.warnings)


def test_records_not_named_as_their_key_are_left_out() -> None:
    v = vetted(containers={"w-1": {"name": "w-1"}, "w-2": {"name": "other"}, "w 3": {}})
    assert v.known == ("w-1",)
    assert len(v.warnings) == 1


def test_decode_state_keeps_what_decodes() -> None:
    state = decode_state(
        "x" * 100, {"w-1": "{broken", "w-2": '{"name":"w-2"}'}, {"w-1": "soon", "w-2": "12.5"},
        {"SCALE_STEP": "2", "BAD": "{"}, {"w-2": "[]"}, {"desired": "3"},
    )
    assert state.desired is None
    assert state.containers == {"w-2": {"name": "w-2"}}
    assert state.sundown == {"w-2": 12.5}
    assert state.config == {"SCALE_STEP": 2}
    assert state.policy == {"desired": 3} and state.summaries == {}
    assert len(state.problems) == 5
    assert state.problems[0].startswith("desired: not an integer")
    v = vet(state, settings(), PolicyState(desired=2), NOW)
    assert v.policy.desired == 3 and v.sundown == {"w-2": 12.5}
    assert sum(w.startswith("left out (does not decode)") for w in v.warnings) == 5
