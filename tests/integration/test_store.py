"""RedisStore against a real redis-server (tests/fixtures/redis.py)."""
from __future__ import annotations

import math
import threading
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import redis
import trio

from agent.core.errors import StoreError
from agent.adapters.redis_store import RedisStore, StoredState, TickWrite
from agent.core.ports import Store
from tests.fixtures.redis import RedisTestServer

pytestmark = pytest.mark.redis


def record(name: str, score: float = 80.0, category: str = "LU") -> dict[str, object]:
    return {
        "name": name, "id": f"id-{name}", "category": category, "score": score,
        "host_port": 30000 + len(name), "image": "demo:1", "created": 1700000000.0,
    }


def tick(
    desired: int,
    names: list[str],
    *,
    sundown: dict[str, float] | None = None,
    policy: dict[str, object] | None = None,
) -> TickWrite:
    return TickWrite(
        desired=desired,
        containers={n: record(n) for n in names},
        sundown=sundown or {},
        summaries={n: {"last_score": 80.0, "slope": 0.0, "forecast": 81.5} for n in names},
        policy=policy if policy is not None else {"last_scale_up": 1700000000.0},
    )


def expected_state(t: TickWrite, config: dict[str, object] | None = None) -> StoredState:
    return StoredState(
        desired=t.desired,
        containers={n: dict(r) for n, r in t.containers.items()},
        sundown=dict(t.sundown),
        config=config or {},
        policy=dict(t.policy),
        summaries={n: {"name": n, **s} for n, s in t.summaries.items()},
    )


@pytest.fixture
async def make_store(redis_url: str, redis_app: str) -> AsyncIterator[Callable[..., RedisStore]]:
    """Factory of stores on the test server and app, all closed after the test."""
    stores: list[RedisStore] = []

    def make(**kwargs: Any) -> RedisStore:
        kwargs.setdefault("socket_timeout", 0.5)
        url = kwargs.pop("url", redis_url)
        store = RedisStore(url, kwargs.pop("app", redis_app), **kwargs)
        stores.append(store)
        return store

    yield make
    for store in stores:
        await store.aclose()


async def write_until_ok(store: RedisStore, state: TickWrite, timeout: float = 20.0) -> int:
    """Poll write_tick (deadline) until it succeeds; returns the failed attempts."""
    failures = 0
    with trio.fail_after(timeout):
        while True:
            try:
                await store.write_tick(state)
                return failures
            except StoreError:
                failures += 1
                await trio.sleep(max(0.01, store.retry_in()))


# ------------------------------------------------------------------ round trips


async def test_is_a_store(make_store: Callable[..., RedisStore]) -> None:
    assert isinstance(make_store(), Store)


async def test_load_of_a_fresh_app_is_empty(make_store: Callable[..., RedisStore]) -> None:
    state = await make_store().load()
    assert state == StoredState() and state.empty


async def test_write_then_load_round_trip(make_store: Callable[..., RedisStore]) -> None:
    writer = make_store()
    await writer.load()
    t = tick(
        3, ["w1", "w2", "w3"], sundown={"w3": 1700000100.5},
        policy={"last_scale_up": 1700000050.0, "recommendations": [[1700000000.0, 3]]},
    )
    await writer.write_tick(t)
    await writer.save_config({"MAX_CONTAINERS": 20})
    # a restarted agent (a new store) sees exactly what was written
    assert await make_store().load() == expected_state(t, {"MAX_CONTAINERS": 20})


async def test_keys_are_the_documented_ones(
    make_store: Callable[..., RedisStore], redis_client: redis.Redis, redis_app: str
) -> None:
    store = make_store()
    await store.write_tick(tick(2, ["w1"], sundown={"w1": 5.0}))
    await store.save_config({"SCALE_STEP": 2})
    await store.append_event("scale_check", {"reason": "no_action"})
    await store.write_tick(tick(2, ["w1"], sundown={"w1": 5.0}))
    p = f"da:{redis_app}:"
    types = {key: redis_client.type(key) for key in redis_client.keys(p + "*")}
    assert types == {
        p + "desired": "string", p + "containers": "hash", p + "sundown": "hash",
        p + "config": "hash", p + "summary": "hash", p + "policy": "hash", p + "events": "stream",
    }
    assert redis_client.get(p + "desired") == "2"
    assert redis_client.hget(p + "sundown", "w1") == "5.0"
    assert redis_client.hget(p + "config", "SCALE_STEP") == "2"


