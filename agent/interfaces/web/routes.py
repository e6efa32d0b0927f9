"""The routes of the HTTP API, each with its declaration.

The handlers only ever talk to the agent through its facade
(`agent.service.facade.AgentFacade`): they read the snapshot, the settings and
the history, and ask for changes with ``update_config``, ``request_scale`` and
``request_sundown``. None can name an image, pass a command or address a
container the agent does not own: no declared input could carry such a request.
The JSON they send is shaped in `agent.interfaces.web.views`. On a follower the
three requests are refused by the agent (`NotLeader`: 409 naming the leader's URL);
the reads answer from the pool as the leader shares it.
"""
from __future__ import annotations

from quart import Response, current_app

from agent.core.errors import AgentError
from agent.service.facade import AgentFacade
from agent.service.metrics import CONTENT_TYPE
from . import openapi
from .errors import NOT_LEADER, UNAVAILABLE, ApiError, error_reply
from .feed import feed_of
from .inputs import CONFIG_PATCH, NAME, SCALE_BODY, IntQuery, TokenQuery
from .openapi import Operation, Reply
from .router import Router
from .security import AUTH_ERRORS
from .views import (
    BALANCER,
    CONFIG,
    CONTAINER,
    DECISION,
    EVENT_PAGE,
    HEALTH,
    HISTORY,
    QUEUE_STATUS,
    READY,
    STATS,
    balancer_json,
    config_json,
    container_json,
    events_json,
    health_json,
    history_json,
    json_response,
    queue_status_json,
    ready_json,
    stats_json,
)

__all__ = ["router"]

router = Router()

EVENTS_MAX_LIMIT = 500

# --------------------------------------------------------------------------- compat


@router.get("/stats", Operation(
    "getStats", "Per-container scores (compat with the prototype); CORS enabled",
    {200: Reply("one object per container", STATS)},
))
async def stats(agent: AgentFacade) -> Response:
    return json_response(stats_json(agent.snapshot))


@router.get("/ws", Operation(
    "queueFeed", "WebSocket feed of the queue (compat)",
    {101: Reply("switching to the WebSocket protocol"), 426: error_reply("not a WebSocket upgrade request")},
    description="Upgrade to a WebSocket: one text message holding the queue (a JSON array of "
    "QueueItem) on connect and after every queue rebuild; close code 1001 when the agent "
    "shuts down. Also served on the WebSocket port at any path. A plain HTTP GET is answered 426.",
))
async def ws_plain(agent: AgentFacade) -> Response:
    raise ApiError(
        426, "upgrade_required", "/ws is a WebSocket endpoint; connect with a WebSocket client",
        headers={"Upgrade": "websocket"},
    )


# --------------------------------------------------------------------------- read API


@router.get("/queue", Operation(
    "getQueue", "The current queue with weights, addresses and ports",
    {200: Reply("the queue and the counts", QUEUE_STATUS)},
))
async def queue(agent: AgentFacade) -> Response:
    return json_response(queue_status_json(agent.snapshot))


@router.get("/containers/<name>", Operation(
    "getContainer", "One container's scores, category, weight and engine facts",
    {200: Reply("the container", CONTAINER)},
    params=(NAME,),
))
async def container(agent: AgentFacade, name: str) -> Response:
    found = container_json(agent.snapshot, name)
    if found is None:
        raise ApiError(404, "not_found", f"no container named {name!r}")
    return json_response(found)


@router.get("/events", Operation(
    "getEvents", "The decision ledger, newest first, paginated",
    {200: Reply("a page of events", EVENT_PAGE), **UNAVAILABLE},
    params=(
        IntQuery("limit", default=50, lo=1, hi=EVENTS_MAX_LIMIT),
        TokenQuery(
            "before", r"^[0-9]{1,20}(-[0-9]{1,20})?$", "an event id such as 1700000000000-0",
            "return events older than this id (a Redis stream id such as 1700000000000-0)",
        ),
        TokenQuery(
            "kind", r"^[A-Za-z0-9_.:-]{1,64}$", "1 to 64 characters among letters, digits and _.:-",
            "only events of this kind",
        ),
    ),
))
async def events(agent: AgentFacade, limit: int, before: str | None, kind: str | None) -> Response:
    try:
        items = await agent.events(limit=limit, before=before, kind=kind)
    except (ValueError, TypeError) as exc:
        raise ApiError(422, "invalid_query", str(exc)) from None
    return json_response(events_json(items, limit))


