"""Persistence of the agent's state in Redis (SPEC §6, docs/architecture.md).

Writing. `write_tick` writes the *complete* state of one tick in one MULTI/EXEC
pipeline: one round trip, and a reader (or a restarted agent) sees either the
previous tick or this one, never a mix. Each hash is replaced by HSET of the
present fields plus HDEL of the fields no longer present (the entries of vanished
containers), computed against the fields the store knows to be there: those it
read in `load()`, or fetched with HKEYS before its first write, or wrote since.
After any failure that knowledge is dropped and fetched again, because a failed
EXEC may or may not have been applied and a restarted Redis may have lost writes.

Delta writes. ``write_tick(state, only_changes=True)`` sends only the fields
whose value differs from what the store last wrote (and no round trip at all
when nothing differs and no event waits): `agent.core.store_delta`. Applied in
one MULTI/EXEC to the state the store knows Redis holds, it leaves Redis as the
full write would. The store knows that state only while its connection is the
one it wrote through and no write failed; otherwise a delta write is a full one.
Fenced, it also knows it only for the lease tenure (fencing token) it wrote
under: an agent that takes the lease over, or back, writes the full state
first, since another leader may have written meanwhile; and a fenced write is
never skipped for having nothing new, since Redis's refusal of it is what
tells a deposed leader.

Outages. redis-py is synchronous: every call runs in a Trio worker thread under a
`CapacityLimiter`, with short socket timeouts and redis-py's own retries turned
off, so a tick is never held for long. Connection errors mark the store
unavailable (`available`, `last_error`) and start an exponential backoff (capped);
calls made before the next attempt is due fail at once with `StoreError`, without
touching the network. Events produced meanwhile wait in a bounded buffer (the
oldest are dropped and counted when it is full) and are flushed by the first
successful `write_tick`, together with a `store_outage` event describing the gap.
Because every `write_tick` carries the complete state, Redis is complete again
after that first successful write.

Errors from redis-py never leave this module: they become `StoreError` with a
message naming the operation and the server. Bad *data* passed in by the caller
(not JSON-encodable, a record under the wrong name) is a bug in the caller and
raises `ValueError`/`TypeError` before anything is sent.

Several agents, one pool. The leader lease (`acquire_lease`, `release_lease`;
the Lua scripts are in `agent.adapters.redis_lease`) goes through the same worker
threads, error translation and backoff as every other call: one round trip per
attempt. A write that acts — `write_tick` and `save_config` with ``fence=`` the
holder record the caller believes in — runs as WATCH on the lease key, a check
that it still holds exactly that record, then the usual MULTI/EXEC; Redis
refuses it (`FencedOut`, nothing applied) when the lease is another's. The
events given to a refused write are dropped (the caller records why); events
given to a write that failed for an outage wait in the buffer like any other.
Followers write no state: they `read_shared` the leader's tick views and the
runtime config, and `flush_events` their own ledger entries.

The key layout (`Keys`) and the encoding between Python values and Redis fields
are pure and live in `agent.core.store_codec`, tested without a server; this module
is the Redis adapter of the `agent.core.ports.Store` seam.
"""
from __future__ import annotations

import collections
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any, TypeVar, cast

import redis
import redis.client
import redis.connection
import redis.exceptions
import trio
from redis.backoff import NoBackoff
from redis.retry import Retry

from agent.adapters.redis_lease import LeaseKeys, acquire_or_renew, fenced_pipeline, release
from agent.core.errors import CorruptStateError, FencedOut, StoreError
from agent.core.lease import Holder
from agent.core.ports import Store
from agent.core.redact import redact_url
from agent.core.store_delta import TickDelta, Written, diff_tick
from agent.core.tick_view import encode_view
from agent.core.store_codec import (
    TICK_HASHES,
    VIEW_STREAM_LEN,
    Keys,
    SharedState,
    StoredState,
    TickWrite,
    container_record,
    decode_event,
    decode_json_hash,
    decode_state,
    decode_views,
    encode_event,
    encode_json_hash,
    encode_tick,
    plan_hash_replace,
    validate_stream_id,
)

__all__ = [
    "RedisStore",
    # re-exported from agent.core.store_codec: the records the runtime hands to a Store
    "StoredState",
    "TickWrite",
    "container_record",
]

