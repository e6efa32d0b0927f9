"""Settings: one frozen value, built in one place, validated with exact messages.

`Settings` is the effective configuration. Its attributes are the setting names in
lower case (``MAX_CONTAINERS`` → ``settings.max_containers``); their defaults,
parsers, bounds and the relations between them are the rows of
`agent.core.settings_table` (re-exported here: `describe`, `SettingSpec`,
`RUNTIME_MUTABLE`). A source reader (`agent.adapters.config_sources.load_settings`:
defaults < ``.env`` < environment < TOML < CLI) gathers `RawValue`s and calls
`build_settings`; at run time `Settings.with_updates` (``PUT /config``) layers one
more source on top, restricted to `RUNTIME_MUTABLE`, through the same function.

`build_settings` is four steps: parse every raw value with its row's parser;
resolve the paths given against the HOME and working directory the reader
recorded (the *context*); derive the unset derived settings (TICK_DEADLINE,
SCALE_DOWN_STABILIZATION, REDIS_URL, DATA_DIR, MAX_CONTAINERS_LIMIT); check the
relations. An empty value (``REDIS_HOST=``, or JSON null at run time) means "not
set": the default applies, and it still overrides a lower source. Every bad value
raises `agent.core.errors.ConfigError(variable, reason)` with the variable as the
user wrote it, e.g. ``MAX_CONTAINERS: must be an integer ≥ DEFAULT_CONTAINER (5),
got '3'``; when two settings disagree, the one set by the later source is named.

Pure: no file, environment, working-directory or clock reads; those belong to the
source reader, which passes what it found in as values.
"""
from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, TypeVar

from agent.core.errors import ConfigError
from agent.core.policy import PolicyConfig
from agent.core.redact import redact_url
from agent.core.settings_parsers import MEMORY_RE, MEMORY_UNITS, Invalid, got
from agent.core.settings_table import (
    DEFAULTS,
    RELATIONS,
    RUNTIME_MUTABLE,
    SettingSpec,
    View,
    balancer_mode,
    canonical,
    derive,
    describe,
    spec,
)

if TYPE_CHECKING:  # agent.scoring pulls in the compiled kernel; import it lazily
    from agent.scoring import ScorerConfig

__all__ = [
    "Settings",
    "SettingSpec",
    "RawValue",
    "build_settings",
    "describe",
    "RUNTIME_MUTABLE",
]

_T = TypeVar("_T")


@dataclass(frozen=True, slots=True)
class RawValue:
    """One value as a source holds it, before parsing."""

    value: object
    label: str  # the name as the user wrote it
    source: str  # "env-file:<path>", "environment", "toml:<path>", "cli", "runtime"


class _FromTable:
    def __repr__(self) -> str:
        return "TABLE"


#: The default of a `Settings` field: replaced by the table's (`DEFAULTS`) when the
#: class is made; typed Any so that mypy sees a field with a default.
TABLE: Any = _FromTable()

_OWN_FIELDS = frozenset({"sources", "_raw", "_context"})
_TYPE_OF_KIND = {"int": "int", "port": "int", "float": "float", "bool": "bool", "str": "str",
                 "path": "Path", "list": "tuple[str, ...]"}


def _annotation(row: SettingSpec) -> str:
    """The field type a row's kind calls for; None is possible when its default is."""
    optional = not row.required and DEFAULTS[row.name] is None
    return _TYPE_OF_KIND[row.kind] + (" | None" if optional else "")


def _defaults_from_table(cls: type[_T]) -> type[_T]:
    """Give every `TABLE` field its default from the table, and refuse a class whose
    fields and the table's rows disagree in names, types or defaults (so a new row
    cannot be forgotten, nor typed apart from its kind)."""
    rows = {s.attr: s for s in describe()}
    annotations = {n: a for n, a in cls.__annotations__.items() if n not in _OWN_FIELDS}
    if set(annotations) != set(rows):
        raise TypeError(
            f"Settings fields and the settings table differ: only in the class "
            f"{sorted(set(annotations) - set(rows))}, only in the table "
            f"{sorted(set(rows) - set(annotations))}"
        )
    for attr, row in rows.items():
        if annotations[attr] != _annotation(row):
            raise TypeError(f"Settings.{attr}: the {row.kind} setting {row.name} needs the "
                            f"type {_annotation(row)!r}, not {annotations[attr]!r}")
        given = cls.__dict__.get(attr, None)
        if row.required != (given is None) or not (row.required or given is TABLE):
            raise TypeError(f"Settings.{attr}: a required setting has no default, any "
                            "other has TABLE")
        if not row.required:
            setattr(cls, attr, DEFAULTS[row.name])
    return cls


