"""The HTTP/WebSocket face of the agent, assembled: compat `/stats` and `/ws`, the
management API, health, metrics, OpenAPI and the dashboard.

`create_app(agent)` puts the parts together, each in its own module:

* `routes` — the endpoints, each with its declaration (`router`, `inputs`), from
  which `openapi` builds the document;
* `views` — the JSON the endpoints send;
* `feed` — the compat WebSocket feed, served in front of Quart;
* `errors` — every failure as ``{"error": code, "detail": sentence}``;
* `hooks` and `security` — CORS, the token, security headers.

Serving it (Hypercorn, both ports, shutdown) is `agent.interfaces.web.server`'s.
"""
from __future__ import annotations

from pathlib import Path

from quart_trio import QuartTrio

from agent.service.facade import AgentFacade
from . import errors, feed, hooks
from .inputs import MAX_BODY
from .routes import router

__all__ = ["create_app"]

STATIC_DIR = Path(__file__).with_name("static")


def create_app(agent: AgentFacade) -> QuartTrio:
    """The Quart-Trio app over `agent`'s facade."""
    app = QuartTrio(__name__, static_folder=str(STATIC_DIR), static_url_path="/static")
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY
    app.config["PROVIDE_AUTOMATIC_OPTIONS"] = True
    app.config["RESPONSE_TIMEOUT"] = 60
    feed.install(app, agent.hub)
    hooks.install(app, agent)
    errors.install(app)
    router.register(app, agent)
    return app
