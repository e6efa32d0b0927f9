"""Consume a running agent's queue from another program, and pick a backend.

For a load balancer, proxy or test tool written in Python (Trio)::

    import trio
    from agent.client import Picker, QueueSubscriber

    async def main():
        async with QueueSubscriber("http://127.0.0.1:2550") as queue:
            picker = Picker(queue, strategy="p2c")
            async for items in queue:          # newest queue after every rebuild
                print([i.dns_name for i in items])
                with picker.lease() as backend:  # counts as in flight until the block ends
                    print("send to", backend.address, backend.port)

    trio.run(main)

`QueueSubscriber` keeps one WebSocket to ``/ws`` open and reconnects with
exponential backoff (and jitter) when it drops; iterating it yields the newest
queue each time it changes, skipping stale ones, like the agent's own hub.
`latest` is the newest queue received (None before the first). Old agents that
send only the compat fields (``dns_name``, ``score``, ``utilization_category``)
are understood: weights are then derived from the scores.

`Picker` chooses a container from the latest queue with the scoring kernel's
pickers: weighted power of two choices (``"p2c"``, random, favours backends with
fewer requests in flight when used through `lease`) or smooth weighted round
robin (``"swrr"``, deterministic, evenly interleaved). SUNDOWN and zero-weight
containers are never picked.
"""
from __future__ import annotations

import json
import logging
import math
import random
import ssl
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal, cast
from urllib.parse import urlsplit, urlunsplit

import trio
import trio_websocket

from agent.core.queue import traffic_weights
from agent.core.records import Category, QueueItem

if TYPE_CHECKING:
    from agent.scoring import SmoothWeightedRoundRobin, WeightedP2C

__all__ = ["QueueSubscriber", "Picker", "Backoff", "parse_queue", "ws_url"]

log = logging.getLogger("agent.client")

Queue = tuple[QueueItem, ...]

# Failures after which the subscriber reconnects (anything else is a bug and raises).
_RECOVERABLE = (
    OSError,
    trio.TooSlowError,
    trio.BrokenResourceError,
    trio_websocket.HandshakeError,
    trio_websocket.ConnectionClosed,
)


def ws_url(url: str) -> str:
    """The WebSocket URL of the queue feed for an agent URL.

    ``http://h:2550`` → ``ws://h:2550/ws``; ``https`` → ``wss``; a ``ws://`` URL
    keeps its path (the WebSocket port answers at any path), ``/ws`` if none.
    """
    parts = urlsplit(url if "://" in url else f"http://{url}")
    scheme = {"http": "ws", "https": "wss", "ws": "ws", "wss": "wss"}.get(parts.scheme)
    if scheme is None:
        raise ValueError(f"not an http(s) or ws(s) URL: {url!r}")
    path = parts.path
    if parts.scheme in ("http", "https"):
        path = path.rstrip("/") + "/ws"
    elif not path:
        path = "/ws"
    return urlunsplit((scheme, parts.netloc, path, parts.query, ""))


