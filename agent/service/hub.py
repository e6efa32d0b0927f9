"""Latest-value fan-out of snapshots to any number of subscribers.

The runtime publishes one :class:`~agent.model.Snapshot` per tick; WebSocket
handlers, the dashboard feed and embedding code subscribe. The rule is *latest
value wins*: a subscriber that is busy (a slow WebSocket peer, a stalled
consumer) does not queue snapshots up — when it comes back it gets the newest
one and the ones in between are skipped. That is what a load balancer wants
(only the current queue matters) and it keeps memory flat no matter how many
subscribers stall: per subscriber the hub holds a version number, nothing else.

How it works: the hub keeps ``(version, latest)`` and one :class:`trio.Event`
that is *replaced* on every publish. Publishing sets the old event, which wakes
every waiting subscriber at once; each compares the hub's version with the last
one it delivered and yields ``latest`` if they differ. ``publish`` is
synchronous and O(1) for the publisher (trio reschedules the waiters), so the
tick loop never blocks on subscribers.

``close()`` ends every subscription (their ``async for`` loops finish) and makes
later ``subscribe()`` calls end immediately; it is called at shutdown so
WebSocket handlers can say goodbye with close code 1001.

The hub is the runtime's `agent.core.ports.Publisher` (``latest``, ``publish``,
``close``); subscribing is what the web layer adds on top.
"""
from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

import trio

from agent.core.records import Snapshot

if TYPE_CHECKING:
    from agent.core.ports import Publisher

__all__ = ["Hub", "Subscription"]


class Hub:
    """Keeps the newest snapshot and wakes subscribers when it changes.

    Must be used from the Trio thread (``publish`` included); it is not
    thread-safe, by design — the runtime publishes from its tick task.
    """

    def __init__(self, initial: Snapshot | None = None) -> None:
        self._latest = initial if initial is not None else Snapshot.empty()
        self._version = 0
        self._changed = trio.Event()
        self._closed = False

    @property
    def latest(self) -> Snapshot:
        """The newest published snapshot (``Snapshot.empty()`` before the first)."""
        return self._latest

    @property
    def version(self) -> int:
        """How many snapshots have been published; 0 before the first."""
        return self._version

    @property
    def closed(self) -> bool:
        return self._closed

    def publish(self, snapshot: Snapshot) -> None:
        """Make `snapshot` the latest and wake all subscribers. Never blocks.

        Publishing after :meth:`close` is ignored: at shutdown the tick loop may
        still finish a tick after the web layer has said goodbye.
        """
        if self._closed:
            return
        self._latest = snapshot
        self._version += 1
        changed, self._changed = self._changed, trio.Event()
        changed.set()

    def close(self) -> None:
        """End every subscription; idempotent."""
        if self._closed:
            return
        self._closed = True
        self._changed.set()

    async def wait_closed(self) -> None:
        """Return once :meth:`close` has been called."""
        while not self._closed:
            await self._changed.wait()

    def subscribe(self, *, include_current: bool = True) -> Subscription:
        """An async iterator over snapshots, newest first, skipping stale ones.

        With `include_current` (the default) the first item is the current
        snapshot, delivered without waiting — what a WebSocket client expects on
        connect. The iterator ends when the hub is closed.
        """
        return Subscription(self, None if include_current else self._version)


class Subscription(AsyncIterator[Snapshot]):
    """One subscriber's cursor into a :class:`Hub`: just a version number.

    A plain class rather than an async generator so that abandoning it (a
    ``break`` out of the loop, a cancelled handler) needs no finalisation.
    """

    __slots__ = ("_hub", "_seen")

    def __init__(self, hub: Hub, seen: int | None) -> None:
        self._hub = hub
        self._seen = seen

    @property
    def seen(self) -> int | None:
        """Version of the last snapshot delivered (None: nothing delivered yet)."""
        return self._seen

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> Snapshot:
        hub = self._hub
        while True:
            if hub._closed:
                raise StopAsyncIteration
            if self._seen != hub._version:
                # A checkpoint on every item keeps a fast consumer from starving
                # the others and makes the loop cancellable.
                await trio.lowlevel.checkpoint()
                if hub._closed:
                    raise StopAsyncIteration
                # Read after the checkpoint: a publish during it is not lost,
                # the newer snapshot is simply delivered in its place.
                self._seen = hub._version
                return hub._latest
            await hub._changed.wait()


if TYPE_CHECKING:  # mypy holds the adapter to its port

    def _implements(hub: Hub) -> Publisher:
        return hub
