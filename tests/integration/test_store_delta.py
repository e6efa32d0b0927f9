"""Delta writes (`write_tick(..., only_changes=True)`) against a real redis-server:
only what changed is sent, Redis ends up exactly as after a full write, and
whenever the store cannot trust what it knows it writes everything again."""
from __future__ import annotations

import dataclasses
import threading
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import trio

from agent.adapters.redis_store import RedisStore, TickWrite
from agent.core.errors import FencedOut, StoreError
from tests.fixtures.redis import RedisTestServer

from .test_store import expected_state, make_store, record, tick

pytestmark = pytest.mark.redis

__all__ = ["make_store"]  # the fixture, imported for this module's tests


async def _commands_of(
    redis_server: RedisTestServer, redis_app: str, action: Callable[[], Awaitable[object]]
) -> list[str]:
    """The commands the store's connection sent to Redis while `action` ran
    (MONITOR, like test_store.test_a_tick_is_one_transaction)."""
    commands: list[dict[str, Any]] = []
    ready = threading.Event()

    def monitor() -> None:
        with redis_server.client() as client, client.monitor() as m:
            ready.set()
            while True:
                command = m.next_command()
                commands.append(command)
                if command["command"].startswith("PING"):
                    return

    async with trio.open_nursery() as nursery:
        nursery.start_soon(trio.to_thread.run_sync, monitor)
        await trio.to_thread.run_sync(ready.wait)
        await action()
        with redis_server.client() as marker:
            await trio.to_thread.run_sync(marker.ping)
    ours = {(c["client_address"], c["client_port"]) for c in commands if f"da:{redis_app}:" in c["command"]}
    return [c["command"] for c in commands if (c["client_address"], c["client_port"]) in ours]


def _verbs(commands: list[str]) -> list[str]:
    return [c.split(" ")[0] for c in commands]


async def test_only_the_changed_fields_are_sent(
    make_store: Callable[..., RedisStore], redis_server: RedisTestServer, redis_app: str
) -> None:
    store = make_store()
    await store.load()
    first = tick(3, ["w1", "w2", "w3"], sundown={"w3": 5.0})
    await store.write_tick(first, only_changes=True)  # nothing known yet beyond load: all of it
    assert await make_store().load() == expected_state(first)

    changed = dataclasses.replace(first, containers={
        **first.containers, "w2": record("w2", score=42.0, category="MU")})
    sent = await _commands_of(redis_server, redis_app,
                              lambda: store.write_tick(changed, only_changes=True))
    assert _verbs(sent) == ["MULTI", "HSET", "EXEC"]
    assert f"da:{redis_app}:containers w2" in sent[1] and "w1" not in sent[1]
    assert store.delta_writes >= 1
    assert await make_store().load() == expected_state(changed)

    # A container gone, a mark and the desired count changed: HDEL / HSET / SET only.
    smaller = tick(2, ["w1", "w3"], sundown={"w3": 6.0})
    smaller = dataclasses.replace(smaller, containers={"w1": record("w1"), "w3": record("w3")})
    sent = await _commands_of(redis_server, redis_app,
                              lambda: store.write_tick(smaller, only_changes=True))
    assert _verbs(sent) == ["MULTI", "SET", "HDEL", "HSET", "HDEL", "EXEC"]
    assert await make_store().load() == expected_state(smaller)


async def test_nothing_changed_sends_nothing_but_events_still_go(
    make_store: Callable[..., RedisStore], redis_server: RedisTestServer, redis_app: str
) -> None:
    store = make_store()
    await store.load()
    state = tick(2, ["w1", "w2"])
    await store.write_tick(state)
    same = tick(2, ["w1", "w2"])  # equal values, other objects
    assert await _commands_of(redis_server, redis_app,
                              lambda: store.write_tick(same, only_changes=True)) == []
    await store.append_event("scale_check", {"reason": "no_action"})
    sent = await _commands_of(redis_server, redis_app,
                              lambda: store.write_tick(same, only_changes=True))
    assert _verbs(sent) == ["MULTI", "XADD", "EXEC"]
    assert [e["kind"] for e in await store.events()] == ["scale_check"]


async def test_a_restarted_redis_gets_the_complete_state_from_a_delta_write(
    make_store: Callable[..., RedisStore], redis_server: RedisTestServer
) -> None:
    store = make_store()
    await store.load()
    state = tick(3, ["w1", "w2", "w3"], sundown={"w2": 1.0})
    await store.write_tick(state)
    await redis_server.arestart(wipe=True)  # between two ticks: no call failed
    changed = tick(3, ["w1", "w2", "w3"], sundown={"w2": 1.0, "w3": 2.0})
    await store.write_tick(changed, only_changes=True)  # the reconnect is seen: everything
    assert await make_store().load() == expected_state(changed)


