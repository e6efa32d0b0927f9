"""The OpenAPI 3 description of the HTTP API, written as data.

`build(settings)` returns the document served at ``GET /openapi.json``. It is
plain data except for two pieces taken from the effective settings, so that
the document is exact rather than approximate:

* the range of ``POST /scale``'s ``count`` (DEFAULT_CONTAINER..MAX_CONTAINERS);
* the fields of ``GET/PUT /config`` — one property per key of
  ``Settings.as_dict()``, typed after its current value; the writable ones
  (all but `READ_ONLY_SETTINGS`) form the ``PUT`` body, which rejects any other
  key. `config_value_ok` applies the same typing to a request, so the server
  accepts exactly what the document says.
"""
from __future__ import annotations

import math
from typing import Any

__all__ = ["build", "config_value_schema", "config_value_ok", "CATEGORIES"]

CATEGORIES = ["INIT", "LU", "MU", "HU", "SUNDOWN"]

_NUM = {"type": "number", "nullable": True}
_NAME = {
    "type": "string",
    "pattern": "^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$",
    "description": "container name (its DNS name on the pool's network)",
}
_KIND = {"type": "string", "pattern": "^[A-Za-z0-9_.:-]{1,64}$"}
_EVENT_ID = {"type": "string", "pattern": "^[0-9]{1,20}(-[0-9]{1,20})?$"}


def config_value_schema(value: Any) -> dict[str, Any]:
    """JSON schema of a setting, inferred from its current (JSON-ready) value."""
    if isinstance(value, bool):
        return {"type": "boolean"}
    if isinstance(value, int):
        return {"type": "integer"}
    if isinstance(value, float):
        return {"type": "number"}
    if isinstance(value, str):
        return {"type": "string"}
    if isinstance(value, (list, tuple)):
        return {"type": "array", "items": {"type": "string"}}
    # None (unset optional setting): any scalar, or null.
    return {
        "nullable": True,
        "anyOf": [{"type": "string"}, {"type": "number"}, {"type": "boolean"}],
    }


def config_value_ok(new: Any, current: Any) -> bool:
    """Whether `new` has the type `config_value_schema(current)` allows."""
    if isinstance(current, bool):
        return isinstance(new, bool)
    if isinstance(current, int):
        return isinstance(new, int) and not isinstance(new, bool)
    if isinstance(current, float):
        return isinstance(new, (int, float)) and not isinstance(new, bool) and math.isfinite(new)
    if isinstance(current, str):
        return isinstance(new, str)
    if isinstance(current, (list, tuple)):
        return isinstance(new, list) and all(isinstance(v, str) for v in new)
    if isinstance(new, float):
        return math.isfinite(new)
    return new is None or isinstance(new, (str, int, float, bool))


def _error(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }


def _json(description: str, ref_or_schema: str | dict[str, Any]) -> dict[str, Any]:
    schema = {"$ref": f"#/components/schemas/{ref_or_schema}"} if isinstance(ref_or_schema, str) else ref_or_schema
    return {"description": description, "content": {"application/json": {"schema": schema}}}


_AUTH_ERRORS = {
    "401": _error("missing or malformed `Authorization: Bearer <token>` header"),
    "403": _error("wrong token, no token configured, or a cross-origin write"),
}
_BODY_ERRORS = {
    "400": _error("the body is not valid JSON"),
    "413": _error("the body is larger than 64 KiB"),
    "415": _error("the body is not `application/json`"),
    "422": _error("well-formed JSON that fails validation (type, range, unknown field)"),
}
_UNAVAILABLE = {"503": _error("the container engine or Redis is unavailable")}