def _number(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return math.nan
    return float(value)


def parse_queue(message: str | bytes) -> Queue:
    """Parse one ``/ws`` message (a JSON array of queue items).

    Raises ValueError on anything that is not such an array. Missing optional
    fields are filled in; missing weights are derived from the scores.
    """
    data = json.loads(message)
    if not isinstance(data, list):
        raise ValueError("queue message is not a JSON array")
    items: list[QueueItem] = []
    derive = False
    for raw in data:
        if not isinstance(raw, dict) or not isinstance(raw.get("dns_name"), str):
            raise ValueError(f"queue item without a dns_name: {raw!r}")
        text = str(raw.get("utilization_category", "INIT"))
        category: Any = Category(text) if text in Category.__members__ else text
        weight = raw.get("weight")
        if weight is None:
            derive = True
        port = raw.get("port")
        items.append(
            QueueItem(
                dns_name=raw["dns_name"],
                score=_number(raw.get("score")),
                utilization_category=category,
                weight=_number(weight) if weight is not None else 0.0,
                address=raw.get("address") if isinstance(raw.get("address"), str) else None,
                port=port if isinstance(port, int) and not isinstance(port, bool) else None,
                id=raw.get("id") if isinstance(raw.get("id"), str) else None,
            )
        )
    if derive:
        items = _derive_weights(items)
    return tuple(items)


def _derive_weights(items: list[QueueItem]) -> list[QueueItem]:
    """Weights for a queue without them (compat servers send none): the queue's own
    fallback (`traffic_weights`, score-proportional) over the routable items —
    measured, positive score, neither SUNDOWN nor INIT; 0 for the rest."""

    def routable(i: QueueItem) -> bool:
        return (str(i.utilization_category) not in ("SUNDOWN", "INIT")
                and math.isfinite(i.score) and i.score > 0)

    shares = iter(traffic_weights(None, [i.score for i in items if routable(i)]))
    return [
        QueueItem(i.dns_name, i.score, i.utilization_category,
                  next(shares) if routable(i) else 0.0, i.address, i.port, i.id)
        for i in items
    ]


@dataclass
class Backoff:
    """Exponential backoff with full jitter: delays grow from `initial` to `maximum`."""

    initial: float = 0.25
    maximum: float = 30.0
    factor: float = 2.0
    jitter: float = 0.5  # fraction of the delay that is randomised
    _next: float = 0.0

    def __post_init__(self) -> None:
        if not 0 < self.initial <= self.maximum or self.factor < 1 or not 0 <= self.jitter <= 1:
            raise ValueError("need 0 < initial <= maximum, factor >= 1, 0 <= jitter <= 1")
        self._next = self.initial

    def reset(self) -> None:
        self._next = self.initial

    def next(self) -> float:
        delay = self._next
        self._next = min(self.maximum, self._next * self.factor)
        return delay * (1 - self.jitter * random.random())


class QueueSubscriber:
    """The agent's queue over WebSocket, with reconnect; an async iterator.

    Use as an async context manager (it runs a background task), or start
    `run` in your own nursery: ``await nursery.start(subscriber.run)``.
    """

    def __init__(
        self,
        url: str,
        *,
        backoff: Backoff | None = None,
        connect_timeout: float = 10.0,
        ssl_context: ssl.SSLContext | None = None,
        max_message_size: int = 16 * 1024 * 1024,
    ) -> None:
        self.url = ws_url(url)
        parts = urlsplit(self.url)
        self._host = parts.hostname or "127.0.0.1"
        self._secure = parts.scheme == "wss"
        self._port = parts.port or (443 if self._secure else 80)
        self._resource = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        self._ssl = ssl_context if ssl_context is not None else (ssl.create_default_context() if self._secure else None)
        self.backoff = backoff or Backoff()
        self.connect_timeout = connect_timeout
        self.max_message_size = max_message_size
        self._latest: Queue | None = None
        self._version = 0
        self._changed = trio.Event()
        self._closed = False
        self._connected = False
        self._nursery: trio.Nursery | None = None
        self.connects = 0
        self.last_error: BaseException | None = None

    # -- state ------------------------------------------------------------------

    @property
    def latest(self) -> Queue | None:
        """The newest queue received, or None before the first."""
        return self._latest

    @property
    def version(self) -> int:
        """Number of queues received so far."""
        return self._version

    @property
    def connected(self) -> bool:
        return self._connected

    def _set(self, queue: Queue) -> None:
        self._latest = queue
        self._version += 1
        changed, self._changed = self._changed, trio.Event()
        changed.set()

    # -- iteration --------------------------------------------------------------

    def __aiter__(self) -> _Cursor:
        """A new cursor: it yields the latest queue at once (if any), then changes."""
        return _Cursor(self)

    async def wait_latest(self) -> Queue:
        """The latest queue, waiting for the first one if needed."""
        while self._latest is None:
            if self._closed:
                raise RuntimeError("subscriber closed before any queue arrived")
            await self._changed.wait()
        return self._latest

    # -- running ----------------------------------------------------------------

    async def __aenter__(self) -> QueueSubscriber:
        self._manager = trio.open_nursery()
        self._nursery = await self._manager.__aenter__()
        self._nursery.start_soon(self.run)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        assert self._nursery is not None
        self._nursery.cancel_scope.cancel()
        try:
            return await self._manager.__aexit__(exc_type, exc, tb)
        finally:
            self.close()

    def close(self) -> None:
        """End iteration (background task, if any, is the caller's to cancel)."""
        self._closed = True
        self._changed.set()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Connect, receive, reconnect with backoff — until cancelled."""
        task_status.started()
        while True:
            try:
                await self._session()
            except* _RECOVERABLE as group:
                # (grouped: the session runs trio-websocket's reader in a nursery)
                error: BaseException = group
                while isinstance(error, BaseExceptionGroup):
                    error = error.exceptions[0]
                self.last_error = error
                log.debug("queue feed %s: %s", self.url, self.last_error)
            delay = self.backoff.next()
            log.debug("queue feed %s: reconnecting in %.2f s", self.url, delay)
            await trio.sleep(delay)

    async def _session(self) -> None:
        with trio.fail_after(self.connect_timeout):
            tcp = await trio.open_tcp_stream(self._host, self._port)
        stream: trio.SocketStream | trio.SSLStream[trio.SocketStream] = tcp
        try:
            if self._ssl is not None:
                stream = trio.SSLStream(tcp, self._ssl, server_hostname=self._host)
            async with trio.open_nursery() as nursery:
                with trio.fail_after(self.connect_timeout):
                    ws = await trio_websocket.wrap_client_stream(
                        nursery, stream, self._host, self._resource,
                        max_message_size=self.max_message_size,
                    )
                self.connects += 1
                self._connected = True
                try:
                    first = True
                    while True:
                        message = await ws.get_message()
                        try:
                            queue = parse_queue(message)
                        except ValueError as exc:
                            self.last_error = exc
                            log.warning("queue feed %s: ignoring a bad message: %s", self.url, exc)
                            continue
                        if first:
                            self.backoff.reset()  # only a working feed resets it
                            first = False
                        self._set(queue)
                finally:
                    self._connected = False
                    nursery.cancel_scope.cancel()
        finally:
            # trio-websocket leaves the client's stream open when the server
            # closes first; we own it, so we close it (at once, even if cancelled).
            await trio.aclose_forcefully(stream)


class _Cursor:
    """One iteration over a subscriber: the version it last yielded."""

    __slots__ = ("_sub", "_seen")

    def __init__(self, sub: QueueSubscriber) -> None:
        self._sub = sub
        self._seen = 0

    def __aiter__(self) -> _Cursor:
        return self

    async def __anext__(self) -> Queue:
        sub = self._sub
        while not sub._closed:
            if sub._version != self._seen and sub._latest is not None:
                await trio.lowlevel.checkpoint()
                self._seen = sub._version  # after the checkpoint: the newest wins
                return sub._latest
            await sub._changed.wait()
        raise StopAsyncIteration


class Picker:
    """Pick a container from the latest queue with the kernel's pickers.

    `source` is a `QueueSubscriber`, a sequence of `QueueItem` or a callable
    returning one. The kernel picker is rebuilt only when the routable set or
    its weights change, so round-robin state survives identical rebroadcasts.
    """

    def __init__(
        self,
        source: QueueSubscriber | Sequence[QueueItem] | Callable[[], Sequence[QueueItem] | None],
        *,
        strategy: Literal["p2c", "swrr"] = "p2c",
        seed: int | None = None,
    ) -> None:
        if strategy not in ("p2c", "swrr"):
            raise ValueError(f"strategy must be 'p2c' or 'swrr', got {strategy!r}")
        self.strategy = strategy
        self._source = source
        self._seed = seed
        self._key: tuple[tuple[str, float], ...] | None = None
        self._items: tuple[QueueItem, ...] = ()
        self._picker: WeightedP2C | SmoothWeightedRoundRobin | None = None
        self._in_flight: dict[str, int] = {}

    def _queue(self) -> Sequence[QueueItem]:
        source = self._source
        if isinstance(source, QueueSubscriber):
            return source.latest or ()
        if callable(source):
            return source() or ()
        return source

    def _refresh(self) -> None:
        items = tuple(
            i for i in self._queue()
            if str(i.utilization_category) != "SUNDOWN" and math.isfinite(i.weight) and i.weight > 0
        )
        key = tuple((i.dns_name, i.weight) for i in items)
        if key == self._key:
            self._items = items  # same weights: keep the picker's state, update addresses
            return
        from agent.scoring import SmoothWeightedRoundRobin, WeightedP2C  # numpy + the kernel: lazily

        weights = [i.weight for i in items]
        self._picker = (
            WeightedP2C(weights, seed=self._seed) if self.strategy == "p2c" else SmoothWeightedRoundRobin(weights)
        ) if items else None
        self._items, self._key = items, key

    def pick(self) -> QueueItem:
        """One container; LookupError when none can take traffic."""
        self._refresh()
        if self._picker is None:
            raise LookupError("no container in the queue can take traffic")
        if self.strategy == "p2c" and self._in_flight:
            load = [float(self._in_flight.get(i.dns_name, 0)) for i in self._items]
            picker = cast("WeightedP2C", self._picker)  # _refresh builds it for "p2c"
            return self._items[picker.pick(load=load)]
        return self._items[self._picker.pick()]

    @contextmanager
    def lease(self) -> Iterator[QueueItem]:
        """Pick, and count the container as busy until the block ends (p2c uses it)."""
        item = self.pick()
        self._in_flight[item.dns_name] = self._in_flight.get(item.dns_name, 0) + 1
        try:
            yield item
        finally:
            left = self._in_flight[item.dns_name] - 1
            if left:
                self._in_flight[item.dns_name] = left
            else:
                del self._in_flight[item.dns_name]

    @property
    def in_flight(self) -> dict[str, int]:
        return dict(self._in_flight)
