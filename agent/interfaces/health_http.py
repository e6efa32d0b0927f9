"""A minimal HTTP endpoint for a process that has no web app: ``GET /healthz``.

The collector runs from the agent's image, whose HEALTHCHECK asks
``/healthz`` on HOST_PORT_HTTP_DEPLOYMENT_AGENT; Swarm replaces a task whose health
check fails, so a collector that stopped sampling is restarted. Quart and Hypercorn
would be a whole web stack for one JSON line: this is native Trio, HTTP/1.0,
one request per connection, bounded in size and time.
"""
from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import trio

__all__ = ["serve_health"]

_REQUEST_LIMIT = 8192  # bytes of request head read at most
_REQUEST_TIMEOUT = 5.0  # seconds for a client to send its request head

Report = Callable[[], tuple[bool, dict[str, Any]]]


def _response(status: str, body: dict[str, Any]) -> bytes:
    payload = json.dumps(body, separators=(",", ":")).encode()
    head = (f"HTTP/1.0 {status}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(payload)}\r\nConnection: close\r\n\r\n")
    return head.encode("latin-1") + payload


async def _handle(stream: trio.SocketStream, report: Report) -> None:
    head = bytearray()
    with trio.move_on_after(_REQUEST_TIMEOUT):
        while b"\r\n\r\n" not in head and b"\n\n" not in head and len(head) < _REQUEST_LIMIT:
            chunk = await stream.receive_some(_REQUEST_LIMIT)
            if not chunk:
                break
            head += chunk
    parts = bytes(head).split(b"\r\n", 1)[0].split()
    try:
        if len(parts) < 2 or parts[0] != b"GET":
            reply = _response("405 Method Not Allowed",
                              {"error": "method_not_allowed", "detail": "only GET /healthz"})
        elif parts[1].split(b"?", 1)[0] != b"/healthz":
            reply = _response("404 Not Found", {"error": "not_found", "detail": "only /healthz"})
        else:
            ok, body = report()
            reply = _response("200 OK" if ok else "503 Service Unavailable", body)
        await stream.send_all(reply)
    except trio.BrokenResourceError:
        pass
    finally:
        await trio.aclose_forcefully(stream)


async def serve_health(
    host: str, port: int, report: Report,
    *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve ``GET /healthz`` on `host`:`port` until cancelled: 200 with
    `report`'s body when its first value is true, else 503. Reports the bound port."""
    listeners = await trio.open_tcp_listeners(port, host=host)
    async with trio.open_nursery() as nursery:
        async def handler(stream: trio.SocketStream) -> None:
            await _handle(stream, report)

        bound = listeners[0].socket.getsockname()[1]
        nursery.start_soon(trio.serve_listeners, handler, listeners)
        task_status.started(int(bound))
