"""The WebSocket port (``HOST_PORT_WS_DEPLOYMENT_AGENT``): a small RFC 6455 server of
the queue feed, which writes each snapshot's frame once to every subscriber.

Why not Hypercorn on this port: through ASGI every delivery is an ASGI send, a
wsproto frame built for that subscriber, a task switch and a stream write —
~130 µs of server CPU per delivery at 1,000 subscribers, and a p99 of a quarter
of a second. Here a snapshot is encoded to JSON once and framed once
(`Frames`); one task offers the same bytes to every subscriber with a
non-blocking ``send``: one system call per delivery, no task switch. The HTTP
port keeps serving ``/ws`` through Hypercorn (`agent.interfaces.web.feed`), with
the same message, encoded once.

What it speaks:

* the opening handshake, parsed with h11 (a head of 8 KiB at most, sent within
  `HANDSHAKE_TIMEOUT`): ``GET`` at any path (the feed at any path, like the
  prototype's bare WebSocket server) with ``Upgrade: websocket``,
  ``Connection: Upgrade``, ``Sec-WebSocket-Version: 13`` and a 16-byte key ⇒
  101, without subprotocol or extension. Other requests get a JSON error and
  the connection is closed: 404 for plain HTTP (this port serves only the
  feed), 426 (with ``Sec-WebSocket-Version: 13``) for another version, 400 for
  a malformed upgrade. ``Origin`` is not checked, as on the HTTP port's
  ``/ws``: the feed is read-only, like ``GET /queue``;
* server frames: one unmasked text frame per snapshot (the queue, SPEC §4), on
  connect and after every rebuild; close 1001 "server shutting down" when the
  hub closes or the server stops;
* client frames, parsed by wsproto (masking, control frames, UTF-8): pings are
  answered, messages are read and dropped as they arrive (nothing accumulates,
  whatever their size), a close is answered with the same code and ends the
  connection, a protocol error is answered with its close code (1002, 1007…).

Slow subscribers. A send that does not take the whole frame leaves the rest
``pending`` and starts a drain task for that subscriber, which writes it as the
socket allows. Meanwhile newer snapshots only replace the subscriber's ``next``
frame: a stalled subscriber skips to the newest, never delays the others, and
holds at most two frames (shared bytes) and a few control replies
(`_MAX_CONTROL`; a peer that floods pings while it does not read is dropped).
Memory per subscriber is its socket and this small state.

Shutdown. `stop` (from `Feed.stop`) closes the listener and sends 1001 to
every subscriber at once; a frame already on its way is finished first — a
frame is never cut, so a write in the middle of one is shielded from
cancellation. A peer that stopped reading keeps that write waiting, exactly as
Hypercorn's shielded sends did: `abort_connections` resets it after the grace
period (`agent.interfaces.web.server`).
"""
from __future__ import annotations

import base64
import binascii
import collections
import errno
import hashlib
import json
import logging
import socket
from typing import TYPE_CHECKING

import h11
import trio
import wsproto.events as ws_events
from wsproto.connection import Connection as WsConnection
from wsproto.connection import ConnectionState, ConnectionType

from agent.core.records import Snapshot
from .views import dumps, queue_json
from .ws_limits import TRY_AGAIN_LATER

if TYPE_CHECKING:
    from .feed import Feed

__all__ = ["Frames", "WebSocketPort", "text_frame"]

log = logging.getLogger("agent.interfaces.web.ws_port")

HANDSHAKE_TIMEOUT = 10.0  # seconds for a client to send its opening handshake
CLOSE_TIMEOUT = 2.0  # seconds we wait for the peer's close after ours
_MAX_HEAD = 8192
_MAX_CONTROL = 16  # control replies queued behind a frame in flight
_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
_GOING_AWAY = 1001
_NOT_FOUND_DETAIL = "this port serves only the WebSocket queue feed (/ws)"


def text_frame(text: str) -> bytes:
    """One unmasked, final text frame (RFC 6455 §5.2) carrying `text`."""
    payload = text.encode("utf-8")
    n = len(payload)
    if n < 126:
        head = bytes((0x81, n))
    elif n < 1 << 16:
        head = bytes((0x81, 126)) + n.to_bytes(2, "big")
    else:
        head = bytes((0x81, 127)) + n.to_bytes(8, "big")
    return head + payload


class Frames:
    """The queue message of the latest snapshot, encoded and framed once."""

    __slots__ = ("_snapshot", "_text", "_frame")

    def __init__(self) -> None:
        self._snapshot: Snapshot | None = None
        self._text = "[]"
        self._frame: bytes | None = None

    def text(self, snapshot: Snapshot) -> str:
        if snapshot is not self._snapshot:
            self._text = dumps(queue_json(snapshot))
            self._snapshot = snapshot
            self._frame = None
        return self._text

    def frame(self, snapshot: Snapshot) -> bytes:
        text = self.text(snapshot)
        if self._frame is None:
            self._frame = text_frame(text)
        return self._frame


