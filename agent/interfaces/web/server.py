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
  included (Hypercorn); ``HOST_PORT_WS_DEPLOYMENT_AGENT``, when different, serves
  only the WebSocket feed (at any path, as the prototype's bare WebSocket server
  did) and answers 404 to plain HTTP — with a server of its own that frames each
  snapshot once for all subscribers (`agent.interfaces.web.ws_port`).
* **Bounded WebSocket input** (`agent.interfaces.web.ws_limits`): incoming
  messages of at most 4 KiB on the HTTP port's ``/ws`` (the WebSocket port reads
  and drops client messages as they arrive), at most ``WS_MAX_CONNECTIONS``
  WebSockets per port (close code 1013 beyond).
* **Sized for its connection cap.** Each port accepts ``WS_MAX_CONNECTIONS``
  WebSockets; a burst of that many connections must fit in the listen backlog,
  or health probes arriving meanwhile wait for a SYN retry (1 s and more). The
  backlog is the cap plus headroom (`listen_backlog`), the open-file limit is
  raised to hold every connection (`ensure_file_limit`), and a kernel cap below
  either (``net.core.somaxconn``, the hard ``RLIMIT_NOFILE``) is said at start.
  So is a WebSocket port equal to the HTTP port (one server then serves both).
* **Graceful, prompt shutdown.** When the surrounding scope is cancelled (or
  `shutdown_trigger` returns), the servers are shielded for a short grace period:
  listeners close, every WebSocket client gets close code 1001 *at once* (the
  handlers wait on cancellable scopes that `Feed.stop` cancels, rather than
  Hypercorn's graceful timeout), idle keep-alive connections are closed, then the
  cancellation carries on. A connection still stuck after the grace period (a
  peer that stopped reading, its socket buffer full: Hypercorn's send is
  shielded, and the WebSocket port never cuts a frame either, so no
  cancellation reaches it) is reset by `abort_connections`, so shutdown always
  completes. Ports may be 0 (tests): the bound ports are reported through
  ``task_status.started(ServerInfo(...))``.
"""
from __future__ import annotations

import logging
import os
import resource
import socket
import stat
import struct
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any

import trio
from hypercorn.config import Config
from hypercorn.trio import serve as hypercorn_serve
from quart_trio import QuartTrio

from agent.core.errors import ConfigError
from agent.service.facade import AgentFacade
from .app import create_app
from .feed import feed_of
from .ws_limits import MAX_MESSAGE, ConnectionCap
from .ws_port import WebSocketPort

if TYPE_CHECKING:
    from hypercorn.typing import (
        ASGIFramework,
        ASGIReceiveCallable,
        ASGISendCallable,
        ASGISendEvent,
        Scope,
    )

__all__ = [
    "ServerInfo",
    "serve",
    "hypercorn_config",
    "settings_port",
    "abort_connections",
    "listen_backlog",
    "ensure_file_limit",
]

log = logging.getLogger("agent.interfaces.web.server")

# Extra time, past Hypercorn's graceful timeout, after which the servers are
# cancelled for good even if a connection is still busy.
_HARD_MARGIN = 1.0

# Room in the backlog and the file limit beyond the WebSocket cap: health probes,
# API calls and the agent's own files and sockets arriving during a burst.
HEADROOM = 256
_SOMAXCONN = "/proc/sys/net/core/somaxconn"


def listen_backlog(connections: int, somaxconn_path: str = _SOMAXCONN) -> tuple[int, str | None]:
    """The backlog for a port taking `connections` WebSockets, and a warning when
    the kernel caps backlogs below it (Linux ``net.core.somaxconn``)."""
    wanted = max(1024, connections + HEADROOM)
    try:
        with open(somaxconn_path) as f:
            kernel = int(f.read().strip())
    except (OSError, ValueError):
        return wanted, None
    if kernel >= wanted:
        return wanted, None
    return wanted, (f"the kernel caps listen backlogs at net.core.somaxconn = {kernel}, below "
                    f"the {wanted} a burst of WS_MAX_CONNECTIONS ({connections}) needs: raise it "
                    f"(sysctl -w net.core.somaxconn={wanted}) or lower WS_MAX_CONNECTIONS")


def ensure_file_limit(needed: int) -> str | None:
    """Raise this process's open-file limit to `needed` (up to the hard limit);
    a warning when the hard limit is lower."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft >= needed:
        return None
    target = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
    if target > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    if target < needed:
        return (f"the open-file limit ({target}) is below the {needed} the WebSocket cap needs: "
                "raise it (ulimit -n) or lower WS_MAX_CONNECTIONS")
    return None


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


def abort_connections(ports: set[int]) -> int:
    """Reset every accepted TCP connection of this process on one of `ports`.

    The last resort of shutdown (Linux): Hypercorn sends under a shielded cancel
    scope, so a peer that stopped reading blocks it for good. Shutting the socket
    down through a duplicate of its descriptor fails that send (the connection
    is reset), Hypercorn tears the connection down, and its task ends. Listening
    sockets and our own client sockets (whose *peer* has the port) are left alone.
    """
    try:
        fds = [int(name) for name in os.listdir("/proc/self/fd")]
    except OSError:
        return 0
    aborted = 0
    for fd in fds:
        try:
            if not stat.S_ISSOCK(os.fstat(fd).st_mode):
                continue
            dup = socket.socket(fileno=os.dup(fd))
        except OSError:
            continue
        with dup:
            try:
                if dup.type != socket.SOCK_STREAM or dup.family not in (socket.AF_INET, socket.AF_INET6):
                    continue
                if dup.getsockname()[1] not in ports:
                    continue
                dup.getpeername()  # raises for a listening socket
                dup.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                dup.shutdown(socket.SHUT_RDWR)
                aborted += 1
            except OSError:
                continue
    return aborted


def _check_bindable(host: str, port: int) -> None:
    """Bind and release `host:port` as Hypercorn will (it leaks its socket when
    the bind fails, so a port in use is caught here first)."""
    if port == 0:
        return
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind((host, port))


def _bind_error(exc: BaseException) -> OSError | None:
    """The OSError of a failed bind, alone or alone in (nested) exception groups."""
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc if isinstance(exc, OSError) else None


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
    config.errorlog = logging.getLogger("agent.interfaces.web.server")
    config.include_server_header = False
    config.websocket_max_message_size = MAX_MESSAGE  # see agent.interfaces.web.ws_limits
    return config


class _ShieldedSend:
    """ASGI wrapper: HTTP ``send`` calls run shielded from cancellation (the close fix)."""

    def __init__(self, app: ASGIFramework) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: ASGIReceiveCallable, send: ASGISendCallable) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def shielded_send(message: ASGISendEvent) -> None:
            with trio.CancelScope(shield=True):
                await send(message)

        await self.app(scope, receive, shielded_send)


