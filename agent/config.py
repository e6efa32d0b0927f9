"""Settings: one frozen value built in one place, validated with exact messages.

Sources, lowest precedence first (a later source wins, variable by variable)::

    defaults  <  .env file  <  environment  <  TOML file  <  CLI overrides

The environment beats `.env` as with docker compose and python-dotenv, so a
deployment can override a checked-in `.env`. The TOML file and the CLI flags are
given explicitly for this run, so they beat both; a CLI flag beats everything.
At run time `Settings.with_updates` (``PUT /config``) layers one more source on
top, restricted to `RUNTIME_MUTABLE`.

Names are the SPEC §2 compat variables (so a prototype user's `.env` keeps
working) plus ours; `describe()` lists them all with default and help, and the
attribute of each is its name in lower case (``MAX_CONTAINERS`` →
``settings.max_containers``). In the TOML file and in overrides a key may be
written ``MAX_CONTAINERS``, ``max_containers`` or ``max-containers``; unknown keys
are an error there. In the environment and `.env` unknown names are ignored
(those are shared with other tools).

An empty value (``REDIS_HOST=``) means "not set": the default applies, and it
still overrides a lower source. Every bad value raises
`agent.errors.ConfigError(variable, reason)` with the variable as the user wrote
it, e.g. ``MAX_CONTAINERS: must be an integer ≥ DEFAULT_CONTAINER (5), got '3'``.

`.env` syntax (small and strict): ``KEY=VALUE`` lines, optional ``export ``
prefix, ``#`` comments on their own line or after an unquoted value (preceded
by a space), values in single quotes (literal) or double quotes (escapes
``\\\\ \\" \\n \\t \\r``). No variable expansion, no multi-line values; anything
else is a `ConfigError` naming the file and line.
"""
from __future__ import annotations

import math
import os
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

from agent.errors import ConfigError
from agent.policy import PolicyConfig

if TYPE_CHECKING:  # agent.scoring pulls in the compiled kernel; import it lazily
    from agent.scoring import ScorerConfig

__all__ = [
    "Settings",
    "SettingSpec",
    "load_settings",
    "describe",
    "RUNTIME_MUTABLE",
    "DEFAULT_ENV_FILE",
    "parse_env_file",
    "parse_env_text",
]


class _DefaultEnvFile(str):
    """The default `.env` path: a missing file is fine, unlike an explicit one."""

    __slots__ = ()


#: The `env_file` default of `load_settings`; may be missing without error.
DEFAULT_ENV_FILE: str = _DefaultEnvFile(".env")

_REQUIRED = object()  # marks a setting without default


# ---------------------------------------------------------------------------
# metadata


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
        shown = re.sub(r"//[^/@]*@", "//***@", value)  # never echo a password
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


# ---------------------------------------------------------------------------
# the value


@dataclass(frozen=True, slots=True)
class _Raw:
    value: object
    label: str  # the name as the user wrote it
    source: str  # "env-file:<path>", "environment", "toml:<path>", "cli", "runtime"


def _default_data_dir() -> Path:
    return _data_dir_from(os.environ)


def _data_dir_from(environ: Mapping[str, str]) -> Path:
    xdg = environ.get("XDG_DATA_HOME", "")
    if xdg and os.path.isabs(xdg):  # the XDG spec ignores relative paths
        return Path(xdg) / "deployment-agent"
    home = environ.get("HOME") or os.path.expanduser("~")
    if not home or home == "~":
        return Path(os.path.abspath(".deployment-agent"))
    return Path(home) / ".local" / "share" / "deployment-agent"


