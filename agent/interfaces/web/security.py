"""Bearer-token checks and the CORS policy of the HTTP API.

Two rules, kept apart from the routes so they can be read (and tested) alone:

* **Writes need the token.** Every mutating endpoint requires
  ``Authorization: Bearer <token>`` equal to ``settings.api_token``, compared in
  constant time (`hmac.compare_digest`). No header, or not a Bearer one ⇒ 401;
  a wrong token ⇒ 403; no token configured at all ⇒ 403 (fail closed).
* **Any origin may read, none may write** (by default). Cross-origin ``GET`` /
  ``HEAD`` responses carry ``Access-Control-Allow-Origin`` for the origins in
  ``settings.cors_allow_origins`` (``"*"`` = any, the default). Preflights for
  ``PUT``/``POST`` are refused unless the origin is listed in the optional
  ``settings.cors_allow_write_origins`` (empty by default), and a write that
  carries a foreign ``Origin`` header is refused server-side too. A Bearer token
  cannot be sent by a browser without a preflight, so the token alone already
  stops cross-site request forgery; the origin checks are a second fence.
"""
from __future__ import annotations

import hmac
from collections.abc import Iterable
from typing import Any

from quart import request

from .errors import ApiError, error_reply

__all__ = [
    "AUTH_ERRORS",
    "api_token",
    "READ_METHODS",
    "check_bearer",
    "read_origins",
    "write_origins",
    "origin_may_read",
    "origin_may_write",
    "require_token",
]

READ_METHODS = frozenset({"GET", "HEAD"})

#: What `require_token` answers, for the document of every route that calls it.
AUTH_ERRORS = {
    401: error_reply("missing or malformed `Authorization: Bearer <token>` header"),
    403: error_reply("wrong token, no token configured, or a cross-origin write"),
}


def _token_text(token: Any) -> str | None:
    if token is None:
        return None
    getter = getattr(token, "get_secret_value", None)
    text = getter() if callable(getter) else str(token)
    return text or None


def api_token(settings: Any) -> str | None:
    """The configured token: ``AGENT_API_TOKEN`` (``settings.agent_api_token``)."""
    for attr in ("agent_api_token", "api_token"):
        token = _token_text(getattr(settings, attr, None))
        if token is not None:
            return token
    return None


def check_bearer(authorization: str | None, expected: Any) -> None:
    """Raise `ApiError` (401/403) unless `authorization` carries the expected token."""
    want = _token_text(expected)
    if want is None:
        raise ApiError(
            403, "forbidden", "mutations are disabled: the agent has no API token configured"
        )
    challenge = {"WWW-Authenticate": 'Bearer realm="deployment-agent"'}
    if not authorization:
        raise ApiError(
            401, "unauthorized", "missing 'Authorization: Bearer <token>' header", headers=challenge
        )
    scheme, _, value = authorization.strip().partition(" ")
    value = value.strip()
    if scheme.lower() != "bearer" or not value:
        raise ApiError(
            401, "unauthorized", "expected 'Authorization: Bearer <token>'", headers=challenge
        )
    # Compare bytes: compare_digest refuses non-ASCII str, and a token with odd
    # characters must be "wrong", not a crash.
    if not hmac.compare_digest(
        value.encode("utf-8", "surrogateescape"), want.encode("utf-8", "surrogateescape")
    ):
        raise ApiError(403, "forbidden", "invalid API token")


def _origins(value: Any, default: tuple[str, ...]) -> tuple[str, ...]:
    if value is None:
        return default
    if isinstance(value, str):
        items: Iterable[str] = value.split(",")
    else:
        items = value
    return tuple(o.strip().rstrip("/") for o in items if o and o.strip())


def read_origins(settings: Any) -> tuple[str, ...]:
    """Origins allowed to read (``("*",)`` unless configured)."""
    return _origins(getattr(settings, "cors_allow_origins", None), ("*",))


def write_origins(settings: Any) -> tuple[str, ...]:
    """Origins allowed to write from a browser (none unless configured)."""
    return _origins(getattr(settings, "cors_allow_write_origins", None), ())


def origin_may_read(settings: Any, origin: str) -> bool:
    allowed = read_origins(settings)
    return "*" in allowed or origin.rstrip("/") in allowed


def origin_may_write(settings: Any, origin: str) -> bool:
    allowed = write_origins(settings)
    return "*" in allowed or origin.rstrip("/") in allowed


def require_token(settings: Any) -> None:
    """The gate of every mutating route: the Bearer token, and no foreign `Origin`.

    A write from a page of this very server (the dashboard) is not cross-origin;
    any other origin must be in CORS_ALLOW_WRITE_ORIGINS.
    """
    check_bearer(request.headers.get("Authorization"), api_token(settings))
    origin = request.headers.get("Origin")
    if origin is not None and not origin_may_write(settings, origin):
        own = f"{request.scheme}://{request.host}"
        if origin.rstrip("/") != own:
            raise ApiError(403, "forbidden", f"cross-origin writes from {origin} are not allowed")
