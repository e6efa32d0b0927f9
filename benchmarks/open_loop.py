"""An open-loop HTTP load generator: requests sent on schedule, every one counted.

Open loop means the i-th request leaves at ``start + i / rate`` whether or not the
earlier ones have been answered, as real users do; a closed loop (N clients sending
back to back) slows down with the server and hides its queueing. Latency is
measured from the *scheduled* time, so a generator that falls behind cannot hide
it either (no coordinated omission). Requests are HTTP/1.0 GETs on fresh
connections (what HAProxy balances one by one), to 127.0.0.1 only.

Bounded: at most `max_in_flight` requests open at once (beyond, a request is
counted as dropped, status -1, not sent) and `duration` seconds (or `stop()`).

The rate may change while it runs (`set_rate`: a step load keeps one generator, so
requests in flight across a step are neither cut nor waited for), and with
`record` every request is kept as a `Request` (when it was due, its status, its
latency), for time series and per-phase figures.
"""
from __future__ import annotations

import collections
import math
from dataclasses import dataclass, field

import trio

__all__ = ["OpenLoop", "Request", "http_get", "percentile"]

DROPPED = -1  # status of a request the generator could not send (too many open)


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


def percentile(values: list[float], q: float) -> float:
    """The q-quantile (0..1) of `values`, linear between ranks; NaN when empty."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = q * (len(ordered) - 1)
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


@dataclass(frozen=True, slots=True)
class Request:
    """One request as `OpenLoop(record=True)` saw it. `due` is its scheduled time
    (the generator's clock, `trio.current_time()`); `latency` is the time from
    `due` to its end (answer, error or timeout: `status` says which; 0 = no
    answer), NaN when it was not sent (status -1)."""

    due: float
    status: int
    latency: float


@dataclass
class OpenLoop:
    """`rate` GETs per second of `path` on 127.0.0.1:`port`, on schedule."""

    port: int
    rate: float
    path: str = "/"
    duration: float | None = None
    max_in_flight: int = 256
    timeout: float = 15.0
    record: bool = False
    requests: list[Request] = field(default_factory=list)  # with `record`, in completion order
    started_at: float | None = None  # the generator's clock when the first request was due
    statuses: collections.Counter[int] = field(default_factory=collections.Counter)
    latencies: list[float] = field(default_factory=list)  # seconds, answered requests
    sent: int = 0
    elapsed: float = 0.0
    _open: int = 0
    _stopping: bool = False
    _anchor: tuple[float, int] | None = None  # (due time, index) where the rate last changed
    _pending_rate: float | None = None  # set by `set_rate`, applied at the next request

    @property
    def total(self) -> int:
        return sum(self.statuses.values())

    @property
    def failed(self) -> int:
        """Requests that did not get a 200 (no answer, an error, or not sent)."""
        return self.total - self.statuses[200]

    @property
    def achieved_rate(self) -> float:
        return self.sent / self.elapsed if self.elapsed > 0 else 0.0

    def set_rate(self, rate: float) -> None:
        """From the next request on, `rate` per second (the schedule stays exact:
        request j after the change is due at t₀ + (j − i₀) / rate)."""
        if not rate > 0:
            raise ValueError(f"rate must be > 0, got {rate!r}")
        self._pending_rate = rate

    def stop(self) -> None:
        """Send no more; the requests in flight finish (none is cut by the generator)."""
        self._stopping = True

    async def run(self) -> None:
        start = self.started_at = trio.current_time()
        self._anchor = (start, 0)
        async with trio.open_nursery() as nursery:
            i = 0
            while not self._stopping:
                due = self._due(i)
                if self.duration is not None and due - start >= self.duration:
                    break
                await trio.sleep_until(due)
                i += 1
                if self._open >= self.max_in_flight:
                    self.statuses[DROPPED] += 1
                    if self.record:
                        self.requests.append(Request(due, DROPPED, math.nan))
                    continue
                self._open += 1
                self.sent += 1
                nursery.start_soon(self._one, due)
            self.elapsed = trio.current_time() - start

    def _due(self, i: int) -> float:
        """When request `i` is due, a rate change taking effect from it on."""
        assert self._anchor is not None
        pending = self._pending_rate
        if pending is not None:
            self._anchor = (self._due_at_rate(i), i)
            self.rate, self._pending_rate = pending, None
        return self._due_at_rate(i)

    def _due_at_rate(self, i: int) -> float:
        assert self._anchor is not None
        at, index = self._anchor
        return at + (i - index) / self.rate

    async def _one(self, due: float) -> None:
        try:
            status = await http_get(self.port, self.path, timeout=self.timeout)
            latency = trio.current_time() - due
            if status:
                self.latencies.append(latency)
            self.statuses[status] += 1
            if self.record:
                self.requests.append(Request(due, status, latency))
        finally:
            self._open -= 1

    def summary(self) -> dict[str, float]:
        """Counts, achieved rate, p50/p99/p999 (seconds) and error rate."""
        total = self.total
        return {
            "sent": self.sent,
            "answered_200": self.statuses[200],
            "failed": self.failed,
            "error_rate": self.failed / total if total else math.nan,
            "target_rate": self.rate,
            "achieved_rate": self.achieved_rate,
            "p50": percentile(self.latencies, 0.50),
            "p99": percentile(self.latencies, 0.99),
            "p999": percentile(self.latencies, 0.999),
        }
