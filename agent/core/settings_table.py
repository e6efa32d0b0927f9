"""The table of settings: each one's name, kind, default, help, run-time
mutability, and the parser that validates a raw value with an exact message.

Pure metadata and value parsing, kept apart from `agent.core.settings`, which gathers the
raw values from their sources (defaults, `.env`, environment, TOML, CLI, run-time
updates), parses them with this table, checks the relations between settings and
builds `Settings`. Nothing here reads a file or the environment; a parser fails
with `_Invalid(reason)`, which `agent.core.settings` turns into
`agent.core.errors.ConfigError(variable, reason)` naming the variable as the user wrote
it. `describe()` lists every setting for CLI flags, `check-config` and docs;
`RUNTIME_MUTABLE` names those `Settings.with_updates` may change.
"""
from __future__ import annotations

import math
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from agent.core.redact import mask_userinfo

__all__ = [
    "SettingSpec",
    "describe",
    "RUNTIME_MUTABLE",
]

_REQUIRED = object()  # marks a setting without default


@dataclass(frozen=True, slots=True)
class SettingSpec:
    """One setting: its name, default, help, and what may change at run time.

    `default` is the parsed default value (None for required, optional or derived
    settings); `default_text` is what to show people. The CLI flag is `flag`.
    """

    name: str
    kind: str  # "str", "int", "float", "bool", "port", "path", "list"
    default: Any
    default_text: str
    help: str
    mutable: bool = False
    secret: bool = False
    required: bool = False

    @property
    def attr(self) -> str:
        return self.name.lower()

    @property
    def flag(self) -> str:
        return "--" + self.name.lower().replace("_", "-")


