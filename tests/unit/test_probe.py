"""Availability probes against local Trio servers: times on success, NaN otherwise."""
from __future__ import annotations

import contextlib
import math
import socket
import time
from functools import partial
from collections.abc import Awaitable, Callable, Iterator

import pytest
import trio
import trio.testing

from agent.adapters.probe import is_ip_literal, probe_http, probe_tcp, probe_tcp_many

Handler = Callable[[trio.SocketStream], Awaitable[None]]


async def _serve(nursery: trio.Nursery, handler: Handler) -> int:
    listeners = await nursery.start(partial(trio.serve_tcp, handler, 0, host="127.0.0.1"))
    port: int = listeners[0].socket.getsockname()[1]
    return port


def _answer(raw: bytes) -> Handler:
    async def handler(stream: trio.SocketStream) -> None:
        with trio.move_on_after(2):
            await stream.receive_some(4096)
            await stream.send_all(raw)
        await stream.aclose()

    return handler


@pytest.fixture
def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def unanswered_port() -> Iterator[int]:
    """A port whose SYNs go unanswered: a listener with a full accept queue that
    never accepts (Linux drops SYNs to a full queue), so connect() hangs."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    fillers = []
    for _ in range(4):  # the queue holds backlog + 1; over-fill it to be sure
        s = socket.socket()
        s.setblocking(False)
        s.connect_ex(("127.0.0.1", port))
        fillers.append(s)
    try:
        yield port
    finally:
        for s in fillers:
            s.close()
        listener.close()


async def test_tcp_probe_times_a_connect(nursery: trio.Nursery) -> None:
    port = await _serve(nursery, _answer(b""))
    elapsed = await probe_tcp("127.0.0.1", port, 2.0)
    assert 0 <= elapsed < 2.0


async def test_tcp_probe_refused_is_nan(closed_port: int) -> None:
    assert math.isnan(await probe_tcp("127.0.0.1", closed_port, 2.0))


async def test_tcp_probe_timeout_is_nan(unanswered_port: int) -> None:
    start = trio.current_time()
    assert math.isnan(await probe_tcp("127.0.0.1", unanswered_port, 0.3))
    assert trio.current_time() - start < 1.5


@pytest.mark.parametrize(
    "raw",
    [
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
        b"HTTP/1.0 204 No Content\r\n\r\n",
        b"HTTP/1.1 302 Found\r\nLocation: /x\r\n\r\n",
    ],
    ids=["200", "204", "302"],
)
async def test_http_probe_2xx_3xx_is_a_time(nursery: trio.Nursery, raw: bytes) -> None:
    port = await _serve(nursery, _answer(raw))
    elapsed = await probe_http("127.0.0.1", port, "/health", 2.0)
    assert 0 <= elapsed < 2.0


@pytest.mark.parametrize(
    "raw",
    [
        b"HTTP/1.1 404 Not Found\r\n\r\n",
        b"HTTP/1.1 500 Internal Server Error\r\n\r\n",
        b"SSH-2.0-OpenSSH_9.2\r\n",
        b"HTTP/1.1 2000 Odd\r\n\r\n",
        b"",
    ],
    ids=["404", "500", "not-http", "bad-code", "closed-without-answer"],
)
async def test_http_probe_other_answers_are_nan(nursery: trio.Nursery, raw: bytes) -> None:
    port = await _serve(nursery, _answer(raw))
    assert math.isnan(await probe_http("127.0.0.1", port, "/health", 2.0))


async def test_http_probe_sends_the_path_and_host(nursery: trio.Nursery) -> None:
    seen: list[bytes] = []

    async def handler(stream: trio.SocketStream) -> None:
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = await stream.receive_some(4096)
            if not chunk:
                break
            data += chunk
        seen.append(data)
        await stream.send_all(b"HTTP/1.0 200 OK\r\n\r\n")
        await stream.aclose()

    port = await _serve(nursery, handler)
    assert math.isfinite(await probe_http("127.0.0.1", port, "cgi-bin/health", 2.0))
    assert seen[0].startswith(b"GET /cgi-bin/health HTTP/1.0\r\n")
    assert f"Host: 127.0.0.1:{port}\r\n".encode() in seen[0]


async def test_http_probe_silent_server_times_out(nursery: trio.Nursery) -> None:
    async def silent(stream: trio.SocketStream) -> None:
        await trio.sleep_forever()

    port = await _serve(nursery, silent)
    start = trio.current_time()
    assert math.isnan(await probe_http("127.0.0.1", port, "/", 0.2))
    assert trio.current_time() - start < 1.0
    nursery.cancel_scope.cancel()


async def test_http_probe_refused_is_nan(closed_port: int) -> None:
    assert math.isnan(await probe_http("127.0.0.1", closed_port, "/", 2.0))


async def test_probe_timeouts_follow_trios_clock(
    autojump_clock: trio.testing.MockClock, unanswered_port: int
) -> None:
    """The probes time out on Trio's clock: under a virtual clock a 30 s timeout
    costs no real time."""
    real_start = time.monotonic()
    assert math.isnan(await probe_tcp("127.0.0.1", unanswered_port, 30.0))
    assert time.monotonic() - real_start < 5.0


# -- the whole tick's TCP probes at once --------------------------------------------


async def _reset_tolerant(stream: trio.SocketStream) -> None:
    """Accept and close: the batch probe resets its connections (RST)."""
    with contextlib.suppress(trio.BrokenResourceError):
        await stream.aclose()


async def test_tcp_probe_many_times_refuses_and_times_out(
    nursery: trio.Nursery, closed_port: int, unanswered_port: int
) -> None:
    port = await _serve(nursery, _reset_tolerant)
    targets = [("127.0.0.1", port), ("127.0.0.1", closed_port), ("127.0.0.1", unanswered_port),
               ("localhost", port)]
    start = time.monotonic()
    results = await trio.to_thread.run_sync(probe_tcp_many, targets, 0.3, 5.0)
    assert time.monotonic() - start < 2.0  # the unanswered one ends at its timeout
    ok, refused, unanswered, named = results
    assert ok is not None and 0 <= ok < 0.3
    assert refused is not None and math.isnan(refused)
    assert unanswered is not None and math.isnan(unanswered)
    assert named is not None and math.isnan(named)  # names are not resolved here
    assert is_ip_literal("127.0.0.1") and is_ip_literal("::1") and not is_ip_literal("localhost")


async def test_tcp_probe_many_stops_at_the_deadline_and_fills_in_place(
    nursery: trio.Nursery, unanswered_port: int
) -> None:
    port = await _serve(nursery, _reset_tolerant)
    targets = [("127.0.0.1", unanswered_port), ("127.0.0.1", port)]
    answers: list[float | None] = [None, None]
    start = time.monotonic()
    returned = await trio.to_thread.run_sync(probe_tcp_many, targets, 5.0, 0.2, answers)
    assert 0.15 <= time.monotonic() - start < 1.5
    assert returned is answers
    assert answers[0] is None  # still waiting when the deadline came: not an answer
    assert answers[1] is not None and math.isfinite(answers[1])
    assert probe_tcp_many(targets, 5.0, 0.0) == [None, None]  # deadline already past