def build(settings: Any) -> dict[str, Any]:
    """The OpenAPI document for an agent running with `settings`."""
    from .app import _clean, scale_bounds, writable_settings

    lo, hi = scale_bounds(settings)
    current = _clean(settings.as_dict(redact=True))
    config_props = {str(k): config_value_schema(v) for k, v in current.items()}
    writable = writable_settings(current)
    patch_props = {k: s for k, s in config_props.items() if k in writable}

    schemas: dict[str, Any] = {
        "Error": {
            "type": "object",
            "required": ["error", "detail"],
            "properties": {
                "error": {"type": "string", "description": "a stable error code"},
                "detail": {"type": "string", "description": "a sentence for people"},
                "variable": {"type": "string", "description": "the offending setting or field"},
            },
        },
        "Category": {"type": "string", "enum": CATEGORIES},
        "QueueItem": {
            "type": "object",
            "description": "One container in the queue. `dns_name`, `score` and "
            "`utilization_category` are the compat fields; the others are additions.",
            "required": ["dns_name", "score", "utilization_category", "weight"],
            "properties": {
                "dns_name": {"type": "string"},
                "score": {**_NUM, "minimum": 0, "maximum": 100},
                "utilization_category": {"$ref": "#/components/schemas/Category"},
                "weight": {**_NUM, "minimum": 0, "maximum": 1},
                "address": {"type": "string", "nullable": True},
                "port": {"type": "integer", "nullable": True},
                "id": {"type": "string", "nullable": True},
            },
        },
        "Queue": {
            "type": "array",
            "description": "Best container first; SUNDOWN ones last with weight 0.",
            "items": {"$ref": "#/components/schemas/QueueItem"},
        },
        "QueueStatus": {
            "type": "object",
            "required": ["tick", "time", "desired", "running", "queue"],
            "properties": {
                "tick": {"type": "integer", "minimum": 0},
                "time": {**_NUM, "description": "epoch seconds of the snapshot"},
                "desired": {"type": "integer", "minimum": 0},
                "running": {"type": "integer", "minimum": 0},
                "queue": {"$ref": "#/components/schemas/Queue"},
            },
        },
        "Stat": {
            "type": "object",
            "required": [
                "id", "name", "cpu_score", "memory_score", "network_score",
                "availability_score", "overall_score", "utilization_category",
            ],
            "properties": {
                "id": {"type": "string"},
                "name": {"type": "string"},
                "cpu_score": _NUM,
                "memory_score": _NUM,
                "network_score": _NUM,
                "availability_score": _NUM,
                "overall_score": _NUM,
                "utilization_category": {"$ref": "#/components/schemas/Category"},
            },
        },
        "Container": {
            "type": "object",
            "required": ["name", "id", "utilization_category", "overall_score", "weight"],
            "properties": {
                "name": {"type": "string"},
                "id": {"type": "string"},
                "utilization_category": {"$ref": "#/components/schemas/Category"},
                "cpu_score": _NUM,
                "memory_score": _NUM,
                "network_score": _NUM,
                "availability_score": _NUM,
                "overall_score": _NUM,
                "weight": _NUM,
                "anomaly": {"type": "boolean", "description": "last response time outside its band"},
                "slope": {**_NUM, "description": "least-squares slope of the overall score, per tick"},
                "forecast": {**_NUM, "description": "forecast of the overall score"},
                "stale": {"type": "boolean"},
                "queue_position": {"type": "integer", "nullable": True, "minimum": 0},
                "image": {"type": "string", "nullable": True},
                "status": {"type": "string", "nullable": True},
                "created": {**_NUM, "description": "epoch seconds"},
                "address": {"type": "string", "nullable": True},
                "host_port": {"type": "integer", "nullable": True},
            },
        },
        "Event": {
            "type": "object",
            "required": ["id", "kind", "ts", "data"],
            "properties": {
                "id": {"type": "string", "description": "the event's id (a Redis stream id), usable as `before`"},
                "kind": {"type": "string"},
                "ts": {**_NUM, "description": "epoch seconds"},
                "data": {"type": "object", "description": "the decision's inputs, reason and message"},
            },
        },
        "EventPage": {
            "type": "object",
            "required": ["events", "next_before"],
            "properties": {
                "events": {"type": "array", "items": {"$ref": "#/components/schemas/Event"}},
                "next_before": {
                    "type": "string",
                    "nullable": True,
                    "description": "pass as `before` for the next (older) page; null on the last page",
                },
            },
        },
        "History": {
            "type": "object",
            "required": ["points"],
            "properties": {
                "points": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["time", "desired", "running"],
                        "properties": {
                            "time": {"type": "number"},
                            "desired": {"type": "integer"},
                            "running": {"type": "integer"},
                        },
                    },
                }
            },
        },
        "Config": {
            "type": "object",
            "description": "The effective configuration; secrets are redacted.",
            "properties": config_props,
        },
        "ConfigPatch": {
            "type": "object",
            "description": "Settings to change; validated like start-up configuration and "
            "applied from the next tick. Start-up-only settings are rejected.",
            "properties": patch_props,
            "additionalProperties": False,
        },
        "ScaleRequest": {
            "type": "object",
            "required": ["count"],
            "additionalProperties": False,
            "properties": {
                "count": {
                    "type": "integer",
                    "minimum": lo,
                    "maximum": hi,
                    "description": "desired number of containers (DEFAULT_CONTAINER to MAX_CONTAINERS)",
                }
            },
        },
        "Decision": {
            "type": "object",
            "description": "What the agent decided, with the reason as data (also recorded "
            "in the ledger).",
            "required": ["action", "reason"],
            "properties": {
                "action": {"type": "string", "description": "scale_up, scale_down, sundown or none"},
                "reason": {"type": "string", "description": "a stable reason code"},
                "message": {"type": "string", "description": "a sentence with the numbers"},
                "name": {"type": "string", "description": "the drained container (sundown)"},
                "replacement": {"type": "boolean", "description": "a replacement keeps the pool at its floor"},
                "desired": {"type": "integer"},
                "add": {"type": "integer"},
                "sundown": {"type": "array", "items": {"type": "string"}},
                "inputs": {"type": "object"},
            },
        },
        "Health": {
            "type": "object",
            "required": ["alive"],
            "properties": {
                "alive": {"type": "boolean"},
                "last_tick_age": {**_NUM, "description": "seconds since the last tick ended"},
                "error": {"type": "string"},
                "detail": {"type": "string"},
            },
        },
        "Ready": {
            "type": "object",
            "required": ["ready", "checks"],
            "properties": {
                "ready": {"type": "boolean"},
                "checks": {
                    "type": "object",
                    "description": "component → \"ok\" or the reason it is not",
                    "additionalProperties": {"type": "string"},
                },
                "error": {"type": "string"},
                "detail": {"type": "string"},
            },
        },
    }

    name_param = {"name": "name", "in": "path", "required": True, "schema": _NAME}
    paths: dict[str, Any] = {
        "/stats": {
            "get": {
                "operationId": "getStats",
                "summary": "Per-container scores (compat with the prototype); CORS enabled",
                "responses": {"200": _json("one object per container", {"type": "array", "items": {"$ref": "#/components/schemas/Stat"}})},
            }
        },
        "/ws": {
            "get": {
                "operationId": "queueFeed",
                "summary": "WebSocket feed of the queue (compat)",
                "description": "Upgrade to a WebSocket: one text message holding the queue "
                "(a JSON array of QueueItem) on connect and after every queue rebuild; close "
                "code 1001 when the agent shuts down. Also served on the WebSocket port at any "
                "path. A plain HTTP GET is answered 426.",
                "responses": {
                    "101": {"description": "switching to the WebSocket protocol"},
                    "426": _error("not a WebSocket upgrade request"),
                },
            }
        },
        "/queue": {
            "get": {
                "operationId": "getQueue",
                "summary": "The current queue with weights, addresses and ports",
                "responses": {"200": _json("the queue and the counts", "QueueStatus")},
            }
        },
        "/containers/{name}": {
            "get": {
                "operationId": "getContainer",
                "summary": "One container's scores, category, weight and engine facts",
                "parameters": [name_param],
                "responses": {
                    "200": _json("the container", "Container"),
                    "404": _error("no owned container of that name"),
                },
            }
        },
        "/containers/{name}/sundown": {
            "post": {
                "operationId": "sundownContainer",
                "summary": "Drain one container: mark it SUNDOWN; it is removed once drained",
                "security": [{"bearerAuth": []}],
                "parameters": [name_param],
                "responses": {
                    "200": _json("the decision taken", "Decision"),
                    "404": _error("no owned container of that name"),
                    "422": _error("the request would break a bound (e.g. below DEFAULT_CONTAINER)"),
                    **_AUTH_ERRORS,
                    **_UNAVAILABLE,
                },
            }
        },
        "/events": {
            "get": {
                "operationId": "getEvents",
                "summary": "The decision ledger, newest first, paginated",
                "parameters": [
                    {"name": "limit", "in": "query", "required": False, "schema": {"type": "integer", "minimum": 1, "maximum": 500, "default": 50}},
                    {"name": "before", "in": "query", "required": False, "description": "return events older than this id (a Redis stream id such as 1700000000000-0)", "schema": _EVENT_ID},
                    {"name": "kind", "in": "query", "required": False, "description": "only events of this kind", "schema": _KIND},
                ],
                "responses": {
                    "200": _json("a page of events", "EventPage"),
                    "422": _error("bad query parameter"),
                    **_UNAVAILABLE,
                },
            }
        },
        "/history": {
            "get": {
                "operationId": "getHistory",
                "summary": "Desired and running counts over time (bounded, oldest first)",
                "responses": {"200": _json("the points", "History")},
            }
        },
        "/config": {
            "get": {
                "operationId": "getConfig",
                "summary": "The effective configuration (secrets redacted)",
                "responses": {"200": _json("the configuration", "Config")},
            },
            "put": {
                "operationId": "updateConfig",
                "summary": "Change settings at run time (partial update)",
                "security": [{"bearerAuth": []}],
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ConfigPatch"}}},
                },
                "responses": {
                    "200": _json("the new effective configuration", "Config"),
                    **_BODY_ERRORS,
                    **_AUTH_ERRORS,
                    **_UNAVAILABLE,
                },
            },
        },
        "/scale": {
            "post": {
                "operationId": "scale",
                "summary": "Run exactly `count` containers",
                "security": [{"bearerAuth": []}],
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ScaleRequest"}}},
                },
                "responses": {
                    "200": _json("the decision taken", "Decision"),
                    **_BODY_ERRORS,
                    **_AUTH_ERRORS,
                    **_UNAVAILABLE,
                },
            }
        },
        "/healthz": {
            "get": {
                "operationId": "health",
                "summary": "Liveness: the tick loop is running",
                "responses": {
                    "200": _json("alive", "Health"),
                    "503": _json("the loop is stuck or stopped", "Health"),
                },
            }
        },
        "/readyz": {
            "get": {
                "operationId": "ready",
                "summary": "Readiness: the engine and Redis answer",
                "responses": {
                    "200": _json("ready", "Ready"),
                    "503": _json("not ready; `detail` says why", "Ready"),
                },
            }
        },
        "/metrics": {
            "get": {
                "operationId": "metrics",
                "summary": "Prometheus metrics (text exposition format)",
                "responses": {"200": {"description": "metrics", "content": {"text/plain": {"schema": {"type": "string"}}}}},
            }
        },
        "/openapi.json": {
            "get": {
                "operationId": "openapi",
                "summary": "This document",
                "responses": {"200": _json("OpenAPI 3 document", {"type": "object"})},
            }
        },
        "/": {
            "get": {
                "operationId": "dashboard",
                "summary": "The live dashboard (HTML)",
                "responses": {"200": {"description": "the page", "content": {"text/html": {"schema": {"type": "string"}}}}},
            }
        },
    }

    return {
        "openapi": "3.0.3",
        "info": {
            "title": "deployment-agent",
            "version": _version(),
            "description": "Keeps a pool of Docker containers right-sized and streams a "
            "score-ordered queue to load balancers. Errors are JSON "
            "`{\"error\": code, \"detail\": sentence}`. Mutating endpoints need "
            "`Authorization: Bearer <token>`.",
        },
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {"bearerAuth": {"type": "http", "scheme": "bearer"}},
        },
    }


def _version() -> str:
    try:
        from agent import __version__

        return str(__version__)
    except ImportError:  # pragma: no cover
        return "0"