class _Invalid(Exception):
    """Internal: a value failed to parse; becomes ConfigError with its label."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _got(raw: object) -> str:
    return f"got {raw!r}"


def _to_int(raw: object, expect: str) -> int:
    if isinstance(raw, bool):
        raise _Invalid(f"must be {expect}, {_got(raw)}")
    if isinstance(raw, int):
        return raw
    if isinstance(raw, float) and raw.is_integer():
        return int(raw)
    if isinstance(raw, str):
        text = raw.strip()
        if re.fullmatch(r"[+-]?[0-9]{1,30}", text):
            return int(text)
    raise _Invalid(f"must be {expect}, {_got(raw)}")


def _to_float(raw: object, expect: str) -> float:
    value: float | None = None
    if isinstance(raw, bool):
        value = None
    elif isinstance(raw, (int, float)):
        try:
            value = float(raw)
        except OverflowError:
            value = None
    elif isinstance(raw, str):
        try:
            value = float(raw.strip())
        except ValueError:
            value = None
    if value is None or not math.isfinite(value):
        raise _Invalid(f"must be {expect}, {_got(raw)}")
    return value


_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}


def _to_bool(raw: object) -> bool:
    if isinstance(raw, bool):
        return raw
    if isinstance(raw, int) and raw in (0, 1):
        return bool(raw)
    if isinstance(raw, str) and raw.strip().lower() in _TRUE | _FALSE:
        return raw.strip().lower() in _TRUE
    raise _Invalid(f"must be one of true/false/1/0/yes/no/on/off, {_got(raw)}")


def _to_str(raw: object) -> str:
    if isinstance(raw, str):
        return raw.strip()
    raise _Invalid(f"must be a string, {_got(raw)}")


def _int_min(minimum: int) -> Callable[[object], int]:
    expect = f"an integer ≥ {minimum}"

    def parse(raw: object) -> int:
        value = _to_int(raw, expect)
        if value < minimum:
            raise _Invalid(f"must be {expect}, {_got(raw)}")
        return value

    return parse


def _port(raw: object) -> int:
    expect = "an integer in 1..65535"
    value = _to_int(raw, expect)
    if not 1 <= value <= 65535:
        raise _Invalid(f"must be {expect}, {_got(raw)}")
    return value


def _float_range(
    lo: float | None, hi: float | None, *, lo_open: bool = False, hi_open: bool = False
) -> Callable[[object], float]:
    if lo is not None and hi is not None:
        expect = f"a number in {'(' if lo_open else '['}{lo:g}, {hi:g}{')' if hi_open else ']'}"
    elif lo is not None:
        expect = f"a number {'>' if lo_open else '≥'} {lo:g}"
    else:
        expect = "a number"

    def parse(raw: object) -> float:
        value = _to_float(raw, expect)
        if lo is not None and (value <= lo if lo_open else value < lo):
            raise _Invalid(f"must be {expect}, {_got(raw)}")
        if hi is not None and (value >= hi if hi_open else value > hi):
            raise _Invalid(f"must be {expect}, {_got(raw)}")
        return value

    return parse


_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}")


def _app_identifier(raw: object) -> str:
    value = _to_str(raw)
    if not _NAME_RE.fullmatch(value):
        raise _Invalid(
            "must be 1–63 letters, digits, '_', '.' or '-', starting with a letter or "
            f"digit (it names containers and Redis keys), {_got(raw)}"
        )
    return value


def _image(raw: object) -> str:
    value = _to_str(raw)
    if not value or any(c.isspace() for c in value):
        raise _Invalid(f"must be an image reference such as 'nginx:alpine', {_got(raw)}")
    return value


_DOCKER_SCHEMES = ("unix", "tcp", "ssh", "http", "https", "npipe")


def _docker_host(raw: object) -> str:
    value = _to_str(raw)
    scheme, sep, rest = value.partition("://")
    if not sep or scheme not in _DOCKER_SCHEMES or not rest:
        raise _Invalid(
            "must be an engine address such as unix:///var/run/docker.sock or "
            f"tcp://host:2375 (schemes: {', '.join(_DOCKER_SCHEMES)}), {_got(raw)}"
        )
    return value


def _redis_url(raw: object) -> str:
    value = _to_str(raw)
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - validates the port
    except ValueError:
        parts = None
    if parts is None or parts.scheme not in ("redis", "rediss", "unix") or not (
        parts.hostname or parts.path
    ):
        shown = mask_userinfo(value)  # never echo a password
        raise _Invalid(
            "must be a redis://, rediss:// or unix:// URL such as "
            f"redis://localhost:6379/0, {_got(shown)}"
        )
    return value


def _hostname(raw: object) -> str:
    value = _to_str(raw)
    if not value or any(c.isspace() or c in "/@" for c in value):
        raise _Invalid(f"must be a host name or IP address, {_got(raw)}")
    return value


def _health_path(raw: object) -> str:
    value = _to_str(raw)
    if not value.startswith("/") or any(c.isspace() for c in value):
        raise _Invalid(f"must be an HTTP path starting with '/', such as /health, {_got(raw)}")
    return value


def _path(raw: object) -> Path:
    if isinstance(raw, Path):
        return raw
    value = _to_str(raw)
    return Path(os.path.abspath(os.path.expanduser(value)))


def _token(raw: object) -> str:
    value = _to_str(raw)
    if any(c.isspace() or not c.isprintable() for c in value):
        raise _Invalid("must not contain spaces or control characters")
    return value


_ORIGIN_RE = re.compile(r"https?://[^/\s?#]+")


def _origins(raw: object, *, star: bool = True) -> tuple[str, ...]:
    if isinstance(raw, str):
        items = [p.strip() for p in raw.split(",")]
    elif isinstance(raw, (list, tuple)) and all(isinstance(p, str) for p in raw):
        items = [p.strip() for p in raw]
    else:
        raise _Invalid(f"must be '*' or a comma-separated list of origins, {_got(raw)}")
    items = [p.rstrip("/") if p != "*" else p for p in items if p]
    if not items:
        raise _Invalid(f"must be '*' or a comma-separated list of origins, {_got(raw)}")
    if "*" in items and not star:
        raise _Invalid(f"must list the origins; '*' is not allowed for writes, {_got(raw)}")
    if "*" in items and len(items) > 1:
        raise _Invalid(f"'*' cannot be combined with other origins, {_got(raw)}")
    for p in items:
        if p != "*" and not _ORIGIN_RE.fullmatch(p):
            raise _Invalid(
                f"must be '*' or origins such as https://example.org:8443, {_got(raw)}"
            )
    return tuple(items)


_MEMORY_RE = re.compile(r"(\d+)([bkmg]?)", re.IGNORECASE)
_MEMORY_UNITS = {"": 1, "b": 1, "k": 1024, "m": 1024**2, "g": 1024**3}
_MIN_MEMORY = 6 * 1024**2  # the engine refuses less than 6 MiB


def _memory(raw: object) -> str:
    text = str(raw).strip() if isinstance(raw, (str, int)) and not isinstance(raw, bool) else None
    match = _MEMORY_RE.fullmatch(text) if text is not None else None
    if match is None:
        raise _Invalid(f"must be a size such as 256m or 1g (units b, k, m, g), {_got(raw)}")
    if int(match[1]) * _MEMORY_UNITS[match[2].lower()] < _MIN_MEMORY:
        raise _Invalid(f"must be at least 6m (the engine's minimum), {_got(raw)}")
    return text.lower()  # type: ignore[union-attr]


_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


def _log_level(raw: object) -> str:
    value = _to_str(raw).upper()
    value = "WARNING" if value == "WARN" else value
    if value not in _LEVELS:
        raise _Invalid(f"must be one of {', '.join(_LEVELS)}, {_got(raw)}")
    return value


@dataclass(frozen=True, slots=True)
class _Field:
    spec: SettingSpec
    parse: Callable[[object], Any]


def _f(
    name: str,
    kind: str,
    default: Any,
    help: str,
    parse: Callable[[object], Any],
    *,
    default_text: str | None = None,
    mutable: bool = False,
    secret: bool = False,
) -> _Field:
    required = default is _REQUIRED
    if default_text is None:
        default_text = "(required)" if required else ("(unset)" if default is None else (
            ",".join(default) if isinstance(default, tuple) else str(default).lower()
            if isinstance(default, bool) else str(default)))
    spec = SettingSpec(
        name=name, kind=kind, default=None if required else default,
        default_text=default_text, help=help, mutable=mutable, secret=secret,
        required=required,
    )
    return _Field(spec, parse)


_RATIO = _float_range(0, 100)
_WEIGHT = _float_range(0, None)
_POSITIVE = _float_range(0, None, lo_open=True)
_NON_NEGATIVE = _float_range(0, None)

# The order matters: a check that refers to another setting comes after it.
_FIELDS: tuple[_Field, ...] = (
    _f("APP_IDENTIFIER", "str", "RUSTYBALANCER",
       "pool name: label value of the workers and prefix of their names and Redis keys",
       _app_identifier),
    _f("DOCKER_IMAGE", "str", _REQUIRED, "image of the worker containers", _image),
    _f("TARGET_PORT", "port", _REQUIRED, "port the workers listen on inside the container",
       _port),
    _f("DOCKER_HOST", "str", "unix:///var/run/docker.sock", "container engine address",
       _docker_host),
    _f("DEFAULT_CONTAINER", "int", 5,
       "initial desired number of containers, and the floor for scale-down", _int_min(1),
       mutable=True),
    _f("MAX_CONTAINERS", "int", 15, "ceiling for scale-up (≥ DEFAULT_CONTAINER)",
       _int_min(1), mutable=True),
    _f("CRITICAL_LOAD_THRESHOLD", "float", 20.0,
       "any single container scoring below this forces a scale-up", _RATIO, mutable=True),
    _f("HIGH_LOAD_THRESHOLD", "float", 55.0,
       "scale up when the average score drops below this", _RATIO, mutable=True),
    _f("LOW_LOAD_THRESHOLD", "float", 80.0,
       "scale down when the average score rises above this", _RATIO, mutable=True),
    _f("COOLDOWN_PERIOD", "float", 5.0,
       "seconds between two scale-ups (0 = no cooldown)", _NON_NEGATIVE, mutable=True),
    _f("SCALE_STEP", "int", 1, "containers added or removed per decision", _int_min(1),
       mutable=True),
    _f("SCALE_CHECK_PERIOD", "float", 10.0, "seconds between two scaling decisions",
       _POSITIVE, mutable=True),
    _f("CPU_WEIGHT", "float", 0.35, "weight of the CPU score in the overall score",
       _WEIGHT, mutable=True),
    _f("MEMORY_WEIGHT", "float", 0.25, "weight of the memory score", _WEIGHT, mutable=True),
    _f("NETWORK_WEIGHT", "float", 0.15, "weight of the network score", _WEIGHT,
       mutable=True),
    _f("AVAILABILITY_WEIGHT", "float", 0.25, "weight of the availability score", _WEIGHT,
       mutable=True),
    _f("HISTORY_SIZE", "int", 20, "response times kept per container", _int_min(1)),
    _f("BEST_TIME_WINDOW", "int", 10, "best response times kept per container",
       _int_min(1)),
    _f("EMA_ALPHA", "float", 0.2, "smoothing of the availability score, in (0, 1]",
       _float_range(0, 1, lo_open=True), mutable=True),
    _f("REDIS_URL", "str", None,
       "Redis URL; wins over REDIS_HOST/REDIS_PORT; with neither set the agent runs "
       "its own redis-server", _redis_url),
    _f("REDIS_HOST", "str", None, "Redis host (compat; REDIS_URL is preferred)", _hostname),
    _f("REDIS_PORT", "port", 6379, "Redis port, used with REDIS_HOST", _port),
    _f("HOST_PORT_HTTP_DEPLOYMENT_AGENT", "port", 2550,
       "HTTP port (API, /stats, /ws, dashboard)", _port),
    _f("HOST_PORT_WS_DEPLOYMENT_AGENT", "port", 2547,
       "WebSocket port (compat; /ws is also served on the HTTP port)", _port),
    _f("NETWORK_CAPACITY_BPS", "float", 125_000_000.0,
       "bytes/s that count as a saturated network (default 1 Gbit/s)", _POSITIVE,
       default_text="125000000", mutable=True),
    _f("TICK_INTERVAL", "float", 1.0, "seconds between two samples of every container",
       _POSITIVE),
    _f("TICK_DEADLINE", "float", None,
       "seconds a tick waits for samples before marking late ones stale "
       "(≤ TICK_INTERVAL)", _POSITIVE, default_text="0.8 × TICK_INTERVAL"),
    _f("PROBE_TIMEOUT", "float", 5.0, "seconds before an availability probe counts as "
       "no answer", _POSITIVE, mutable=True),
    _f("HEALTH_PATH", "str", None,
       "HTTP path to probe for availability; unset = time a TCP connect", _health_path),
    _f("DRAIN_TIMEOUT", "float", 30.0,
       "seconds after which a SUNDOWN container is removed even if still busy",
       _NON_NEGATIVE, mutable=True),
    _f("SCALE_DOWN_STABILIZATION", "float", None,
       "seconds of scale-down recommendations that must all agree before scaling "
       "down (0 = off)", _NON_NEGATIVE, default_text="1.5 × SCALE_CHECK_PERIOD",
       mutable=True),
    _f("FLAP_GUARD", "bool", True,
       "refuse a scale-down whose projected average score would fall below "
       "HIGH_LOAD_THRESHOLD", _to_bool, mutable=True),
    _f("PREDICTIVE_SCALE_UP", "bool", False,
       "scale up early when the forecast average score is below HIGH_LOAD_THRESHOLD",
       _to_bool, mutable=True),
    _f("FORECAST_HORIZON", "int", 5, "ticks ahead of the score forecast", _int_min(1),
       mutable=True),
    _f("TREND_WINDOW", "int", 60, "ticks in the score trend (slope) window", _int_min(2)),
    _f("CATEGORY_HYSTERESIS", "float", 0.0,
       "score margin before a container changes category (0 = compat)",
       _float_range(0, 15), mutable=True),
    _f("SLOW_START_WINDOW", "float", 30.0,
       "seconds over which a new container's routing weight ramps up (0 = off)",
       _NON_NEGATIVE, mutable=True),
    _f("BIND_HOST", "str", "127.0.0.1", "address the HTTP and WebSocket servers bind to",
       _hostname),
    _f("DATA_DIR", "path", None, "directory for the embedded Redis and other state",
       _path, default_text="$XDG_DATA_HOME/deployment-agent or ~/.local/share/deployment-agent"),
    _f("AGENT_API_TOKEN", "str", None,
       "bearer token of the mutating endpoints; unset = generated at start-up",
       _token, secret=True),
    _f("CORS_ALLOW_ORIGINS", "list", ("*",),
       "origins allowed to read the API from a browser ('*' or a comma-separated list)",
       _origins),
    _f("CORS_ALLOW_WRITE_ORIGINS", "list", (),
       "origins allowed to send mutating requests from a browser (comma-separated; the "
       "token is still required)", lambda raw: _origins(raw, star=False),
       default_text="(none)"),
    _f("CONTAINER_CPUS", "float", None, "CPU limit of each worker (e.g. 0.5); unset = none",
       _POSITIVE),
    _f("CONTAINER_MEMORY", "str", None,
       "memory limit of each worker (e.g. 256m); unset = none", _memory),
    _f("LEDGER_MAX_LEN", "int", 10000, "decision-ledger entries kept in Redis",
       _int_min(1)),
    _f("LOG_LEVEL", "str", "INFO", "DEBUG, INFO, WARNING, ERROR or CRITICAL", _log_level),
)

_BY_NAME: dict[str, _Field] = {f.spec.name: f for f in _FIELDS}

#: Names that `Settings.with_updates` may change while the agent runs.
RUNTIME_MUTABLE: frozenset[str] = frozenset(f.spec.name for f in _FIELDS if f.spec.mutable)


def describe() -> tuple[SettingSpec, ...]:
    """Every setting in a stable order, for CLI flags, `check-config` and docs."""
    return tuple(f.spec for f in _FIELDS)


def _canonical(key: str) -> str | None:
    name = key.strip().lstrip("-").upper().replace("-", "_")
    return name if name in _BY_NAME else None