async def test_nan_is_stored_as_null(make_store: Callable[..., RedisStore]) -> None:
    store = make_store()
    t = TickWrite(desired=1, containers={"w1": record("w1", score=math.nan)},
                  summaries={"w1": {"forecast": math.nan}})
    await store.write_tick(t)
    state = await store.load()
    assert state.containers["w1"]["score"] is None
    assert state.summaries["w1"] == {"name": "w1", "forecast": None}


async def test_vanished_containers_are_deleted(
    make_store: Callable[..., RedisStore], redis_client: redis.Redis, redis_app: str
) -> None:
    store = make_store()
    await store.load()
    await store.write_tick(tick(3, ["w1", "w2", "w3"], sundown={"w2": 1.0, "w3": 2.0}))
    await store.write_tick(tick(2, ["w1", "w3"], sundown={"w3": 2.0}, policy={}))
    p = f"da:{redis_app}:"
    assert sorted(redis_client.hkeys(p + "containers")) == ["w1", "w3"]
    assert sorted(redis_client.hkeys(p + "summary")) == ["w1", "w3"]
    assert redis_client.hgetall(p + "sundown") == {"w3": "2.0"}
    assert redis_client.exists(p + "policy") == 0
    await store.write_tick(tick(0, [], policy={}))
    assert redis_client.exists(p + "containers", p + "summary", p + "sundown") == 0
    assert redis_client.get(p + "desired") == "0"


async def test_entries_left_by_an_earlier_agent_are_deleted_without_load(
    make_store: Callable[..., RedisStore], redis_client: redis.Redis, redis_app: str
) -> None:
    await make_store().write_tick(tick(3, ["old1", "old2", "keep"], sundown={"old2": 1.0}))
    fresh = make_store()  # no load(): it must find out what is there by itself
    await fresh.write_tick(tick(1, ["keep"]))
    p = f"da:{redis_app}:"
    assert redis_client.hkeys(p + "containers") == ["keep"]
    assert redis_client.hkeys(p + "summary") == ["keep"]
    assert redis_client.exists(p + "sundown") == 0


async def test_apps_do_not_see_each_other(make_store: Callable[..., RedisStore]) -> None:
    a, b = make_store(app="app-a"), make_store(app="app-b")
    await a.write_tick(tick(2, ["a1"]))
    await b.write_tick(tick(0, []))
    assert (await a.load()).containers.keys() == {"a1"}
    assert (await b.load()).desired == 0


async def test_save_config_replaces_the_overrides(make_store: Callable[..., RedisStore]) -> None:
    store = make_store()
    await store.save_config({"MAX_CONTAINERS": 20, "SCALE_STEP": 2})
    await store.save_config({"SCALE_STEP": 3, "weights": {"cpu": 0.5}})
    assert (await store.load()).config == {"SCALE_STEP": 3, "weights": {"cpu": 0.5}}
    await store.save_config({})
    assert (await store.load()).config == {}


async def test_ping(make_store: Callable[..., RedisStore]) -> None:
    assert 0 <= await make_store().ping() < 1


async def test_bad_input_is_the_callers_bug_and_sends_nothing(
    make_store: Callable[..., RedisStore], redis_client: redis.Redis
) -> None:
    store = make_store()
    with pytest.raises(TypeError, match=r"containers\[w1\]: cannot be stored as JSON"):
        await store.write_tick(TickWrite(desired=1, containers={"w1": {"x": object()}}))
    with pytest.raises(TypeError, match="cannot be stored as JSON"):
        await store.append_event("k", {"x": {1, 2}})
    assert store.pending_events == 0
    assert redis_client.dbsize() == 0


# ----------------------------------------------------------------------- events


async def _ledger(store: RedisStore, kinds: list[str]) -> None:
    for i, kind in enumerate(kinds):
        await store.append_event(kind, {"i": i})
    await store.write_tick(tick(1, ["w1"]))