@dataclass(frozen=True, slots=True, kw_only=True)
@_defaults_from_table
class Settings:
    """The effective configuration (see the module docstring).

    Build it with `agent.adapters.config_sources.load_settings` (or
    `build_settings`); the constructor does not
    validate (it exists for tests and embedding) and, knowing no HOME, defaults
    DATA_DIR to the relative ``.deployment-agent``. `sources` maps each name to where
    its value came from: "default", "derived", "env-file:<path>", "environment",
    "toml:<path>", "cli", "generated" (the API token, `with_token`) or "runtime"
    (`with_updates`).
    """

    docker_image: str
    target_port: int
    app_identifier: str = TABLE
    docker_host: str = TABLE
    engine: str = TABLE
    default_container: int = TABLE
    max_containers: int = TABLE
    max_containers_limit: int = TABLE
    critical_load_threshold: float = TABLE
    high_load_threshold: float = TABLE
    low_load_threshold: float = TABLE
    cooldown_period: float = TABLE
    scale_step: int = TABLE
    scale_check_period: float = TABLE
    cpu_weight: float = TABLE
    memory_weight: float = TABLE
    network_weight: float = TABLE
    availability_weight: float = TABLE
    history_size: int = TABLE
    best_time_window: int = TABLE
    ema_alpha: float = TABLE
    redis_url: str | None = TABLE
    redis_host: str | None = TABLE
    redis_port: int = TABLE
    host_port_http_deployment_agent: int = TABLE
    host_port_ws_deployment_agent: int = TABLE
    ws_max_connections: int = TABLE
    network_capacity_bps: float = TABLE
    tick_interval: float = TABLE
    tick_deadline: float = TABLE
    probe_timeout: float = TABLE
    health_path: str | None = TABLE
    drain_timeout: float = TABLE
    scale_down_stabilization: float = TABLE
    flap_guard: bool = TABLE
    predictive_scale_up: bool = TABLE
    scale_up_sizing: str = TABLE
    scaling_strategy: str = TABLE
    target_utilization: float = TABLE
    target_in_flight: float | None = TABLE
    scale_tolerance: float = TABLE
    scale_up_limit: int = TABLE
    scale_down_limit: int = TABLE
    forecast_horizon: int = TABLE
    trend_window: int = TABLE
    category_hysteresis: float = TABLE
    slow_start_window: float = TABLE
    bind_host: str = TABLE
    advertise_url: str | None = TABLE
    leader_lease_ttl: float = TABLE
    data_dir: Path = TABLE
    agent_api_token: str | None = TABLE
    cors_allow_origins: tuple[str, ...] = TABLE
    cors_allow_write_origins: tuple[str, ...] = TABLE
    container_cpus: float | None = TABLE
    container_memory: str | None = TABLE
    balancer: str = TABLE
    balancer_bind: str = TABLE
    balancer_port: int = TABLE
    balancer_algorithm: str = TABLE
    haproxy_socket: str | None = TABLE
    haproxy_backend: str | None = TABLE
    swarm_constraints: tuple[str, ...] = TABLE
    swarm_network: str | None = TABLE
    proc_root: Path = TABLE
    cgroup_root: Path = TABLE
    collector_report_ttl: float = TABLE
    ledger_max_len: int = TABLE
    log_level: str = TABLE
    sources: Mapping[str, str] = field(
        default_factory=lambda: MappingProxyType({}), compare=False, repr=False
    )
    _raw: Mapping[str, RawValue] = field(
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
    def balancer_mode(self) -> str:
        """"none", "embedded" (the agent's own haproxy) or "external" (HAPROXY_SOCKET)."""
        return balancer_mode({"BALANCER": self.balancer, "HAPROXY_SOCKET": self.haproxy_socket})

    @property
    def application_url(self) -> str | None:
        """Where the embedded balancer serves the application (None otherwise)."""
        if self.balancer_mode != "embedded":
            return None
        host = f"[{self.balancer_bind}]" if ":" in self.balancer_bind else self.balancer_bind
        return f"http://{host}:{self.balancer_port}/"

    @property
    def container_memory_bytes(self) -> int | None:
        if self.container_memory is None:
            return None
        match = MEMORY_RE.fullmatch(self.container_memory)
        assert match is not None
        return int(match[1]) * MEMORY_UNITS[match[2].lower()]

    # -- views --------------------------------------------------------------

    def as_dict(self, redact: bool = True) -> dict[str, Any]:
        """Name → JSON-ready value, for `check-config` and ``GET /config``.

        With `redact`, the API token reads "***" and a Redis password "***".
        """
        out: dict[str, Any] = {}
        for row in describe():
            value = getattr(self, row.attr)
            if isinstance(value, Path):
                value = str(value)
            elif isinstance(value, tuple):
                value = ",".join(value)
            if redact and value is not None:
                if row.secret:
                    value = "***"
                elif row.name == "REDIS_URL":
                    value = redact_url(value)
            out[row.name] = value
        return out

    def explain(self, redact: bool = True) -> list[dict[str, Any]]:
        """One row per setting: name, value, source, default, mutable, help."""
        values = self.as_dict(redact=redact)
        return [
            {
                "name": row.name,
                "value": values[row.name],
                "source": self.sources.get(row.name, "default"),
                "default": row.default_text,
                "mutable": row.mutable,
                "help": row.help,
            }
            for row in describe()
        ]

    # -- new values -----------------------------------------------------------

    def with_updates(self, partial: Mapping[str, object]) -> Settings:
        """A copy with `partial` applied, validated exactly like start-up.

        Keys are setting names (``{"MAX_CONTAINERS": 8}``; any spelling accepted by
        the TOML file). Only `RUNTIME_MUTABLE` settings may change, a number only
        inside its run-time range (`SettingSpec.runtime`), MAX_CONTAINERS only up
        to the start-up MAX_CONTAINERS_LIMIT; ``None`` unsets a setting whose
        default is unset (TARGET_IN_FLIGHT). Anything else raises ConfigError
        naming the key.
        """
        if not isinstance(partial, Mapping):
            raise ConfigError("config", f"must be an object of settings, got {partial!r}")
        layer: dict[str, RawValue] = {}
        for key, value in partial.items():
            name = canonical(key) if isinstance(key, str) else None
            if name is None:
                raise ConfigError(str(key), "unknown setting")
            if name not in RUNTIME_MUTABLE:
                raise ConfigError(
                    key, "cannot be changed at run time; restart the agent with the new value"
                )
            if value is None and DEFAULTS[name] is not None:
                raise ConfigError(key, "must have a value, got None")
            layer[name] = RawValue(value, key, "runtime")
        new = self._rebuilt(layer)
        for name, entry in layer.items():
            fault = spec(name).runtime_fault(getattr(new, name.lower()))
            if fault is not None:
                raise ConfigError(entry.label, f"{fault}, {got(entry.value)}")
        return new

    def with_token(self, token: str) -> Settings:
        """A copy whose AGENT_API_TOKEN is `token` (e.g. one generated at start-up).

        Kept through later `with_updates` calls; its source reads "generated".
        """
        return self._rebuilt({"AGENT_API_TOKEN": RawValue(token, "AGENT_API_TOKEN", "generated")})

    def _rebuilt(self, layer: Mapping[str, RawValue]) -> Settings:
        """The settings of one more layer. A start-up-only derived value keeps the
        value it was derived to (MAX_CONTAINERS_LIMIT must not follow a run-time
        MAX_CONTAINERS)."""
        raw = dict(self._raw) if self._raw else _raw_from_values(self)
        for row in describe():
            value = getattr(self, row.attr)
            if row.derived is not None and not row.mutable and row.name not in raw and value is not None:
                raw[row.name] = RawValue(value, row.name, self.sources.get(row.name, "derived"))
        raw.update(layer)
        return build_settings(raw, dict(self._context))

    # -- the configs of the parts ---------------------------------------------

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
            strategy=self.scaling_strategy,
            scale_up_sizing=self.scale_up_sizing,
            resource_weights=(("cpu", self.cpu_weight), ("memory", self.memory_weight),
                              ("network", self.network_weight),
                              ("availability", self.availability_weight)),
            target_utilization=self.target_utilization,
            target_in_flight=self.target_in_flight,
            tolerance=self.scale_tolerance,
            scale_up_limit=self.scale_up_limit,
            scale_down_limit=self.scale_down_limit,
        )


