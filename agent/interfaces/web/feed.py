"""The compat WebSocket feed (``/ws``): the queue on connect and after every rebuild.

The feed is the hot path (every tick × every subscriber). On the WebSocket
port it has a server of its own (`agent.interfaces.web.ws_port`), which frames
each snapshot once and writes the same bytes to every subscriber. On the HTTP
port, ``/ws`` is served here, through Hypercorn, speaking ASGI directly instead
of going through Quart's WebSocket machinery (a memory channel, a nursery and
two signals per connection, a signal per message): `FeedMiddleware` sits in
front of the Quart app and takes the WebSocket requests for ``/ws``; everything
else goes to Quart. Both send the message encoded once per snapshot (`Frames`).

At shutdown `Feed.stop` wakes every handler, which closes with code 1001
(server going away) at once, without waiting for the next snapshot.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

import trio
from quart import Quart

from agent.core.records import Snapshot
from agent.service.hub import Hub, Subscription
from .ws_port import Frames, WebSocketPort

if TYPE_CHECKING:
    from hypercorn.typing import ASGIFramework, ASGIReceiveCallable, ASGISendCallable, Scope

__all__ = ["Feed", "FeedMiddleware", "feed_of"]

EXTENSION = "deployment_agent.feed"


class Feed:
    """The subscribers of one hub: how many there are, and the shutdown switch."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self.stopping = False
        self.clients = 0  # both ports
        self.frames = Frames()  # the message of a snapshot, encoded once for both ports
        self.ports: list[WebSocketPort] = []  # the WebSocket port's server, when it runs
        self._waiters: set[trio.CancelScope] = set()

    def stop(self) -> None:
        """Tell every handler to close with 1001 (server going away)."""
        self.stopping = True
        for scope in list(self._waiters):
            scope.cancel()
        for port in self.ports:
            port.stop()

    async def serve(self, receive: ASGIReceiveCallable, send: Any) -> None:
        """One subscriber, from the handshake to the close.

        (`send` is untyped: Hypercorn's ASGI event types do not cover the
        WebSocket events as plain dicts.)
        """
        message = await receive()
        if message["type"] != "websocket.connect":
            return
        # Accept even when shutting down: a close before the handshake is an HTTP 403.
        await send({"type": "websocket.accept"})
        self.clients += 1
        try:
            async with trio.open_nursery() as nursery:
                # Read (and drop) what the peer sends, so its frames never back up;
                # when it goes away, stop at once (there is nobody to say 1001 to).
                nursery.start_soon(_until_disconnect, receive, nursery.cancel_scope)
                subscription = self.hub.subscribe()
                while not (self.stopping or self.hub.closed):
                    snapshot = await self._next(subscription)
                    if snapshot is None:
                        break  # hub closed or server stopping
                    # Never cancelled by `stop()`: a frame is not cut in half.
                    await send({"type": "websocket.send", "text": self.frames.text(snapshot)})
                await send({"type": "websocket.close", "code": 1001, "reason": "server shutting down"})
                nursery.cancel_scope.cancel()
        finally:
            self.clients -= 1

    async def _next(self, subscription: Subscription) -> Snapshot | None:
        """The next snapshot; None when the hub closes or `stop` is called meanwhile."""
        with trio.CancelScope() as waiting:
            self._waiters.add(waiting)
            try:
                return await subscription.__anext__()
            except StopAsyncIteration:
                return None
            finally:
                self._waiters.discard(waiting)
        return None  # cancelled by `stop`


async def _until_disconnect(receive: ASGIReceiveCallable, scope: trio.CancelScope) -> None:
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            scope.cancel()
            return


class FeedMiddleware:
    """ASGI middleware in front of Quart: WebSocket requests for ``/ws`` go to the feed."""

    def __init__(self, app: ASGIFramework, feed: Feed) -> None:
        self.app = app
        self.feed = feed

    async def __call__(self, scope: Scope, receive: ASGIReceiveCallable, send: ASGISendCallable) -> None:
        if scope["type"] == "websocket" and scope.get("path") == "/ws":
            await self.feed.serve(receive, send)
        else:
            await self.app(scope, receive, send)


def install(app: Quart, hub: Hub) -> Feed:
    """Put the feed of `hub` in front of `app`; `feed_of(app)` finds it again."""
    feed = Feed(hub)
    app.extensions[EXTENSION] = feed
    app.asgi_app = FeedMiddleware(app.asgi_app, feed)  # type: ignore[method-assign]
    return feed


def feed_of(app: Quart) -> Feed:
    feed: Feed = app.extensions[EXTENSION]
    return feed