@dataclass(frozen=True, slots=True, kw_only=True)
class Settings:
    """The effective configuration (see the module docstring for its sources).

    Build it with `load_settings`; the constructor does not validate (it exists
    for tests and embedding). Attributes are the setting names in lower case.
    `sources` maps each name to where its value came from: "default", "derived",
    "env-file:<path>", "environment", "toml:<path>", "cli", "generated" (the API
    token, `with_token`) or "runtime" (`with_updates`).
    """

    docker_image: str
    target_port: int
    app_identifier: str = "RUSTYBALANCER"
    docker_host: str = "unix:///var/run/docker.sock"
    default_container: int = 5
    max_containers: int = 15
    critical_load_threshold: float = 20.0
    high_load_threshold: float = 55.0
    low_load_threshold: float = 80.0
    cooldown_period: float = 5.0
    scale_step: int = 1
    scale_check_period: float = 10.0
    cpu_weight: float = 0.35
    memory_weight: float = 0.25
    network_weight: float = 0.15
    availability_weight: float = 0.25
    history_size: int = 20
    best_time_window: int = 10
    ema_alpha: float = 0.2
    redis_url: str | None = None
    redis_host: str | None = None
    redis_port: int = 6379
    host_port_http_deployment_agent: int = 2550
    host_port_ws_deployment_agent: int = 2547
    network_capacity_bps: float = 125_000_000.0
    tick_interval: float = 1.0
    tick_deadline: float = 0.8
    probe_timeout: float = 5.0
    health_path: str | None = None
    drain_timeout: float = 30.0
    scale_down_stabilization: float = 15.0
    flap_guard: bool = True
    predictive_scale_up: bool = False
    forecast_horizon: int = 5
    trend_window: int = 60
    category_hysteresis: float = 0.0
    slow_start_window: float = 30.0
    bind_host: str = "127.0.0.1"
    data_dir: Path = field(default_factory=_default_data_dir)
    agent_api_token: str | None = None
    cors_allow_origins: tuple[str, ...] = ("*",)
    cors_allow_write_origins: tuple[str, ...] = ()
    container_cpus: float | None = None
    container_memory: str | None = None
    ledger_max_len: int = 10000
    log_level: str = "INFO"
    sources: Mapping[str, str] = field(
        default_factory=lambda: MappingProxyType({}), compare=False, repr=False
    )
    _raw: Mapping[str, _Raw] = field(
        default_factory=lambda: MappingProxyType({}), compare=False, repr=False
    )
    _context: tuple[tuple[str, str], ...] = field(default=(), compare=False, repr=False)

    # -- conveniences -------------------------------------------------------

    @property
    def http_port(self) -> int:
        return self.host_port_http_deployment_agent

    @property
    def ws_port(self) -> int:
        return self.host_port_ws_deployment_agent

    @property
    def embedded_redis(self) -> bool:
        """True when no Redis is configured and the agent runs its own."""
        return self.redis_url is None

    @property
    def container_memory_bytes(self) -> int | None:
        if self.container_memory is None:
            return None
        match = _MEMORY_RE.fullmatch(self.container_memory)
        assert match is not None
        return int(match[1]) * _MEMORY_UNITS[match[2].lower()]

    # -- views --------------------------------------------------------------

    def as_dict(self, redact: bool = True) -> dict[str, Any]:
        """Name → JSON-ready value, for `check-config` and ``GET /config``.

        With `redact`, the API token reads "***" and a Redis password "***".
        """
        out: dict[str, Any] = {}
        for f in _FIELDS:
            value = getattr(self, f.spec.attr)
            if isinstance(value, Path):
                value = str(value)
            elif isinstance(value, tuple):
                value = ",".join(value)
            if redact and value is not None:
                if f.spec.secret:
                    value = "***"
                elif f.spec.name == "REDIS_URL":
                    value = _redact_url(value)
            out[f.spec.name] = value
        return out

    def explain(self, redact: bool = True) -> list[dict[str, Any]]:
        """One row per setting: name, value, source, default, mutable, help."""
        values = self.as_dict(redact=redact)
        return [
            {
                "name": f.spec.name,
                "value": values[f.spec.name],
                "source": self.sources.get(f.spec.name, "default"),
                "default": f.spec.default_text,
                "mutable": f.spec.mutable,
                "help": f.spec.help,
            }
            for f in _FIELDS
        ]

    def with_updates(self, partial: Mapping[str, object]) -> Settings:
        """A copy with `partial` applied, validated exactly like start-up.

        Keys are setting names (``{"MAX_CONTAINERS": 8}``; any spelling accepted by
        the TOML file). Only `RUNTIME_MUTABLE` settings may change; anything else
        raises ConfigError naming the key.
        """
        if not isinstance(partial, Mapping):
            raise ConfigError("config", f"must be an object of settings, got {partial!r}")
        layer: dict[str, _Raw] = {}
        for key, value in partial.items():
            name = _canonical(key) if isinstance(key, str) else None
            if name is None:
                raise ConfigError(str(key), "unknown setting")
            if name not in RUNTIME_MUTABLE:
                raise ConfigError(
                    key, "cannot be changed at run time; restart the agent with the new value"
                )
            if value is None:
                raise ConfigError(key, "must have a value, got None")
            layer[name] = _Raw(value, key, "runtime")
        raw = dict(self._raw) if self._raw else _raw_from_values(self)
        raw.update(layer)
        return _build(raw, dict(self._context))

    def with_token(self, token: str) -> Settings:
        """A copy whose AGENT_API_TOKEN is `token` (e.g. one generated at start-up).

        Kept through later `with_updates` calls; its source reads "generated".
        """
        raw = dict(self._raw) if self._raw else _raw_from_values(self)
        raw["AGENT_API_TOKEN"] = _Raw(token, "AGENT_API_TOKEN", "generated")
        return _build(raw, dict(self._context))

    def scorer_config(self) -> ScorerConfig:
        """The `agent.scoring.ScorerConfig` for these settings.

        Settings without a variable here (Holt smoothing, slow-start shape,
        latency band) keep ScorerConfig's own defaults.
        """
        from agent.scoring import ScorerConfig

        return ScorerConfig(
            cpu_weight=self.cpu_weight,
            memory_weight=self.memory_weight,
            network_weight=self.network_weight,
            availability_weight=self.availability_weight,
            history_size=self.history_size,
            best_time_window=self.best_time_window,
            ema_alpha=self.ema_alpha,
            network_capacity_bps=self.network_capacity_bps,
            trend_window=self.trend_window,
            forecast_horizon=self.forecast_horizon,
            hysteresis=self.category_hysteresis,
            slow_start_window=self.slow_start_window,
        )

    def policy_config(self) -> PolicyConfig:
        """The `agent.policy.PolicyConfig` for these settings."""
        return PolicyConfig(
            min_containers=self.default_container,
            max_containers=self.max_containers,
            high_threshold=self.high_load_threshold,
            low_threshold=self.low_load_threshold,
            critical_threshold=self.critical_load_threshold,
            cooldown=self.cooldown_period,
            scale_step=self.scale_step,
            stabilization_window=self.scale_down_stabilization,
            flap_guard=self.flap_guard,
            predictive=self.predictive_scale_up,
            drain_timeout=self.drain_timeout,
        )