def _raw_from_values(settings: Settings) -> dict[str, RawValue]:
    """Raw layer for a Settings built by its constructor (no recorded sources).

    A start-up-only derived setting left at the table's default is derived from
    this object's own values (``Settings(max_containers=40)`` has the ceiling
    40, not the default's 15)."""
    values = {row.name: getattr(settings, row.attr) for row in describe()}
    raw: dict[str, RawValue] = {}
    for row in describe():
        value = values[row.name]
        if row.derived is not None and not row.mutable and value == DEFAULTS[row.name]:
            value = row.derived.compute(values, dict(settings._context))
        if value is not None and value != ():
            raw[row.name] = RawValue(value, row.name, "default")
    return raw


# ---------------------------------------------------------------------------
# building: parse, resolve paths, derive, check relations


def build_settings(raw: Mapping[str, RawValue], context: Mapping[str, str]) -> Settings:
    """The `Settings` of the merged raw layer; raises ConfigError on a bad value.

    `context` holds what the reader found about the run: ``HOME``,
    ``XDG_DATA_HOME`` (for DATA_DIR's default) and ``CWD`` (to make paths absolute).
    """
    values, sources = _parse(raw)
    _resolve_paths(values, context)
    derive(values, sources, context)
    _check_relations(values, sources, raw)
    return Settings(
        **{name.lower(): value for name, value in values.items()},
        sources=MappingProxyType(sources),
        _raw=MappingProxyType(dict(raw)),
        _context=tuple(sorted(context.items())),
    )


