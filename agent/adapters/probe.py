"""Availability probes, native Trio sockets (SPEC §3 "availability").

Both return the response time in seconds, or NaN when the container did not answer
in time — SPEC §3 scores NaN as availability 0. They never raise on a network
failure: a refused, reset or timed-out connection is an observation, not an error.
Time is read from Trio's clock, so a test may drive it with `trio.testing.MockClock`.
`NetworkProbe` is the `agent.core.ports.Probe` the Sampler uses: one or the other.

The TCP probe runs for every container every tick. `probe_tcp_many` probes a
whole tick's containers in one blocking call (`NetworkProbe.tcp_many`, which
the Sampler runs in one worker thread): per container a non-blocking socket,
its connect, a zero-timeout poll
— a connection to a container on this host is usually established before
``connect`` has returned — and one epoll for the others, until each one's
timeout or the tick's deadline. A Trio task per probe cost ~170 µs of CPU each
(a task, a wakeup, epoll registrations); this costs ~70 µs, most of it the
kernel's own handshake — and resets each connection (``SO_LINGER`` 0) rather
than closing it, which leaves no TIME_WAIT entry behind: at 300 containers a
tick, a minute of those would hold most ephemeral ports. `probe_tcp` (one
probe, native Trio, for names and for callers outside the tick) is lean for an
IP literal too: no resolver, no happy-eyeballs nursery.
"""
from __future__ import annotations

import errno
import ipaddress
import math
import select
import socket
import struct
import time
from collections.abc import MutableSequence, Sequence
from typing import TYPE_CHECKING

import trio

if TYPE_CHECKING:
    from agent.core.ports import Probe

__all__ = ["NetworkProbe", "is_ip_literal", "probe_http", "probe_tcp", "probe_tcp_many"]

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
        sock.close()


def probe_tcp_many(
    targets: Sequence[tuple[str, int]],
    timeout: float,
    stop_in: float,
    results: MutableSequence[float | None] | None = None,
) -> MutableSequence[float | None]:
    """Blocking: the connect time of every ``(ip, port)`` in `targets`, at once.

    Each entry is seconds, NaN when that target refused or did not answer
    within `timeout`, or None when `stop_in` seconds (the tick's deadline) ran
    out first — not an answer, the caller marks it stale. Targets must be IP
    literals (a name is NaN: nothing is resolved here). With `results` (one
    None per target), each entry is filled in as it is known, so a caller that
    stops waiting still has the answers so far.
    """
    if results is None:
        results = [None] * len(targets)
    stop_at = time.perf_counter() + stop_in
    if stop_in <= 0:
        return results
    pending: dict[int, tuple[int, socket.socket, float]] = {}
    poller = select.epoll()
    check = select.poll()
    try:
        for i, (host, port) in enumerate(targets):
            family = _ip_family(host)
            if family is None:
                results[i] = math.nan
                continue
            try:
                sock = socket.socket(family, socket.SOCK_STREAM | socket.SOCK_NONBLOCK)
            except OSError:  # out of descriptors: this one is not probed
                results[i] = math.nan
                continue
            start = time.perf_counter()
            err = sock.connect_ex((host, port))
            if err == errno.EINPROGRESS and _writable_now(check, sock):
                err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if err == errno.EINPROGRESS:
                poller.register(sock.fileno(), select.EPOLLOUT)
                pending[sock.fileno()] = (i, sock, start)
                continue
            results[i] = time.perf_counter() - start if err == 0 else math.nan
            _reset(sock)
        _await_pending(poller, pending, results, timeout, stop_at)
    finally:
        for _, sock, _ in pending.values():
            _reset(sock)
        poller.close()
    return results


def _await_pending(
    poller: select.epoll, pending: dict[int, tuple[int, socket.socket, float]],
    results: MutableSequence[float | None], timeout: float, stop_at: float,
) -> None:
    """Wait for the connects still in progress; each ends at its own timeout."""
    while pending:
        now = time.perf_counter()
        for fd, (i, sock, start) in list(pending.items()):
            if now - start >= timeout:  # no answer in time: scored as no answer
                results[i] = math.nan
                del pending[fd]
                poller.unregister(fd)
                _reset(sock)
        if not pending or now >= stop_at:
            return  # what is left missed the tick's deadline: None
        first_expiry = min(start + timeout for _, _, start in pending.values())
        for fd, _ in poller.poll(min(stop_at, first_expiry) - now):
            i, sock, start = pending.pop(fd)
            poller.unregister(fd)
            err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            results[i] = time.perf_counter() - start if err == 0 else math.nan
            _reset(sock)


def _writable_now(check: select.poll, sock: socket.socket) -> bool:
    """One poll(0) system call: is this connect already done?"""
    check.register(sock.fileno(), select.POLLOUT)
    try:
        return bool(check.poll(0))
    finally:
        check.unregister(sock.fileno())


def _reset(sock: socket.socket) -> None:
    """Close with RST (no TIME_WAIT left behind)."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _RESET)
    except OSError:
        pass
    sock.close()


_FAMILIES: dict[str, socket.AddressFamily | None] = {}


def is_ip_literal(host: str) -> bool:
    """Whether `host` is an IPv4 or IPv6 address (what `probe_tcp_many` takes)."""
    return _ip_family(host) is not None


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


class NetworkProbe:
    """The real `Probe`: ``GET health_path`` when one is given, else a TCP connect.

    `tcp_many` is its batch form, for a whole tick's TCP probes in one worker
    thread (`probe_tcp_many`); the Sampler uses it when this is its probe.
    """

    tcp_many = staticmethod(probe_tcp_many)

    async def response_time(
        self, host: str, port: int, *, timeout: float, health_path: str | None = None
    ) -> float:
        if health_path:
            return await probe_http(host, port, health_path, timeout)
        return await probe_tcp(host, port, timeout)


if TYPE_CHECKING:  # mypy holds the adapter to its port

    def _implements(probe: NetworkProbe) -> Probe:
        return probe
