"""Bounded WebSocket input (issue 10 §1): incoming messages capped, connections per
port capped with a clear close code, slow connections closed, over a real socket."""
from __future__ import annotations

import base64
import contextlib
import logging
import os
import struct
from functools import partial

import pytest
import trio
from trio_websocket import open_websocket_url
from wsproto.events import BytesMessage

from agent.interfaces.web import ServerInfo, serve
from agent.interfaces.web.ws_limits import MAX_MESSAGE, TRY_AGAIN_LATER, CappedBuffer

from .double import FakeAgent, make_settings
from .http import request


async def handshake(port: int, path: str = "/ws") -> trio.SocketStream:
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    key = base64.b64encode(os.urandom(16)).decode()
    await stream.send_all((f"GET {path} HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\n"
                           f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                           "Sec-WebSocket-Version: 13\r\n\r\n").encode())
    head = b""
    while b"\r\n\r\n" not in head:
        head += await stream.receive_some(4096)
    assert head.startswith(b"HTTP/1.1 101"), head
    return stream


def frame(payload: bytes, opcode: int = 0x2) -> bytes:
    """A masked client frame (mask key 0)."""
    n = len(payload)
    size = bytes([0x80 | n]) if n < 126 else (
        bytes([0x80 | 126]) + struct.pack("!H", n) if n < 65536 else bytes([0x80 | 127]) + struct.pack("!Q", n))
    return bytes([0x80 | opcode]) + size + b"\0\0\0\0" + payload


async def close_frame(stream: trio.SocketStream, timeout: float = 5) -> tuple[int, str]:
    """Code and reason of the first close frame the server sends (data frames skipped)."""
    data = b""
    with trio.fail_after(timeout):
        while True:
            chunk = await stream.receive_some(65536)
            assert chunk, "closed without a close frame"
            data += chunk
            while len(data) >= 2:
                opcode, n = data[0] & 0x0F, data[1] & 0x7F
                start = 2 + {126: 2, 127: 8}.get(n, 0)
                if n >= 126:
                    n = int.from_bytes(data[2:start], "big")
                if len(data) < start + n:
                    break
                if opcode == 0x8:
                    body = data[start:start + n]
                    return int.from_bytes(body[:2], "big"), body[2:].decode()
                data = data[start + n:]


async def close_code(stream: trio.SocketStream, timeout: float = 5) -> int:
    return (await close_frame(stream, timeout))[0]


@pytest.fixture
async def capped(nursery: trio.Nursery) -> ServerInfo:
    agent = FakeAgent(make_settings(ws_max_connections=3))
    return await nursery.start(partial(serve, agent, http_port=0, ws_port=0))


async def test_an_oversized_message_is_closed_with_1009(capped: ServerInfo) -> None:
    stream = await handshake(capped.http_port)
    async with stream:
        await stream.send_all(frame(b"x" * (MAX_MESSAGE + 1)))
        assert await close_code(stream) == 1009
    # a message within the limit is fine
    async with open_websocket_url(capped.ws_url) as ws:
        await ws.send_message("y" * MAX_MESSAGE)
        with trio.fail_after(5):
            assert await ws.get_message()
    assert (await request(capped.http_url + "/healthz")).status == 200


async def test_one_connection_over_the_cap_is_closed_with_1013_per_port(capped: ServerInfo) -> None:
    held = [await handshake(capped.http_port) for _ in range(3)]
    extra = await handshake(capped.http_port)
    async with extra:
        code, reason = await close_frame(extra)
    assert code == TRY_AGAIN_LATER and "WS_MAX_CONNECTIONS=3" in reason
    # the other port has its own cap
    async with open_websocket_url(capped.ws_url) as ws:
        with trio.fail_after(5):
            assert await ws.get_message()
    # room again once one leaves
    await held.pop().aclose()
    async with open_websocket_url(f"ws://127.0.0.1:{capped.http_port}/ws") as ws:
        with trio.fail_after(5):
            assert await ws.get_message()
    for stream in held:
        await stream.aclose()


async def test_garbage_after_the_handshake_does_not_hurt_the_server(
    capped: ServerInfo, caplog: pytest.LogCaptureFixture
) -> None:
    for _ in range(20):
        stream = await handshake(capped.http_port)
        async with stream:
            with contextlib.suppress(trio.BrokenResourceError):
                await stream.send_all(os.urandom(8192))
            with trio.move_on_after(5), contextlib.suppress(trio.BrokenResourceError):
                while await stream.receive_some(65536):
                    pass  # the server closes (or fails) the connection
    assert (await request(capped.http_url + "/healthz")).status == 200
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], caplog.text


async def test_a_slow_request_is_closed_by_the_keep_alive_timeout(nursery: trio.Nursery) -> None:
    info = await nursery.start(partial(serve, FakeAgent(), http_port=0, ws_port=0,
                                       keep_alive_timeout=1.0))
    stream = await trio.open_tcp_stream("127.0.0.1", info.http_port)
    start = trio.current_time()
    with trio.fail_after(10):
        try:
            for byte in b"GET /healthz HTTP/1.1\r\nHost: t\r\nX-Slow: " + b"a" * 200:
                await stream.send_all(bytes([byte]))
                await trio.sleep(0.1)
        except trio.BrokenResourceError:
            pass
        while await stream.receive_some(1024):
            pass
    assert trio.current_time() - start < 5
    await stream.aclose()


def test_the_buffer_stores_nothing_past_its_limit() -> None:
    from hypercorn.protocol import ws_stream

    assert ws_stream.WebsocketBuffer is CappedBuffer  # what every WSStream uses
    buffer = CappedBuffer(100)
    buffer.extend(BytesMessage(data=b"a" * 60, message_finished=False))
    for _ in range(1000):  # a peer that ignores the close and keeps sending
        with pytest.raises(ws_stream.FrameTooLargeError):
            buffer.extend(BytesMessage(data=b"b" * 65536, message_finished=False))
    assert buffer.value is None