_SOURCE_RANK = ("default", "env-file", "environment", "toml", "cli", "generated", "runtime")


def _rank(source: str) -> int:
    kind = source.partition(":")[0]
    return _SOURCE_RANK.index(kind) if kind in _SOURCE_RANK else 0


def _redact_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{user}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def _raw_from_values(settings: Settings) -> dict[str, _Raw]:
    """Raw layer for a Settings built by its constructor (no recorded sources)."""
    raw: dict[str, _Raw] = {}
    for f in _FIELDS:
        value = getattr(settings, f.spec.attr)
        if value is not None and value != ():
            raw[f.spec.name] = _Raw(value, f.spec.name, "default")
    return raw


# ---------------------------------------------------------------------------
# building and validating


def _build(raw: Mapping[str, _Raw], context: Mapping[str, str]) -> Settings:
    """Parse every field from the merged raw layer, then check the relations."""
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for f in _FIELDS:
        name = f.spec.name
        entry = raw.get(name)
        if entry is not None and not (isinstance(entry.value, str) and not entry.value.strip()):
            try:
                values[name] = f.parse(entry.value)
            except _Invalid as exc:
                raise ConfigError(entry.label, exc.reason) from None
            sources[name] = entry.source
            continue
        if f.spec.required:
            where = entry.label if entry is not None else name
            raise ConfigError(
                where,
                f"is required: {f.spec.help}; set it in the environment, .env, the TOML "
                f"file or with {f.spec.flag}",
            )
        values[name] = f.spec.default
        sources[name] = "default" if entry is None else entry.source

    def label(name: str) -> str:
        entry = raw.get(name)
        return entry.label if entry is not None else name

    def shown(name: str) -> object:
        entry = raw.get(name)
        return entry.value if entry is not None and sources[name] != "default" else values[name]

    def blame(first: str, second: str) -> str:
        """Of two settings in conflict, the one set by the later source (else `second`)."""
        return first if _rank(sources[first]) > _rank(sources[second]) else second

    # MAX_CONTAINERS ≥ DEFAULT_CONTAINER
    if values["MAX_CONTAINERS"] < values["DEFAULT_CONTAINER"]:
        if blame("DEFAULT_CONTAINER", "MAX_CONTAINERS") == "DEFAULT_CONTAINER":
            raise ConfigError(
                label("DEFAULT_CONTAINER"),
                f"must be an integer ≤ MAX_CONTAINERS ({values['MAX_CONTAINERS']}), "
                f"{_got(shown('DEFAULT_CONTAINER'))}",
            )
        raise ConfigError(
            label("MAX_CONTAINERS"),
            f"must be an integer ≥ DEFAULT_CONTAINER ({values['DEFAULT_CONTAINER']}), "
            f"{_got(shown('MAX_CONTAINERS'))}",
        )

    # CRITICAL < HIGH < LOW
    order = ("CRITICAL_LOAD_THRESHOLD", "HIGH_LOAD_THRESHOLD", "LOW_LOAD_THRESHOLD")
    for lower, upper in zip(order, order[1:]):
        if values[lower] < values[upper]:
            continue
        blamed = blame(lower, upper)
        chain = " < ".join(
            n if n == blamed else f"{n} ({values[n]:g})" for n in order
        )
        raise ConfigError(
            label(blamed), f"must be a number in [0, 100] with {chain}, {_got(shown(blamed))}"
        )

    weights = ("CPU_WEIGHT", "MEMORY_WEIGHT", "NETWORK_WEIGHT", "AVAILABILITY_WEIGHT")
    if all(values[w] == 0 for w in weights):
        raise ConfigError(
            ", ".join(label(w) for w in weights),
            "at least one score weight must be > 0, got all 0",
        )

    if values["TICK_DEADLINE"] is None:
        values["TICK_DEADLINE"] = 0.8 * values["TICK_INTERVAL"]
        sources["TICK_DEADLINE"] = "derived"
    elif values["TICK_DEADLINE"] > values["TICK_INTERVAL"]:
        raise ConfigError(
            label("TICK_DEADLINE"),
            f"must be a number > 0 and ≤ TICK_INTERVAL ({values['TICK_INTERVAL']:g}), "
            f"{_got(shown('TICK_DEADLINE'))}",
        )

    if values["SCALE_DOWN_STABILIZATION"] is None:
        # 1.5 checks: two consecutive agreeing checks, so once load is gone the
        # first scale-down comes at the second check (≤ three, as required), and
        # the half-period margin keeps that exact under scheduling jitter.
        values["SCALE_DOWN_STABILIZATION"] = 1.5 * values["SCALE_CHECK_PERIOD"]
        sources["SCALE_DOWN_STABILIZATION"] = "derived"

    # REDIS_URL wins; else REDIS_HOST:REDIS_PORT; else embedded (None).
    if values["REDIS_URL"] is None and values["REDIS_HOST"] is not None:
        host = values["REDIS_HOST"]
        host = f"[{host}]" if ":" in host else host
        values["REDIS_URL"] = f"redis://{host}:{values['REDIS_PORT']}/0"
        sources["REDIS_URL"] = "derived"

    if values["DATA_DIR"] is None:
        values["DATA_DIR"] = _data_dir_from(context)

    return Settings(
        **{name.lower(): value for name, value in values.items()},
        sources=MappingProxyType(sources),
        _raw=MappingProxyType(dict(raw)),
        _context=tuple(sorted(context.items())),
    )


