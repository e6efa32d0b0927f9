"""The HTTP/WebSocket face of the agent: compat `/stats` and `/ws`, the management
API, health, metrics, OpenAPI and the dashboard.

The app only ever talks to the agent through its facade (see
docs/architecture.md): it reads ``agent.snapshot`` / ``agent.settings`` /
``agent.history``, subscribes to ``agent.hub``, and asks for changes with
``update_config``, ``request_scale`` and ``request_sundown``. It cannot name an
image, pass a command or address a container the agent does not own: there is
no endpoint that could carry such a request.

Errors are JSON ``{"error": code, "detail": sentence}`` with the right status:
400 unparseable JSON, 401/403 token, 404 unknown container or path, 405 method,
413 body too large, 415 not JSON, 422 well-formed but invalid (wrong type, out of
range, unknown or read-only setting), 503 engine/Redis unavailable.

`serve()` runs it under Hypercorn's Trio worker; the plumbing (the close fix,
the WebSocket-only port, graceful shutdown) lives in `agent.interfaces.web.server`.
"""
from __future__ import annotations

import json
import logging
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import trio
from quart import Response, request
from quart_trio import QuartTrio
from werkzeug.exceptions import HTTPException, MethodNotAllowed

from agent.core.errors import AgentError, ConfigError, ContainerNotFound, EngineError, NotOwnedError, StoreError
from agent.core.records import Snapshot
from . import openapi
from .security import (
    READ_METHODS,
    ApiError,
    api_token,
    check_bearer,
    origin_may_read,
    origin_may_write,
    read_origins,
)

if TYPE_CHECKING:
    from hypercorn.typing import (
        ASGIFramework,
        ASGIReceiveCallable,
        ASGISendCallable,
        Scope,
    )

__all__ = ["create_app", "serve", "WebState", "queue_json", "stats_json", "ServerInfo"]

log = logging.getLogger("agent.interfaces.web")

STATIC_DIR = Path(__file__).with_name("static")
EXTENSION = "deployment_agent"
MAX_BODY = 64 * 1024
EVENTS_MAX_LIMIT = 500
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
_KIND_RE = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")
_EVENT_ID_RE = re.compile(r"^[0-9]{1,20}(-[0-9]{1,20})?$")  # a Redis stream id

# Settings that only take effect at start-up or that would widen what the API
# can do (another image, another engine, another token): never writable over
# HTTP, whatever `Settings.with_updates` would accept. Compared after lowering
# case, so both the attribute and the environment spelling are covered.
READ_ONLY_SETTINGS = frozenset(
    {
        "app_identifier",
        "docker_image",
        "docker_host",
        "target_port",
        "api_token",
        "agent_api_token",
        "bind_host",
        "host_port_http",
        "host_port_ws",
        "host_port_http_deployment_agent",
        "host_port_ws_deployment_agent",
        "redis_url",
        "redis_host",
        "redis_port",
        "data_dir",
        "cors_allow_origins",
        "cors_allow_write_origins",
    }
)


# --------------------------------------------------------------------------- JSON


