"""Serving: connections close when they should, WebSockets say 1001 at shutdown.

Hypercorn 0.18 + Quart-Trio never closes an HTTP connection unless the ASGI
``send`` is shielded (see agent/web/server.py); the three ways a connection
must end are checked on raw sockets.
"""
from __future__ import annotations

import json
from functools import partial
from typing import Any

import pytest
import trio
from trio_websocket import open_websocket_url

from agent.interfaces.web import ServerInfo, serve

from .double import FakeAgent, make_snapshot
from .http import request
from .util import close_code, websocket


async def read_until_eof(stream: trio.SocketStream, timeout: float) -> tuple[bytes, float]:
    """Everything the server sends until it closes; fails if it does not close in time."""
    start = trio.current_time()
    data = b""
    with trio.fail_after(timeout):
        while True:
            chunk = await stream.receive_some(65536)
            if not chunk:
                return data, trio.current_time() - start
            data += chunk


async def raw_exchange(port: int, payload: bytes, timeout: float) -> tuple[bytes, float]:
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        await stream.send_all(payload)
        return await read_until_eof(stream, timeout)


@pytest.fixture
async def slow_keepalive_server(nursery: trio.Nursery, agent_under_test: Any) -> ServerInfo:
    # A long keep-alive timeout: a close seen quickly can only come from the
    # request's own semantics, not from the idle timer.
    return await nursery.start(
        partial(serve, agent_under_test, http_port=0, ws_port=0, keep_alive_timeout=30.0)
    )


async def test_connection_close_header_closes(slow_keepalive_server: ServerInfo) -> None:
    data, elapsed = await raw_exchange(
        slow_keepalive_server.http_port,
        b"GET /stats HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
        timeout=5,
    )
    assert data.startswith(b"HTTP/1.1 200")
    assert elapsed < 5


async def test_http10_closes(slow_keepalive_server: ServerInfo) -> None:
    data, elapsed = await raw_exchange(
        slow_keepalive_server.http_port, b"GET /healthz HTTP/1.0\r\n\r\n", timeout=5
    )
    assert data.startswith(b"HTTP/1.1 200") or data.startswith(b"HTTP/1.0 200")
    assert b'"alive":true' in data


async def test_keep_alive_timeout_closes(nursery: trio.Nursery, agent_under_test: Any) -> None:
    info = await nursery.start(
        partial(serve, agent_under_test, http_port=0, ws_port=0, keep_alive_timeout=0.5)
    )
    stream = await trio.open_tcp_stream("127.0.0.1", info.http_port)
    async with stream:
        # two requests on one connection: keep-alive works ...
        for _ in range(2):
            await stream.send_all(b"GET /queue HTTP/1.1\r\nHost: t\r\n\r\n")
            head = b""
            with trio.fail_after(5):
                while b"\r\n\r\n" not in head:
                    head += await stream.receive_some(65536)
            length = int(head.split(b"content-length: ", 1)[1].split(b"\r\n", 1)[0])
            body = head.split(b"\r\n\r\n", 1)[1]
            with trio.fail_after(5):
                while len(body) < length:
                    body += await stream.receive_some(65536)
        # ... then the idle connection is closed after keep_alive_timeout.
        data, elapsed = await read_until_eof(stream, timeout=10)
        assert data == b""
        assert 0.3 < elapsed < 5


async def test_error_responses_close_too(slow_keepalive_server: ServerInfo) -> None:
    data, _ = await raw_exchange(
        slow_keepalive_server.http_port,
        b"PUT /config HTTP/1.1\r\nHost: t\r\nConnection: close\r\nContent-Length: 2\r\n\r\n{}",
        timeout=5,
    )
    assert data.startswith(b"HTTP/1.1 401")


async def test_ws_clients_get_1001_promptly_when_server_is_cancelled() -> None:
    agent = FakeAgent()
    async with trio.open_nursery() as server_nursery:
        # graceful_timeout is long: 1001 must come from our handlers, not from it.
        info = await server_nursery.start(
            partial(serve, agent, http_port=0, ws_port=0, graceful_timeout=20.0)
        )
        async with websocket(info.ws_url) as ws1, websocket(info.http_url.replace("http", "ws") + "/ws") as ws2:
            for ws in (ws1, ws2):
                with trio.fail_after(5):
                    assert json.loads(await ws.get_message())
            start = trio.current_time()
            server_nursery.cancel_scope.cancel()
            for ws in (ws1, ws2):
                assert await close_code(ws, timeout=2) == 1001
    stopped = trio.current_time() - start
    assert stopped < 5, f"server took {stopped:.1f} s to stop"


async def test_ws_clients_get_1001_when_hub_closes(server: ServerInfo, agent_under_test: Any) -> None:
    async with websocket(server.ws_url) as ws:
        with trio.fail_after(5):
            await ws.get_message()
        agent_under_test.hub.close()
        assert await close_code(ws, timeout=5) == 1001
    # a client connecting after the hub closed is told to go away too
    async with websocket(server.ws_url) as late:
        assert await close_code(late, timeout=5) == 1001


