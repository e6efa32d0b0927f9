"""agent.core.store_delta: what a delta write sends, without a server."""
from __future__ import annotations

import pytest

from agent.core.store_codec import TickWrite, encode_tick
from agent.core.store_delta import Written, diff_tick


def _rec(name: str, score: float = 80.0) -> dict[str, object]:
    return {"name": name, "id": f"id-{name}", "category": "LU", "score": score}


def _tick(desired: int = 2, **records: float) -> TickWrite:
    return TickWrite(
        desired=desired,
        containers={n: _rec(n, s) for n, s in records.items()},
        sundown={},
        summaries={n: {"slope": 0.0} for n in records},
        policy={"last_scale_up": 1.0, "recommendations": [[1.0, 2]]},
    )


def _written(state: TickWrite) -> Written:
    return Written.from_tick(state, encode_tick(state))


def test_equal_values_send_nothing() -> None:
    state = _tick(a=80.0, b=70.0)
    delta, after = diff_tick(_tick(a=80.0, b=70.0), _written(state))
    assert delta.empty and delta.desired is None
    assert after.field_names() == _written(state).field_names()


def test_changed_added_and_removed_fields() -> None:
    delta, _ = diff_tick(_tick(3, a=80.0, c=10.0), _written(_tick(a=80.0, b=70.0)))
    assert delta.desired == "3"
    assert set(delta.hset["containers"]) == {"c"} and delta.hdel["containers"] == ["b"]
    assert set(delta.hset["summary"]) == {"c"} and delta.hdel["summary"] == ["b"]
    assert not delta.hset["policy"] and not delta.hdel["policy"]
    full = encode_tick(_tick(3, a=80.0, c=10.0))
    assert delta.hset["containers"]["c"] == full["containers"]["c"]


def test_fields_read_back_from_redis_are_compared_by_their_encoding() -> None:
    state = _tick(a=80.0)
    encoded = encode_tick(state)
    loaded = Written.from_redis(encoded["desired"], {n: encoded[n] for n in ("containers", "sundown",
                                                                           "summary", "policy")})
    assert diff_tick(state, loaded)[0].empty
    delta, after = diff_tick(_tick(a=81.0), loaded)
    assert set(delta.hset["containers"]) == {"a"}
    assert diff_tick(_tick(a=81.0), after)[0].empty


def test_a_record_mutated_by_the_caller_after_the_write_is_still_seen() -> None:
    state = _tick(a=80.0)
    _, after = diff_tick(state, Written())
    record = state.containers["a"]
    assert isinstance(record, dict)
    record["score"] = 12.0  # the same dict object, changed in place
    delta, _ = diff_tick(state, after)
    assert set(delta.hset["containers"]) == {"a"}


def test_policy_values_are_compared_by_encoding() -> None:
    state = _tick(a=80.0)
    written = _written(state)
    policy = dict(state.policy)
    policy["recommendations"][0][1] = 5  # type: ignore[index]
    delta, _ = diff_tick(TickWrite(desired=2, containers=state.containers,
                                   summaries=state.summaries, policy=policy), written)
    assert set(delta.hset["policy"]) == {"recommendations"}


def test_bad_changed_data_raises_before_anything_is_sent() -> None:
    with pytest.raises(ValueError, match="record is named"):
        diff_tick(TickWrite(desired=1, containers={"a": {"name": "b"}}), Written())