def _clean(value: Any) -> Any:
    """Make `value` strict-JSON: non-finite floats become null (as serde does)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if isinstance(value, (str, int, bool)) or value is None:
        return value
    return str(value)


def dumps(value: Any) -> str:
    return json.dumps(_clean(value), allow_nan=False, separators=(",", ":"))


def json_response(value: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> Response:
    return Response(dumps(value), status=status, headers=dict(headers or {}), mimetype="application/json")


def queue_json(snapshot: Snapshot) -> list[dict[str, Any]]:
    """The queue as the compat WebSocket message carries it (SPEC §4)."""
    return [_clean(item.to_json()) for item in snapshot.queue]


def stats_json(snapshot: Snapshot) -> list[dict[str, Any]]:
    """The compat `/stats` array (SPEC §7)."""
    out = []
    for s in snapshot.scores:
        info = snapshot.containers.get(s.name)
        out.append(
            _clean(
                {
                    "id": s.id or (info.id if info is not None else ""),
                    "name": s.name,
                    "cpu_score": s.cpu_score,
                    "memory_score": s.memory_score,
                    "network_score": s.network_score,
                    "availability_score": s.availability_score,
                    "overall_score": s.overall_score,
                    "utilization_category": str(s.category),
                }
            )
        )
    return out


def container_json(snapshot: Snapshot, name: str) -> dict[str, Any] | None:
    score = next((s for s in snapshot.scores if s.name == name), None)
    info = snapshot.containers.get(name)
    if score is None and info is None:
        # Also accept a container id (full or a 12+ character prefix).
        for s in snapshot.scores:
            if s.id and len(name) >= 12 and s.id.startswith(name):
                return container_json(snapshot, s.name)
        for n, i in snapshot.containers.items():
            if i.id and len(name) >= 12 and i.id.startswith(name):
                return container_json(snapshot, n)
        return None
    position = next((i for i, q in enumerate(snapshot.queue) if q.dns_name == name), None)
    item = snapshot.queue[position] if position is not None else None
    nan = math.nan
    record: dict[str, Any] = _clean(
        {
            "name": name,
            "id": (score.id if score is not None and score.id else None) or (info.id if info else ""),
            "utilization_category": str(score.category) if score is not None else "INIT",
            "cpu_score": score.cpu_score if score else nan,
            "memory_score": score.memory_score if score else nan,
            "network_score": score.network_score if score else nan,
            "availability_score": score.availability_score if score else nan,
            "overall_score": score.overall_score if score else nan,
            "weight": item.weight if item is not None else (score.weight if score else 0.0),
            "anomaly": bool(score.anomaly) if score else False,
            "slope": score.slope if score else nan,
            "forecast": score.forecast if score else nan,
            "stale": bool(score.stale) if score else False,
            "queue_position": position,
            "image": info.image if info else None,
            "status": info.status if info else None,
            "created": info.created if info else None,
            "address": (item.address if item is not None and item.address else None)
            or (info.address if info else None),
            "host_port": (item.port if item is not None and item.port is not None else None)
            or (info.host_port if info else None),
        }
    )
    return record


class _QueueTextCache:
    """Encode the WebSocket message once per snapshot, not once per subscriber."""

    __slots__ = ("snapshot", "text")

    def __init__(self) -> None:
        self.snapshot: Snapshot | None = None
        self.text = "[]"

    def get(self, snapshot: Snapshot) -> str:
        if snapshot is not self.snapshot:
            self.text = dumps(queue_json(snapshot))
            self.snapshot = snapshot
        return self.text


# --------------------------------------------------------------------------- state


@dataclass
class WebState:
    """Per-app state: the agent and the shutdown switch for WebSocket handlers."""

    agent: Any
    stopping: bool = False
    ws_clients: int = 0
    _waiters: set[trio.CancelScope] = field(default_factory=set)
    _queue_text: _QueueTextCache = field(default_factory=_QueueTextCache)

    def stop(self) -> None:
        """Tell every WebSocket handler to close with 1001 (server going away)."""
        self.stopping = True
        for scope in list(self._waiters):
            scope.cancel()


def web_state(app: QuartTrio) -> WebState:
    state: WebState = app.extensions[EXTENSION]
    return state


# --------------------------------------------------------------------------- request parsing


async def _json_object() -> dict[str, Any]:
    mimetype = request.mimetype or ""
    if mimetype != "application/json" and not mimetype.endswith("+json"):
        raise ApiError(415, "unsupported_media_type", "send the body as Content-Type: application/json")
    raw = await request.get_data(cache=True, as_text=False)
    if not raw.strip():
        raise ApiError(400, "bad_json", "the request body is empty; a JSON object is required")

    def _no_constants(name: str) -> Any:
        raise ValueError(f"{name} is not valid JSON")

    try:
        value = json.loads(raw, parse_constant=_no_constants)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ApiError(400, "bad_json", f"the request body is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise ApiError(422, "invalid_body", f"the body must be a JSON object, got {_json_type(value)}")
    return value


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


def _query_int(name: str, default: int, lo: int, hi: int) -> int:
    values = request.args.getlist(name)
    if not values:
        return default
    if len(values) > 1:
        raise ApiError(422, "invalid_query", f"{name}: give it once")
    text = values[0].strip()
    if not re.fullmatch(r"[+-]?[0-9]{1,9}", text):
        raise ApiError(422, "invalid_query", f"{name}: must be an integer, got {values[0]!r}")
    value = int(text)
    if not lo <= value <= hi:
        raise ApiError(422, "invalid_query", f"{name}: must be between {lo} and {hi}, got {value}")
    return value


def _query_token(name: str, pattern: re.Pattern[str], expected: str) -> str | None:
    values = request.args.getlist(name)
    if not values:
        return None
    if len(values) > 1:
        raise ApiError(422, "invalid_query", f"{name}: give it once")
    if not pattern.fullmatch(values[0]):
        raise ApiError(422, "invalid_query", f"{name}: must be {expected}, got {values[0]!r:.80}")
    return values[0]


# --------------------------------------------------------------------------- the app


def create_app(agent: Any) -> QuartTrio:
    """Build the Quart-Trio app for `agent` (any object with the facade)."""
    app = QuartTrio(__name__, static_folder=str(STATIC_DIR), static_url_path="/static")
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY
    app.config["PROVIDE_AUTOMATIC_OPTIONS"] = True
    app.config["RESPONSE_TIMEOUT"] = 60
    state = WebState(agent)
    app.extensions[EXTENSION] = state
    app.asgi_app = _QueueFeed(app.asgi_app, state)  # type: ignore[method-assign]

    # ---------------------------------------------------------------- hooks

    @app.before_request
    async def _preflight() -> Response | None:
        if request.method != "OPTIONS":
            return None
        origin = request.headers.get("Origin")
        wanted = request.headers.get("Access-Control-Request-Method")
        if origin is None or wanted is None:
            return None  # a plain OPTIONS: Quart answers with Allow
        settings = agent.settings
        wanted = wanted.upper()
        if wanted in READ_METHODS and origin_may_read(settings, origin):
            allow_methods = "GET, HEAD"
            allow_headers = "Content-Type"
        elif wanted not in READ_METHODS and origin_may_write(settings, origin):
            allow_methods = "GET, HEAD, PUT, POST"
            allow_headers = "Authorization, Content-Type"
        else:
            return json_response(
                {"error": "cors_forbidden", "detail": f"origin {origin} may not {wanted} here"},
                403,
                {"Vary": "Origin"},
            )
        headers = {
            "Access-Control-Allow-Origin": _allow_origin_value(settings, origin, wanted),
            "Access-Control-Allow-Methods": allow_methods,
            "Access-Control-Allow-Headers": allow_headers,
            "Access-Control-Max-Age": "600",
            "Vary": "Origin",
        }
        return Response("", status=204, headers=headers)

    @app.after_request
    async def _decorate(response: Response) -> Response:
        await _consume_body(response)
        origin = request.headers.get("Origin")
        if origin is not None and request.method != "OPTIONS":
            settings = agent.settings
            method = request.method.upper()
            if (method in READ_METHODS and origin_may_read(settings, origin)) or (
                method not in READ_METHODS and origin_may_write(settings, origin)
            ):
                response.headers["Access-Control-Allow-Origin"] = _allow_origin_value(
                    settings, origin, method
                )
            response.vary.add("Origin")
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "no-referrer")
        if response.mimetype == "text/html":
            response.headers.setdefault(
                "Content-Security-Policy",
                "default-src 'self'; connect-src 'self' ws: wss:; img-src 'self' data:; "
                "style-src 'self'; script-src 'self'; frame-ancestors 'none'; base-uri 'none'",
            )
            response.headers.setdefault("X-Frame-Options", "DENY")
        return response

    # ---------------------------------------------------------------- errors

    @app.errorhandler(ApiError)
    async def _api_error(exc: ApiError) -> Response:
        return json_response(exc.body(), exc.status, exc.headers)

    @app.errorhandler(HTTPException)
    async def _http_error(exc: HTTPException) -> Response:
        status = exc.code or 500
        code = re.sub(r"[^a-z0-9]+", "_", (exc.name or "error").lower()).strip("_")
        headers: dict[str, str] = {}
        if isinstance(exc, MethodNotAllowed) and exc.valid_methods:
            headers["Allow"] = ", ".join(sorted(exc.valid_methods))
        detail = exc.description or exc.name or "error"
        if status == 404:
            detail = f"no such resource: {request.path}"
        return json_response({"error": code, "detail": detail}, status, headers)

    @app.errorhandler(ConfigError)
    async def _config_error(exc: ConfigError) -> Response:
        return json_response(
            {"error": "invalid_value", "detail": str(exc), "variable": exc.variable}, 422
        )

    @app.errorhandler(ContainerNotFound)
    async def _not_found(exc: ContainerNotFound) -> Response:
        return json_response({"error": "not_found", "detail": str(exc) or "no such container"}, 404)

    @app.errorhandler(NotOwnedError)
    async def _not_owned(exc: NotOwnedError) -> Response:
        return json_response(
            {"error": "not_found", "detail": f"not a container of this agent: {exc}"}, 404
        )

    @app.errorhandler(EngineError)
    @app.errorhandler(StoreError)
    async def _unavailable(exc: AgentError) -> Response:
        which = "engine" if isinstance(exc, EngineError) else "store"
        return json_response(
            {"error": "unavailable", "detail": f"{which} unavailable: {exc}"},
            503,
            {"Retry-After": "5"},
        )

    @app.errorhandler(Exception)
    async def _crash(exc: Exception) -> Response:
        log.exception("unhandled error in %s %s", request.method, request.path)
        return json_response({"error": "internal_error", "detail": "internal error, see the agent's log"}, 500)

    # ---------------------------------------------------------------- helpers

    def _require_token() -> None:
        settings = agent.settings
        check_bearer(request.headers.get("Authorization"), api_token(settings))
        origin = request.headers.get("Origin")
        if origin is not None and not origin_may_write(settings, origin):
            own = f"{request.scheme}://{request.host}"
            if origin.rstrip("/") != own:
                raise ApiError(403, "forbidden", f"cross-origin writes from {origin} are not allowed")

    # ---------------------------------------------------------------- compat

    @app.get("/stats")
    async def stats() -> Response:
        return json_response(stats_json(agent.snapshot))

    @app.get("/ws")
    async def ws_plain() -> Response:
        raise ApiError(
            426, "upgrade_required", "/ws is a WebSocket endpoint; connect with a WebSocket client",
            headers={"Upgrade": "websocket"},
        )

    # ---------------------------------------------------------------- read API

    @app.get("/queue")
    async def queue() -> Response:
        snap = agent.snapshot
        return json_response(
            {
                "tick": snap.tick,
                "time": snap.time,
                "desired": snap.desired,
                "running": snap.running,
                "queue": queue_json(snap),
            }
        )

    @app.get("/containers/<name>")
    async def container(name: str) -> Response:
        found = container_json(agent.snapshot, name) if _NAME_RE.fullmatch(name) else None
        if found is None:
            raise ApiError(404, "not_found", f"no container named {name!r}")
        return json_response(found)

    @app.get("/events")
    async def events() -> Response:
        limit = _query_int("limit", 50, 1, EVENTS_MAX_LIMIT)
        before = _query_token("before", _EVENT_ID_RE, "an event id such as 1700000000000-0")
        kind = _query_token("kind", _KIND_RE, "1 to 64 characters among letters, digits and _.:-")
        try:
            items = list(await agent.events(limit=limit, before=before, kind=kind))[:limit]
        except (ValueError, TypeError) as exc:
            raise ApiError(422, "invalid_query", str(exc)) from None
        out = [
            {
                "id": str(e.get("id")),
                "kind": str(e.get("kind", "")),
                "ts": _as_float(e.get("ts")),
                "data": e.get("data") if isinstance(e.get("data"), Mapping) else {"value": e.get("data")},
            }
            for e in items
        ]
        next_before = out[-1]["id"] if len(out) == limit and out else None
        return json_response({"events": out, "next_before": next_before})

    @app.get("/history")
    async def history() -> Response:
        points = [
            {"time": float(t), "desired": int(d), "running": int(r)}
            for t, d, r in list(agent.history)
        ]
        return json_response({"points": points})

    @app.get("/config")
    async def get_config() -> Response:
        return json_response(agent.settings.as_dict(redact=True))

    @app.put("/config")
    async def put_config() -> Response:
        _require_token()
        body = await _json_object()
        known = _clean(agent.settings.as_dict(redact=True))
        writable = writable_settings(known)
        for key, value in body.items():
            if key not in known:
                hint = _canonical_hint(key, known)
                raise ApiError(
                    422, "unknown_setting", f"{key}: no such setting{hint}", variable=key
                )
            if key not in writable:
                raise ApiError(
                    422, "read_only",
                    f"{key}: cannot be changed at run time; restart the agent with the new value",
                    variable=key,
                )
            if not openapi.config_value_ok(value, known[key]):
                want = openapi.config_value_schema(known[key]).get("type", "a scalar")
                raise ApiError(
                    422,
                    "invalid_value",
                    f"{key}: must be {_a(want)}, got {_json_type(value)}",
                    variable=key,
                )
        settings = await agent.update_config(body)
        return json_response(settings.as_dict(redact=True))

    @app.post("/scale")
    async def scale() -> Response:
        _require_token()
        body = await _json_object()
        extra = sorted(set(body) - {"count"})
        if extra:
            raise ApiError(422, "invalid_body", f"unexpected field(s): {', '.join(extra)}")
        if "count" not in body:
            raise ApiError(422, "invalid_body", "missing field: count")
        count = body["count"]
        if isinstance(count, bool) or not isinstance(count, int):
            raise ApiError(
                422, "invalid_value", f"count: must be an integer, got {_json_type(count)}",
                variable="count",
            )
        lo, hi = scale_bounds(agent.settings)
        if not lo <= count <= hi:
            raise ApiError(
                422, "invalid_value", f"count: must be between {lo} and {hi}, got {count}",
                variable="count",
            )
        decision = await agent.request_scale(count)
        return json_response(decision)

    @app.post("/containers/<name>/sundown")
    async def sundown(name: str) -> Response:
        _require_token()
        if not _NAME_RE.fullmatch(name):
            raise ApiError(404, "not_found", f"no container named {name!r}")
        decision = await agent.request_sundown(name)
        return json_response(decision)

    # ---------------------------------------------------------------- operations

    @app.get("/healthz")
    async def healthz() -> Response:
        health = dict(agent.health())
        if health.get("alive"):
            return json_response(health)
        age = health.get("last_tick_age")
        return json_response(
            {**health, "error": "not_alive", "detail": f"the tick loop is not running (last tick {age} s ago)"},
            503,
        )

    @app.get("/readyz")
    async def readyz() -> Response:
        try:
            ok, checks = await agent.readiness()
        except AgentError as exc:
            ok, checks = False, {"agent": str(exc)}
        checks = {str(k): str(v) for k, v in dict(checks).items()}
        if ok:
            return json_response({"ready": True, "checks": checks})
        reasons = "; ".join(f"{k}: {v}" for k, v in checks.items() if v != "ok") or "not ready"
        return json_response(
            {"ready": False, "checks": checks, "error": "not_ready", "detail": reasons},
            503,
            {"Retry-After": "5"},
        )

    @app.get("/metrics")
    async def metrics() -> Response:
        from agent.service.metrics import CONTENT_TYPE

        m = agent.metrics
        m.record_snapshot(agent.snapshot)
        m.websocket_clients.set(state.ws_clients)
        return Response(m.render(), status=200, headers={"Content-Type": CONTENT_TYPE})

    @app.get("/openapi.json")
    async def openapi_json() -> Response:
        return json_response(openapi.build(agent.settings))

    @app.get("/")
    async def dashboard() -> Response:
        response = await app.send_static_file("index.html")
        response.headers["Cache-Control"] = "no-cache"
        return response

    return app


def writable_settings(current: Mapping[str, Any]) -> set[str]:
    """Keys of `current` (``as_dict()``) that ``PUT /config`` may change.

    The config module's ``RUNTIME_MUTABLE`` decides; `READ_ONLY_SETTINGS` is a
    second fence that holds even if a setting were marked mutable by mistake.
    """
    mutable: frozenset[str] | None
    try:
        from agent.core.settings import RUNTIME_MUTABLE as mutable
    except ImportError:  # pragma: no cover - config is part of the package
        mutable = None
    out = set()
    for key in current:
        if key.strip().lower() in READ_ONLY_SETTINGS:
            continue
        if mutable is not None and key.strip().upper().replace("-", "_") not in mutable:
            continue
        out.add(key)
    return out


def _canonical_hint(key: str, known: Mapping[str, Any]) -> str:
    canonical = key.strip().lstrip("-").upper().replace("-", "_")
    return f" (did you mean {canonical}?)" if canonical in known and canonical != key else ""


def _a(type_name: str) -> str:
    return {"integer": "an integer", "array": "an array of strings"}.get(type_name, f"a {type_name}")


async def _consume_body(response: Response) -> None:
    """Read what is left of the request body before answering.

    An early answer (401 before the JSON is read, 404 on a POST) would otherwise
    complete while the body is still arriving; Hypercorn then closes the
    connection, without saying so in the response, and a client reusing it
    sees "connection reset". A body too large to read gets `Connection: close`.
    """
    if request.method in ("GET", "HEAD", "OPTIONS") and not request.content_length:
        return
    if (request.content_length or 0) > MAX_BODY:
        response.headers["Connection"] = "close"
        return
    try:
        with trio.move_on_after(5) as scope:
            await request.get_data(cache=True)
        if scope.cancelled_caught:
            response.headers["Connection"] = "close"
    except HTTPException:  # chunked body over the limit
        response.headers["Connection"] = "close"


def scale_bounds(settings: Any) -> tuple[int, int]:
    """The range `POST /scale` accepts: DEFAULT_CONTAINER to MAX_CONTAINERS."""
    lo = int(getattr(settings, "default_container", 0) or 0)
    hi = int(getattr(settings, "max_containers", lo))
    return min(lo, hi), hi


def _as_float(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _allow_origin_value(settings: Any, origin: str, method: str) -> str:
    if method.upper() in READ_METHODS and "*" in read_origins(settings):
        return "*"
    return origin


class _QueueFeed:
    """ASGI middleware in front of Quart: the compat ``/ws`` feed, served raw.

    The feed is the hot path (every tick × every subscriber), so it speaks ASGI
    directly instead of going through Quart's WebSocket machinery (a memory
    channel, a nursery and two signals per connection, a signal per message):
    that is a quarter of the server's CPU per message at 1,000 subscribers.
    Everything else goes to Quart.
    """

    def __init__(self, app: ASGIFramework, state: WebState) -> None:
        self.app = app
        self.state = state

    async def __call__(self, scope: Scope, receive: ASGIReceiveCallable, send: ASGISendCallable) -> None:
        if scope["type"] == "websocket" and scope.get("path") == "/ws":
            await _ws_feed(self.state, receive, send)
        else:
            await self.app(scope, receive, send)


async def _ws_feed(state: WebState, receive: Any, send: Any) -> None:
    """Compat `/ws`: the queue on connect and after every rebuild; 1001 at shutdown."""
    message = await receive()
    if message["type"] != "websocket.connect":
        return
    # Accept even when shutting down: a close before the handshake is an HTTP 403.
    await send({"type": "websocket.accept"})
    hub = state.agent.hub
    state.ws_clients += 1
    try:
        async with trio.open_nursery() as nursery:
            # Read (and drop) what the peer sends, so its frames never back up;
            # when it goes away, stop at once (there is nobody to say 1001 to).
            nursery.start_soon(_until_disconnect, receive, nursery.cancel_scope)
            subscription = hub.subscribe()
            while not (state.stopping or hub.closed):
                snapshot = None
                with trio.CancelScope() as waiting:
                    state._waiters.add(waiting)
                    try:
                        snapshot = await subscription.__anext__()
                    except StopAsyncIteration:
                        pass
                    finally:
                        state._waiters.discard(waiting)
                if snapshot is None:
                    break  # hub closed or server stopping
                # Never cancelled by `stop()`: a frame is not cut in half.
                await send({"type": "websocket.send", "text": state._queue_text.get(snapshot)})
            await send({"type": "websocket.close", "code": 1001, "reason": "server shutting down"})
            nursery.cancel_scope.cancel()
    finally:
        state.ws_clients -= 1


async def _until_disconnect(receive: Any, scope: trio.CancelScope) -> None:
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            scope.cancel()
            return


# Re-exported so `from agent.interfaces.web.app import serve` works as the brief says; the
# Hypercorn plumbing is in server.py.
from .server import ServerInfo, serve  # noqa: E402
