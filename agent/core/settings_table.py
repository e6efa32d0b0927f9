"""The table of settings: the one place each setting's facts are written.

A row (`SettingSpec`) holds a setting's name, kind, default, help text, bounds or
choices, whether it may change at run time, and, for a setting whose default
depends on others, how that default is derived. Everything else reads the rows:
`agent.core.settings` parses and derives with them and builds `Settings` (whose
field defaults are `DEFAULTS`); `PolicyConfig` and `ScorerConfig` take their
defaults (and the policy its ranges) from `DEFAULTS` and `spec()`; the CLI makes a
flag per row; ``check-config``, ``GET /config`` and ``.env.example`` list them.

The rules *between* settings (``DEFAULT_CONTAINER ≤ MAX_CONTAINERS ≤
MAX_CONTAINERS_LIMIT``, ``CRITICAL < HIGH < LOW``, a weight > 0, ``TICK_DEADLINE ≤
TICK_INTERVAL``, ``LEADER_LEASE_TTL ≥ 2 × TICK_INTERVAL``) are `RELATIONS`, checked
after every value has parsed, in this order; `Ascending.broken` is the one check
`PolicyConfig` uses too.

Limits a token cannot lift (``PUT /config`` needs only the API token, so what it
may set must stay sane whoever holds it):

* a **run-time range**: a mutable number's row may carry `runtime`, a second,
  narrower `Bounds` inside `bounds`. Start-up sources (environment, ``.env``,
  TOML, CLI) may use all of `bounds`; a run-time update (``PUT /config``, and the
  stored runtime config read back at recovery) must also lie in `runtime`, else
  `Settings.with_updates` refuses it naming the setting and the range. Every
  mutable number ends up with a finite range at run time: its `runtime` or
  `bounds`, or (DEFAULT_CONTAINER, MAX_CONTAINERS) a relation to a ceiling;
* a **start-up ceiling**: MAX_CONTAINERS_LIMIT is a start-up-only row, derived
  from the start-up MAX_CONTAINERS, with the relation ``MAX_CONTAINERS ≤
  MAX_CONTAINERS_LIMIT`` (`CONTAINER_CEILING`). A start-up-only derived value is
  pinned once built (`Settings.with_updates` never derives it again), so raising
  MAX_CONTAINERS at run time cannot carry its ceiling along.

Adding a setting is one row here (plus its field in `Settings`, and its use).
Choice settings use `choices=` (as LOG_LEVEL).

Pure: nothing here reads a file, the environment or a clock.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from agent.core import settings_parsers as p
from agent.core import swarm
from agent.core.errors import ConfigError
from agent.core.settings_parsers import Bounds

__all__ = [
    "SettingSpec",
    "Derived",
    "Ascending",
    "AllZero",
    "AtLeastTimes",
    "DEFAULTS",
    "RELATIONS",
    "RUNTIME_MUTABLE",
    "THRESHOLD_ORDER",
    "CONTAINER_RANGE",
    "BALANCERS",
    "BALANCER_ALGORITHMS",
    "balancer_mode",
    "CONTAINER_CEILING",
    "describe",
    "spec",
    "canonical",
    "data_dir_from",
]

REQUIRED: Any = object()  # the default of a setting that has none

_KINDS = ("str", "int", "float", "bool", "port", "path", "list")


@dataclass(frozen=True, slots=True)
class Derived:
    """How an unset setting gets its value: from the other (parsed) values and the
    run's context (HOME, XDG_DATA_HOME, working directory, recorded by the source
    reader). `source` is what `Settings.sources` reports for it."""

    compute: Callable[[Mapping[str, Any], Mapping[str, str]], Any]
    source: str = "derived"


@dataclass(frozen=True, slots=True)
class SettingSpec:
    """One setting: its name, default, help, and what may change at run time.

    `default` is the parsed default value (None for required, optional or derived
    settings; `DEFAULTS` holds the derived ones too); `default_text` is what to
    show people. The CLI flag is `flag`. Numbers lie in `bounds`, and a run-time
    update of a mutable one also in `runtime` when it is set (see the module
    docstring); a choice setting lists its `choices`.
    """

    name: str
    kind: str  # one of _KINDS
    default: Any
    default_text: str
    help: str
    mutable: bool = False
    secret: bool = False
    required: bool = False
    bounds: Bounds | None = None
    runtime: Bounds | None = None
    choices: tuple[str, ...] = ()
    derived: Derived | None = field(default=None, compare=False, repr=False)
    parse: Callable[[object], Any] = field(default=p.to_str, compare=False, repr=False)

    @property
    def attr(self) -> str:
        return self.name.lower()

    @property
    def flag(self) -> str:
        return "--" + self.name.lower().replace("_", "-")

    @property
    def expect(self) -> str:
        """What a valid value is, for messages (``an integer ≥ 1``); numbers only."""
        assert self.bounds is not None, self.name
        return self.bounds.expect(integer=self.kind in ("int", "port"))

    def admits(self, value: object) -> bool:
        """Whether a value that is already a number is valid here (numbers only):
        an int for an integer setting, a finite int or float otherwise, in `bounds`.
        Nothing is parsed: ``"5"`` is not 5."""
        assert self.bounds is not None, self.name
        if self.kind in ("int", "port"):
            ok = isinstance(value, int) and not isinstance(value, bool)
        else:
            ok = isinstance(value, (int, float)) and math.isfinite(value)
        return ok and self.bounds.contains(value)  # type: ignore[arg-type]

    @property
    def runtime_range(self) -> Bounds | None:
        """Where a run-time update of this number must lie (`runtime`, else `bounds`)."""
        return self.runtime if self.runtime is not None else self.bounds

    def runtime_fault(self, value: object) -> str | None:
        """Why a parsed value may not be set at run time (None when it may):
        outside `runtime`. The message names the range."""
        if self.runtime is None or not isinstance(value, (int, float)) or isinstance(value, bool):
            return None
        if self.runtime.contains(value):
            return None
        expect = self.runtime.expect(integer=self.kind in ("int", "port"))
        return f"must be {expect} at run time (restart the agent to go beyond that)"


_PARSE_BY_KIND: Mapping[str, Callable[[object], Any]] = {
    "bool": p.to_bool, "path": p.path, "str": p.to_str,
}


def _row(
    name: str,
    kind: str,
    default: Any,
    help: str,
    parse: Callable[[object], Any] | None = None,
    *,
    bounds: Bounds | None = None,
    runtime: Bounds | None = None,
    choices: tuple[str, ...] = (),
    aliases: Mapping[str, str] | None = None,
    derived: Derived | None = None,
    default_text: str | None = None,
    mutable: bool = False,
    secret: bool = False,
) -> SettingSpec:
    """A row; the parser follows from `kind` and `bounds` or `choices` unless given."""
    assert kind in _KINDS, kind
    assert runtime is None or (mutable and bounds is not None), name
    if parse is None:
        if bounds is not None:
            parse = p.number(bounds, integer=kind in ("int", "port"))
        elif choices:
            parse = p.one_of(choices, aliases)
        else:
            parse = _PARSE_BY_KIND[kind]
    required = default is REQUIRED
    if default_text is None:
        default_text = "(required)" if required else ("(unset)" if default is None else (
            ",".join(default) if isinstance(default, tuple) else str(default).lower()
            if isinstance(default, bool) else str(default)))
    return SettingSpec(
        name=name, kind=kind, default=None if required else default,
        default_text=default_text, help=help, mutable=mutable, secret=secret,
        required=required, bounds=bounds, runtime=runtime, choices=choices, derived=derived,
        parse=parse,
    )


def data_dir_from(context: Mapping[str, str]) -> Path:
    """The default data directory: $XDG_DATA_HOME (if absolute, as the XDG spec
    says), else $HOME/.local/share, else .deployment-agent in the working directory."""
    xdg = context.get("XDG_DATA_HOME", "")
    if xdg.startswith("/"):
        return Path(xdg) / "deployment-agent"
    home = context.get("HOME", "")
    if not home or home == "~":
        return Path(context.get("CWD", "")) / ".deployment-agent"
    return Path(home) / ".local" / "share" / "deployment-agent"


def _redis_url(values: Mapping[str, Any], context: Mapping[str, str]) -> str | None:
    """REDIS_URL wins; else REDIS_HOST:REDIS_PORT; else None (embedded)."""
    host = values["REDIS_HOST"]
    if host is None:
        return None
    host = f"[{host}]" if ":" in host else host
    return f"redis://{host}:{values['REDIS_PORT']}/0"


#: BALANCER's values; HAPROXY_SOCKET decides whether haproxy is embedded or external.
BALANCERS = ("none", "haproxy")
#: HAProxy's algorithms that accept run-time weights and servers (the adapter's
#: `agent.core.haproxy_config.DYNAMIC_ALGORITHMS`, which a test holds equal).
BALANCER_ALGORITHMS = ("roundrobin", "leastconn", "random")

_RATIO = Bounds(0, 100)
_NON_NEGATIVE = Bounds(0)
_POSITIVE = Bounds(0, lo_open=True)
_AT_LEAST_1 = Bounds(1)
_PORT = Bounds(1, 65535)
# Run-time ranges (`SettingSpec.runtime`): wide enough for any sane pool, narrow
# enough that a token holder cannot stop the loop from acting (a cooldown of a
# year), starve it (a probe timeout of an hour) or make it spin.
_HOUR = 3600.0
_PERIOD = Bounds(0.1, _HOUR)
_DELAY = Bounds(0, _HOUR)
_WEIGHT = Bounds(0, 10)
_STEP = Bounds(1, 100)
_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
_STRATEGIES = ("threshold", "target")
_SIZINGS = ("shortfall", "step")

_ROWS: tuple[SettingSpec, ...] = (
    _row("APP_IDENTIFIER", "str", "RUSTYBALANCER",
         "pool name: label value of the workers and prefix of their names and Redis keys",
         p.app_identifier),
    _row("DOCKER_IMAGE", "str", REQUIRED, "image of the worker containers", p.image),
    _row("TARGET_PORT", "port", REQUIRED, "port the workers listen on inside the container",
         bounds=_PORT),
    _row("DOCKER_HOST", "str", "unix:///var/run/docker.sock", "container engine address",
         p.docker_host),
    _row("ENGINE", "str", "docker",
         "docker: containers of the engine at DOCKER_HOST; swarm: services of the swarm "
         "whose manager DOCKER_HOST is, sampled by per-node collectors (docs/swarm.md)",
         choices=("docker", "swarm")),
    _row("DEFAULT_CONTAINER", "int", 5,
         "initial desired number of containers, and the floor for scale-down",
         bounds=_AT_LEAST_1, mutable=True),
    _row("MAX_CONTAINERS", "int", 15,
         "ceiling for scale-up (≥ DEFAULT_CONTAINER; ≤ MAX_CONTAINERS_LIMIT at run time)",
         bounds=_AT_LEAST_1, mutable=True),
    _row("MAX_CONTAINERS_LIMIT", "int", None,
         "hard ceiling of MAX_CONTAINERS that no run-time change may lift (start-up only)",
         bounds=_AT_LEAST_1, default_text="MAX_CONTAINERS at start-up",
         derived=Derived(lambda v, _: v["MAX_CONTAINERS"])),
    _row("CRITICAL_LOAD_THRESHOLD", "float", 20.0,
         "any single container scoring below this forces a scale-up", bounds=_RATIO,
         mutable=True),
    _row("HIGH_LOAD_THRESHOLD", "float", 55.0,
         "scale up when the average score drops below this", bounds=_RATIO, mutable=True),
    _row("LOW_LOAD_THRESHOLD", "float", 80.0,
         "scale down when the average score rises above this", bounds=_RATIO, mutable=True),
    _row("COOLDOWN_PERIOD", "float", 5.0,
         "seconds between two scale-ups (0 = no cooldown)", bounds=_NON_NEGATIVE,
         runtime=_DELAY, mutable=True),
    _row("SCALE_STEP", "int", 1, "containers added or removed per decision",
         bounds=_AT_LEAST_1, runtime=_STEP, mutable=True),
    _row("SCALE_CHECK_PERIOD", "float", 10.0, "seconds between two scaling decisions",
         bounds=_POSITIVE, runtime=_PERIOD, mutable=True),
    _row("CPU_WEIGHT", "float", 0.35, "weight of the CPU score in the overall score",
         bounds=_NON_NEGATIVE, runtime=_WEIGHT, mutable=True),
    _row("MEMORY_WEIGHT", "float", 0.25, "weight of the memory score", bounds=_NON_NEGATIVE,
         runtime=_WEIGHT, mutable=True),
    _row("NETWORK_WEIGHT", "float", 0.15, "weight of the network score",
         bounds=_NON_NEGATIVE, runtime=_WEIGHT, mutable=True),
    _row("AVAILABILITY_WEIGHT", "float", 0.25, "weight of the availability score",
         bounds=_NON_NEGATIVE, runtime=_WEIGHT, mutable=True),
    _row("HISTORY_SIZE", "int", 20, "response times kept per container", bounds=_AT_LEAST_1),
    _row("BEST_TIME_WINDOW", "int", 10, "best response times kept per container",
         bounds=_AT_LEAST_1),
    _row("EMA_ALPHA", "float", 0.2, "smoothing of the availability score, in (0, 1]",
         bounds=Bounds(0, 1, lo_open=True), mutable=True),
    _row("REDIS_URL", "str", None,
         "Redis URL; wins over REDIS_HOST/REDIS_PORT; with neither set the agent runs "
         "its own redis-server", p.redis_url, derived=Derived(_redis_url)),
    _row("REDIS_HOST", "str", None, "Redis host (compat; REDIS_URL is preferred)",
         p.hostname),
    _row("REDIS_PORT", "port", 6379, "Redis port, used with REDIS_HOST", bounds=_PORT),
    _row("HOST_PORT_HTTP_DEPLOYMENT_AGENT", "port", 2550,
         "HTTP port (API, /stats, /ws, dashboard)", bounds=_PORT),
    _row("HOST_PORT_WS_DEPLOYMENT_AGENT", "port", 2547,
         "WebSocket port (compat; /ws is also served on the HTTP port)", bounds=_PORT),
    _row("WS_MAX_CONNECTIONS", "int", 1000,
         "WebSocket connections each port accepts at once; one more is closed at once "
         "with code 1013 (try again later). The listen backlog is sized for it",
         bounds=Bounds(1, 100_000)),
    _row("NETWORK_CAPACITY_BPS", "float", 125_000_000.0,
         "bytes/s that count as a saturated network (default 1 Gbit/s)", bounds=_POSITIVE,
         runtime=Bounds(1e3, 1e12), default_text="125000000", mutable=True),
    _row("TICK_INTERVAL", "float", 1.0, "seconds between two samples of every container",
         bounds=_POSITIVE),
    _row("TICK_DEADLINE", "float", None,
         "seconds a tick waits for samples before marking late ones stale "
         "(≤ TICK_INTERVAL)", bounds=_POSITIVE, default_text="0.8 × TICK_INTERVAL",
         derived=Derived(lambda v, _: 0.8 * v["TICK_INTERVAL"])),
    _row("PROBE_TIMEOUT", "float", 5.0, "seconds before an availability probe counts as "
         "no answer", bounds=_POSITIVE, runtime=Bounds(0.01, 60), mutable=True),
    _row("HEALTH_PATH", "str", None,
         "HTTP path to probe for availability; unset = time a TCP connect", p.health_path),
    _row("DRAIN_TIMEOUT", "float", 30.0,
         "seconds after which a SUNDOWN container is removed even if still busy",
         bounds=_NON_NEGATIVE, runtime=Bounds(0, 24 * _HOUR), mutable=True),
    # 1.5 checks: two consecutive agreeing checks, so once load is gone the first
    # scale-down comes at the second check (≤ three, as required), and the
    # half-period margin keeps that exact under scheduling jitter.
    _row("SCALE_DOWN_STABILIZATION", "float", None,
         "seconds of scale-down recommendations that must all agree before scaling "
         "down (0 = off)", bounds=_NON_NEGATIVE, runtime=_DELAY,
         default_text="1.5 × SCALE_CHECK_PERIOD",
         derived=Derived(lambda v, _: 1.5 * v["SCALE_CHECK_PERIOD"]), mutable=True),
    _row("FLAP_GUARD", "bool", True,
         "refuse a scale-down whose projected average score would fall below "
         "HIGH_LOAD_THRESHOLD", mutable=True),
    _row("PREDICTIVE_SCALE_UP", "bool", False,
         "scale up early when the forecast average score is below HIGH_LOAD_THRESHOLD",
         mutable=True),
    # better (SPEC §5): a threshold scale-up sized by the shortfall, so one check
    # answers a step load; "step" is the compat rule (SCALE_STEP per decision).
    _row("SCALE_UP_SIZING", "str", "shortfall",
         "threshold strategy: shortfall = a scale-up adds max(SCALE_STEP, ceil(active × "
         "u / (100 − HIGH_LOAD_THRESHOLD)) − active) containers (≤ SCALE_UP_LIMIT), u = "
         "the mean utilization of the most-used weighted capacity (CPU, memory, network) "
         "or 100 − the average score; step = SCALE_STEP (compat)", choices=_SIZINGS, mutable=True),
    _row("SCALING_STRATEGY", "str", "threshold",
         "threshold: the compat score thresholds; target: target tracking (desired = "
         "ceil(active × load / target), as Kubernetes' HPA)", choices=_STRATEGIES,
         mutable=True),
    _row("TARGET_UTILIZATION", "float", 50.0,
         "target tracking: the mean utilization (100 − score) to hold each container at",
         bounds=Bounds(0, 100, lo_open=True), mutable=True),
    _row("TARGET_IN_FLIGHT", "float", None,
         "target tracking: requests in flight per container to hold (needs a balancer "
         "that reports them); unset = utilization only", bounds=_POSITIVE,
         runtime=Bounds(0, 100_000, lo_open=True), mutable=True),
    _row("SCALE_TOLERANCE", "float", 0.1,
         "target tracking: no change while load / target is within 1 ± this (HPA: 0.1)",
         bounds=Bounds(0, 1, hi_open=True), mutable=True),
    _row("SCALE_UP_LIMIT", "int", 4,
         "containers one scale-up may add at most (target tracking, and the threshold "
         "strategy's shortfall sizing; never fewer than SCALE_STEP)", bounds=_AT_LEAST_1,
         runtime=_STEP, mutable=True),
    _row("SCALE_DOWN_LIMIT", "int", 1,
         "target tracking: containers one decision may drain at most", bounds=_AT_LEAST_1,
         runtime=_STEP, mutable=True),
    _row("FORECAST_HORIZON", "int", 5, "ticks ahead of the score forecast",
         bounds=_AT_LEAST_1, runtime=Bounds(1, 3600), mutable=True),
    _row("TREND_WINDOW", "int", 60, "ticks in the score trend (slope) window",
         bounds=Bounds(2)),
    _row("CATEGORY_HYSTERESIS", "float", 0.0,
         "score margin before a container changes category (0 = compat)",
         bounds=Bounds(0, 15), mutable=True),
    _row("SLOW_START_WINDOW", "float", 30.0,
         "seconds over which a new container's routing weight ramps up (0 = off)",
         bounds=_NON_NEGATIVE, runtime=_DELAY, mutable=True),
    _row("BIND_HOST", "str", "127.0.0.1", "address the HTTP and WebSocket servers bind to",
         p.hostname),
    _row("ADVERTISE_URL", "str", None,
         "this agent's API as other agents name it to clients (their 409 answers while it "
         "leads); unset = http://BIND_HOST:<HTTP port>, the host name when BIND_HOST is "
         "0.0.0.0 or ::", p.http_url),
    _row("LEADER_LEASE_TTL", "float", 10.0,
         "seconds the leader lease lasts unless renewed (every tick): a follower takes over "
         "within it once the leader is gone, a cut-off leader stops acting within it "
         "(≥ 2 × TICK_INTERVAL)", bounds=Bounds(1, 300)),
    _row("DATA_DIR", "path", None, "directory for the embedded Redis and other state",
         default_text="$XDG_DATA_HOME/deployment-agent or ~/.local/share/deployment-agent",
         derived=Derived(lambda _, context: data_dir_from(context), source="default")),
    _row("AGENT_API_TOKEN", "str", None,
         "bearer token of the mutating endpoints; unset = generated at start-up",
         p.token, secret=True),
    _row("CORS_ALLOW_ORIGINS", "list", ("*",),
         "origins allowed to read the API from a browser ('*' or a comma-separated list)",
         p.origins),
    _row("CORS_ALLOW_WRITE_ORIGINS", "list", (),
         "origins allowed to send mutating requests from a browser (comma-separated; the "
         "token is still required)", p.write_origins, default_text="(none)"),
    _row("CONTAINER_CPUS", "float", None, "CPU limit of each worker (e.g. 0.5); unset = none",
         bounds=_POSITIVE),
    _row("CONTAINER_MEMORY", "str", None,
         "memory limit of each worker (e.g. 256m); unset = none", p.memory),
    _row("BALANCER", "str", "none",
         "load balancer kept in sync with the pool: haproxy = the agent's own haproxy "
         "(or, with HAPROXY_SOCKET, yours); none = publish the queue only",
         choices=BALANCERS),
    _row("BALANCER_BIND", "str", "127.0.0.1",
         "address the embedded balancer serves the application on", p.bind_address),
    _row("BALANCER_PORT", "port", 8080,
         "port the embedded balancer serves the application on (≠ the agent's HTTP and "
         "WebSocket ports)", bounds=_PORT),
    _row("BALANCER_ALGORITHM", "str", "roundrobin",
         "balancing algorithm of the embedded backend (those that take run-time weights)",
         choices=BALANCER_ALGORITHMS),
    _row("HAPROXY_SOCKET", "str", None,
         "runtime API (unix socket path or host:port) of an HAProxy you run; with "
         "BALANCER=haproxy the agent drives HAPROXY_BACKEND there instead of its own "
         "haproxy", p.haproxy_socket),
    _row("HAPROXY_BACKEND", "str", None,
         "backend of that HAProxy whose servers the agent manages (only those it "
         "created); required with HAPROXY_SOCKET", p.haproxy_backend),
    _row("SWARM_CONSTRAINTS", "list", (),
         "swarm: placement constraints of the workers, comma-separated "
         "(node.role==worker,node.labels.zone!=edge)", swarm.constraints,
         default_text="(none)"),
    _row("SWARM_NETWORK", "str", None,
         "swarm: overlay network the workers join (dnsrr, reached at their task "
         "address); unset = a host-mode published port on each worker's node",
         swarm.network_name),
    _row("PROC_ROOT", "path", Path("/proc"),
         "the host's /proc as the sampler sees it (e.g. /host/proc in a container)"),
    _row("CGROUP_ROOT", "path", Path("/sys/fs/cgroup"),
         "the host's cgroup mount as the sampler sees it (e.g. /host/sys/fs/cgroup)"),
    _row("COLLECTOR_REPORT_TTL", "float", None,
         "collector: seconds its node's report stays in Redis; a node silent that long "
         "has its containers marked stale", bounds=_POSITIVE,
         default_text="3 × TICK_INTERVAL",
         derived=Derived(lambda v, _: 3 * v["TICK_INTERVAL"])),
    _row("LEDGER_MAX_LEN", "int", 10000, "decision-ledger entries kept in Redis",
         bounds=_AT_LEAST_1),
    _row("LOG_LEVEL", "str", "INFO", "DEBUG, INFO, WARNING, ERROR or CRITICAL",
         choices=_LEVELS, aliases={"WARN": "WARNING"}),
)

_BY_NAME: Mapping[str, SettingSpec] = MappingProxyType({s.name: s for s in _ROWS})

#: Names that `Settings.with_updates` may change while the agent runs.
RUNTIME_MUTABLE: frozenset[str] = frozenset(s.name for s in _ROWS if s.mutable)


def describe() -> tuple[SettingSpec, ...]:
    """Every setting in a stable order, for CLI flags, `check-config` and docs."""
    return _ROWS


def spec(name: str) -> SettingSpec:
    """The row of `name` (KeyError for an unknown name)."""
    return _BY_NAME[name]


def canonical(key: str) -> str | None:
    """The setting a key names (``max-containers``, ``max_containers``, ...), if any."""
    name = key.strip().lstrip("-").upper().replace("-", "_")
    return name if name in _BY_NAME else None


def derive(values: dict[str, Any], sources: dict[str, str], context: Mapping[str, str]) -> None:
    """Fill every unset derived setting in `values` (and its source), in table order."""
    for row in _ROWS:
        if row.derived is not None and values[row.name] is None:
            value = row.derived.compute(values, context)
            if value is not None:
                values[row.name] = value
                sources[row.name] = row.derived.source


def _defaults() -> Mapping[str, Any]:
    values = {s.name: s.default for s in _ROWS if not s.required}
    derive(values, {}, {})
    return MappingProxyType(values)


#: Every optional setting's default, derived ones as derived from the other
#: defaults in an empty context (so DATA_DIR is the relative ``.deployment-agent``:
#: only `load_settings` knows HOME and the working directory).
DEFAULTS: Mapping[str, Any] = _defaults()


# ---------------------------------------------------------------------------
# relations between settings


class View:
    """What a relation's message needs from the build in progress: the values, the
    label each setting was written under, the raw value to echo, and which of two
    settings the later source set."""

    def __init__(
        self,
        values: Mapping[str, Any],
        label: Callable[[str], str],
        shown: Callable[[str], object],
        later: Callable[[str, str], str],
    ) -> None:
        self.values = values
        self.label = label
        self.shown = shown
        self.later = later


@dataclass(frozen=True, slots=True)
class Ascending:
    """``names[0] ≤ names[1] ≤ …`` (``<`` when `strict`)."""

    names: tuple[str, ...]
    strict: bool

    def broken(self, values: Mapping[str, float]) -> tuple[str, str] | None:
        """The first neighbouring pair out of order, or None when the order holds."""
        for lower, upper in zip(self.names, self.names[1:]):
            low, high = values[lower], values[upper]
            if not (low < high if self.strict else low <= high):
                return lower, upper
        return None


@dataclass(frozen=True, slots=True)
class AllZero:
    """Not every one of `names` may be 0."""

    names: tuple[str, ...]

    def broken(self, values: Mapping[str, float]) -> tuple[str, ...] | None:
        return self.names if all(values[n] == 0 for n in self.names) else None


def _always(values: Mapping[str, Any]) -> bool:
    return True


@dataclass(frozen=True, slots=True)
class Distinct:
    """`names[0]` differs from each of the others, while `applies(values)`."""

    names: tuple[str, ...]
    applies: Callable[[Mapping[str, Any]], bool] = field(default=_always, compare=False)

    def broken(self, values: Mapping[str, Any]) -> tuple[str, str] | None:
        if not self.applies(values):
            return None
        first = self.names[0]
        for other in self.names[1:]:
            if values[first] == values[other]:
                return first, other
        return None


@dataclass(frozen=True, slots=True)
class Together:
    """`names` are all set or all unset: (the first unset one, a set one) otherwise."""

    names: tuple[str, ...]

    def broken(self, values: Mapping[str, Any]) -> tuple[str, str] | None:
        given = [n for n in self.names if values[n] is not None]
        missing = [n for n in self.names if values[n] is None]
        return (missing[0], given[0]) if given and missing else None


@dataclass(frozen=True, slots=True)
class Needs:
    """When `names[0]` is set, `names[1]` must have the value `value`."""

    names: tuple[str, str]
    value: object

    def broken(self, values: Mapping[str, Any]) -> tuple[str, str] | None:
        name, other = self.names
        if values[name] is not None and values[other] != self.value:
            return self.names
        return None


def balancer_mode(values: Mapping[str, Any]) -> str:
    """"none", "embedded" or "external": BALANCER=haproxy runs the agent's own
    haproxy, unless HAPROXY_SOCKET names one the user runs."""
    if values["BALANCER"] != "haproxy":
        return "none"
    return "external" if values["HAPROXY_SOCKET"] is not None else "embedded"
@dataclass(frozen=True, slots=True)
class AtLeastTimes:
    """``names[1] ≥ factor × names[0]``."""

    names: tuple[str, str]
    factor: float

    def broken(self, values: Mapping[str, float]) -> tuple[str, str] | None:
        small, big = self.names
        return self.names if values[big] < self.factor * values[small] else None


CONTAINER_RANGE = Ascending(("DEFAULT_CONTAINER", "MAX_CONTAINERS"), strict=False)
CONTAINER_CEILING = Ascending(("MAX_CONTAINERS", "MAX_CONTAINERS_LIMIT"), strict=False)
THRESHOLD_ORDER = Ascending(
    ("CRITICAL_LOAD_THRESHOLD", "HIGH_LOAD_THRESHOLD", "LOW_LOAD_THRESHOLD"), strict=True
)
SCORE_WEIGHTS = AllZero(("CPU_WEIGHT", "MEMORY_WEIGHT", "NETWORK_WEIGHT", "AVAILABILITY_WEIGHT"))
TICK_BUDGET = Ascending(("TICK_DEADLINE", "TICK_INTERVAL"), strict=False)
HAPROXY_TARGET = Together(("HAPROXY_SOCKET", "HAPROXY_BACKEND"))
HAPROXY_ENABLED = Needs(("HAPROXY_SOCKET", "BALANCER"), "haproxy")
BALANCER_PORTS = Distinct(
    ("BALANCER_PORT", "HOST_PORT_HTTP_DEPLOYMENT_AGENT", "HOST_PORT_WS_DEPLOYMENT_AGENT"),
    applies=lambda values: balancer_mode(values) == "embedded",
)
# The leader renews its lease once per tick: at least two tries before it lapses.
LEASE_RENEWALS = AtLeastTimes(("TICK_INTERVAL", "LEADER_LEASE_TTL"), 2.0)


def _container_range(pair: tuple[str, ...], view: View) -> ConfigError:
    v = view.values
    if view.later(*pair) == "DEFAULT_CONTAINER":
        return ConfigError(view.label("DEFAULT_CONTAINER"), (
            f"must be an integer ≤ MAX_CONTAINERS ({v['MAX_CONTAINERS']}), "
            f"{p.got(view.shown('DEFAULT_CONTAINER'))}"))
    return ConfigError(view.label("MAX_CONTAINERS"), (
        f"must be an integer ≥ DEFAULT_CONTAINER ({v['DEFAULT_CONTAINER']}), "
        f"{p.got(view.shown('MAX_CONTAINERS'))}"))


def _container_ceiling(pair: tuple[str, ...], view: View) -> ConfigError:
    v = view.values
    if view.later(*pair) == "MAX_CONTAINERS":
        return ConfigError(view.label("MAX_CONTAINERS"), (
            f"must be an integer in 1..{v['MAX_CONTAINERS_LIMIT']} (MAX_CONTAINERS_LIMIT, fixed "
            f"at start-up), {p.got(view.shown('MAX_CONTAINERS'))}"))
    return ConfigError(view.label("MAX_CONTAINERS_LIMIT"), (
        f"must be an integer ≥ MAX_CONTAINERS ({v['MAX_CONTAINERS']}), "
        f"{p.got(view.shown('MAX_CONTAINERS_LIMIT'))}"))


def _threshold_order(pair: tuple[str, ...], view: View) -> ConfigError:
    blamed = view.later(*pair)
    chain = " < ".join(
        n if n == blamed else f"{n} ({view.values[n]:g})" for n in THRESHOLD_ORDER.names
    )
    return ConfigError(
        view.label(blamed),
        f"must be a number in [0, 100] with {chain}, {p.got(view.shown(blamed))}",
    )


def _score_weights(names: tuple[str, ...], view: View) -> ConfigError:
    return ConfigError(", ".join(view.label(n) for n in names),
                       "at least one score weight must be > 0, got all 0")


def _tick_budget(pair: tuple[str, ...], view: View) -> ConfigError:
    return ConfigError(view.label("TICK_DEADLINE"), (
        f"must be a number > 0 and ≤ TICK_INTERVAL ({view.values['TICK_INTERVAL']:g}), "
        f"{p.got(view.shown('TICK_DEADLINE'))}"))


def _haproxy_target(pair: tuple[str, ...], view: View) -> ConfigError:
    missing, given = pair
    return ConfigError(view.label(missing), (
        f"is required with {given} ({view.shown(given)!r}): the agent drives the servers "
        "of one backend of the HAProxy at HAPROXY_SOCKET; set both, or neither"))


def _haproxy_enabled(pair: tuple[str, ...], view: View) -> ConfigError:
    return ConfigError(view.label("HAPROXY_SOCKET"), (
        f"is set ({view.shown('HAPROXY_SOCKET')!r}) but BALANCER is "
        f"{view.values['BALANCER']!r}: set BALANCER=haproxy to drive that HAProxy, or "
        "unset HAPROXY_SOCKET"))


def _balancer_ports(pair: tuple[str, ...], view: View) -> ConfigError:
    blamed = view.later(*pair)
    other = pair[1] if blamed == pair[0] else pair[0]
    return ConfigError(view.label(blamed), (
        f"must differ from {other} ({view.values[other]}): the embedded balancer and the "
        f"agent cannot listen on one port, {p.got(view.shown(blamed))}"))


def _lease_renewals(pair: tuple[str, ...], view: View) -> ConfigError:
    v = view.values
    why = "so that the leader renews its lease at least twice before it lapses"
    if view.later(*pair) == "TICK_INTERVAL":
        return ConfigError(view.label("TICK_INTERVAL"), (
            f"must be a number > 0 and ≤ LEADER_LEASE_TTL / 2 "
            f"({v['LEADER_LEASE_TTL'] / 2:g}), {why}, {p.got(view.shown('TICK_INTERVAL'))}"))
    return ConfigError(view.label("LEADER_LEASE_TTL"), (
        f"must be {spec('LEADER_LEASE_TTL').expect} and ≥ 2 × TICK_INTERVAL "
        f"({2 * v['TICK_INTERVAL']:g}), {why}, {p.got(view.shown('LEADER_LEASE_TTL'))}"))


Rule = Ascending | AllZero | Distinct | Together | Needs | AtLeastTimes
Relation = tuple[Rule, Callable[[tuple[str, ...], View], ConfigError]]

#: The relations, in the order they are checked, each with the error that names a
#: violation: the setting set by the later source when two disagree.
RELATIONS: tuple[Relation, ...] = (
    (CONTAINER_RANGE, _container_range),
    (CONTAINER_CEILING, _container_ceiling),
    (THRESHOLD_ORDER, _threshold_order),
    (SCORE_WEIGHTS, _score_weights),
    (TICK_BUDGET, _tick_budget),
    (HAPROXY_TARGET, _haproxy_target),
    (HAPROXY_ENABLED, _haproxy_enabled),
    (BALANCER_PORTS, _balancer_ports),
    (LEASE_RENEWALS, _lease_renewals),
)
