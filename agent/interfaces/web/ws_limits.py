"""What WebSocket clients may make the server hold: a message size, a connection count.

The feed reads what a client sends only to drop it, but Hypercorn buffers each
incoming message whole before the app sees it, up to its 16 MiB default and with
no token needed: 40 clients sending three 16 MB frames each took the agent from
595 MiB to 1,610 MiB. A subscriber sends nothing the feed needs (pings are control
frames, answered by Hypercorn), so

* an incoming message may be at most `MAX_MESSAGE` bytes (Hypercorn's
  ``websocket_max_message_size``, set by `agent.interfaces.web.server`); a bigger
  one is answered with close code 1009 (message too big). Hypercorn 0.17-0.18
  then goes on buffering what the peer keeps sending (measured: 20 clients
  streaming 16 MiB frames held 320 MiB until they left), so its buffer class is
  replaced here by `CappedBuffer`, which stops storing at the limit: a peer that
  ignores the close costs at most the limit and one read (64 KiB);
* each port holds at most ``WS_MAX_CONNECTIONS`` WebSockets (`ConnectionCap`, one
  per port, in front of the app): one more is accepted and closed at once with
  1013 (try again later), which a client can tell from a network failure. The
  cap filling up and emptying again is logged once each, with the count refused.
  A peer that vanishes under a send ends its handler quietly (a client must not
  be able to write tracebacks into the log).

Slow or silent connections need nothing here: Hypercorn closes a connection that
has not sent a complete request within its keep-alive timeout (5 s), however
slowly it trickles bytes.
"""
from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import trio
from hypercorn.protocol import ws_stream

if TYPE_CHECKING:
    from hypercorn.typing import ASGIFramework, ASGIReceiveCallable, ASGISendCallable, Scope

__all__ = ["MAX_MESSAGE", "TRY_AGAIN_LATER", "ConnectionCap", "CappedBuffer"]

log = logging.getLogger("agent.interfaces.web.server")

MAX_MESSAGE = 4 * 1024  # bytes of one incoming WebSocket message
_GONE = (trio.BrokenResourceError, trio.ClosedResourceError, trio.BusyResourceError)
TRY_AGAIN_LATER = 1013  # RFC 6455 registry: "Try Again Later"


class CappedBuffer(ws_stream.WebsocketBuffer):
    """Hypercorn's incoming-message buffer, storing nothing more once over its limit
    (Hypercorn's own keeps appending every frame the peer still sends)."""

    def extend(self, event: Any) -> None:
        if self.length > self.max_length:
            raise ws_stream.FrameTooLargeError()
        try:
            super().extend(event)
        except ws_stream.FrameTooLargeError:
            self.value = None  # what was buffered goes; `length` stays over the limit
            raise


# Every WSStream makes its buffer from this module attribute (`WSStream.__init__`).
ws_stream.WebsocketBuffer = CappedBuffer  # type: ignore[misc]


class ConnectionCap:
    """ASGI middleware: at most `limit` WebSockets at once through this app (a port)."""

    def __init__(self, app: ASGIFramework, limit: int, port_name: str) -> None:
        self.app = app
        self.limit = limit
        self.port_name = port_name
        self.open = 0
        self.refused = 0  # since the cap last filled up

    async def __call__(self, scope: Scope, receive: ASGIReceiveCallable, send: ASGISendCallable) -> None:
        if scope["type"] != "websocket":
            await self.app(scope, receive, send)
            return
        if self.open >= self.limit:
            await self._refuse(receive, send)
            return
        self.open += 1
        try:
            await self.app(scope, receive, send)
        except* _GONE:
            # The peer went away while we were sending to it (Hypercorn may even
            # be closing the socket under a send of ours, when a peer sends
            # garbage): nothing to report, and no traceback for a client to cause.
            log.debug("WebSocket peer gone while sending")
        finally:
            self.open -= 1
            if self.refused and self.open < self.limit:
                log.info("%s has room for WebSockets again; %d connection(s) refused while full",
                         self.port_name, self.refused)
                self.refused = 0

    async def _refuse(self, receive: ASGIReceiveCallable, send: Any) -> None:
        message = await receive()
        if message["type"] != "websocket.connect":
            return
        if self.refused == 0:
            log.warning("%s holds WS_MAX_CONNECTIONS (%d) WebSockets: refusing more with close "
                        "code %d until one leaves", self.port_name, self.limit, TRY_AGAIN_LATER)
        self.refused += 1
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.close", "code": TRY_AGAIN_LATER,
                    "reason": f"too many WebSocket connections (WS_MAX_CONNECTIONS={self.limit})"})
