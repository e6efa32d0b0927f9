"""Availability probes, native Trio sockets (SPEC §3 "availability").

Both return the response time in seconds, or NaN when the container did not answer
in time — SPEC §3 scores NaN as availability 0. They never raise on a network
failure: a refused, reset or timed-out connection is an observation, not an error.
Time is read from Trio's clock, so a test may drive it with `trio.testing.MockClock`.
`NetworkProbe` is the `agent.core.ports.Probe` the Sampler uses: one or the other.
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING

import trio

if TYPE_CHECKING:
    from agent.core.ports import Probe

__all__ = ["NetworkProbe", "probe_http", "probe_tcp"]

_STATUS_LINE_LIMIT = 8192  # bytes read at most while waiting for the status line


async def probe_tcp(host: str, port: int, timeout: float) -> float:
    """Seconds to open a TCP connection to `host`:`port`; NaN on failure or timeout."""
    start = trio.current_time()
    with trio.move_on_after(timeout):
        try:
            stream = await trio.open_tcp_stream(host, port)
        except OSError:
            return math.nan
        elapsed = trio.current_time() - start
        await trio.aclose_forcefully(stream)
        return elapsed
    return math.nan


async def probe_http(host: str, port: int, path: str, timeout: float) -> float:
    """Seconds until `GET path` answers with a 2xx or 3xx status line.

    NaN on any other status, a malformed answer, a network failure or `timeout`.
    Only the status line is awaited (HTTP/1.0, ``Connection: close``); the body is
    not read.
    """
    if not path.startswith("/"):
        path = "/" + path
    host_header = f"[{host}]" if ":" in host else host
    request = (
        f"GET {path} HTTP/1.0\r\nHost: {host_header}:{port}\r\n"
        "User-Agent: deployment-agent-probe\r\nAccept: */*\r\nConnection: close\r\n\r\n"
    ).encode("latin-1")
    start = trio.current_time()
    with trio.move_on_after(timeout):
        try:
            stream = await trio.open_tcp_stream(host, port)
        except OSError:
            return math.nan
        try:
            await stream.send_all(request)
            received = bytearray()
            while b"\n" not in received and len(received) < _STATUS_LINE_LIMIT:
                chunk = await stream.receive_some(1024)
                if not chunk:
                    break
                received += chunk
        except (OSError, trio.BrokenResourceError, trio.ClosedResourceError):
            return math.nan
        finally:
            await trio.aclose_forcefully(stream)
        elapsed = trio.current_time() - start
        return elapsed if _status_ok(bytes(received)) else math.nan
    return math.nan


def _status_ok(head: bytes) -> bool:
    """Whether `head` starts with an ``HTTP/x.y 2xx|3xx`` status line."""
    line = head.split(b"\n", 1)[0].strip()
    parts = line.split(None, 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/"):
        return False
    code = parts[1]
    return len(code) == 3 and code.isdigit() and 200 <= int(code) < 400


class NetworkProbe:
    """The real `Probe`: ``GET health_path`` when one is given, else a TCP connect."""

    async def response_time(
        self, host: str, port: int, *, timeout: float, health_path: str | None = None
    ) -> float:
        if health_path:
            return await probe_http(host, port, health_path, timeout)
        return await probe_tcp(host, port, timeout)


if TYPE_CHECKING:  # mypy holds the adapter to its port

    def _implements(probe: NetworkProbe) -> Probe:
        return probe
