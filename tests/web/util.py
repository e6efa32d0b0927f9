"""Helpers of the web tests."""
from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, TypeVar
from urllib.parse import urlsplit

import trio
import trio_websocket

T = TypeVar("T")


async def eventually(
    probe: Callable[[], Awaitable[T]] | Callable[[], T],
    *,
    timeout: float = 10.0,
    interval: float = 0.02,
    message: str = "condition not met",
) -> T:
    """Poll `probe` until it returns something truthy; fail after `timeout` seconds."""
    last: Any = None
    with trio.move_on_after(timeout):
        while True:
            last = probe()
            if isinstance(last, Awaitable):
                last = await last
            if last:
                return last
            await trio.sleep(interval)
    raise AssertionError(f"{message} within {timeout} s (last value: {last!r})")


@asynccontextmanager
async def websocket(url: str) -> AsyncIterator[trio_websocket.WebSocketConnection]:
    """A client WebSocket whose TCP stream is always closed.

    (trio-websocket's client leaves its socket open when the *server* closes
    first — exactly what the shutdown tests do — so we own the stream.)
    """
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    resource = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    stream = await trio.open_tcp_stream(host, port)
    async with stream:
        async with trio.open_nursery() as nursery:
            ws = await trio_websocket.wrap_client_stream(nursery, stream, host, resource)
            try:
                yield ws
            finally:
                await ws.aclose()
                nursery.cancel_scope.cancel()


async def close_code(ws: trio_websocket.WebSocketConnection, timeout: float) -> int:
    """Read until the server closes; return its close code."""
    with trio.fail_after(timeout):
        while True:
            try:
                await ws.get_message()
            except trio_websocket.ConnectionClosed as closed:
                return closed.reason.code