async def test_events_newest_first_with_pagination(make_store: Callable[..., RedisStore]) -> None:
    store = make_store()
    await _ledger(store, ["scale_check"] * 7)
    assert store.pending_events == 0
    page1 = await store.events(limit=3)
    assert [e["data"]["i"] for e in page1] == [6, 5, 4]
    assert all(e["kind"] == "scale_check" and isinstance(e["ts"], float) for e in page1)
    page2 = await store.events(limit=3, before=page1[-1]["id"])
    assert [e["data"]["i"] for e in page2] == [3, 2, 1]
    page3 = await store.events(limit=3, before=page2[-1]["id"])
    assert [e["data"]["i"] for e in page3] == [0]
    assert await store.events(limit=3, before=page3[-1]["id"]) == []
    assert [e["data"]["i"] for e in await store.events()] == [6, 5, 4, 3, 2, 1, 0]


async def test_events_filtered_by_kind(make_store: Callable[..., RedisStore]) -> None:
    store = make_store()
    # a rare kind among many others: found past more than `limit` entries
    kinds = ["scale_up"] + ["no_action"] * 250 + ["scale_up", "scale_down"] + ["no_action"] * 250
    await _ledger(store, kinds)
    ups = await store.events(limit=5, kind="scale_up")
    assert [e["data"]["i"] for e in ups] == [251, 0]
    first = await store.events(limit=1, kind="scale_up")
    assert [e["data"]["i"] for e in first] == [251]
    rest = await store.events(limit=1, kind="scale_up", before=first[0]["id"])
    assert [e["data"]["i"] for e in rest] == [0]
    assert await store.events(kind="nothing_like_this") == []


async def test_event_arguments_are_checked(make_store: Callable[..., RedisStore]) -> None:
    store = make_store()
    with pytest.raises(ValueError, match="limit"):
        await store.events(limit=0)
    with pytest.raises(ValueError, match="before: not a stream id"):
        await store.events(before="+inf")


async def test_ledger_is_capped(
    make_store: Callable[..., RedisStore], redis_client: redis.Redis, redis_app: str
) -> None:
    store = make_store(ledger_max_len=10)
    for _ in range(4):
        await _ledger(store, ["scale_check"] * 150)
    length = redis_client.xlen(f"da:{redis_app}:events")
    # MAXLEN ~ trims whole stream nodes (100 entries by default): near the cap
    assert 10 <= length <= 10 + 100
    newest = await store.events(limit=1)
    assert newest[0]["data"]["i"] == 149


# ------------------------------------------------------------------ atomicity


async def test_a_tick_is_one_transaction(
    make_store: Callable[..., RedisStore], redis_server: RedisTestServer, redis_app: str
) -> None:
    store = make_store()
    await store.load()
    await store.write_tick(tick(3, ["w1", "w2", "w3"]))
    await store.append_event("scale_check", {"reason": "no_action"})

    commands: list[dict[str, Any]] = []
    ready = threading.Event()

    def monitor() -> None:
        with redis_server.client() as client, client.monitor() as m:
            ready.set()
            while True:
                command = m.next_command()
                commands.append(command)
                if command["command"].startswith("PING"):
                    return  # our end marker, sent after the write

    async with trio.open_nursery() as nursery:
        nursery.start_soon(trio.to_thread.run_sync, monitor)
        await trio.to_thread.run_sync(ready.wait)
        await store.write_tick(tick(2, ["w1", "w3"], sundown={"w3": 9.0}))
        with redis_server.client() as marker:
            await trio.to_thread.run_sync(marker.ping)

    ours = [c for c in commands if f"da:{redis_app}:" in c["command"]]
    mine = [c["command"].split(" ")[0] for c in ours]
    store_conn = {(c["client_address"], c["client_port"]) for c in ours}
    assert len(store_conn) == 1  # one connection
    everything = [
        c["command"].split(" ")[0]
        for c in commands
        if (c["client_address"], c["client_port"]) in store_conn
    ]
    assert everything[0] == "MULTI" and everything[-1] == "EXEC"
    assert everything[1:-1] == mine
    # containers: HDEL w2 + HSET; sundown: HSET; summary: HDEL w2 + HSET; policy: HSET
    assert mine == ["SET", "HDEL", "HSET", "HSET", "HDEL", "HSET", "HSET", "XADD"]


# ---------------------------------------------------------------------- errors


async def test_redis_errors_become_store_errors(
    make_store: Callable[..., RedisStore], redis_client: redis.Redis, redis_app: str
) -> None:
    store = make_store()
    redis_client.set(f"da:{redis_app}:containers", "not a hash")
    with pytest.raises(StoreError, match="failed during load: .*WRONGTYPE"):
        await store.load()
    with pytest.raises(StoreError, match="failed during write_tick"):
        await store.write_tick(tick(1, ["w1"]))
    assert store.available  # reachable: a data problem, not an outage