class _Subscriber:
    """One connection after its handshake: what is being written, and what next."""

    __slots__ = ("sock", "ws", "pending", "started", "controls", "next", "closing",
                 "failed", "draining", "idle", "reading")

    def __init__(self, sock: socket.socket, ws: WsConnection) -> None:
        self.sock = sock
        self.ws = ws
        self.pending: memoryview | None = None  # the rest of the frame being written
        self.started = False  # part of `pending`'s frame is on the wire already
        self.controls: collections.deque[bytes] = collections.deque()
        self.next: bytes | None = None  # the newest frame not yet begun
        self.closing = False  # our close frame is queued: no more data frames
        self.failed = False
        self.draining = False
        self.idle = trio.Event()
        self.idle.set()
        self.reading = trio.CancelScope()  # the reader: bounded once we close

    def offer(self, frame: bytes, nursery: trio.Nursery) -> None:
        """Write `frame` now if nothing is in the way, else keep it as `next`."""
        if self.closing or self.failed:
            return
        if self.pending is None and not self.controls:
            self._write(frame, nursery)
        else:
            self.next = frame  # a stale one it replaces is skipped

    def control(self, data: bytes, nursery: trio.Nursery) -> None:
        """A control frame (pong, close): after the frame in flight, before `next`."""
        if self.failed or not data:
            return
        if self.pending is None and not self.controls:
            self._write(data, nursery)
        elif len(self.controls) < _MAX_CONTROL:
            self.controls.append(data)
        else:
            self.fail()  # it floods us with pings and reads nothing

    def close(self, code: int, reason: str, nursery: trio.Nursery) -> None:
        """Queue our close frame (once), dropping data frames not yet begun."""
        if self.closing or self.failed:
            return
        self.next = None
        reason = reason.encode()[:120].decode("utf-8", "ignore")  # a close frame holds 125 bytes
        try:
            data = self.ws.send(ws_events.CloseConnection(code=code, reason=reason))
        except Exception:  # noqa: BLE001 - wsproto: already closed
            data = b""
        self.closing = True
        self.reading.deadline = min(self.reading.deadline, trio.current_time() + CLOSE_TIMEOUT)
        self.control(data, nursery)

    def fail(self) -> None:
        """The peer is gone (or misbehaves): nothing more is written."""
        self.failed = True
        self.pending, self.next, self.started = None, None, False
        self.controls.clear()
        self.reading.cancel()
        self.idle.set()

    def _write(self, data: bytes, nursery: trio.Nursery) -> None:
        try:
            sent = self.sock.send(data)
        except BlockingIOError:
            sent = 0
        except OSError:
            self.fail()
            return
        if sent < len(data):
            self.pending, self.started = memoryview(data)[sent:], sent > 0
            if not self.draining:
                self.draining = True
                self.idle = trio.Event()
                nursery.start_soon(self._drain)

    async def _drain(self) -> None:
        """Write what is pending, then controls, then the newest frame, as the
        socket allows; ends when there is nothing left."""
        try:
            while not self.failed:
                if self.pending is None:
                    data = self.controls.popleft() if self.controls else self.next
                    if data is None:
                        return
                    if data is self.next:
                        self.next = None
                    self.pending, self.started = memoryview(data), False
                # A frame begun is never cut: shielded, it waits for the socket
                # (a stalled peer: until `abort_connections` resets it).
                with trio.CancelScope(shield=self.started):
                    await trio.lowlevel.wait_writable(self.sock)
                try:
                    sent = self.sock.send(self.pending)
                except BlockingIOError:
                    continue
                if sent < len(self.pending):
                    self.pending, self.started = self.pending[sent:], True
                else:
                    self.pending = None
        except (OSError, trio.ClosedResourceError):
            self.fail()
        finally:
            self.draining = False
            self.idle.set()


