"""The tick view a leader shares with its followers: round trip, untrusted input, and
how a follower's pool follows it."""
from __future__ import annotations

import math

import pytest

from agent.core.policy import PolicyState
from agent.core.pool import PoolState
from agent.core.records import ContainerInfo, Sample
from agent.core.tick_view import TickView, decode_view, encode_view, pool_from_view, view_of

A = ContainerInfo("w-a", "id-a", "img:1", "running", 100.0, host_port=32001)
B = ContainerInfo("w-b", "id-b", "img:1", "exited", 101.0, host_port=None, address="10.0.0.2")


def _view(**overrides: object) -> TickView:
    values: dict = dict(
        leader="host:1:abc", tick=7, time=1_700_000_000.5, desired=2, containers=(A, B),
        samples={"w-a": Sample(12.5, 30.0, 1e6, 0.002),
                 "w-b": Sample(math.nan, 1.0, math.nan, math.nan, stale=True)},
        sundown={"w-a": 1_700_000_000.0}, engine_ok=True,
        last_decision={"action": "none", "reason": "within_band"},
    )
    values.update(overrides)
    return TickView(**values)


def test_round_trip_keeps_every_field_and_nan_as_not_measured() -> None:
    view = _view()
    back = decode_view(encode_view(view))
    assert back.containers == view.containers
    assert back.samples["w-a"] == view.samples["w-a"]
    stale = back.samples["w-b"]
    assert stale.stale and math.isnan(stale.cpu_percent) and math.isnan(stale.response_time)
    assert (back.leader, back.tick, back.time, back.desired, back.sundown, back.last_decision) == (
        view.leader, view.tick, view.time, view.desired, view.sundown, view.last_decision)


def test_encoding_is_compact() -> None:
    text = encode_view(_view(last_decision=None))
    assert " " not in text and "NaN" not in text
    assert len(text) < 400  # two containers, two samples


@pytest.mark.parametrize("text", [
    "not json", "[]", '{"v": 2}',
    encode_view(_view()).replace('"tick":7', '"tick":-1'),
    encode_view(_view()).replace('"d":2', '"d":true'),
    encode_view(_view()).replace('"running"', '""'),
    encode_view(_view()).replace('32001', '70000'),
    encode_view(_view()).replace('[12.5,30.0,1000000.0,0.002,0]', '[12.5,30.0]'),
    encode_view(_view()).replace('"by":"host:1:abc"', '"by":7'),
    encode_view(_view()).replace('"ld":{', '"ld":[{').replace('}}', '}]}'),
])
def test_untrusted_views_are_refused(text: str) -> None:
    with pytest.raises(ValueError):
        decode_view(text)


def test_view_of_a_pool_carries_only_listed_containers_samples() -> None:
    pool = PoolState(policy=PolicyState(desired=3), containers={"w-a": A},
                     samples={"w-a": Sample(1, 2, 3, 4), "gone": Sample()}, sundown={})
    view = view_of(pool, leader="me", tick=3, time=5.0)
    assert set(view.samples) == {"w-a"} and view.desired == 3 and view.containers == (A,)


def test_a_followers_pool_takes_the_listing_and_keeps_sticky_marks() -> None:
    # The follower read a mark of w-b from Redis (a drain written ahead after the view).
    mine = PoolState(policy=PolicyState(desired=5), sundown={"w-b": 50.0, "old": 1.0})
    pool = pool_from_view(mine, _view())
    assert set(pool.containers) == {"w-a", "w-b"} and pool.desired == 2
    assert pool.sundown == {"w-a": 1_700_000_000.0, "w-b": 50.0}  # "old" is not listed
    assert pool.engine_ok and pool.last_decision == {"action": "none", "reason": "within_band"}
    down = pool_from_view(pool, _view(engine_ok=False, last_decision=None))
    assert not down.engine_ok and down.last_decision == pool.last_decision
