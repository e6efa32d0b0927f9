"""Settings: one frozen value built in one place, validated with exact messages.

Sources, lowest precedence first (a later source wins, variable by variable)::

    defaults  <  .env file  <  environment  <  TOML file  <  CLI overrides

The environment beats `.env` as with docker compose and python-dotenv, so a
deployment can override a checked-in `.env`. The TOML file and the CLI flags are
given explicitly for this run, so they beat both; a CLI flag beats everything.
At run time `Settings.with_updates` (``PUT /config``) layers one more source on
top, restricted to `RUNTIME_MUTABLE`.

Names are the SPEC §2 compat variables (so a prototype user's `.env` keeps
working) plus ours; their table (kind, default, help, parser) is in
`agent.core.settings_table`, re-exported here: `describe()` lists them all with default
and help, and the attribute of each is its name in lower case (``MAX_CONTAINERS`` →
``settings.max_containers``). In the TOML file and in overrides a key may be
written ``MAX_CONTAINERS``, ``max_containers`` or ``max-containers``; unknown keys
are an error there. In the environment and `.env` unknown names are ignored
(those are shared with other tools).

An empty value (``REDIS_HOST=``) means "not set": the default applies, and it
still overrides a lower source. Every bad value raises
`agent.core.errors.ConfigError(variable, reason)` with the variable as the user wrote
it, e.g. ``MAX_CONTAINERS: must be an integer ≥ DEFAULT_CONTAINER (5), got '3'``.

`.env` syntax (small and strict): ``KEY=VALUE`` lines, optional ``export ``
prefix, ``#`` comments on their own line or after an unquoted value (preceded
by a space), values in single quotes (literal) or double quotes (escapes
``\\\\ \\" \\n \\t \\r``). No variable expansion, no multi-line values; anything
else is a `ConfigError` naming the file and line.
"""
from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from agent.core.errors import ConfigError
from agent.core.redact import redact_url
from agent.core.policy import PolicyConfig
from agent.core.settings_table import (
    _BY_NAME,
    _FIELDS,
    _MEMORY_RE,
    _MEMORY_UNITS,
    RUNTIME_MUTABLE,
    SettingSpec,
    _canonical,
    _got,
    _Invalid,
    describe,
)

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
                    value = redact_url(value)
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
        """The `agent.core.policy.PolicyConfig` for these settings."""
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

