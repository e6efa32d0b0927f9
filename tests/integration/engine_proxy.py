"""A unix-socket relay in front of the real engine, which a test can cut and restore.

Cutting it closes every relayed connection (the event stream included) and stops
listening, exactly as the engine going away looks to a client; restoring it
listens again. The real engine is never touched, so tests on this shared
machine can "restart the engine" without disturbing anyone else.
"""
from __future__ import annotations

import contextlib
from pathlib import Path

import trio


async def _pump(source: trio.abc.ReceiveStream, sink: trio.abc.SendStream) -> None:
    with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
        while data := await source.receive_some(65536):
            await sink.send_all(data)
    with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
        await sink.aclose()


class EngineRelay:
    """``unix://<path>`` relaying to the engine's socket while it is `up`."""

    def __init__(self, path: Path, engine_socket: str) -> None:
        self.path = path
        self.engine_socket = engine_socket
        self.accepted = 0
        self._scope: trio.CancelScope | None = None
        self._stopped = trio.Event()

    @property
    def url(self) -> str:
        return f"unix://{self.path}"

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Listen and relay until `cut` (then `serve` again to restore)."""
        self.path.unlink(missing_ok=True)
        sock = trio.socket.socket(trio.socket.AF_UNIX, trio.socket.SOCK_STREAM)
        await sock.bind(str(self.path))
        sock.listen(64)
        listener = trio.SocketListener(sock)
        self._stopped = trio.Event()
        try:
            with trio.CancelScope() as self._scope:
                async with trio.open_nursery() as nursery:
                    task_status.started()
                    while True:
                        client = await listener.accept()
                        self.accepted += 1
                        nursery.start_soon(self._relay, client)
        finally:
            await listener.aclose()
            self.path.unlink(missing_ok=True)
            self._stopped.set()

    async def cut(self) -> None:
        """Drop every connection and stop listening; returns once done."""
        if self._scope is not None:
            self._scope.cancel()
        await self._stopped.wait()

    async def _relay(self, client: trio.SocketStream) -> None:
        async with client:
            try:
                upstream = await trio.open_unix_socket(self.engine_socket)
            except OSError:
                return
            async with upstream, trio.open_nursery() as nursery:
                nursery.start_soon(_pump, client, upstream)
                nursery.start_soon(_pump, upstream, client)
