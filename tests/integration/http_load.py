"""Real HTTP requests through a balancer's port, each one counted (test helper)."""
from __future__ import annotations

import collections
from dataclasses import dataclass, field

import trio

__all__ = ["RequestLoop", "http_get"]


async def http_get(port: int, path: str = "/", *, host: str = "127.0.0.1",
                   timeout: float = 15.0, method: str = "GET") -> int:
    """The status code of ``GET path`` (HTTP/1.0), or 0 when no answer came.

    A POST (empty body) is never retried by HAProxy once sent (`disable-l7-retry`),
    so it shows what a request cut short by a removed worker would do.
    """
    with trio.move_on_after(timeout):
        try:
            stream = await trio.open_tcp_stream(host, port)
        except OSError:
            return 0
        async with stream:
            try:
                body = "Content-Length: 0\r\n" if method == "POST" else ""
                request = f"{method} {path} HTTP/1.0\r\nHost: app\r\n{body}\r\n"
                await stream.send_all(request.encode())
                data = b""
                while True:
                    chunk = await stream.receive_some(65536)
                    if not chunk:
                        break
                    data += chunk
            except (OSError, trio.BrokenResourceError):
                return 0
        head = data.split(b"\r\n", 1)[0].split()
        if len(head) >= 2 and head[0].startswith(b"HTTP/") and head[1].isdigit():
            return int(head[1])
    return 0


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