T = TypeVar("T")

# A ledger event handed to a write: (kind, JSON-ready data).
EventItem = tuple[str, Mapping[str, object]]

# `events(kind=...)` scans past non-matching entries, but never more than this.
FILTER_SCAN_MAX = 20_000


# ------------------------------------------------------------------- the adapter

# redis-py errors that mean "the server is not reachable (right now)". Busy
# loading and authentication failures are ConnectionError subclasses.
_OUTAGE_ERRORS = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError)


@dataclass(slots=True)
class _Pending:
    seq: int
    fields: dict[str, str]


class RedisStore:
    """`Store` over a Redis server, with redis-py in Trio worker threads.

    `limiter` bounds the threads (and so the connections) the store uses; by
    default it gets its own limiter of 4. `socket_timeout` bounds every network
    wait, connecting included. Backoff between reconnect attempts starts at
    `backoff_initial` seconds and doubles up to `backoff_max`. At most
    `max_pending_events` events wait for Redis; beyond that the oldest are dropped
    and counted. `clock` (monotonic) and `wall_clock` (epoch) are injectable.
    """

    def __init__(
        self,
        url: str,
        app_identifier: str,
        *,
        limiter: trio.CapacityLimiter | None = None,
        ledger_max_len: int = 10000,
        socket_timeout: float = 2.0,
        backoff_initial: float = 0.25,
        backoff_max: float = 10.0,
        max_pending_events: int = 1000,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        if ledger_max_len < 1:
            raise ValueError(f"ledger_max_len must be >= 1, got {ledger_max_len}")
        if not socket_timeout > 0:
            raise ValueError(f"socket_timeout must be > 0, got {socket_timeout}")
        if not 0 < backoff_initial <= backoff_max:
            raise ValueError("backoff: need 0 < backoff_initial <= backoff_max")
        if max_pending_events < 1:
            raise ValueError(f"max_pending_events must be >= 1, got {max_pending_events}")
        self.keys = Keys.for_app(app_identifier)
        self.lease_keys = LeaseKeys(self.keys.prefix)
        self.app_identifier = app_identifier
        # Connections opened so far (counted from worker threads). A new one may
        # talk to a restarted server that lost or replayed writes, so what the
        # store knows about the hashes is only trusted while this is unchanged.
        self._connects = 0
        self._known_connects = -1
        self._client, self.server = _client_for(url, socket_timeout, self._on_connect)
        self._limiter = limiter if limiter is not None else trio.CapacityLimiter(4)
        self._ledger_max_len = ledger_max_len
        self._backoff_initial = backoff_initial
        self._backoff_max = backoff_max
        self._clock = clock
        self._wall_clock = wall_clock
        self._write_lock = trio.Lock()
        self._closed = False

        # Connection state.
        self._available = True  # optimistic until the first call says otherwise
        self._last_error: str | None = None
        self._failures = 0  # consecutive outage failures
        self._retry_at = 0.0  # clock() before which calls fail fast
        self._down_since: float | None = None  # wall clock of the first failure

        # What each tick hash holds (field -> value, encoding); None = unknown:
        # fetch the field names before a full write, and no delta writes.
        self._written: Written | None = None
        # The lease tenure of the write `_written` comes from (None: unfenced,
        # or read by `load()`): under another, another leader may have written.
        self._written_under: Holder | None = None
        self.delta_writes = 0  # write_tick calls that sent a delta (for tests, reports)
        # The config overrides last read or saved; rewritten by the first tick
        # write after an outage, since Redis may have come back without them,
        # and by the next tick write when `save_config` failed (`_config_dirty`).
        self._config_fields: dict[str, str] | None = None
        self._config_dirty = False

        # Events waiting for the next write_tick.
        self._pending: collections.deque[_Pending] = collections.deque(maxlen=max_pending_events)
        self._seq = 0
        self._dropped = 0  # dropped and not yet reported in the ledger
        self.dropped_events_total = 0

    # -- state --------------------------------------------------------------------

    @property
    def available(self) -> bool:
        """False after a connection failure, until a call succeeds again."""
        return self._available

    @property
    def last_error(self) -> str | None:
        """The message of the latest failure (kept after recovery, for reports)."""
        return self._last_error

    @property
    def pending_events(self) -> int:
        return len(self._pending)

    def retry_in(self) -> float:
        """Seconds until the next reconnect attempt is allowed (0 when up)."""
        if self._available:
            return 0.0
        return max(0.0, self._retry_at - self._clock())

    def status(self) -> dict[str, object]:
        return {
            "server": self.server,
            "available": self._available,
            "last_error": self._last_error,
            "retry_in": round(self.retry_in(), 3),
            "pending_events": len(self._pending),
            "dropped_events": self.dropped_events_total,
        }

    # -- API ----------------------------------------------------------------------

    async def load(self) -> StoredState:
        """Read the whole persisted state (one MULTI/EXEC snapshot).

        Values that do not decode raise `CorruptStateError`, which carries the
        rest (`partial`); the hashes' fields are known either way."""
        k = self.keys

        def read(client: redis.Redis) -> tuple[int, list[Any]]:
            connects = self._settle_connection(client)
            pipe = client.pipeline(transaction=True)
            pipe.get(k.desired)
            for key in (k.containers, k.sundown, k.config, k.summary, k.policy):
                pipe.hgetall(key)
            return connects, pipe.execute()

        async with self._write_lock:
            connects, replies = await self._call("load", read)
            desired, containers, sundown, config, summary, policy = replies
            state = decode_state(desired, containers, sundown, config, summary, policy)
            self._config_fields = dict(config)
            self._known_connects = connects
            self._written = Written.from_redis(desired, {
                "containers": containers, "sundown": sundown, "summary": summary, "policy": policy,
            })
            self._written_under = None  # a fenced write after it is a full one
            if state.problems:
                problems = "; ".join(state.problems)
                self._last_error = f"corrupt state under {k.prefix}*: {problems}"
                raise CorruptStateError(
                    f"corrupt state in Redis ({self.server}) under {k.prefix}*: {problems}", state)
            return state

    async def write_tick(
        self, state: TickWrite, *, fence: Holder | None = None,
        events: Sequence[EventItem] = (), only_changes: bool = False,
    ) -> None:
        """Replace the stored state with `state`, flush pending events and add
        `events`, in one MULTI/EXEC pipeline (one round trip; three when fenced).

        With `fence`, Redis applies it only while `fence` holds the leader lease:
        `FencedOut` otherwise, nothing applied, and `events` dropped. Raises
        StoreError (fast while backing off); the pending events, and `events`,
        then wait for the next write.

        With `only_changes`, a *delta write* (`agent.core.store_delta`): only
        the fields whose value differs from what this store last wrote are
        sent, and — unfenced — nothing at all, not even a round trip, when
        nothing changed and no event waits (a fenced write always goes, since
        its refusal is what tells a deposed leader). It falls back to a full
        write whenever the store cannot trust what it knows of Redis: before
        its first write or `load()`, after any failure, when its connection
        was re-opened, and under another lease tenure (`fence`) than the write
        it knows from, since another leader may have written in between.
        """
        k = self.keys
        given = [encode_event(kind, data, self._wall_clock()) for kind, data in events]
        async with self._write_lock:
            known = self._written if self._written_under == fence else None
            known_connects = self._known_connects
            delta, after, encoded = None, None, None
            if only_changes and known is not None:
                delta, after = diff_tick(state, known)  # caller bugs raise here...
            else:
                encoded = encode_tick(state)  # ...or here, before any I/O
            view = encoded.get("view") if encoded is not None \
                else None if state.view is None else encode_view(state.view)
            self._check_open()
            try:
                self._fail_fast("write_tick")
            except StoreError:
                self._enqueue_all(given)
                raise
            batch, dropped, entries, reconnecting = self._event_batch(given)
            config_fields, config_dirty = self._config_fields, self._config_dirty
            if (fence is None and view is None and delta is not None and delta.empty
                    and not entries and not config_dirty):
                return  # Redis already holds this state

            def write(client: redis.Redis) -> tuple[int, Written]:
                connects = self._settle_connection(client)
                trusted = known is not None and connects == known_connects
                queue_state: Callable[[redis.client.Pipeline], None]
                if delta is not None and after is not None and trusted:
                    queue_state, result = partial(_queue_delta, k=k, delta=delta), after
                else:
                    current = known.field_names() if trusted and known is not None \
                        else _fetch_fields(client, k)
                    full = encoded if encoded is not None else encode_tick(state)
                    queue_state = partial(_queue_full, k=k, encoded=full, current=current)
                    result = Written.from_tick(state, full)
                config = config_fields if config_dirty or not trusted else None
                self._transaction(client, fence, lambda pipe: self._tick_commands(
                    pipe, queue_state, config, entries, view))
                return connects, result

            try:
                self._known_connects, self._written = await self._call(
                    "write_tick", write, report_recovery=not reconnecting
                )
                self._written_under = fence
            except FencedOut:
                self._written = None  # another leads: it writes the state now
                raise  # and `events` are dropped: they were not ours to record
            except BaseException:
                self._written = None  # the EXEC may or may not have been applied
                self._enqueue_all(given)
                raise
            if delta is not None and self._written is after:
                self.delta_writes += 1
            self._config_dirty = False
            self._delivered(batch, dropped)

    async def flush_events(self) -> None:
        """Write the pending events, alone (a follower's ledger entries: it writes
        no state). Nothing to do when none wait. Raises StoreError; they stay."""
        if not self._pending and not self._dropped:
            return
        key, maxlen = self.keys.events, self._ledger_max_len
        async with self._write_lock:
            self._check_open()
            self._fail_fast("flush_events")
            batch, dropped, entries, reconnecting = self._event_batch([])

            def write(client: redis.Redis) -> None:
                pipe = client.pipeline(transaction=True)
                for fields in entries:
                    pipe.xadd(key, cast(Any, fields), maxlen=maxlen, approximate=True)
                pipe.execute()

            await self._call("flush_events", write, report_recovery=not reconnecting)
            self._delivered(batch, dropped)

    async def read_shared(self, cursor: str | None) -> SharedState:
        """A follower's read, one round trip: the leader's views after `cursor`
        (all kept ones when None), oldest first, and the runtime config."""
        k = self.keys
        low = "-" if cursor is None else "(" + validate_stream_id(cursor)

        def read(client: redis.Redis) -> list[Any]:
            pipe = client.pipeline(transaction=False)
            pipe.xrange(k.views, min=low, max="+")
            pipe.hgetall(k.config)
            return pipe.execute()

        entries, config = await self._call("read_shared", read)
        new_cursor, views, skipped = decode_views(entries, cursor)
        try:
            overrides = decode_json_hash(config, what="config")
        except ValueError as exc:
            raise StoreError(f"corrupt runtime config in Redis ({self.server}): {exc}") from exc
        return SharedState(new_cursor, views, overrides, skipped)

    async def acquire_lease(self, agent_id: str, ttl: float, url: str | None) -> Holder | None:
        """One acquire-or-renew of the leader lease: the holder afterwards (us
        when we lead). StoreError when Redis does not answer or the record there
        is not one of ours."""

        def attempt(client: redis.Redis) -> Holder | None | ValueError:
            try:
                return acquire_or_renew(client, self.lease_keys, agent_id, ttl, url)
            except ValueError as exc:  # answered, with a foreign value
                return exc

        async with self._write_lock:  # our own renewal must never abort our WATCH
            result = await self._call("lease", attempt)
        if isinstance(result, ValueError):
            raise StoreError(f"the leader lease {self.lease_keys.leader} holds a value that "
                             f"is not a lease record: {result}")
        return result

    async def release_lease(self, holder: Holder) -> bool:
        """Give the lease up if `holder` still holds it; True when it did."""
        async with self._write_lock:
            return await self._call(
                "release_lease", lambda client: release(client, self.lease_keys, holder)
            )

    async def append_event(self, kind: str, data: Mapping[str, object]) -> None:
        """Buffer a ledger event for the next `write_tick`; never touches Redis.

        The timestamp is taken now, so events delayed by an outage keep their
        time. Raises ValueError/TypeError if `data` cannot be stored as JSON.
        """
        self._enqueue(encode_event(kind, data, self._wall_clock()))

    async def events(
        self, limit: int = 50, before: str | None = None, kind: str | None = None
    ) -> list[dict[str, Any]]:
        """Ledger events, newest first: ``{"id", "kind", "ts", "data"}`` each.

        `before` (a stream id, exclusive) pages back: pass the last id of the
        previous page. With `kind`, non-matching entries are skipped; at most
        `FILTER_SCAN_MAX` entries are scanned per call, so a rare kind may come
        back short of `limit` (continue from the last id returned). Events still
        waiting in the outage buffer are not included.
        """
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise ValueError(f"limit: must be an integer >= 1, got {limit!r}")
        start = "+" if before is None else "(" + validate_stream_id(before)
        key = self.keys.events
        batch = limit if kind is None else min(max(4 * limit, 100), 1000)
        budget = max(limit, FILTER_SCAN_MAX)

        def read(client: redis.Redis) -> list[tuple[str, dict[str, str]]]:
            out: list[tuple[str, dict[str, str]]] = []
            upper, scanned = start, 0
            while len(out) < limit and scanned < budget:
                count = min(batch, budget - scanned)
                entries = cast(
                    "list[tuple[str, dict[str, str]]]",
                    client.xrevrange(key, max=upper, min="-", count=count),
                )
                for entry_id, fields in entries:
                    if kind is None or fields.get("kind") == kind:
                        out.append((entry_id, fields))
                        if len(out) == limit:
                            break
                scanned += len(entries)
                if len(entries) < count:
                    break
                upper = "(" + entries[-1][0]
            return out

        raw = await self._call("events", read)
        try:
            return [decode_event(entry_id, fields) for entry_id, fields in raw]
        except ValueError as exc:
            raise StoreError(f"corrupt ledger entry in {key}: {exc}") from exc

    async def save_config(
        self, overrides: Mapping[str, object], *, fence: Holder | None = None
    ) -> None:
        """Replace the stored runtime configuration overrides with `overrides`
        (the complete set; an absent name is no longer overridden), fenced like
        `write_tick` when `fence` is given.

        On StoreError the overrides are kept and written by the next successful
        `write_tick`, so a change made during an outage is not lost; on
        `FencedOut` they are forgotten (they were never ours to write).
        """
        fields = encode_json_hash(overrides, what="config")
        key = self.keys.config

        def build(pipe: redis.client.Pipeline) -> None:
            pipe.delete(key)
            if fields:
                pipe.hset(key, mapping=cast(Any, fields))

        async with self._write_lock:  # never interleaved with a tick's config rewrite
            before = self._config_fields, self._config_dirty
            self._config_fields, self._config_dirty = fields, True
            try:
                await self._call("save_config", lambda c: self._transaction(c, fence, build))
            except FencedOut:
                self._config_fields, self._config_dirty = before
                raise
            self._config_dirty = False

    async def ping(self) -> float:
        """Round-trip time of a PING in seconds; StoreError when unreachable."""

        def do(client: redis.Redis) -> float:
            t0 = time.perf_counter()
            client.ping()
            return time.perf_counter() - t0

        return await self._call("ping", do)

    async def aclose(self) -> None:
        """Close the connections. Pending events are not written (the runtime
        does a final `write_tick` first). Idempotent."""
        if self._closed:
            return
        self._closed = True
        with trio.CancelScope(shield=True):
            await trio.to_thread.run_sync(self._client.close, limiter=self._limiter)

    def close(self) -> None:
        """Synchronous `aclose` (closing the pool does not block on the network)."""
        if not self._closed:
            self._closed = True
            self._client.close()

    async def __aenter__(self) -> RedisStore:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    # -- internals ----------------------------------------------------------------

    def _on_connect(self, connection: redis.connection.Connection) -> None:
        """redis-py's connect hook (worker thread): the usual handshake, counted."""
        cast(Any, connection).on_connect()
        self._connects += 1

    def _settle_connection(self, client: redis.Redis) -> int:
        """Let the pool check (and, if stale, reopen) the connection the next
        pipeline will use, so a reconnect is seen *before* the pipeline is
        built; returns the connect count. (The pool hands back the connection
        released last; if it ever did not, a reconnect inside the pipeline is
        still seen by the next write.)"""
        pool = client.connection_pool
        pool.release(pool.get_connection())
        return self._connects

    def _enqueue(self, fields: dict[str, str]) -> None:
        if len(self._pending) == self._pending.maxlen:
            self._dropped += 1  # deque drops the oldest on append
            self.dropped_events_total += 1
        self._seq += 1
        self._pending.append(_Pending(self._seq, fields))

    def _enqueue_all(self, entries: Sequence[dict[str, str]]) -> None:
        for fields in entries:
            self._enqueue(fields)

    def _event_batch(
        self, given: list[dict[str, str]]
    ) -> tuple[list[_Pending], int, list[dict[str, str]], bool]:
        """What the next write adds to the ledger: the pending events (after a
        notice of those dropped, the oldest), `given`, and, when Redis was down,
        the outage notice that goes with the first write that succeeds."""
        batch = list(self._pending)
        dropped = self._dropped
        entries = [p.fields for p in batch] + given
        if dropped:  # the oldest were dropped, so the notice goes first
            entries.insert(0, encode_event("events_dropped", {"count": dropped}, self._wall_clock()))
        reconnecting = not self._available
        if reconnecting:
            entries.append(self._outage_notice())
        return batch, dropped, entries, reconnecting

    def _delivered(self, batch: list[_Pending], dropped: int) -> None:
        """`batch` (and the notice of `dropped`) reached the ledger."""
        self._dropped -= dropped
        if batch:
            last = batch[-1].seq
            while self._pending and self._pending[0].seq <= last:
                self._pending.popleft()

    def _tick_commands(
        self, pipe: redis.client.Pipeline, queue_state: Callable[[redis.client.Pipeline], None],
        config: Mapping[str, str] | None, entries: Sequence[Mapping[str, str]],
        view: str | None,
    ) -> None:
        """The commands of one tick write (see `write_tick`): the state (in full
        or a delta), the config when it is rewritten, the events, the view."""
        k = self.keys
        queue_state(pipe)
        if config is not None:
            pipe.delete(k.config)
            if config:
                pipe.hset(k.config, mapping=cast(Any, config))
        for fields in entries:
            pipe.xadd(k.events, cast(Any, fields), maxlen=self._ledger_max_len, approximate=True)
        if view is not None:
            pipe.xadd(k.views, {"v": view}, maxlen=VIEW_STREAM_LEN, approximate=False)

    def _transaction(
        self, client: redis.Redis, fence: Holder | None,
        build: Callable[[redis.client.Pipeline], None],
    ) -> None:
        """`build`'s commands in one MULTI/EXEC; fenced by the lease when `fence`."""
        if fence is not None:
            fenced_pipeline(client, self.lease_keys, fence, build)
            return
        pipe = client.pipeline(transaction=True)
        build(pipe)
        pipe.execute()

    def _check_open(self) -> None:
        if self._closed:
            raise StoreError("the Redis store is closed")

    def _fail_fast(self, op: str) -> None:
        if self._available:
            return
        wait = self._retry_at - self._clock()
        if wait > 0:
            raise StoreError(
                f"Redis at {self.server} is unavailable ({self._last_error}); "
                f"{op} skipped, next reconnect attempt in {wait:.1f} s"
            )

    async def _call(
        self, op: str, fn: Callable[[redis.Redis], T], *, report_recovery: bool = True
    ) -> T:
        """Run `fn(client)` in a worker thread; translate errors; track outages.

        On the first success after an outage a `store_outage` event is queued,
        unless the caller already wrote one (`report_recovery=False`).
        """
        self._check_open()
        self._fail_fast(op)
        try:
            result = await trio.to_thread.run_sync(fn, self._client, limiter=self._limiter)
        except FencedOut:
            self._answered(report_recovery=True)  # the refused write carried no notice
            raise
        except _OUTAGE_ERRORS as exc:
            delay = self._mark_down(exc)
            raise StoreError(
                f"Redis at {self.server} is unreachable during {op}: {self._last_error}; "
                f"next reconnect attempt in {delay:.1f} s"
            ) from exc
        except redis.exceptions.RedisError as exc:
            self._last_error = _describe(exc)
            raise StoreError(f"Redis at {self.server} failed during {op}: {self._last_error}") from exc
        self._answered(report_recovery=report_recovery)
        return result

    def _answered(self, *, report_recovery: bool) -> None:
        """Redis answered: an outage, if there was one, is over."""
        if not self._available:
            if report_recovery:
                self._enqueue(self._outage_notice())
            self._mark_up()

    def _mark_down(self, exc: BaseException) -> float:
        self._last_error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        if self._available:
            self._available = False
            self._down_since = self._wall_clock()
            self._written = None  # a restarted Redis may have lost or kept anything
        self._failures += 1
        delay = min(self._backoff_max, self._backoff_initial * 2.0 ** (self._failures - 1))
        self._retry_at = self._clock() + delay
        return delay

    def _outage_notice(self) -> dict[str, str]:
        """Ledger fields of the `store_outage` event written once Redis is back."""
        now = self._wall_clock()
        since = self._down_since if self._down_since is not None else now
        return encode_event(
            "store_outage",
            {
                "since": since,
                "duration": max(0.0, now - since),
                "error": self._last_error,
                "failed_attempts": self._failures,
                "dropped_events": self._dropped,
            },
            now,
        )

    def _mark_up(self) -> None:
        self._available = True
        self._failures = 0
        self._retry_at = 0.0
        self._down_since = None


def _queue_full(pipe: Any, k: Keys, encoded: Mapping[str, Any], current: Mapping[str, set[str]]) -> None:
    """Every field of the tick (HSET), and HDEL of the `current` ones not in it."""
    pipe.set(k.desired, encoded["desired"])
    for name in TICK_HASHES:
        key = getattr(k, name)
        hset, hdel = plan_hash_replace(encoded[name], current[name])
        if hdel:
            pipe.hdel(key, *hdel)
        if hset:
            pipe.hset(key, mapping=cast(Any, hset))


def _queue_delta(pipe: Any, k: Keys, delta: TickDelta) -> None:
    """Only what changed: same order as a full write."""
    if delta.desired is not None:
        pipe.set(k.desired, delta.desired)
    for name in TICK_HASHES:
        key = getattr(k, name)
        if delta.hdel[name]:
            pipe.hdel(key, *delta.hdel[name])
        if delta.hset[name]:
            pipe.hset(key, mapping=cast(Any, dict(delta.hset[name])))


def _fetch_fields(client: redis.Redis, k: Keys) -> dict[str, set[str]]:
    """The fields now present in each tick hash (one pipelined round trip)."""
    pipe = client.pipeline(transaction=False)
    for name in TICK_HASHES:
        pipe.hkeys(getattr(k, name))
    return {name: set(fields) for name, fields in zip(TICK_HASHES, pipe.execute(), strict=True)}


if TYPE_CHECKING:  # mypy holds the adapter to its port

    def _implements(store: RedisStore) -> Store:
        return store


def _client_for(
    url: str, socket_timeout: float, on_connect: Callable[[Any], None]
) -> tuple[redis.Redis, str]:
    """The store's client for `url`, and the server it names without credentials."""
    try:
        client: redis.Redis = redis.Redis.from_url(
            url,
            decode_responses=True,
            socket_timeout=socket_timeout,
            socket_connect_timeout=socket_timeout,
            retry=Retry(NoBackoff(), 0),  # our backoff, not redis-py's
            health_check_interval=0,
            # RESP2: any server version, no HELLO handshake, and redis-py
            # then re-checks pooled connections (stale after a Redis restart)
            # before use; RESP3 would enable its maintenance-notification mode.
            protocol=2,
            redis_connect_func=on_connect,
        )
    except ValueError as exc:
        raise StoreError(f"invalid Redis URL {redact_url(url)!r}: {exc}") from exc
    kw = client.connection_pool.connection_kwargs
    where = kw.get("path") or f"{kw.get('host', 'localhost')}:{kw.get('port', 6379)}"
    return client, f"redis://{where}/{kw.get('db', 0)}"


# redis-py names the pipeline's failing command, arguments and all: which one
# fails first depends on what the tick wrote (a delta), and its arguments are
# our data. The reason that follows is what the operator needs, and it is the
# same for every command of the pipeline.
_PIPELINE_PREFIX = re.compile(r"^Command # \d+ \(.*\) of pipeline caused error: ", re.S)


def _describe(exc: BaseException) -> str:
    """A Redis error as told in logs and conditions: its type and its reason."""
    return f"{type(exc).__name__}: {_PIPELINE_PREFIX.sub('', str(exc))}"
