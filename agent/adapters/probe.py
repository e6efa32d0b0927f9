"""Availability probes, native Trio sockets (SPEC §3 "availability").

Both return the response time in seconds, or NaN when the container did not answer
in time — SPEC §3 scores NaN as availability 0. They never raise on a network
failure: a refused, reset or timed-out connection is an observation, not an error.
Time is read from Trio's clock, so a test may drive it with `trio.testing.MockClock`.

`probe_tcp` runs for every container every tick, so it is lean for an IP
address (what the engine adapter hands out): one non-blocking socket and its
connect, no resolver and no happy-eyeballs nursery; the connection is then
reset (``SO_LINGER`` 0) rather than closed, which leaves no TIME_WAIT entry
behind — at 300 containers a tick, a minute of those would hold most of the
ephemeral ports. Names still go through `trio.open_tcp_stream`.
"""
from __future__ import annotations

import ipaddress
import math
import socket
import struct

import trio

__all__ = ["probe_http", "probe_tcp"]

_RESET = struct.pack("ii", 1, 0)  # SO_LINGER on, 0 s: close() sends RST

_STATUS_LINE_LIMIT = 8192  # bytes read at most while waiting for the status line


async def probe_tcp(host: str, port: int, timeout: float) -> float:
    """Seconds to open a TCP connection to `host`:`port`; NaN on failure or timeout."""
    family = _ip_family(host)
    if family is not None:
        return await _connect_time(family, host, port, timeout)
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


async def _connect_time(family: socket.AddressFamily, host: str, port: int, timeout: float) -> float:
    start = trio.current_time()
    try:
        sock = trio.socket.socket(family, socket.SOCK_STREAM)
    except OSError:
        return math.nan
    try:
        with trio.move_on_after(timeout):
            try:
                await sock.connect((host, port))
            except OSError:
                return math.nan
            return trio.current_time() - start
        return math.nan
    finally:
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _RESET)
        except OSError:
            pass
        sock.close()


_FAMILIES: dict[str, socket.AddressFamily | None] = {}


def _ip_family(host: str) -> socket.AddressFamily | None:
    """AF_INET / AF_INET6 for an IP literal, None for a name (remembered)."""
    try:
        return _FAMILIES[host]
    except KeyError:
        pass
    try:
        family = socket.AF_INET6 if ipaddress.ip_address(host).version == 6 else socket.AF_INET
    except ValueError:
        family = None
    if len(_FAMILIES) < 4096:
        _FAMILIES[host] = family
    return family


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
