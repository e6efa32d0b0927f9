"""Real HTTP requests through a balancer's port, each one counted (test helper).

`RequestLoop` is a closed loop (N clients back to back); `OpenLoop` (from
`benchmarks.open_loop`) sends on schedule at a fixed rate.
"""
from __future__ import annotations

import collections
from dataclasses import dataclass, field

import trio

from benchmarks.open_loop import OpenLoop, http_get

__all__ = ["OpenLoop", "RequestLoop", "http_get"]


@dataclass
class RequestLoop:
    """`concurrency` clients sending GETs back to back until `stop()` (or `limit`).

    Every request is counted: `statuses` maps each status (0 = no answer) to its
    count. `stop()` lets each client finish the request it has in flight, so no
    request is cut short by the test itself.
    """

    port: int
    concurrency: int = 4
    path: str = "/"
    method: str = "GET"
    limit: int = 20_000
    statuses: collections.Counter[int] = field(default_factory=collections.Counter)
    _stopping: bool = False

    @property
    def total(self) -> int:
        return sum(self.statuses.values())

    @property
    def failed(self) -> int:
        return self.total - self.statuses[200]

    def stop(self) -> None:
        self._stopping = True

    async def run(self) -> None:
        async with trio.open_nursery() as nursery:
            for _ in range(self.concurrency):
                nursery.start_soon(self._client)

    async def _client(self) -> None:
        while not self._stopping and self.total < self.limit:
            self.statuses[await http_get(self.port, self.path, method=self.method)] += 1