class WebSocketPort:
    """The feed of one hub on its own port (see the module docstring)."""

    def __init__(self, feed: Feed, *, backlog: int = 1024, max_connections: int | None = None) -> None:
        self.feed = feed
        self.backlog = backlog
        self.max_connections = max_connections  # WS_MAX_CONNECTIONS; None = no cap
        self.refused = 0  # connections refused since the cap last filled up
        self.frames = feed.frames
        self._subscribers: set[_Subscriber] = set()
        self._listener: socket.socket | None = None
        self._nursery: trio.Nursery | None = None
        self._stopped = trio.Event()
        self._fan_out_scope = trio.CancelScope()

    async def serve(
        self, host: str, port: int, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Listen on `host`:`port` (0: any free port, reported by `started`) until
        `stop`, then wait for the connections to end."""
        listener = _listen(host, port, self.backlog)
        self._listener = listener
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                nursery.start_soon(self._fan_out)
                nursery.start_soon(self._accept, listener, nursery)
                task_status.started(listener.getsockname()[1])
                await self._stopped.wait()
                self._close_listener()
                self._fan_out_scope.cancel()  # the connections finish their closing
        finally:
            self._close_listener()

    def stop(self) -> None:
        """Stop accepting; every subscriber gets 1001 now."""
        self._stopped.set()
        self._close_listener()
        self._close_all()

    # -- tasks ---------------------------------------------------------------------

    async def _fan_out(self) -> None:
        """The hub's snapshots, each framed once and offered to every subscriber."""
        subscription = self.feed.hub.subscribe(include_current=False)
        with self._fan_out_scope:
            async for snapshot in subscription:
                if self._stopped.is_set():
                    break
                frame = self.frames.frame(snapshot)
                nursery = self._nursery
                assert nursery is not None
                for i, sub in enumerate(list(self._subscribers)):
                    sub.offer(frame, nursery)
                    if i % 512 == 511:
                        await trio.lowlevel.checkpoint()  # let the rest of the loop breathe
        self._close_all()

    async def _accept(self, listener: socket.socket, nursery: trio.Nursery) -> None:
        while not self._stopped.is_set():
            try:
                await trio.lowlevel.wait_readable(listener)
            except trio.ClosedResourceError:
                return
            while True:
                try:
                    sock, _ = listener.accept()
                except BlockingIOError:
                    break
                except OSError as exc:  # EMFILE and friends: back off a moment
                    if exc.errno in (errno.EBADF, errno.EINVAL):
                        return
                    log.warning("WebSocket port: accept failed: %s", exc)
                    await trio.sleep(0.1)
                    break
                sock.setblocking(False)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                nursery.start_soon(self._connection, sock)

    async def _connection(self, sock: socket.socket) -> None:
        """One connection: handshake, then the subscriber until it closes."""
        feed = self.feed
        sub: _Subscriber | None = None
        try:
            ws = None
            with trio.move_on_after(HANDSHAKE_TIMEOUT):
                ws = await _handshake(sock)
            if ws is None:
                return
            sub = _Subscriber(sock, ws)
            if self._full():
                await self._refuse(sub)
                return
            self._subscribers.add(sub)
            feed.clients += 1
            try:
                await self._subscribed(sub)
            finally:
                self._subscribers.discard(sub)
                feed.clients -= 1
                self._room_again()
        except (OSError, trio.ClosedResourceError):
            pass
        finally:
            if sub is not None and sub.started and not sub.failed:
                # Never close under a frame half on the wire: it finishes, or
                # the peer goes, or `abort_connections` resets it at shutdown.
                with trio.CancelScope(shield=True):
                    await sub.idle.wait()
            trio.lowlevel.notify_closing(sock)
            sock.close()

    async def _subscribed(self, sub: _Subscriber) -> None:
        nursery = self._nursery
        assert nursery is not None
        hub = self.feed.hub
        if self._stopped.is_set() or hub.closed or self.feed.stopping:
            sub.close(_GOING_AWAY, "server shutting down", nursery)
        else:
            sub.offer(self.frames.frame(hub.latest), nursery)
        with sub.reading:
            await self._read(sub, nursery)
        with trio.move_on_after(CLOSE_TIMEOUT):
            await sub.idle.wait()  # our last frames (a close) on their way

    def _full(self) -> bool:
        return self.max_connections is not None and len(self._subscribers) >= self.max_connections

    async def _refuse(self, sub: _Subscriber) -> None:
        """Over WS_MAX_CONNECTIONS: close 1013 (try again later) right after the
        handshake, as the HTTP port does (`agent.interfaces.web.ws_limits`)."""
        nursery = self._nursery
        assert nursery is not None
        if self.refused == 0:
            log.warning("WebSocket port holds WS_MAX_CONNECTIONS (%d) WebSockets: refusing "
                        "more with close code %d until one leaves", self.max_connections,
                        TRY_AGAIN_LATER)
        self.refused += 1
        sub.close(TRY_AGAIN_LATER,
                  f"too many WebSocket connections (WS_MAX_CONNECTIONS={self.max_connections})",
                  nursery)
        with sub.reading:
            await self._read(sub, nursery)
        with trio.move_on_after(CLOSE_TIMEOUT):
            await sub.idle.wait()

    def _room_again(self) -> None:
        if self.refused and not self._full():
            log.info("WebSocket port has room for WebSockets again; %d connection(s) "
                     "refused while full", self.refused)
            self.refused = 0

    async def _read(self, sub: _Subscriber, nursery: trio.Nursery) -> None:
        """Client frames until the peer closes, fails, or answers our close
        (which `_Subscriber.close` gives CLOSE_TIMEOUT through `reading`)."""
        ws, sock = sub.ws, sub.sock
        while not sub.failed:
            await trio.lowlevel.wait_readable(sock)
            try:
                data = sock.recv(65536)
            except BlockingIOError:
                continue
            ws.receive_data(data or None)
            for event in ws.events():
                if isinstance(event, ws_events.Ping) and ws.state is ConnectionState.OPEN:
                    sub.control(ws.send(event.response()), nursery)
                elif isinstance(event, ws_events.CloseConnection):
                    if ws.state is ConnectionState.REMOTE_CLOSING:  # the peer's close
                        sub.closing, sub.next = True, None  # no more data frames
                        sub.control(ws.send(event.response()), nursery)
                    elif ws.state is ConnectionState.OPEN:  # its frames broke the protocol
                        sub.close(event.code, event.reason or "", nursery)
                    return
            if not data:
                return

    def _close_all(self) -> None:
        nursery = self._nursery
        if nursery is None:
            return
        for sub in list(self._subscribers):
            sub.close(_GOING_AWAY, "server shutting down", nursery)

    def _close_listener(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            trio.lowlevel.notify_closing(listener)
            listener.close()


# -- the opening handshake -----------------------------------------------------------------


def _listen(host: str, port: int, backlog: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(backlog)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


async def _handshake(sock: socket.socket) -> WsConnection | None:
    """Read the request; answer 101 (returning the frame connection) or an error."""
    conn = h11.Connection(h11.SERVER, max_incomplete_event_size=_MAX_HEAD)
    try:
        request = await _read_request(sock, conn)
    except h11.RemoteProtocolError:
        await _send_error(sock, 400, "bad_request", "malformed HTTP request")
        return None
    if request is None:
        return None
    headers = {name.lower(): value for name, value in request.headers}
    if b"websocket" not in _tokens(headers.get(b"upgrade", b"")):
        await _send_error(sock, 404, "not_found", _NOT_FOUND_DETAIL)
        return None
    if request.method != b"GET" or b"upgrade" not in _tokens(headers.get(b"connection", b"")):
        await _send_error(sock, 400, "bad_request", "a WebSocket upgrade is a GET with Connection: Upgrade")
        return None
    if headers.get(b"sec-websocket-version", b"").strip() != b"13":
        await _send_error(sock, 426, "upgrade_required", "WebSocket version 13 only",
                          extra=b"Sec-WebSocket-Version: 13\r\n")
        return None
    key = headers.get(b"sec-websocket-key", b"").strip()
    try:
        valid = len(base64.b64decode(key, validate=True)) == 16
    except (binascii.Error, ValueError):
        valid = False
    if not valid:
        await _send_error(sock, 400, "bad_request", "Sec-WebSocket-Key must be 16 bytes in base64")
        return None
    accept = base64.b64encode(hashlib.sha1(key + _GUID).digest())
    await _send_all(sock, b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                          b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + accept + b"\r\n\r\n")
    trailing, _ = conn.trailing_data
    return WsConnection(ConnectionType.SERVER, trailing_data=bytes(trailing))


async def _read_request(sock: socket.socket, conn: h11.Connection) -> h11.Request | None:
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            await trio.lowlevel.wait_readable(sock)
            try:
                conn.receive_data(sock.recv(_MAX_HEAD))
            except BlockingIOError:
                continue
        elif isinstance(event, h11.Request):
            return event
        else:  # the peer went away
            return None


def _tokens(value: bytes) -> set[bytes]:
    return {part.strip().lower() for part in value.split(b",")}


async def _send_error(sock: socket.socket, status: int, error: str, detail: str, *, extra: bytes = b"") -> None:
    body = json.dumps({"error": error, "detail": detail}, separators=(",", ":")).encode()
    reason = {400: b"Bad Request", 404: b"Not Found", 426: b"Upgrade Required"}[status]
    await _send_all(sock, b"HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n"
                          b"Connection: close\r\n%s\r\n%s" % (status, reason, len(body), extra, body))


async def _send_all(sock: socket.socket, data: bytes) -> None:
    view = memoryview(data)
    while view:
        await trio.lowlevel.wait_writable(sock)
        try:
            view = view[sock.send(view):]
        except BlockingIOError:
            continue
