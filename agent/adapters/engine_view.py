"""The owned containers as last seen: the cache `DockerEngine.list_owned` serves.

Why a cache: listing the pool and inspecting every running container every tick
(to learn pids the agent already knew) was a quarter of the agent's CPU and most
of dockerd's at 100 containers (issue 11). The engine's event stream says when a
container changes; the view holds what the last inspect of each container said,
and the stream, the agent's own creations and removals, and the resyncs keep it
current (`agent.adapters.engine_watch`).

Several threads write it at once — the thread reading the event stream, the
resyncs, the agent's own `create`/`remove` — so every write carries a *ticket*,
taken from `ticket()` just before the engine was asked (an inspect, a listing).
A write with an older ticket than the entry's never overwrites it: a slow inspect
that started before a container was started cannot put it back to "created"
after the agent's own inspect saw it running. A removal is final: the id is
remembered (a bounded set of tombstones; engine ids are never reused), and no
later write, however it was ticketed, brings the container back.

`live` says whether the view may be served: set by the watcher once a full
resync after (re)connecting to the stream has run, cleared when the stream
breaks. Plain data and a lock: no trio, no docker.
"""
from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping

from agent.core.records import ContainerInfo

__all__ = ["OwnedView"]

_TOMBSTONES = 4096  # removed ids remembered; far more than are removed between two events


class OwnedView:
    """Thread-safe map of container id → `ContainerInfo`, with write tickets.

    `owns` is the ownership rule (`DockerEngine.owns`): an info whose labels fail
    it is never stored, whatever the caller says.
    """

    def __init__(
        self, owns: Callable[[Mapping[str, str] | None], bool], *, tombstones: int = _TOMBSTONES
    ) -> None:
        self._owns = owns
        self._lock = threading.Lock()
        self._entries: dict[str, tuple[ContainerInfo, int]] = {}
        self._gone: OrderedDict[str, None] = OrderedDict()
        self._max_gone = tombstones
        self._tickets = 0
        self._sorted: list[ContainerInfo] | None = None
        self.live = False

    def ticket(self) -> int:
        """A number greater than every ticket handed out before."""
        with self._lock:
            self._tickets += 1
            return self._tickets

    def put(self, info: ContainerInfo, ticket: int) -> bool:
        """Store `info` unless the id was removed, it is not ours, or the entry is
        newer than `ticket`. Returns whether it was stored."""
        if not self._owns(info.labels):
            return False
        with self._lock:
            return self._put_locked(info, ticket)

    def drop(self, container_id: str) -> None:
        """The container is gone for good (removed, or destroyed)."""
        with self._lock:
            self._gone[container_id] = None
            self._gone.move_to_end(container_id)
            while len(self._gone) > self._max_gone:
                self._gone.popitem(last=False)
            if self._entries.pop(container_id, None) is not None:
                self._sorted = None

    def drop_unlisted(self, listed: Iterable[str], since: int) -> list[str]:
        """After a listing that began at ticket `since`: forget the entries it did
        not show, unless written after it began. Returns the ids forgotten."""
        keep = set(listed)
        with self._lock:
            stale = [cid for cid, (_, t) in self._entries.items() if cid not in keep and t < since]
            for cid in stale:
                del self._entries[cid]
            if stale:
                self._sorted = None
            return stale

    def get(self, container_id: str) -> ContainerInfo | None:
        with self._lock:
            entry = self._entries.get(container_id)
            return None if entry is None else entry[0]

    def removed(self, container_id: str) -> bool:
        with self._lock:
            return container_id in self._gone

    def listing(self) -> list[ContainerInfo]:
        """Every entry, ordered like the engine adapter's listing (created, name)."""
        with self._lock:
            if self._sorted is None:
                self._sorted = sorted(
                    (info for info, _ in self._entries.values()),
                    key=lambda info: (info.created, info.name),
                )
            return list(self._sorted)

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    def _put_locked(self, info: ContainerInfo, ticket: int) -> bool:
        if info.id in self._gone:
            return False
        current = self._entries.get(info.id)
        if current is not None and current[1] > ticket:
            return False
        if current is None or current[0] != info:
            self._sorted = None
        self._entries[info.id] = (info, ticket)
        return True
