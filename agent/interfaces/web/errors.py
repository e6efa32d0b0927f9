"""The error mapping: every failure becomes JSON ``{"error": code, "detail": sentence}``.

Statuses: 400 unparseable JSON, 401/403 token, 404 unknown container or path,
405 method, 409 a change sent to a follower (``leader`` names the leader's URL),
413 body too large, 415 not JSON, 422 well-formed but invalid (wrong type, out of
range, unknown or read-only setting), 426 plain GET on the feed, 503 engine or
Redis unavailable, 500 a bug (logged, no details sent).
The web layer raises `ApiError`; the agent's own errors (`agent.core.errors`) and
Quart's HTTP errors are translated here, in one place.
"""
from __future__ import annotations

import logging
import re
from typing import Any

from quart import Quart, Response, request
from werkzeug.exceptions import HTTPException, MethodNotAllowed

from agent.core.errors import (
    AgentError,
    ConfigError,
    ContainerNotFound,
    EngineError,
    NotLeader,
    NotOwnedError,
    StoreError,
)
from .openapi import Named, Reply
from .views import json_response

__all__ = ["ApiError", "ERROR", "error_reply", "NOT_LEADER", "UNAVAILABLE", "install"]

log = logging.getLogger("agent.interfaces.web")

ERROR = Named("Error", {
    "type": "object",
    "required": ["error", "detail"],
    "properties": {
        "error": {"type": "string", "description": "a stable error code"},
        "detail": {"type": "string", "description": "a sentence for people"},
        "variable": {"type": "string", "description": "the offending setting or field"},
    },
})


def error_reply(description: str) -> Reply:
    """A documented error answer (its body is an `ERROR`)."""
    return Reply(description, ERROR)


UNAVAILABLE = {503: error_reply("the container engine or Redis is unavailable")}

NOT_LEADER_ERROR = Named("NotLeaderError", {
    "type": "object",
    "required": ["error", "detail", "leader"],
    "properties": {
        "error": {"type": "string", "enum": ["not_leader"]},
        "detail": {"type": "string", "description": "a sentence for people"},
        "leader": {"type": "string", "nullable": True,
                   "description": "the leader's API URL: send the request there (null while "
                   "no agent leads)"},
        "leader_id": {"type": "string", "nullable": True, "description": "the leader's agent id"},
    },
})

NOT_LEADER = {409: Reply("this agent follows another that leads the pool; `leader` is "
                         "where to send changes", NOT_LEADER_ERROR)}


class ApiError(Exception):
    """An error answer: HTTP `status` with body ``{"error": code, "detail": ...}``."""

    def __init__(
        self,
        status: int,
        error: str,
        detail: str,
        *,
        headers: dict[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(f"{status} {error}: {detail}")
        self.status = status
        self.error = error
        self.detail = detail
        self.headers = headers or {}
        self.extra = extra

    def body(self) -> dict[str, Any]:
        return {"error": self.error, "detail": self.detail, **self.extra}


async def _api_error(exc: ApiError) -> Response:
    return json_response(exc.body(), exc.status, exc.headers)


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


async def _config_error(exc: ConfigError) -> Response:
    return json_response({"error": "invalid_value", "detail": str(exc), "variable": exc.variable}, 422)


async def _not_found(exc: ContainerNotFound) -> Response:
    return json_response({"error": "not_found", "detail": str(exc) or "no such container"}, 404)


async def _not_owned(exc: NotOwnedError) -> Response:
    return json_response({"error": "not_found", "detail": f"not a container of this agent: {exc}"}, 404)


async def _unavailable(exc: AgentError) -> Response:
    which = "engine" if isinstance(exc, EngineError) else "store"
    return json_response(
        {"error": "unavailable", "detail": f"{which} unavailable: {exc}"}, 503, {"Retry-After": "5"}
    )


async def _not_leader(exc: NotLeader) -> Response:
    return json_response({"error": "not_leader", "detail": str(exc), "leader": exc.leader_url,
                          "leader_id": exc.leader_id}, 409)


async def _crash(exc: Exception) -> Response:
    log.exception("unhandled error in %s %s", request.method, request.path)
    return json_response({"error": "internal_error", "detail": "internal error, see the agent's log"}, 500)


def install(app: Quart) -> None:
    """Register the mapping on `app` (Quart picks the most specific class)."""
    app.register_error_handler(ApiError, _api_error)
    app.register_error_handler(HTTPException, _http_error)
    app.register_error_handler(ConfigError, _config_error)
    app.register_error_handler(ContainerNotFound, _not_found)
    app.register_error_handler(NotOwnedError, _not_owned)
    app.register_error_handler(NotLeader, _not_leader)
    app.register_error_handler(EngineError, _unavailable)
    app.register_error_handler(StoreError, _unavailable)
    app.register_error_handler(Exception, _crash)
