"""agent.service.hub: latest-value fan-out."""
from __future__ import annotations

import pytest
import trio
import trio.testing

from agent.service.hub import Hub, Subscription
from agent.core.records import Snapshot


def snap(tick: int) -> Snapshot:
    return Snapshot(tick, float(tick), (), (), {}, tick, tick)


async def test_latest_and_version() -> None:
    hub = Hub()
    assert hub.latest == Snapshot.empty() and hub.version == 0
    hub.publish(snap(1))
    hub.publish(snap(2))
    assert hub.latest.tick == 2 and hub.version == 2
    assert Hub(snap(9)).latest.tick == 9


async def test_subscribe_yields_current_at_once_then_changes() -> None:
    hub = Hub(snap(1))
    sub = hub.subscribe()
    assert isinstance(sub, Subscription)
    with trio.fail_after(1):
        assert (await sub.__anext__()).tick == 1
    got = []

    async def consumer() -> None:
        async for s in sub:
            got.append(s.tick)
            if s.tick == 3:
                return

    async with trio.open_nursery() as nursery:
        nursery.start_soon(consumer)
        await trio.testing.wait_all_tasks_blocked()
        hub.publish(snap(2))
        await trio.testing.wait_all_tasks_blocked()
        hub.publish(snap(3))
    assert got == [2, 3]


async def test_include_current_false_waits_for_the_next() -> None:
    hub = Hub(snap(1))
    sub = hub.subscribe(include_current=False)
    with trio.move_on_after(0.05) as scope:
        await sub.__anext__()
    assert scope.cancelled_caught
    hub.publish(snap(2))
    with trio.fail_after(1):
        assert (await sub.__anext__()).tick == 2


async def test_slow_subscriber_skips_stale_snapshots() -> None:
    hub = Hub(snap(0))
    sub = hub.subscribe()
    assert (await sub.__anext__()).tick == 0
    for tick in range(1, 10_001):  # the subscriber is not running meanwhile
        hub.publish(snap(tick))
    assert (await sub.__anext__()).tick == 10_000
    # nothing else is pending: the 9,999 others were never queued
    with trio.move_on_after(0.05) as scope:
        await sub.__anext__()
    assert scope.cancelled_caught
    assert sub.seen == hub.version


async def test_a_stalled_subscriber_does_not_delay_the_others() -> None:
    hub = Hub(snap(0))
    stalled = hub.subscribe()
    await stalled.__anext__()  # ... and never reads again
    seen: list[list[int]] = [[] for _ in range(50)]

    async def fast(i: int) -> None:
        async for s in hub.subscribe(include_current=False):
            seen[i].append(s.tick)
            if s.tick == 5:
                return

    async with trio.open_nursery() as nursery:
        for i in range(50):
            nursery.start_soon(fast, i)
        for tick in range(1, 6):
            await trio.testing.wait_all_tasks_blocked()
            hub.publish(snap(tick))  # publish is synchronous: it cannot block
    assert all(s == [1, 2, 3, 4, 5] for s in seen)


async def test_publish_during_delivery_is_not_lost() -> None:
    hub = Hub(snap(0))
    sub = hub.subscribe()
    first = await sub.__anext__()
    assert first.tick == 0

    async def publisher() -> None:
        hub.publish(snap(1))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(publisher)
        with trio.fail_after(1):
            assert (await sub.__anext__()).tick == 1


async def test_close_ends_every_subscription() -> None:
    hub = Hub(snap(1))
    ended = []

    async def consumer(i: int) -> None:
        async for _ in hub.subscribe():
            pass
        ended.append(i)

    with trio.fail_after(2):
        async with trio.open_nursery() as nursery:
            for i in range(3):
                nursery.start_soon(consumer, i)
            await trio.testing.wait_all_tasks_blocked()
            hub.close()
            hub.close()  # idempotent
    assert sorted(ended) == [0, 1, 2]
    assert hub.closed
    # after close: subscriptions end at once, publishing is ignored
    with pytest.raises(StopAsyncIteration):
        await hub.subscribe().__anext__()
    hub.publish(snap(2))
    assert hub.latest.tick == 1
    with trio.fail_after(1):
        await hub.wait_closed()


async def test_waiting_subscriber_is_cancellable() -> None:
    hub = Hub()
    sub = hub.subscribe(include_current=False)
    with trio.move_on_after(0.01) as scope:
        await sub.__anext__()
    assert scope.cancelled_caught
    hub.publish(snap(1))
    assert (await sub.__anext__()).tick == 1


def test_subscription_state_is_a_version_number() -> None:
    assert Subscription.__slots__ == ("_hub", "_seen")
