"""A TCP forwarder the test controls: one agent reaches Redis through it, and the
test can cut that agent off (a partition for one agent only) and reconnect it.

`cut()` closes the listener and every forwarded connection at once, so the agent
sees its connections drop and new ones refused; `restore()` listens again on the
same port. Only loopback: 127.0.0.1 to 127.0.0.1.
"""
from __future__ import annotations

import trio

__all__ = ["TcpProxy"]


class TcpProxy:
    """Forwards 127.0.0.1:`port` to `target_port` while not cut."""

    def __init__(self, nursery: trio.Nursery, target_port: int) -> None:
        self._nursery = nursery
        self._target = target_port
        self._scope: trio.CancelScope | None = None
        self.port = 0
        self.connections = 0  # forwarded so far

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    async def start(self) -> None:
        listeners = await trio.open_tcp_listeners(self.port, host="127.0.0.1")
        self.port = listeners[0].socket.getsockname()[1]
        scope = self._scope = trio.CancelScope()

        async def serve() -> None:
            with scope:
                await trio.serve_listeners(self._forward, listeners)

        self._nursery.start_soon(serve)

    def cut(self) -> None:
        assert self._scope is not None, "not started"
        self._scope.cancel()

    async def restore(self) -> None:
        await self.start()

    async def _forward(self, client: trio.SocketStream) -> None:
        async with client:
            try:
                upstream = await trio.open_tcp_stream("127.0.0.1", self._target)
            except OSError:
                return
            self.connections += 1
            async with upstream, trio.open_nursery() as nursery:
                nursery.start_soon(_pump, client, upstream, nursery.cancel_scope)
                nursery.start_soon(_pump, upstream, client, nursery.cancel_scope)


async def _pump(source: trio.SocketStream, sink: trio.SocketStream, scope: trio.CancelScope) -> None:
    try:
        async for chunk in source:
            await sink.send_all(chunk)
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        pass
    scope.cancel()  # either side closed: close both
