"""The agent's web layer: compat `/stats` and `/ws`, management API, dashboard.

    app = create_app(agent)                 # a Quart-Trio app over the agent's facade
    info = await nursery.start(serve, agent)  # Hypercorn (Trio worker), both ports
    info.http_url, info.ws_url

See docs/api.md for the endpoints and `GET /openapi.json` for the schema.
Modules import one way: server → app → routes → (router, inputs, feed, hooks,
security, errors) → views → openapi.
"""
from .app import create_app
from .server import ServerInfo, serve

__all__ = ["create_app", "serve", "ServerInfo"]
