"""The pure encoding of agent.core.store_codec: records <-> Redis fields, no server needed."""
from __future__ import annotations

import math

import pytest

from agent.core.records import Category, ContainerInfo
from agent.core.store_codec import (
    Keys,
    TickWrite,
    container_record,
    decode_containers,
    decode_desired,
    decode_event,
    decode_json_hash,
    decode_sundown,
    encode_containers,
    encode_desired,
    encode_event,
    encode_json,
    encode_json_hash,
    encode_sundown,
    encode_tick,
    plan_hash_replace,
    validate_stream_id,
)


def test_keys_follow_the_documented_layout() -> None:
    k = Keys.for_app("RUSTYBALANCER")
    assert k.prefix == "da:RUSTYBALANCER:"
    assert (k.desired, k.containers, k.sundown, k.config, k.summary, k.policy, k.events) == (
        "da:RUSTYBALANCER:desired",
        "da:RUSTYBALANCER:containers",
        "da:RUSTYBALANCER:sundown",
        "da:RUSTYBALANCER:config",
        "da:RUSTYBALANCER:summary",
        "da:RUSTYBALANCER:policy",
        "da:RUSTYBALANCER:events",
    )
    with pytest.raises(ValueError, match="non-empty"):
        Keys.for_app("")


def test_container_record_has_the_spec_fields() -> None:
    info = ContainerInfo(
        name="w1", id="abc", image="img:1", status="running", created=1700.5, host_port=32768
    )
    record = container_record(info, category=Category.MU, score=55.5)
    assert record == {
        "name": "w1", "id": "abc", "category": "MU", "score": 55.5,
        "host_port": 32768, "image": "img:1", "created": 1700.5,
    }
    assert decode_containers(encode_containers({"w1": record})) == {"w1": record}


@pytest.mark.parametrize(
    ("value", "text"),
    [
        ({"a": 1.5}, '{"a":1.5}'),
        ({"f": math.nan, "g": [math.inf, -math.inf, 2.0]}, '{"f":null,"g":[null,null,2.0]}'),
        (Category.SUNDOWN, '"SUNDOWN"'),
        ([1, "x", None, True], '[1,"x",null,true]'),
    ],
)
def test_json_is_compact_and_strict(value: object, text: str) -> None:
    assert encode_json(value) == text


def test_unencodable_value_names_where_it_is() -> None:
    with pytest.raises(TypeError, match=r"policy\[when\]: cannot be stored as JSON"):
        encode_json_hash({"when": object()}, what="policy")


def test_json_hash_round_trip_and_bad_json() -> None:
    fields = encode_json_hash({"MAX_CONTAINERS": 20, "weights": [0.1, 0.2]}, what="config")
    assert fields == {"MAX_CONTAINERS": "20", "weights": "[0.1,0.2]"}
    assert decode_json_hash(fields, what="config") == {"MAX_CONTAINERS": 20, "weights": [0.1, 0.2]}
    with pytest.raises(ValueError, match=r"config\[x\]: invalid JSON"):
        decode_json_hash({"x": "{nope"}, what="config")


@pytest.mark.parametrize(("text", "value"), [(None, None), ("0", 0), ("15", 15)])
def test_desired_decodes(text: str | None, value: int | None) -> None:
    assert decode_desired(text) == value


@pytest.mark.parametrize("text", ["x", "-1", "1.5", ""])
def test_bad_desired_is_rejected(text: str) -> None:
    with pytest.raises(ValueError, match="desired"):
        decode_desired(text)


@pytest.mark.parametrize("value", [-1, 1.0, True, "3"])
def test_desired_must_be_a_count(value: object) -> None:
    with pytest.raises(ValueError, match="desired: must be an integer >= 0"):
        encode_desired(value)  # type: ignore[arg-type]


def test_container_record_must_match_its_name() -> None:
    assert decode_containers(encode_containers({"w1": {"id": "x"}})) == {"w1": {"name": "w1", "id": "x"}}
    with pytest.raises(ValueError, match=r"containers\[w1\]: record is named 'w2'"):
        encode_containers({"w1": {"name": "w2"}})
    with pytest.raises(ValueError, match="not a JSON object"):
        decode_containers({"w1": "[1]"})


def test_sundown_marks() -> None:
    fields = encode_sundown({"w1": 1700000000.25, "w2": 5})
    assert fields == {"w1": "1700000000.25", "w2": "5.0"}
    assert decode_sundown(fields) == {"w1": 1700000000.25, "w2": 5.0}
    with pytest.raises(ValueError, match=r"sundown\[w1\]: must be a finite epoch time"):
        encode_sundown({"w1": math.nan})
    with pytest.raises(ValueError, match=r"sundown\[w1\]: not a number"):
        decode_sundown({"w1": "soon"})


def test_event_round_trip() -> None:
    fields = encode_event("scale_check", {"reason": "no_action", "avg": math.nan}, 1700.5)
    assert fields == {"kind": "scale_check", "ts": "1700.5", "data": '{"reason":"no_action","avg":null}'}
    assert decode_event("1-0", fields) == {
        "id": "1-0", "kind": "scale_check", "ts": 1700.5, "data": {"reason": "no_action", "avg": None},
    }
    with pytest.raises(ValueError, match="event 1-0: missing field 'kind'"):
        decode_event("1-0", {"ts": "1", "data": "{}"})
    with pytest.raises(ValueError, match="event kind must be a non-empty string"):
        encode_event("", {}, 1.0)


@pytest.mark.parametrize("good", ["0", "1700000000000-0", "1700000000000-42", "5",
                                  "18446744073709551615-18446744073709551615"])
def test_stream_ids_accepted(good: str) -> None:
    assert validate_stream_id(good) == good


@pytest.mark.parametrize("bad", ["", "+", "-", "(1-0", "1-", "abc", "1-0 ", "1-0-0",
                                 # past 64 bits: Redis would refuse it (a 503, not a 422)
                                 "18446744073709551616", "77305900453348305503-0",
                                 "1-18446744073709551616"])
def test_stream_ids_rejected(bad: str) -> None:
    with pytest.raises(ValueError, match="before: not a stream id"):
        validate_stream_id(bad)


def test_encode_tick_covers_every_key() -> None:
    tick = TickWrite(
        desired=3,
        containers={"w1": {"id": "a", "score": 80.0}},
        sundown={"w1": 10.0},
        summaries={"w1": {"slope": -0.5, "forecast": math.nan}},
        policy={"last_scale_up": 99.0, "recommendations": [[1.0, 3]]},
    )
    assert encode_tick(tick) == {
        "desired": "3",
        "containers": {"w1": '{"name":"w1","id":"a","score":80.0}'},
        "sundown": {"w1": "10.0"},
        "summary": {"w1": '{"name":"w1","slope":-0.5,"forecast":null}'},
        "policy": {"last_scale_up": "99.0", "recommendations": "[[1.0,3]]"},
    }


def test_plan_hash_replace_deletes_what_is_gone() -> None:
    hset, hdel = plan_hash_replace({"a": "1", "c": "3"}, {"a", "b", "d"})
    assert hset == {"a": "1", "c": "3"}
    assert hdel == ["b", "d"]
    assert plan_hash_replace({}, set()) == ({}, [])
