"""The OpenAPI 3 document, assembled from the routes' own declarations.

Every route of the app carries an `Operation` (attached by `agent.interfaces.web.router`):
its id, summary, parameters, request body, whether it needs the token, and its
replies. The parameters and bodies are the very objects that parse the request,
and the token check and the error replies they imply are added from the same
declaration, so the document cannot promise what the code does not do.
`build(app, settings)` walks the app's URL map; a route without a declaration is
an error, not a gap in the document.

Schemas are plain JSON-schema dicts in which a `Named` schema may appear anywhere:
`build` writes it as a ``$ref`` and its definition once under
``components/schemas``. A `Named` schema may be a function of the settings, for
the parts that follow the configuration (the range of ``POST /scale``'s count,
the fields of ``/config``).
"""
from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from quart import Quart

from agent import __version__
from agent.core.settings import Settings

__all__ = ["Named", "Reply", "Parameter", "Body", "Operation", "operation_of", "build"]

Schema = Mapping[str, Any]
HTTP_METHODS = ("get", "put", "post", "delete", "patch")


@dataclass(frozen=True)
class Named:
    """A schema with a name in ``components/schemas``; `schema` may depend on the settings."""

    name: str
    schema: Schema | Callable[[Settings], Schema]

    def resolve(self, settings: Settings) -> Schema:
        return self.schema(settings) if callable(self.schema) else self.schema


@dataclass(frozen=True)
class Reply:
    """One documented answer: a sentence and the body's schema (None: no body)."""

    description: str
    schema: Schema | Named | None = None
    media: str = "application/json"


class Parameter(Protocol):
    """A path or query parameter that reads itself from the request and documents itself."""

    @property
    def name(self) -> str:
        """Its name in the path or the query string."""

    def spec(self) -> dict[str, Any]:
        """The OpenAPI parameter object."""

    @property
    def errors(self) -> Mapping[int, Reply]:
        """The answers a bad value gets."""

    def read(self, path: Mapping[str, str]) -> Any:
        """The parsed value, or an `ApiError`."""


class Body(Protocol):
    """A JSON request body that parses itself and documents itself."""

    @property
    def schema(self) -> Named:
        """Its schema, by name in the document."""

    @property
    def errors(self) -> Mapping[int, Reply]:
        """The answers a bad body gets."""

    async def read(self, settings: Settings) -> Any:
        """The parsed body, or an `ApiError` (`ConfigError` for a bad value)."""


@dataclass(frozen=True)
class Operation:
    """The declaration of one route: what the document says about it.

    `replies` are the route's own answers; those of its parameters, its body and
    the token check are implied. `auth` is the token check's answers
    (`security.AUTH_ERRORS`): given, the route needs the token — the router
    checks it before anything else, and the document says so.
    """

    id: str
    summary: str
    replies: Mapping[int, Reply]
    description: str | None = None
    params: tuple[Parameter, ...] = ()
    body: Body | None = None
    auth: Mapping[int, Reply] | None = None  # the token check's answers, when it needs the token

    def all_replies(self) -> dict[int, Reply]:
        """The declared replies, plus those of the token check, the parameters and the body."""
        implied: dict[int, Reply] = {}
        for param in self.params:
            implied.update(param.errors)
        if self.body is not None:
            implied.update(self.body.errors)
        if self.auth is not None:
            implied.update(self.auth)
        return {**implied, **self.replies}


_ATTRIBUTE = "openapi_operation"


def attach(view: Callable[..., Any], op: Operation) -> None:
    setattr(view, _ATTRIBUTE, op)


def operation_of(view: Callable[..., Any]) -> Operation | None:
    """The declaration attached to a view function, if any."""
    op = getattr(view, _ATTRIBUTE, None)
    return op if isinstance(op, Operation) else None


# --------------------------------------------------------------------------- building


class _Components:
    """Collects the `Named` schemas met while writing the paths."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.schemas: dict[str, Any] = {}
        self._seen: dict[str, Named] = {}

    def ref(self, named: Named) -> dict[str, str]:
        known = self._seen.get(named.name)
        if known is None:
            self._seen[named.name] = named
            self.schemas[named.name] = {}  # placeholder: a schema may refer to itself
            self.schemas[named.name] = self.inline(named.resolve(self.settings))
        elif known is not named:
            raise ValueError(f"two different schemas are named {named.name!r}")
        return {"$ref": f"#/components/schemas/{named.name}"}

    def inline(self, node: Any) -> Any:
        if isinstance(node, Named):
            return self.ref(node)
        if isinstance(node, Mapping):
            return {str(k): self.inline(v) for k, v in node.items()}
        if isinstance(node, (list, tuple)):
            return [self.inline(v) for v in node]
        return node


def _reply(reply: Reply, components: _Components) -> dict[str, Any]:
    out: dict[str, Any] = {"description": reply.description}
    if reply.schema is not None:
        out["content"] = {reply.media: {"schema": components.inline(reply.schema)}}
    return out


def _operation(op: Operation, components: _Components) -> dict[str, Any]:
    out: dict[str, Any] = {"operationId": op.id, "summary": op.summary}
    if op.description:
        out["description"] = op.description
    if op.auth is not None:
        out["security"] = [{"bearerAuth": []}]
    if op.params:
        out["parameters"] = [p.spec() for p in op.params]
    if op.body is not None:
        schema = components.ref(op.body.schema)
        out["requestBody"] = {"required": True, "content": {"application/json": {"schema": schema}}}
    replies = op.all_replies()
    out["responses"] = {str(code): _reply(replies[code], components) for code in sorted(replies)}
    return out


def _routes(app: Quart) -> Iterator[tuple[str, str, Operation]]:
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static":
            continue
        op = operation_of(app.view_functions[rule.endpoint])
        if op is None:
            raise LookupError(f"route {rule.rule} ({rule.endpoint}) has no OpenAPI declaration")
        path = rule.rule
        for argument in rule.arguments:
            path = path.replace(f"<{argument}>", "{" + argument + "}")
        for method in HTTP_METHODS:
            if method.upper() in (rule.methods or ()):
                yield path, method, op


def build(app: Quart, settings: Settings) -> dict[str, Any]:
    """The OpenAPI document of `app`'s routes, for an agent running with `settings`."""
    components = _Components(settings)
    paths: dict[str, dict[str, Any]] = {}
    for path, method, op in _routes(app):
        paths.setdefault(path, {})[method] = _operation(op, components)
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "deployment-agent",
            "version": __version__,
            "description": "Keeps a pool of Docker containers right-sized and streams a "
            "score-ordered queue to load balancers. Errors are JSON "
            "`{\"error\": code, \"detail\": sentence}`. Mutating endpoints need "
            "`Authorization: Bearer <token>`.",
        },
        "paths": paths,
        "components": {
            "schemas": components.schemas,
            "securitySchemes": {"bearerAuth": {"type": "http", "scheme": "bearer"}},
        },
    }
