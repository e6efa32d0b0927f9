"""Routes declared once: the handler, its path and method, and its `Operation`.

A `Router` collects handlers with their declarations; `register` adds them to an
app for one agent. The declaration is not only documentation: the view that
`register` builds checks the token when the operation says so, reads every
declared parameter and the declared body, and hands them to the handler as
arguments — a handler has no other way to get at its input. The operation is
attached to the view, where `agent.interfaces.web.openapi.build` finds it.
"""
from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from quart import Quart, Response

from agent.service.facade import AgentFacade
from .openapi import Operation, attach
from .security import require_token

__all__ = ["Router"]

Handler = Callable[..., Awaitable[Response]]


@dataclass(frozen=True)
class _Route:
    method: str
    path: str
    handler: Handler
    op: Operation


class Router:
    """The app's routes, in the order they were declared."""

    def __init__(self) -> None:
        self.routes: list[_Route] = []

    def route(self, method: str, path: str, op: Operation) -> Callable[[Handler], Handler]:
        """Declare `handler(agent, *params, [body])` as `method path`, described by `op`."""
        def decorator(handler: Handler) -> Handler:
            self.routes.append(_Route(method, path, handler, op))
            return handler

        return decorator

    def get(self, path: str, op: Operation) -> Callable[[Handler], Handler]:
        return self.route("GET", path, op)

    def put(self, path: str, op: Operation) -> Callable[[Handler], Handler]:
        return self.route("PUT", path, op)

    def post(self, path: str, op: Operation) -> Callable[[Handler], Handler]:
        return self.route("POST", path, op)

    def register(self, app: Quart, agent: AgentFacade) -> None:
        """Add every route to `app`, its handler bound to `agent`."""
        for route in self.routes:
            view = _view(route, agent)
            attach(view, route.op)
            app.add_url_rule(route.path, route.handler.__name__, view, methods=[route.method])


def _view(route: _Route, agent: AgentFacade) -> Callable[..., Awaitable[Response]]:
    op, handler = route.op, route.handler
    body = op.body

    async def view(**path: str) -> Response:
        if op.auth is not None:
            require_token(agent.settings)
        args = [param.read(path) for param in op.params]
        if body is not None:
            args.append(await body.read(agent.settings))
        return await handler(agent, *args)

    view.__name__ = handler.__name__
    view.__doc__ = handler.__doc__
    return view
