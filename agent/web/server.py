"""Serving the app with Hypercorn's Trio worker, inside the caller's nursery.

Three things here are not plain ``hypercorn.trio.serve``:

* **The close fix.** With a Quart-Trio app, Hypercorn 0.18 never closes an HTTP
  connection: ``Connection: close``, HTTP/1.0 and the keep-alive timeout are all
  ignored. Quart-Trio cancels its per-request nursery as soon as the response is
  sent, and that cancellation lands inside Hypercorn's ``send`` while it is still
  finishing the stream (end of body → stream closed → recycle or close the
  connection), so the close step never runs. `_ShieldedSend` runs every ASGI
  ``send`` of an HTTP request under a shielded cancel scope, so Hypercorn always
  completes it. (WebSocket sends are left alone: our handler never cancels a
  send, and shielding them would make a stalled peer unkillable.)
* **Two ports.** ``HOST_PORT_HTTP_DEPLOYMENT_AGENT`` serves everything, ``/ws``
  included; ``HOST_PORT_WS_DEPLOYMENT_AGENT``, when different, serves only the
  WebSocket feed (at any path, as the prototype's bare WebSocket server did) and
  answers 404 to plain HTTP.
* **Graceful, prompt shutdown.** When the surrounding scope is cancelled (or
  `shutdown_trigger` returns), the servers are shielded for a short grace period:
  listeners close, every WebSocket client gets close code 1001 *at once* (the
  handlers wait on cancellable scopes that `WebState.stop` cancels, rather than
  Hypercorn's graceful timeout), idle keep-alive connections are closed, then the
  cancellation carries on. Ports may be 0 (tests): the bound ports are reported
  through ``task_status.started(ServerInfo(...))``.
"""
from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

import trio
from hypercorn.config import Config
from hypercorn.trio import serve as hypercorn_serve

__all__ = ["ServerInfo", "serve", "hypercorn_config", "settings_port"]

log = logging.getLogger("agent.web.server")

# Extra time, past Hypercorn's graceful timeout, after which the servers are
# cancelled for good even if a connection is still busy.
_HARD_MARGIN = 1.0


@dataclass(frozen=True, slots=True)
class ServerInfo:
    """Where the servers listen (the real ports, when 0 was asked for)."""

    host: str
    http_port: int
    ws_port: int

    @property
    def http_url(self) -> str:
        return f"http://{_url_host(self.host)}:{self.http_port}"

    @property
    def ws_url(self) -> str:
        """The compat feed on the WebSocket port."""
        return f"ws://{_url_host(self.host)}:{self.ws_port}/ws"


def _url_host(host: str) -> str:
    if host in ("0.0.0.0", ""):
        return "127.0.0.1"
    if host == "::":
        return "[::1]"
    return f"[{host}]" if ":" in host else host


