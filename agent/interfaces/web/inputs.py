"""What a request may carry: path and query parameters, the two JSON bodies.

Each input is one object that both reads the request and describes itself to
the OpenAPI document (`agent.interfaces.web.openapi`), with the error answers a
bad value gets; a route lists its inputs in its declaration and receives them
parsed. So the document states exactly the checks the server makes.

The bodies follow the running settings: ``POST /scale`` takes a count in the
range the core's `scale_range` gives (and `scale_count_fault` checks);
``PUT /config`` takes the settings the settings table marks mutable, each typed
after its current value.
"""
from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from quart import request

from agent.core.policy import scale_count_fault, scale_range
from agent.core.settings import RUNTIME_MUTABLE, Settings
from agent.core.settings_table import spec
from .errors import ApiError, error_reply
from .openapi import Named, Reply
from .views import config_json, config_value_schema

__all__ = [
    "MAX_BODY",
    "IntQuery",
    "TokenQuery",
    "NamePath",
    "NAME",
    "SCALE_BODY",
    "CONFIG_PATCH",
    "json_object",
    "writable_settings",
    "runtime_range",
    "config_value_ok",
]

MAX_BODY = 64 * 1024

# --------------------------------------------------------------------------- parameters

_BAD_QUERY = {422: error_reply("bad query parameter")}
_NO_SUCH_CONTAINER = {404: error_reply("no owned container of that name")}


def _one(name: str) -> str | None:
    values = request.args.getlist(name)
    if not values:
        return None
    if len(values) > 1:
        raise ApiError(422, "invalid_query", f"{name}: give it once")
    return values[0]


@dataclass(frozen=True)
class IntQuery:
    """An optional integer query parameter within [lo, hi]."""

    name: str
    default: int
    lo: int
    hi: int

    @property
    def errors(self) -> Mapping[int, Reply]:
        return _BAD_QUERY

    def spec(self) -> dict[str, Any]:
        schema = {"type": "integer", "minimum": self.lo, "maximum": self.hi, "default": self.default}
        return {"name": self.name, "in": "query", "required": False, "schema": schema}

    def read(self, path: Mapping[str, str]) -> int:
        given = _one(self.name)
        if given is None:
            return self.default
        text = given.strip()
        if not re.fullmatch(r"[+-]?[0-9]{1,9}", text):
            raise ApiError(422, "invalid_query", f"{self.name}: must be an integer, got {given!r}")
        value = int(text)
        if not self.lo <= value <= self.hi:
            raise ApiError(
                422, "invalid_query", f"{self.name}: must be between {self.lo} and {self.hi}, got {value}"
            )
        return value


@dataclass(frozen=True)
class TokenQuery:
    """An optional query parameter that must match `pattern` (`expected` says how, to people)."""

    name: str
    pattern: str
    expected: str
    description: str

    @property
    def errors(self) -> Mapping[int, Reply]:
        return _BAD_QUERY

    def spec(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "in": "query",
            "required": False,
            "description": self.description,
            "schema": {"type": "string", "pattern": self.pattern},
        }

    def read(self, path: Mapping[str, str]) -> str | None:
        given = _one(self.name)
        if given is not None and not re.fullmatch(self.pattern, given):
            raise ApiError(422, "invalid_query", f"{self.name}: must be {self.expected}, got {given!r:.80}")
        return given


class NamePath:
    """The ``{name}`` of a container in the path: a DNS-safe name, else 404."""

    name = "name"
    pattern = "^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$"

    @property
    def errors(self) -> Mapping[int, Reply]:
        return _NO_SUCH_CONTAINER

    def spec(self) -> dict[str, Any]:
        schema = {
            "type": "string",
            "pattern": self.pattern,
            "description": "container name (its DNS name on the pool's network)",
        }
        return {"name": self.name, "in": "path", "required": True, "schema": schema}

    def read(self, path: Mapping[str, str]) -> str:
        value = path[self.name]
        if not re.fullmatch(self.pattern, value):
            raise ApiError(404, "not_found", f"no container named {value!r}")
        return value


# --------------------------------------------------------------------------- bodies

BODY_ERRORS: Mapping[int, Reply] = {
    400: error_reply("the body is not valid JSON"),
    413: error_reply(f"the body is larger than {MAX_BODY // 1024} KiB"),
    415: error_reply("the body is not `application/json`"),
    422: error_reply("well-formed JSON that fails validation (type, range, unknown field)"),
}