async def test_after_an_outage_a_delta_write_is_a_full_write(
    make_store: Callable[..., RedisStore], redis_server: RedisTestServer, redis_app: str,
) -> None:
    store = make_store(backoff_initial=0.05, backoff_max=0.2)
    await store.load()
    await store.write_tick(tick(2, ["w1", "w2"]))
    await redis_server.astop()
    with pytest.raises(StoreError):
        await store.write_tick(tick(3, ["w1", "w2"]), only_changes=True)
    await redis_server.astart()
    summary = f"da:{redis_app}:summary"
    with redis_server.client() as other:  # Redis came back lacking a field
        other.hdel(summary, "w1")
    deltas = store.delta_writes
    final = tick(3, ["w1", "w2"])
    with trio.fail_after(20):
        while True:
            try:
                await store.write_tick(final, only_changes=True)
                break
            except StoreError:
                await trio.sleep(max(0.01, store.retry_in()))
    assert store.delta_writes == deltas  # it was written in full
    assert await make_store().load() == expected_state(final)

    with redis_server.client() as other:
        other.hdel(summary, "w2")
    # Trusted again: a delta write does not repair what someone else removed...
    await store.write_tick(dataclasses.replace(final, desired=2), only_changes=True)
    assert store.delta_writes == deltas + 1
    with redis_server.client() as other:
        assert not other.hexists(summary, "w2")
    # ...the runtime's periodic full write does.
    await store.write_tick(final)
    assert await make_store().load() == expected_state(final)


async def test_a_delta_write_validates_what_changed(make_store: Callable[..., RedisStore]) -> None:
    store = make_store()
    await store.load()
    await store.write_tick(tick(1, ["w1"]))
    bad = TickWrite(desired=1, containers={"w1": {"name": "other"}})
    with pytest.raises(ValueError, match="record is named"):
        await store.write_tick(bad, only_changes=True)
    assert (await make_store().load()).containers["w1"] == record("w1")


async def test_fenced_delta_writes_hold_to_one_lease_tenure(
    make_store: Callable[..., RedisStore], redis_server: RedisTestServer, redis_app: str
) -> None:
    """Two agents' stores on one Redis. A follower's knowledge (its start-up
    load) is stale once the leader has written: taking over, it writes the
    full state, not a delta against what it never wrote; and a deposed
    leader's delta write, even one with nothing new in it, is refused."""
    leader, follower = make_store(), make_store()
    await leader.load()
    await follower.load()  # knows Redis as it was at its start
    token = await leader.acquire_lease("agent-a", 10.0, None)
    assert token is not None and token.agent_id == "agent-a"
    first = tick(2, ["w1", "w2"])
    await leader.write_tick(first, fence=token, only_changes=True)  # a new tenure: in full
    deltas = leader.delta_writes
    grown = tick(3, ["w1", "w2", "w3"], sundown={"w3": 4.0})
    await leader.write_tick(grown, fence=token, only_changes=True)
    assert leader.delta_writes == deltas + 1  # the same tenure: a delta
    assert await make_store().load() == expected_state(grown)

    assert await leader.release_lease(token)
    successor = await follower.acquire_lease("agent-b", 10.0, None)
    assert successor is not None and successor.token > token.token
    # What it last knew was {w1, w2}: a delta would leave w3 and its mark behind.
    await follower.write_tick(first, fence=successor, only_changes=True)
    assert follower.delta_writes == 0
    assert await make_store().load() == expected_state(first)

    sent = await _commands_of(redis_server, redis_app, lambda: _refused(
        leader.write_tick(grown, fence=token, only_changes=True)))
    assert "EXEC" not in _verbs(sent) and "MULTI" not in _verbs(sent)
    assert await make_store().load() == expected_state(first)
    assert await leader.acquire_lease("agent-a", 10.0, None) == successor  # it follows
    # Leading again later, under a new token: in full again.
    assert await follower.release_lease(successor)
    again = await leader.acquire_lease("agent-a", 10.0, None)
    assert again is not None and again.token > successor.token
    deltas = leader.delta_writes
    await leader.write_tick(grown, fence=again, only_changes=True)
    assert leader.delta_writes == deltas
    assert await make_store().load() == expected_state(grown)


async def _refused(write: Awaitable[None]) -> None:
    with pytest.raises(FencedOut, match="stale"):
        await write