def _bind(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def settings_port(settings: Any, which: str) -> int:
    """``HOST_PORT_HTTP_DEPLOYMENT_AGENT`` / ``HOST_PORT_WS_DEPLOYMENT_AGENT``."""
    for attr in (f"host_port_{which}", f"{which}_port", f"host_port_{which}_deployment_agent"):
        value = getattr(settings, attr, None)
        if value is not None:
            return int(value)
    raise AttributeError(f"settings have no {which} port")


def _port_of(binds: list[str]) -> int:
    return int(binds[0].rsplit(":", 1)[1])


def hypercorn_config(
    host: str,
    port: int,
    *,
    keep_alive_timeout: float = 5.0,
    graceful_timeout: float = 2.0,
    backlog: int = 1024,
) -> Config:
    """The Hypercorn configuration the agent serves with."""
    config = Config()
    config.bind = [_bind(host, port)]
    config.keep_alive_timeout = keep_alive_timeout
    config.graceful_timeout = graceful_timeout
    config.backlog = backlog
    config.accesslog = None
    config.errorlog = logging.getLogger("agent.web.server")
    config.include_server_header = False
    return config


class _ShieldedSend:
    """ASGI wrapper: HTTP ``send`` calls run shielded from cancellation (the close fix)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def shielded_send(message: dict) -> None:
            with trio.CancelScope(shield=True):
                await send(message)

        await self.app(scope, receive, shielded_send)


_WS_PORT_404 = (
    b'{"error":"not_found","detail":"this port serves only the WebSocket queue feed (/ws)"}'
)


class _WebSocketPort:
    """ASGI wrapper for the WebSocket port: the feed at any path, 404 for HTTP.

    It answers the lifespan protocol itself, so the app's start-up and shutdown
    hooks run once (on the HTTP port's server), not once per port.
    """

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        kind = scope["type"]
        if kind == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        elif kind == "websocket":
            await self.app({**scope, "path": "/ws", "raw_path": b"/ws"}, receive, send)
        else:
            with trio.CancelScope(shield=True):
                await send(
                    {
                        "type": "http.response.start",
                        "status": 404,
                        "headers": [
                            (b"content-type", b"application/json"),
                            (b"content-length", str(len(_WS_PORT_404)).encode()),
                        ],
                    }
                )
                await send({"type": "http.response.body", "body": _WS_PORT_404})


async def serve(
    agent: Any,
    *,
    app: Any = None,
    host: str | None = None,
    http_port: int | None = None,
    ws_port: int | None = None,
    shutdown_trigger: Callable[[], Awaitable[None]] | None = None,
    keep_alive_timeout: float = 5.0,
    graceful_timeout: float = 2.0,
    backlog: int = 1024,
    task_status: trio.TaskStatus[ServerInfo] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve `agent`'s web app until cancelled (or until `shutdown_trigger` returns).

    Binds ``settings.bind_host`` on the HTTP port and, when it differs (or is
    0), the WebSocket port; `host`, `http_port` and `ws_port` override the
    settings (tests pass 0: any free port). Use it as
    ``info = await nursery.start(serve, agent)``: `started` is signalled once
    both ports listen, with a `ServerInfo` holding the actual ports.
    """
    from .app import create_app, web_state

    settings = agent.settings
    host = host if host is not None else str(getattr(settings, "bind_host", None) or "127.0.0.1")
    http_port = http_port if http_port is not None else settings_port(settings, "http")
    ws_port = ws_port if ws_port is not None else settings_port(settings, "ws")
    if app is None:
        app = create_app(agent)
    state = web_state(app)
    stop = trio.Event()
    make_config = partial(
        hypercorn_config,
        keep_alive_timeout=keep_alive_timeout,
        graceful_timeout=graceful_timeout,
        backlog=backlog,
    )

    async with trio.open_nursery() as outer:
        servers_scope = trio.CancelScope(shield=True)

        def begin_stop() -> None:
            if stop.is_set():
                return
            log.info("web server stopping")
            state.stop()  # WebSocket handlers close with 1001 now
            stop.set()  # Hypercorn: stop accepting, close idle connections
            servers_scope.deadline = trio.current_time() + graceful_timeout + _HARD_MARGIN

        async def watch() -> None:
            try:
                if shutdown_trigger is not None:
                    await shutdown_trigger()
                else:
                    await trio.sleep_forever()
            finally:
                begin_stop()

        outer.start_soon(watch)
        # Shielded so that an outside cancellation becomes a graceful stop
        # (begin_stop, from the watcher) rather than dropped connections.
        with servers_scope:
            async with trio.open_nursery() as servers:
                binds = await servers.start(
                    partial(
                        hypercorn_serve,
                        _ShieldedSend(app),
                        make_config(host, http_port),
                        shutdown_trigger=stop.wait,
                        mode="asgi",
                    )
                )
                bound_http = _port_of(binds)
                bound_ws = bound_http
                if ws_port != http_port or ws_port == 0:
                    ws_binds = await servers.start(
                        partial(
                            hypercorn_serve,
                            _WebSocketPort(_ShieldedSend(app)),
                            make_config(host, ws_port),
                            shutdown_trigger=stop.wait,
                            mode="asgi",
                        )
                    )
                    bound_ws = _port_of(ws_binds)
                info = ServerInfo(host, bound_http, bound_ws)
                log.info("serving HTTP on %s, WebSocket on %s", info.http_url, info.ws_url)
                task_status.started(info)
        outer.cancel_scope.cancel()
