"""What every request and response goes through: CORS, security headers, the body.

* **CORS** (the policy is `agent.interfaces.web.security`'s): a preflight is
  answered here — 204 with the allowed methods and headers, or 403 as JSON when
  the origin may not do what it asks; a cross-origin answer carries
  ``Access-Control-Allow-Origin`` when the origin may read it (``*`` when any
  may). Quart-CORS was considered and not used: it has one origin list per route
  or app, where this API allows reads from one list and writes from another on
  the same path, and it does not refuse a preflight (it leaves the headers out).
* **Security headers** on every answer, and a Content-Security-Policy on HTML.
* **The rest of the body** is read before answering (see `_consume_body`).
"""
from __future__ import annotations

import trio
from quart import Quart, Response, request
from werkzeug.exceptions import HTTPException

from agent.core.settings import Settings
from agent.service.facade import AgentFacade
from .inputs import MAX_BODY
from .security import READ_METHODS, origin_may_read, origin_may_write, read_origins
from .views import json_response

__all__ = ["install"]

_CSP = (
    "default-src 'self'; connect-src 'self' ws: wss:; img-src 'self' data:; "
    "style-src 'self'; script-src 'self'; frame-ancestors 'none'; base-uri 'none'"
)


def install(app: Quart, agent: AgentFacade) -> None:
    """Add the hooks to `app`; they read the CORS settings from `agent` on each request."""

    @app.before_request
    async def _preflight() -> Response | None:
        return preflight(agent.settings)

    @app.after_request
    async def _decorate(response: Response) -> Response:
        await _consume_body(response)
        _cors_headers(agent.settings, response)
        _security_headers(response)
        return response


def preflight(settings: Settings) -> Response | None:
    """The answer to a CORS preflight; None for anything else (Quart answers a plain OPTIONS)."""
    if request.method != "OPTIONS":
        return None
    origin = request.headers.get("Origin")
    wanted = request.headers.get("Access-Control-Request-Method")
    if origin is None or wanted is None:
        return None
    wanted = wanted.upper()
    if wanted in READ_METHODS and origin_may_read(settings, origin):
        allow_methods, allow_headers = "GET, HEAD", "Content-Type"
    elif wanted not in READ_METHODS and origin_may_write(settings, origin):
        allow_methods, allow_headers = "GET, HEAD, PUT, POST", "Authorization, Content-Type"
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


def _cors_headers(settings: Settings, response: Response) -> None:
    origin = request.headers.get("Origin")
    if origin is None or request.method == "OPTIONS":
        return
    method = request.method.upper()
    if (method in READ_METHODS and origin_may_read(settings, origin)) or (
        method not in READ_METHODS and origin_may_write(settings, origin)
    ):
        response.headers["Access-Control-Allow-Origin"] = _allow_origin_value(settings, origin, method)
    response.vary.add("Origin")


def _allow_origin_value(settings: Settings, origin: str, method: str) -> str:
    if method.upper() in READ_METHODS and "*" in read_origins(settings):
        return "*"
    return origin


def _security_headers(response: Response) -> None:
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "no-referrer")
    if response.mimetype == "text/html":
        response.headers.setdefault("Content-Security-Policy", _CSP)
        response.headers.setdefault("X-Frame-Options", "DENY")


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
