"""The WebSocket port's own server (agent.interfaces.web.ws_port), over raw sockets:
the handshake and its refusals, control frames, input that is read and dropped,
protocol errors, and a stalled subscriber that delays nobody."""
from __future__ import annotations

import base64
import hashlib
import json
import os
import secrets
import socket
import struct
from typing import Any

import pytest
import trio
from trio_websocket import open_websocket_url

from agent.interfaces.web import ServerInfo
from agent.interfaces.web.ws_port import Frames, text_frame

from .double import make_snapshot

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


class RawClient:
    """A WebSocket client over a bare socket: exactly the bytes we choose."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.buffer = bytearray()

    async def handshake(self, *, version: str = "13", key: str | None = None,
                        upgrade: bool = True) -> bytes:
        key = key if key is not None else base64.b64encode(secrets.token_bytes(16)).decode()
        lines = ["GET /anything HTTP/1.1", "Host: t"]
        if upgrade:
            lines += ["Upgrade: websocket", "Connection: Upgrade",
                      f"Sec-WebSocket-Key: {key}", f"Sec-WebSocket-Version: {version}"]
        await self.stream.send_all(("\r\n".join(lines) + "\r\n\r\n").encode())
        while b"\r\n\r\n" not in self.buffer:
            chunk = await self.stream.receive_some(65536)
            if not chunk:
                break
            self.buffer += chunk
        head, _, rest = bytes(self.buffer).partition(b"\r\n\r\n")
        self.buffer = bytearray(rest)
        if head.startswith(b"HTTP/1.1 101"):
            accept = base64.b64encode(hashlib.sha1(key.encode() + GUID).digest())
            assert b"Sec-WebSocket-Accept: " + accept in head
        return head

    async def rest(self) -> bytes:
        """Everything until the server closes."""
        while chunk := await self.stream.receive_some(65536):
            self.buffer += chunk
        return bytes(self.buffer)

    async def send_frame(self, opcode: int, payload: bytes, *, masked: bool = True, fin: bool = True) -> None:
        head = bytes([(0x80 if fin else 0) | opcode])
        n = len(payload)
        mask_bit = 0x80 if masked else 0
        if n < 126:
            head += bytes([mask_bit | n])
        elif n < 1 << 16:
            head += bytes([mask_bit | 126]) + struct.pack("!H", n)
        else:
            head += bytes([mask_bit | 127]) + struct.pack("!Q", n)
        if masked:
            mask = os.urandom(4)
            key = (mask * (n // 4 + 1))[:n]
            payload = (int.from_bytes(payload, "big") ^ int.from_bytes(key, "big")).to_bytes(n, "big")
            head += mask
        await self.stream.send_all(head + payload)

    async def frame(self) -> tuple[int, bytes]:
        while True:
            b = self.buffer
            if len(b) >= 2:
                n, pos = b[1] & 0x7F, 2
                if n == 126 and len(b) >= 4:
                    n, pos = struct.unpack("!H", b[2:4])[0], 4
                elif n == 127 and len(b) >= 10:
                    n, pos = struct.unpack("!Q", b[2:10])[0], 10
                if n < 126 or pos > 2:
                    if len(b) >= pos + n:
                        opcode, payload = b[0] & 0x0F, bytes(b[pos:pos + n])
                        del b[:pos + n]
                        return opcode, payload
            chunk = await self.stream.receive_some(65536)
            if not chunk:
                raise EOFError("server closed")
            self.buffer += chunk


async def _raw(server: ServerInfo) -> RawClient:
    return RawClient(await trio.open_tcp_stream("127.0.0.1", server.ws_port))


def _close_code(payload: bytes) -> int:
    return int(struct.unpack("!H", payload[:2])[0])


@pytest.mark.parametrize(
    ("kwargs", "status", "error"),
    [
        ({"upgrade": False}, b"404", "not_found"),
        ({"version": "8"}, b"426", "upgrade_required"),
        ({"key": "too-short"}, b"400", "bad_request"),
    ],
    ids=["plain-http", "other-version", "bad-key"],
)
async def test_refused_handshakes_get_a_json_error(
    server: ServerInfo, kwargs: dict[str, Any], status: bytes, error: str
) -> None:
    client = await _raw(server)
    async with client.stream:
        with trio.fail_after(5):
            head = await client.handshake(**kwargs)
            body = await client.rest()
    assert head.split(b" ")[1] == status
    assert b"Content-Type: application/json" in head and b"Connection: close" in head
    assert json.loads(body)["error"] == error and json.loads(body)["detail"]
    if status == b"426":
        assert b"Sec-WebSocket-Version: 13" in head


async def test_pings_are_answered_and_a_close_is_echoed(server: ServerInfo, agent_under_test: Any) -> None:
    client = await _raw(server)
    async with client.stream:
        with trio.fail_after(5):
            assert (await client.handshake()).startswith(b"HTTP/1.1 101")
            opcode, payload = await client.frame()  # the queue on connect
            assert opcode == 0x1 and json.loads(payload) == [
                q.to_json() for q in agent_under_test.snapshot.queue]
            await client.send_frame(0x9, b"are you there")
            assert await client.frame() == (0xA, b"are you there")
            await client.send_frame(0x8, struct.pack("!H", 1000) + b"bye")
            opcode, payload = await client.frame()
            assert opcode == 0x8 and _close_code(payload) == 1000
            assert await client.rest() == b""  # and the server closes the connection


async def test_input_is_read_and_dropped_whatever_its_size(
    server: ServerInfo, agent_under_test: Any
) -> None:
    client = await _raw(server)
    async with client.stream:
        with trio.fail_after(10):
            await client.handshake()
            await client.frame()
            for size in (10, 70_000, 2_000_000):
                await client.send_frame(0x2, b"x" * size)
            await client.send_frame(0x1, b"partial ", fin=False)
            await client.send_frame(0x0, b"message")
            new = make_snapshot([("after-input", 70.0)], tick=agent_under_test.snapshot.tick + 1)
            agent_under_test.hub.publish(new)
            opcode, payload = await client.frame()
    assert opcode == 0x1 and json.loads(payload)[0]["dns_name"] == "after-input"


@pytest.mark.parametrize(
    ("send", "code"),
    [
        (lambda c: c.send_frame(0x1, b"unmasked", masked=False), 1002),
        (lambda c: c.send_frame(0x9, b"p" * 200), 1002),  # control frames are at most 125 bytes
        (lambda c: c.send_frame(0x1, b"\xff\xfe"), 1007),  # not UTF-8
    ],
    ids=["unmasked", "long-control", "bad-utf8"],
)
async def test_protocol_errors_are_closed_with_their_code(server: ServerInfo, send: Any, code: int) -> None:
    client = await _raw(server)
    async with client.stream:
        with trio.fail_after(5):
            await client.handshake()
            await client.frame()
            await send(client)
            while True:
                opcode, payload = await client.frame()
                if opcode == 0x8:
                    break
    assert _close_code(payload) == code


async def test_a_stalled_subscriber_delays_nobody(server: ServerInfo, agent_under_test: Any) -> None:
    stalled = trio.socket.socket()
    stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    await stalled.connect(("127.0.0.1", server.ws_port))
    key = base64.b64encode(secrets.token_bytes(16)).decode()
    await stalled.send(f"GET /ws HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                       f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode())
    try:
        async with open_websocket_url(server.ws_url) as ws:
            with trio.fail_after(5):
                await ws.get_message()
            big = [(f"container-{i:04d}-with-a-long-name", 50.0 + i % 40) for i in range(300)]
            base = agent_under_test.snapshot.tick
            for i in range(1, 60):  # ~4 MB offered to a peer that reads nothing
                agent_under_test.hub.publish(make_snapshot(big, tick=base + i))
                with trio.fail_after(5):
                    message = json.loads(await ws.get_message())
                assert len(message) == 300
    finally:
        stalled.close()


def test_a_frame_is_built_once_per_snapshot() -> None:
    frames = Frames()
    snapshot = make_snapshot([("a", 80.0), ("b", 20.0)])
    first = frames.frame(snapshot)
    assert frames.frame(snapshot) is first
    assert first == text_frame(frames.text(snapshot))
    assert first[0] == 0x81 and first[1] == 126
    assert int.from_bytes(first[2:4], "big") == len(frames.text(snapshot).encode()) == len(first) - 4
    assert text_frame("short") == b"\x81\x05short"
    long = text_frame("x" * 70_000)
    assert long[1] == 127 and int.from_bytes(long[2:10], "big") == 70_000
    mid = text_frame("x" * 300)
    assert mid[1] == 126 and int.from_bytes(mid[2:4], "big") == 300