async def serve(
    agent: AgentFacade,
    *,
    app: QuartTrio | None = None,
    host: str | None = None,
    http_port: int | None = None,
    ws_port: int | None = None,
    shutdown_trigger: Callable[[], Awaitable[None]] | None = None,
    keep_alive_timeout: float = 5.0,
    graceful_timeout: float = 2.0,
    backlog: int | None = None,
    task_status: trio.TaskStatus[ServerInfo] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve `agent`'s web app until cancelled (or until `shutdown_trigger` returns).

    Binds ``settings.bind_host`` on the HTTP port and, when it differs (or is
    0), the WebSocket port; `host`, `http_port` and `ws_port` override the
    settings (tests pass 0: any free port). Use it as
    ``info = await nursery.start(serve, agent)``: `started` is signalled once
    both ports listen, with a `ServerInfo` holding the actual ports. A port
    that cannot be bound is a `ConfigError` naming its variable. `backlog`
    defaults to `listen_backlog` of ``WS_MAX_CONNECTIONS``.
    """
    settings = agent.settings
    host = host if host is not None else str(settings.bind_host or "127.0.0.1")
    http_port = http_port if http_port is not None else settings_port(settings, "http")
    ws_port = ws_port if ws_port is not None else settings_port(settings, "ws")
    cap = settings.ws_max_connections
    if backlog is None:
        backlog, problem = listen_backlog(cap)
        if problem is not None:
            log.warning("%s", problem)
    ports = 1 if ws_port == http_port != 0 else 2
    problem = ensure_file_limit(ports * (cap + HEADROOM))
    if problem is not None:
        log.warning("%s", problem)
    make_config = partial(
        hypercorn_config,
        keep_alive_timeout=keep_alive_timeout,
        graceful_timeout=graceful_timeout,
        backlog=backlog,
    )
    servers = _Servers(app if app is not None else create_app(agent), host, graceful_timeout, make_config,
                       ws_cap=cap, backlog=backlog)
    try:
        await servers.run(http_port, ws_port, shutdown_trigger, task_status)
    except BaseException as exc:
        failure = servers.bind_failure(exc)
        if failure is None:
            raise
        raise failure from exc


class _Servers:
    """The Hypercorn servers of one app (one or two ports) and their graceful stop."""

    def __init__(
        self, app: QuartTrio, host: str, graceful_timeout: float, make_config: Callable[[str, int], Config],
        *, ws_cap: int, backlog: int = 1024,
    ) -> None:
        self.app = app
        self.ws_cap = ws_cap
        self.backlog = backlog
        self.host = host
        self.feed = feed_of(app)
        self.grace = graceful_timeout + _HARD_MARGIN
        self.make_config = make_config
        self.stop = trio.Event()  # Hypercorn's shutdown trigger
        self.scope = trio.CancelScope(shield=True)
        self.done = trio.Event()
        self.ports: set[int] = set()
        # Which port is being bound; None once all listen (a later OSError is not a bind error).
        self.binding: tuple[str, int] | None = None

    async def run(
        self,
        http_port: int,
        ws_port: int,
        shutdown_trigger: Callable[[], Awaitable[None]] | None,
        task_status: trio.TaskStatus[ServerInfo],
    ) -> None:
        async with trio.open_nursery() as outer:
            outer.start_soon(self._watch, shutdown_trigger)
            # Shielded so that an outside cancellation becomes a graceful stop
            # (begin_stop, from the watcher) rather than dropped connections.
            with self.scope:
                async with trio.open_nursery() as servers:
                    info = await self._listen(servers, http_port, ws_port)
                    log.info("serving HTTP on %s, WebSocket on %s", info.http_url, info.ws_url)
                    task_status.started(info)
            self.done.set()
            outer.cancel_scope.cancel()

    async def _listen(self, servers: trio.Nursery, http_port: int, ws_port: int) -> ServerInfo:
        self.binding = ("HOST_PORT_HTTP_DEPLOYMENT_AGENT", http_port)
        bound_http = await self._start(servers, self._capped(_ShieldedSend(self.app)), http_port)
        bound_ws = bound_http
        if ws_port == http_port != 0:
            log.warning(
                "HOST_PORT_WS_DEPLOYMENT_AGENT is HOST_PORT_HTTP_DEPLOYMENT_AGENT (%d): one "
                "server on that port serves the HTTP API and the queue feed at /ws", http_port)
        if ws_port != http_port or ws_port == 0:
            self.binding = ("HOST_PORT_WS_DEPLOYMENT_AGENT", ws_port)
            _check_bindable(self.host, ws_port)
            port = WebSocketPort(self.feed, backlog=self.backlog, max_connections=self.ws_cap)
            self.feed.ports.append(port)
            bound_ws = await servers.start(port.serve, self.host, ws_port)
        self.ports.update((bound_http, bound_ws))
        self.binding = None
        return ServerInfo(self.host, bound_http, bound_ws)

    def _capped(self, app: ASGIFramework) -> ASGIFramework:
        """`app` behind the WebSocket cap of the port being bound (one cap per port)."""
        assert self.binding is not None
        return ConnectionCap(app, self.ws_cap, self.binding[0])

    async def _start(self, servers: trio.Nursery, app: ASGIFramework, port: int) -> int:
        _check_bindable(self.host, port)
        binds = await servers.start(
            partial(
                hypercorn_serve,
                app,
                self.make_config(self.host, port),
                shutdown_trigger=self.stop.wait,
                mode="asgi",
            )
        )
        return _port_of(binds)

    def _begin_stop(self) -> None:
        if self.stop.is_set():
            return
        log.info("web server stopping")
        self.feed.stop()  # WebSocket handlers close with 1001 now
        self.stop.set()  # Hypercorn: stop accepting, close idle connections
        self.scope.deadline = trio.current_time() + self.grace

    async def _watch(self, shutdown_trigger: Callable[[], Awaitable[None]] | None) -> None:
        try:
            if shutdown_trigger is not None:
                await shutdown_trigger()
            else:
                await trio.sleep_forever()
        finally:
            self._begin_stop()
            # A peer that stopped reading, with its socket buffer full, holds
            # Hypercorn in a *shielded* send that no cancellation reaches; once
            # the grace period is over, abort such connections so that shutdown
            # always completes.
            with trio.CancelScope(shield=True):
                with trio.move_on_after(self.grace):
                    await self.done.wait()
                if not self.done.is_set() and self.ports:
                    aborted = abort_connections(self.ports)
                    log.warning("aborted %d stalled connection(s) at shutdown", aborted)

    def bind_failure(self, exc: BaseException) -> ConfigError | None:
        """The `ConfigError` to raise for `exc` if it is the failed bind of a port."""
        if self.binding is None:
            return None
        error = _bind_error(exc)
        if error is None:
            return None
        variable, port = self.binding
        return ConfigError(variable, f"cannot listen on {_bind(self.host, port)}: {error.strerror or error}")
