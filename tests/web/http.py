"""A tiny async HTTP/1.1 client over real Trio sockets (h11), for the web tests.

One connection per request, closed by us afterwards; enough control to send
odd bodies, headers and methods. The connection-close tests use raw sockets.
"""
from __future__ import annotations

import json as jsonlib
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import h11
import trio


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return jsonlib.loads(self.body)

    @property
    def text(self) -> str:
        return self.body.decode()


async def request(
    url: str,
    method: str = "GET",
    *,
    json: Any = None,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
    token: str | None = None,
    timeout: float = 10.0,
) -> Reply:
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    target = parts.path or "/"
    if parts.query:
        target += "?" + parts.query
    hdrs = {"Host": f"{host}:{port}", "Connection": "close"}
    if json is not None:
        body = jsonlib.dumps(json).encode()
        hdrs["Content-Type"] = "application/json"
    if token is not None:
        hdrs["Authorization"] = f"Bearer {token}"
    hdrs.update(headers or {})
    if body is not None:
        hdrs["Content-Length"] = str(len(body))
    with trio.fail_after(timeout):
        stream = await trio.open_tcp_stream(host, port)
        async with stream:
            conn = h11.Connection(h11.CLIENT)
            raw_headers = [(k.encode(), v.encode("utf-8")) for k, v in hdrs.items()]
            out = conn.send(h11.Request(method=method, target=target, headers=raw_headers))
            if body:
                out += conn.send(h11.Data(data=body))
            out += conn.send(h11.EndOfMessage())
            await stream.send_all(out)
            response = None
            chunks: list[bytes] = []
            while True:
                event = conn.next_event()
                if event is h11.NEED_DATA:
                    conn.receive_data(await stream.receive_some(65536))
                    continue
                if isinstance(event, h11.Response):
                    response = event
                elif isinstance(event, h11.Data):
                    chunks.append(bytes(event.data))
                elif isinstance(event, (h11.EndOfMessage, h11.ConnectionClosed)):
                    break
            assert response is not None
            headers_out = {k.decode().lower(): v.decode() for k, v in response.headers}
            return Reply(response.status_code, headers_out, b"".join(chunks))