def load_settings(
    *,
    environ: Mapping[str, str] | None = None,
    env_file: str | Path | None = DEFAULT_ENV_FILE,
    toml_file: str | Path | None = None,
    overrides: Mapping[str, object] | None = None,
) -> Settings:
    """Read, merge and validate the settings; raises ConfigError on bad input.

    `environ` defaults to `os.environ`. `env_file` defaults to ``.env`` in the
    working directory, which may be missing; an explicitly given file must exist;
    None skips it. `overrides` are the CLI flags (None values mean "not given").
    """
    env = os.environ if environ is None else environ
    raw: dict[str, _Raw] = {}

    if env_file is not None:
        path = Path(env_file)
        if isinstance(env_file, _DefaultEnvFile) and not path.exists():
            pass
        else:
            for key, value in parse_env_file(path).items():
                if key in _BY_NAME:
                    raw[key] = _Raw(value, key, f"env-file:{path}")

    for name in _BY_NAME:
        if name in env:
            raw[name] = _Raw(env[name], name, "environment")

    if toml_file is not None:
        raw.update(_read_toml(Path(toml_file)))

    for key, given in (overrides or {}).items():
        if given is None:
            continue
        canonical = _canonical(key) if isinstance(key, str) else None
        if canonical is None:
            raise ConfigError(str(key), "unknown setting")
        raw[canonical] = _Raw(given, key, "cli")

    context = {k: env[k] for k in ("XDG_DATA_HOME", "HOME") if env.get(k)}
    return _build(raw, context)