def _parse(raw: Mapping[str, RawValue]) -> tuple[dict[str, Any], dict[str, str]]:
    """Every setting's parsed value (its default when unset) and source."""
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for row in describe():
        values[row.name], sources[row.name] = _parse_one(row, raw.get(row.name))
    return values, sources


def _parse_one(row: SettingSpec, entry: RawValue | None) -> tuple[Any, str]:
    unset = entry is None or entry.value is None or (
        isinstance(entry.value, str) and not entry.value.strip())
    if entry is not None and not unset:
        try:
            return row.parse(entry.value), entry.source
        except Invalid as exc:
            raise ConfigError(entry.label, exc.reason) from None
    if row.required:
        raise ConfigError(
            entry.label if entry is not None else row.name,
            f"is required: {row.help}; set it in the environment, .env, the TOML "
            f"file or with {row.flag}",
        )
    return row.default, "default" if entry is None else entry.source


def _resolve_paths(values: dict[str, Any], context: Mapping[str, str]) -> None:
    """``~`` and relative paths given, against the context's HOME and CWD (when known)."""
    for row in describe():
        if row.kind == "path" and values[row.name] is not None:
            values[row.name] = _resolve_path(values[row.name], context)


def _resolve_path(path: Path, context: Mapping[str, str]) -> Path:
    text = str(path)
    home = context.get("HOME")
    if home and (text == "~" or text.startswith("~/")):
        text = home + text[1:]
    cwd = context.get("CWD")
    if cwd and not os.path.isabs(text):
        text = os.path.join(cwd, text)
    return Path(os.path.normpath(text))


_SOURCE_RANK = ("default", "env-file", "environment", "toml", "cli", "generated", "runtime")


def _rank(source: str) -> int:
    kind = source.partition(":")[0]
    return _SOURCE_RANK.index(kind) if kind in _SOURCE_RANK else 0


def _check_relations(
    values: Mapping[str, Any], sources: Mapping[str, str], raw: Mapping[str, RawValue]
) -> None:
    def label(name: str) -> str:
        entry = raw.get(name)
        return entry.label if entry is not None else name

    def shown(name: str) -> object:
        entry = raw.get(name)
        return entry.value if entry is not None and sources[name] != "default" else values[name]

    def later(first: str, second: str) -> str:
        """Of two settings in conflict, the one set by the later source (else `second`)."""
        return first if _rank(sources[first]) > _rank(sources[second]) else second

    view = View(values, label, shown, later)
    for relation, error in RELATIONS:
        broken = relation.broken(values)
        if broken is not None:
            raise error(broken, view)