async def json_object() -> dict[str, Any]:
    """The request body as a JSON object: 415 unless JSON, 400 if unparseable, 422 if not an object."""
    mimetype = request.mimetype or ""
    if mimetype != "application/json" and not mimetype.endswith("+json"):
        raise ApiError(415, "unsupported_media_type", "send the body as Content-Type: application/json")
    raw = await request.get_data(cache=True, as_text=False)
    if not raw.strip():
        raise ApiError(400, "bad_json", "the request body is empty; a JSON object is required")

    def _no_constants(name: str) -> Any:
        raise ValueError(f"{name} is not valid JSON")

    try:
        value = json.loads(raw, parse_constant=_no_constants, object_pairs_hook=_unique_keys)
    except _DuplicateKey as exc:
        raise ApiError(422, "invalid_body", f"the key {exc.key!r:.80} is given twice; give each "
                       "key once", variable=exc.key[:80]) from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise ApiError(400, "bad_json", f"the request body is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise ApiError(422, "invalid_body", f"the body must be a JSON object, got {json_type(value)}")
    return value


class _DuplicateKey(Exception):
    def __init__(self, key: str) -> None:
        self.key = key


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON object whose keys are all different: ``{"count": 1, "count": 9}`` is
    refused, not read as its last value (which a proxy or a log may read as the
    first)."""
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise _DuplicateKey(key)
        out[key] = value
    return out


def json_type(value: Any) -> str:
    """How a JSON value's type reads in a sentence ("a number", "an array", ...)."""
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


def _scale_schema(settings: Settings) -> dict[str, Any]:
    lo, hi = scale_range(settings.policy_config())
    count = {
        "type": "integer",
        "minimum": lo,
        "maximum": hi,
        "description": "desired number of containers (DEFAULT_CONTAINER to MAX_CONTAINERS)",
    }
    return {"type": "object", "required": ["count"], "additionalProperties": False, "properties": {"count": count}}


class ScaleBody:
    """``{"count": n}``: n as the core's `scale_count_fault` allows; the count is what the route gets."""

    schema = Named("ScaleRequest", _scale_schema)

    @property
    def errors(self) -> Mapping[int, Reply]:
        return BODY_ERRORS

    async def read(self, settings: Settings) -> int:
        body = await json_object()
        extra = sorted(set(body) - {"count"})
        if extra:
            raise ApiError(422, "invalid_body", f"unexpected field(s): {', '.join(extra)}")
        if "count" not in body:
            raise ApiError(422, "invalid_body", "missing field: count")
        count, policy = body["count"], settings.policy_config()
        fault = scale_count_fault(count, policy)
        if fault == "type":
            raise ApiError(
                422, "invalid_value", f"count: must be an integer, got {json_type(count)}", variable="count"
            )
        if fault == "range":
            lo, hi = scale_range(policy)
            raise ApiError(
                422, "invalid_value", f"count: must be between {lo} and {hi}, got {count}", variable="count"
            )
        assert isinstance(count, int)
        return count


def writable_settings(current: Mapping[str, Any]) -> set[str]:
    """Keys of `current` (``as_dict()``) that ``PUT /config`` may change: those
    the settings table marks mutable; start-up settings (image, engine, token,
    ports, Redis, CORS) never are."""
    return {key for key in current if key in RUNTIME_MUTABLE}


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


def _patch_schema(settings: Settings) -> dict[str, Any]:
    current = config_json(settings)
    writable = [k for k in current if k in writable_settings(current)]
    return {
        "type": "object",
        "description": "Settings to change (at least one); validated like start-up "
        "configuration, each number inside its run-time range (`x-runtime-ranges`), and "
        "applied from the next tick. Start-up-only settings are rejected.",
        "properties": {k: config_value_schema(current[k]) for k in writable},
        "additionalProperties": False,
        "minProperties": 1,
        "x-runtime-ranges": {k: r for k in writable if (r := runtime_range(k, settings))},
    }


def runtime_range(name: str, settings: Settings) -> dict[str, Any]:
    """The range a run-time update of the number `name` must lie in (the settings
    table's), as JSON-schema keywords; the pool's size is capped by the start-up
    MAX_CONTAINERS_LIMIT. Empty for anything but a number."""
    row = spec(name)
    bounds = row.runtime_range
    if row.kind not in ("int", "float") or bounds is None:
        return {}
    out: dict[str, Any] = {}  # OpenAPI 3.0 keywords: exclusive ends are flags
    if bounds.lo is not None:
        out["minimum"] = bounds.lo
        if bounds.lo_open:
            out["exclusiveMinimum"] = True
    if name in ("DEFAULT_CONTAINER", "MAX_CONTAINERS"):
        out["maximum"] = settings.max_containers_limit
    elif bounds.hi is not None:
        out["maximum"] = bounds.hi
        if bounds.hi_open:
            out["exclusiveMaximum"] = True
    return out


class ConfigPatch:
    """A partial update of the run-time settings, checked key by key before the agent sees it."""

    schema = Named("ConfigPatch", _patch_schema)

    @property
    def errors(self) -> Mapping[int, Reply]:
        return BODY_ERRORS

    async def read(self, settings: Settings) -> dict[str, Any]:
        body = await json_object()
        if not body:
            raise ApiError(422, "invalid_body", "no setting given: send at least one setting to change")
        known = config_json(settings)
        writable = writable_settings(known)
        for key, value in body.items():
            _check_setting(key, value, known, writable)
        return body


def _check_setting(key: str, value: Any, known: Mapping[str, Any], writable: set[str]) -> None:
    if key not in known:
        canonical = key.strip().lstrip("-").upper().replace("-", "_")
        hint = f" (did you mean {canonical}?)" if canonical in known and canonical != key else ""
        raise ApiError(422, "unknown_setting", f"{key}: no such setting{hint}", variable=key)
    if key not in writable:
        raise ApiError(
            422, "read_only",
            f"{key}: cannot be changed at run time; restart the agent with the new value",
            variable=key,
        )
    if not config_value_ok(value, known[key]):
        want = str(config_value_schema(known[key]).get("type", "a scalar"))
        article = {"integer": "an integer", "array": "an array of strings"}.get(want, f"a {want}")
        raise ApiError(422, "invalid_value", f"{key}: must be {article}, got {json_type(value)}", variable=key)


NAME = NamePath()
SCALE_BODY = ScaleBody()
CONFIG_PATCH = ConfigPatch()