def _read_toml(path: Path) -> dict[str, _Raw]:
    try:
        with path.open("rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(str(path), "TOML file not found") from None
    except OSError as exc:
        raise ConfigError(str(path), f"cannot read the TOML file: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(str(path), f"invalid TOML: {exc}") from None
    raw: dict[str, _Raw] = {}
    for key, value in data.items():
        name = _canonical(key)
        if name is None:
            raise ConfigError(f"{path}: {key}", "unknown setting")
        if isinstance(value, dict):
            raise ConfigError(f"{path}: {key}", "must be a value, not a table")
        raw[name] = _Raw(value, key, f"toml:{path}")
    return raw


# ---------------------------------------------------------------------------
# .env files


_ENV_LINE = re.compile(r"(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*)")
_ESCAPES = {"\\": "\\", '"': '"', "n": "\n", "t": "\t", "r": "\r", "$": "$"}


def parse_env_file(path: str | Path) -> dict[str, str]:
    """Parse a `.env` file (syntax in the module docstring); later keys win."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(str(path), ".env file not found") from None
    except OSError as exc:
        raise ConfigError(str(path), f"cannot read the .env file: {exc.strerror}") from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ConfigError(str(path), f"not UTF-8 text (byte {exc.start})") from None
    return parse_env_text(text, source=str(path))


def parse_env_text(text: str, *, source: str = "<.env>") -> dict[str, str]:
    """Parse `.env` text; a malformed line raises ConfigError("<source>:<line>", ...)."""
    out: dict[str, str] = {}
    for lineno, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        where = f"{source}:{lineno}"
        match = _ENV_LINE.fullmatch(stripped)
        if match is None:
            raise ConfigError(where, f"expected KEY=VALUE, got {stripped!r}")
        key, rest = match[1], match[2]
        try:
            out[key] = _env_value(rest)
        except _Invalid as exc:
            raise ConfigError(where, f"{key}: {exc.reason}") from None
    return out


def _env_value(rest: str) -> str:
    if not rest:
        return ""
    quote = rest[0]
    if quote not in "'\"":
        value = re.split(r"\s#", rest, maxsplit=1)[0].rstrip()
        if any(q in value for q in "'\""):
            raise _Invalid(f"quotes must enclose the whole value, got {rest!r}")
        return value
    chars: list[str] = []
    i = 1
    while i < len(rest):
        c = rest[i]
        if c == quote:
            tail = rest[i + 1:].strip()
            if tail and not tail.startswith("#"):
                raise _Invalid(f"unexpected text after the closing quote: {tail!r}")
            return "".join(chars)
        if c == "\\" and quote == '"':
            if i + 1 >= len(rest):
                break
            nxt = rest[i + 1]
            if nxt not in _ESCAPES:
                raise _Invalid(f"unknown escape '\\{nxt}' in a double-quoted value")
            chars.append(_ESCAPES[nxt])
            i += 2
            continue
        chars.append(c)
        i += 1
    raise _Invalid(f"unterminated {quote} quote (values cannot span lines)")