@router.get("/history", Operation(
    "getHistory", "Desired and running counts over time (bounded, oldest first)",
    {200: Reply("the points", HISTORY)},
))
async def history(agent: AgentFacade) -> Response:
    return json_response(history_json(agent.history))


@router.get("/balancer", Operation(
    "getBalancer", "The load balancer's state: servers, weights sent, last sync, errors",
    {200: Reply("the balancer (enabled false with BALANCER=none)", BALANCER)},
    description="Read-only: nothing in the API changes the balancer directly; it follows "
    "the pool, which only the token-protected requests change.",
))
async def balancer(agent: AgentFacade) -> Response:
    return json_response(balancer_json(agent.balancer_state()))


@router.get("/config", Operation(
    "getConfig", "The effective configuration (secrets redacted)",
    {200: Reply("the configuration", CONFIG)},
))
async def get_config(agent: AgentFacade) -> Response:
    return json_response(config_json(agent.settings))


# --------------------------------------------------------------------------- mutations


@router.put("/config", Operation(
    "updateConfig", "Change settings at run time (partial update)",
    {200: Reply("the new effective configuration", CONFIG), **NOT_LEADER, **UNAVAILABLE},
    body=CONFIG_PATCH, auth=AUTH_ERRORS,
))
async def put_config(agent: AgentFacade, patch: dict[str, object]) -> Response:
    return json_response(config_json(await agent.update_config(patch)))


@router.post("/scale", Operation(
    "scale", "Run exactly `count` containers",
    {200: Reply("the decision taken", DECISION), **NOT_LEADER, **UNAVAILABLE},
    body=SCALE_BODY, auth=AUTH_ERRORS,
))
async def scale(agent: AgentFacade, count: int) -> Response:
    return json_response(await agent.request_scale(count))


@router.post("/containers/<name>/sundown", Operation(
    "sundownContainer", "Drain one container: mark it SUNDOWN; it is removed once drained",
    {
        200: Reply("the decision taken", DECISION),
        422: error_reply("the request would break a bound (e.g. below DEFAULT_CONTAINER)"),
        **NOT_LEADER,
        **UNAVAILABLE,
    },
    params=(NAME,), auth=AUTH_ERRORS,
))
async def sundown(agent: AgentFacade, name: str) -> Response:
    return json_response(await agent.request_sundown(name))


# --------------------------------------------------------------------------- operations


@router.get("/healthz", Operation(
    "health", "Liveness: the tick loop is running; this agent's role (leader or follower)",
    {200: Reply("alive", HEALTH), 503: Reply("the loop is stuck or stopped", HEALTH)},
))
async def healthz(agent: AgentFacade) -> Response:
    body, status = health_json(agent.health(), agent.lease)
    return json_response(body, status)


@router.get("/readyz", Operation(
    "ready", "Readiness: the engine and Redis answer",
    {200: Reply("ready", READY), 503: Reply("not ready; `detail` says why", READY)},
))
async def readyz(agent: AgentFacade) -> Response:
    try:
        ok, checks = await agent.readiness()
    except AgentError as exc:
        ok, checks = False, {"agent": str(exc)}
    body, status = ready_json(ok, checks)
    return json_response(body, status, {"Retry-After": "5"} if status != 200 else None)


@router.get("/metrics", Operation(
    "metrics", "Prometheus metrics (text exposition format)",
    {200: Reply("metrics", {"type": "string"}, "text/plain")},
))
async def metrics(agent: AgentFacade) -> Response:
    m = agent.metrics
    m.record_snapshot(agent.snapshot)
    m.record_role(agent.lease.role)
    m.websocket_clients.set(feed_of(current_app).clients)
    return Response(m.render(), status=200, headers={"Content-Type": CONTENT_TYPE})


@router.get("/openapi.json", Operation(
    "openapi", "This document", {200: Reply("OpenAPI 3 document", {"type": "object"})},
))
async def openapi_json(agent: AgentFacade) -> Response:
    return json_response(openapi.build(current_app, agent.settings))


@router.get("/", Operation(
    "dashboard", "The live dashboard (HTML)",
    {200: Reply("the page", {"type": "string"}, "text/html")},
))
async def dashboard(agent: AgentFacade) -> Response:
    response = await current_app.send_static_file("index.html")
    response.headers["Cache-Control"] = "no-cache"
    return response