async def test_shutdown_trigger_stops_gracefully() -> None:
    agent = FakeAgent()
    stop = trio.Event()
    async with trio.open_nursery() as nursery:
        info = await nursery.start(partial(serve, agent, http_port=0, ws_port=0, shutdown_trigger=stop.wait))
        async with websocket(info.ws_url) as ws:
            with trio.fail_after(5):
                await ws.get_message()
            assert (await request(info.http_url + "/healthz")).status == 200
            stop.set()
            assert await close_code(ws, timeout=5) == 1001
        with trio.fail_after(5):
            while True:  # the listener goes away
                try:
                    s = await trio.open_tcp_stream("127.0.0.1", info.http_port)
                except OSError:
                    break
                await s.aclose()
                await trio.sleep(0.02)
    # serve() returned by itself: the nursery exited without being cancelled


async def test_same_port_for_http_and_ws(nursery: trio.Nursery) -> None:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    agent = FakeAgent()
    info = await nursery.start(partial(serve, agent, http_port=port, ws_port=port))
    assert info.http_port == info.ws_port == port
    async with open_websocket_url(info.ws_url) as ws:
        with trio.fail_after(5):
            assert json.loads(await ws.get_message())


async def test_early_error_answer_keeps_the_connection_usable(slow_keepalive_server: ServerInfo) -> None:
    """A 401 decided before the body arrived must not break keep-alive."""
    stream = await trio.open_tcp_stream("127.0.0.1", slow_keepalive_server.http_port)
    async with stream:
        await stream.send_all(
            b"PUT /config HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
            b"Content-Length: 21\r\n\r\n"
        )
        early = b""
        with trio.move_on_after(0.3):  # an early answer, if the server gives one
            early = await stream.receive_some(65536)
        await stream.send_all(b'{"MAX_CONTAINERS": 7}GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n')
        data = early
        with trio.fail_after(5):
            while data.count(b"HTTP/1.1 ") < 2 or not data.rstrip().endswith(b"}"):
                chunk = await stream.receive_some(65536)
                assert chunk, f"connection closed after: {data!r}"
                data += chunk
    assert data.startswith(b"HTTP/1.1 401")
    assert b"HTTP/1.1 200" in data.split(b"\r\n\r\n", 1)[1]


async def test_a_response_before_closing_says_connection_close(slow_keepalive_server: ServerInfo) -> None:
    """A body over the limit is not read (401 or 413): the server will close, so
    the response must say so, or a client reusing the connection gets 'remote
    end closed connection without response'."""
    body = b'{"LOG_LEVEL": "' + b"x" * 70_000 + b'"}'
    stream = await trio.open_tcp_stream("127.0.0.1", slow_keepalive_server.http_port)
    async with stream:
        await stream.send_all(
            b"PUT /config HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
            + f"Content-Length: {len(body)}\r\n\r\n".encode()
        )
        with trio.move_on_after(5):
            try:
                await stream.send_all(body)
            except trio.BrokenResourceError:
                pass
        data, _ = await read_until_eof(stream, timeout=5)
    head = data.split(b"\r\n\r\n", 1)[0].lower()
    assert head.startswith(b"http/1.1 4")
    assert b"\r\nconnection: close" in head


async def test_a_port_in_use_is_a_clear_config_error(agent_under_test: Any) -> None:
    import socket

    from agent.core.errors import ConfigError

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        async with trio.open_nursery() as nursery:
            with pytest.raises(ConfigError) as caught:
                await nursery.start(partial(serve, agent_under_test, http_port=port, ws_port=0))
            assert caught.value.variable == "HOST_PORT_HTTP_DEPLOYMENT_AGENT"
            assert f"127.0.0.1:{port}" in str(caught.value) and "in use" in str(caught.value)
            with pytest.raises(ConfigError) as caught:
                await nursery.start(partial(serve, agent_under_test, http_port=0, ws_port=port))
            assert caught.value.variable == "HOST_PORT_WS_DEPLOYMENT_AGENT"


async def test_shutdown_completes_despite_a_stalled_subscriber(caplog: pytest.LogCaptureFixture) -> None:
    """A peer that never reads fills its socket buffers; Hypercorn's send to it is
    shielded, so only the abort after the grace period can end the server."""
    import base64
    import dataclasses
    import logging
    import secrets
    import socket

    caplog.set_level(logging.WARNING, logger="agent.interfaces.web.server")
    agent = FakeAgent()
    big = make_snapshot([(f"container-{i:04d}-with-a-long-name", 50.0 + i % 40) for i in range(300)])
    sock = trio.socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # tiny: no autotuning
    try:
        async with trio.open_nursery() as nursery:
            info = await nursery.start(partial(serve, agent, http_port=0, ws_port=0, graceful_timeout=0.5))
            await sock.connect(("127.0.0.1", info.ws_port))
            key = base64.b64encode(secrets.token_bytes(16)).decode()
            await sock.send(
                f"GET /ws HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode()
            )
            with trio.fail_after(5):
                assert (await sock.recv(1024)).startswith(b"HTTP/1.1 101")
            # ~12 MB offered, the buffers hold ~4 MB: the handler ends up blocked
            for tick in range(2, 270):
                agent.hub.publish(dataclasses.replace(big, tick=tick))
                await trio.sleep(0)
            start = trio.current_time()
            nursery.cancel_scope.cancel()
        elapsed = trio.current_time() - start
    finally:
        sock.close()
    assert elapsed < 5, f"shutdown took {elapsed:.1f} s"
    assert "aborted 1 stalled connection(s)" in caplog.text