async def test_corrupt_state_is_reported_by_load(
    make_store: Callable[..., RedisStore], redis_client: redis.Redis, redis_app: str
) -> None:
    redis_client.hset(f"da:{redis_app}:containers", "w1", "{broken")
    with pytest.raises(StoreError, match=r"corrupt state .*containers\[w1\]: invalid JSON"):
        await make_store().load()


async def test_invalid_url_is_a_store_error() -> None:
    with pytest.raises(StoreError, match="invalid Redis URL"):
        RedisStore("http://example.invalid/", "app")


async def test_closed_store_refuses(make_store: Callable[..., RedisStore]) -> None:
    store = make_store()
    await store.aclose()
    with pytest.raises(StoreError, match="closed"):
        await store.write_tick(tick(1, ["w1"]))
    with pytest.raises(StoreError, match="closed"):
        await store.ping()
    await store.aclose()  # idempotent


# ----------------------------------------------------------------------- outage


async def test_outage_fails_fast_buffers_and_writes_everything_back(
    make_store: Callable[..., RedisStore], redis_server: RedisTestServer
) -> None:
    store = make_store(backoff_initial=0.05, backoff_max=0.2)
    await store.load()
    await store.append_event("scale_check", {"n": 0})
    await store.write_tick(tick(3, ["w1", "w2", "w3"], sundown={"w2": 1.0}))

    await redis_server.astop()
    await store.append_event("scale_check", {"n": 1})  # never touches Redis
    t0 = trio.current_time()
    with pytest.raises(StoreError, match="unreachable during write_tick"):
        await store.write_tick(tick(4, ["w1", "w2", "w3", "w4"]))
    assert trio.current_time() - t0 < 1.0  # bounded by the short socket timeout
    assert not store.available and store.last_error
    assert store.status()["available"] is False

    # inside the backoff window: fails at once, without trying the network
    t0 = trio.current_time()
    with pytest.raises(StoreError, match="unavailable .*next reconnect attempt"):
        await store.write_tick(tick(4, ["w1", "w2", "w3", "w4"]))
    assert trio.current_time() - t0 < 0.05
    with pytest.raises(StoreError):
        await store.events()
    await store.append_event("scale_check", {"n": 2})
    assert store.pending_events == 2
    before_restart = time.time()

    # Redis comes back (same port, its old data reloaded from the AOF); meanwhile
    # w2 vanished, w4 and w5 appeared, w3 was marked SUNDOWN
    await redis_server.astart()
    final = tick(5, ["w1", "w3", "w4", "w5"], sundown={"w3": 2.0}, policy={"last_scale_up": 7.0})
    await write_until_ok(store, final)
    assert store.available and store.pending_events == 0

    assert await make_store().load() == expected_state(final)
    events = await store.events()
    assert [e["kind"] for e in events] == ["store_outage", "scale_check", "scale_check", "scale_check"]
    assert [e["data"]["n"] for e in events[1:]] == [2, 1, 0]
    outage = events[0]["data"]
    assert outage["duration"] >= 0 and outage["failed_attempts"] >= 1 and outage["error"]
    # buffered events keep the time they happened, not the flush time
    assert events[2]["ts"] <= events[1]["ts"] <= before_restart <= events[0]["ts"]


async def test_redis_restarted_empty_gets_the_complete_state(
    make_store: Callable[..., RedisStore], redis_server: RedisTestServer,
) -> None:
    store = make_store(backoff_initial=0.05, backoff_max=0.2)
    await store.write_tick(tick(3, ["w1", "w2", "w3"], sundown={"w2": 1.0}))
    await store.save_config({"SCALE_STEP": 2})
    await redis_server.arestart(kill=True, wipe=True)  # all data lost
    final = tick(3, ["w1", "w3"], sundown={"w3": 4.0})
    await write_until_ok(store, final)
    # complete again, the config overrides (saved before the outage) included
    assert await make_store().load() == expected_state(final, {"SCALE_STEP": 2})


async def test_a_quick_restart_between_ticks_is_noticed(
    make_store: Callable[..., RedisStore], redis_server: RedisTestServer, redis_app: str
) -> None:
    # Redis restarts between two ticks, so no call fails; it comes back with an
    # entry the store did not write (as an older append-only file would replay).
    store = make_store()
    await store.load()
    await store.write_tick(tick(2, ["w1", "w2"]))
    await redis_server.arestart()
    with redis_server.client() as other:
        other.hset(f"da:{redis_app}:containers", "ghost", '{"name":"ghost"}')
    await store.write_tick(tick(1, ["w1"]))  # first try: the reconnect is seen
    assert (await make_store().load()).containers.keys() == {"w1"}


async def test_config_saved_during_an_outage_is_written_back(
    make_store: Callable[..., RedisStore], redis_server: RedisTestServer
) -> None:
    store = make_store(backoff_initial=0.05, backoff_max=0.2)
    await store.load()
    await store.save_config({"SCALE_STEP": 2})
    await redis_server.astop()
    with pytest.raises(StoreError):
        await store.save_config({"SCALE_STEP": 3, "MAX_CONTAINERS": 9})
    await redis_server.astart()
    final = tick(1, ["w1"])
    await write_until_ok(store, final)
    assert await make_store().load() == expected_state(final, {"SCALE_STEP": 3, "MAX_CONTAINERS": 9})


async def test_outage_buffer_is_bounded_and_counts_drops(
    make_store: Callable[..., RedisStore], redis_server: RedisTestServer,
) -> None:
    store = make_store(backoff_initial=0.05, backoff_max=0.2, max_pending_events=5)
    await store.write_tick(tick(1, ["w1"]))
    await redis_server.astop()
    for n in range(8):
        await store.append_event("scale_check", {"n": n})
        if n == 0:
            with pytest.raises(StoreError):
                await store.write_tick(tick(1, ["w1"]))
    assert store.pending_events == 5 and store.status()["dropped_events"] == 3
    await redis_server.astart()
    await write_until_ok(store, tick(1, ["w1"]))
    events = list(reversed(await store.events()))  # oldest first
    assert [e["kind"] for e in events] == ["events_dropped"] + ["scale_check"] * 5 + ["store_outage"]
    assert events[0]["data"] == {"count": 3}
    assert [e["data"]["n"] for e in events[1:6]] == [3, 4, 5, 6, 7]


class _CountingServer:
    """A TCP server that accepts and closes connections (or holds them silent)."""

    def __init__(self, silent: bool = False) -> None:
        self.silent = silent
        self.accepted = 0
        self.port = 0

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async def handle(stream: trio.SocketStream) -> None:
            self.accepted += 1
            async with stream:
                if self.silent:
                    await trio.sleep_forever()

        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        self.port = listeners[0].socket.getsockname()[1]
        task_status.started()
        await trio.serve_listeners(handle, listeners)


async def test_backoff_attempts_do_not_touch_the_network_in_between() -> None:
    now = [1000.0]
    server = _CountingServer()
    async with trio.open_nursery() as nursery:
        await nursery.start(server.run)
        store = RedisStore(f"redis://127.0.0.1:{server.port}/0", "app", socket_timeout=1.0,
                           backoff_initial=1.0, backoff_max=4.0, clock=lambda: now[0])
        try:
            for expected_delay in (1.0, 2.0, 4.0, 4.0):
                before = server.accepted
                with pytest.raises(StoreError, match="unreachable"):
                    await store.write_tick(tick(1, ["w1"]))
                assert server.accepted > before  # it did try
                assert store.retry_in() == expected_delay  # doubles, capped
                tried = server.accepted
                for _ in range(3):
                    with pytest.raises(StoreError, match="next reconnect attempt"):
                        await store.write_tick(tick(1, ["w1"]))
                    with pytest.raises(StoreError, match="next reconnect attempt"):
                        await store.ping()
                assert server.accepted == tried  # fail fast: no connection at all
                now[0] += expected_delay
        finally:
            await store.aclose()
        nursery.cancel_scope.cancel()


async def test_a_silent_server_does_not_hold_the_tick() -> None:
    server = _CountingServer(silent=True)
    async with trio.open_nursery() as nursery:
        await nursery.start(server.run)
        store = RedisStore(f"redis://127.0.0.1:{server.port}/0", "app", socket_timeout=0.3)
        try:
            t0 = trio.current_time()
            with pytest.raises(StoreError, match="unreachable during write_tick.*Timeout"):
                await store.write_tick(tick(1, ["w1"]))
            assert trio.current_time() - t0 < 1.5
            assert not store.available
        finally:
            await store.aclose()
        nursery.cancel_scope.cancel()
