"""The balancer seam: what the runtime asks of a load balancer, and the records it gets.

The agent keeps a real load balancer's backend equal to its pool (SPEC §8). The
runtime does not speak HAProxy: each tick it hands a `Balancer` the backend it
wants (`BackendSpec`, built by `backend_spec` from the engine's containers, the
kernel's routing weights and the SUNDOWN set) and gets back what happened as a
value (`SyncReport`). One adapter exists, `agent.adapters.haproxy.HAProxyBalancer`
(embedded or external HAProxy); an nginx-plus or Envoy adapter would sit beside it.

What the runtime does each tick (the contract the adapters are tested against)::

    report = await balancer.sync(backend_spec(containers, weights, sundown, evict))
    for event in report.events:      # restarted / adopted / unreachable / recovered
        ledger(event.kind, event.message)
    drained = {n for n in sundown if report.idle(n)}   # drain truth: no sessions
    ...                              # remove drained (or timed-out) containers
    stats = report.stats             # per server: in flight, rtime, rate, 5xx

`observe()` reads the same per-server figures without changing anything, for the
sampler; `status()` is the cached state for `/readyz` and `GET /balancer`.

Rules every adapter keeps:

- **Errors are values.** `sync` and `observe` never raise `BalancerError`: an
  unreachable balancer is `ok=False` with `error` set (and an `UNREACHABLE`
  event on the transition), and the tick goes on. Cancellation still propagates.
- **Derived, not remembered.** Each sync reads the balancer's own server list
  and plans from it, so after a restart of either side the backend is rebuilt to
  match, with no duplicate and no lost server.
- **Only ours.** A server belongs to the agent when its name is
  ``<prefix>-<token>`` (`ServerNaming`): the container's own name, as the Docker
  engine makes it. Any other server in the backend is never touched.
- **Drain, then remove.** A draining server gets no new requests; a server no
  longer desired is taken out of rotation at once and deleted only when it has
  no session left, or when the runtime says its drain timed out (`evict`).
"""
from __future__ import annotations

import enum
import math
import re
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from agent.core.balancer_weights import MAX_WEIGHT, MIN_WEIGHT, integer_weights
from agent.core.records import ContainerInfo

__all__ = [
    "Balancer",
    "BalancerEvent",
    "BalancerStatus",
    "BackendSpec",
    "DesiredServer",
    "EventKind",
    "Observation",
    "ServerNaming",
    "ServerStats",
    "SyncReport",
    "backend_spec",
]

# A server name and an address must survive a command line of HAProxy's CLI, where
# spaces split arguments and ';' splits commands: only these characters pass.
SERVER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")
_ADDRESS = re.compile(r"[A-Za-z0-9_.:-]{1,253}")
_TOKEN = re.compile(r"[A-Za-z0-9_.]+")


@dataclass(frozen=True, slots=True)
class ServerNaming:
    """Which servers of a backend are the agent's: ``<prefix>-<token>``.

    The Docker engine names workers ``<container_name_prefix(APP_IDENTIFIER)>-<8
    hex>`` and the server takes the container's name, so the prefix is the
    container name prefix. The token may not contain ``-``: the servers of app
    ``shop`` (``shop-1a2b3c4d``) are then never mistaken for those of app
    ``shop-eu`` (``shop-eu-1a2b3c4d``), and the other way round.
    """

    prefix: str

    def __post_init__(self) -> None:
        if not SERVER_NAME.fullmatch(self.prefix):
            raise ValueError(f"server name prefix {self.prefix!r} is not a valid HAProxy name")

    def owns(self, name: str) -> bool:
        head, sep, token = name.rpartition("-")
        return bool(sep) and head == self.prefix and _TOKEN.fullmatch(token) is not None


@dataclass(frozen=True, slots=True)
class DesiredServer:
    """One server the backend should have: a running worker's published port.

    `weight` is the balancer's integer weight (1–256, see `integer_weights`). A
    draining server (`drain=True`) keeps whatever weight it had: it takes no new
    requests anyway, and its weight is restored unchanged if it is reactivated.
    """

    name: str
    address: str
    port: int
    weight: int = MAX_WEIGHT
    drain: bool = False

    def __post_init__(self) -> None:
        if not SERVER_NAME.fullmatch(self.name):
            raise ValueError(f"server name {self.name!r} has characters HAProxy refuses")
        if not _ADDRESS.fullmatch(self.address):
            raise ValueError(f"server {self.name}: address {self.address!r} is not an address")
        if isinstance(self.port, bool) or not isinstance(self.port, int) or not 1 <= self.port <= 65535:
            raise ValueError(f"server {self.name}: port must be 1..65535, got {self.port!r}")
        if (
            isinstance(self.weight, bool)
            or not isinstance(self.weight, int)
            or not MIN_WEIGHT <= self.weight <= MAX_WEIGHT
        ):
            raise ValueError(
                f"server {self.name}: weight must be an integer {MIN_WEIGHT}..{MAX_WEIGHT}, "
                f"got {self.weight!r}"
            )


@dataclass(frozen=True, slots=True)
class BackendSpec:
    """The backend the agent wants after this tick.

    `servers` are the workers that should be in the backend (taking traffic or
    draining). A server of ours that is not listed is taken out of rotation and
    deleted once idle; a name in `evict` is deleted even with sessions left (its
    drain timed out, or its container is gone).
    """

    servers: tuple[DesiredServer, ...] = ()
    evict: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        seen: set[str] = set()
        for server in self.servers:
            if server.name in seen:
                raise ValueError(f"server {server.name} is listed twice")
            seen.add(server.name)
        clash = seen & self.evict
        if clash:
            raise ValueError(f"servers both desired and evicted: {', '.join(sorted(clash))}")

    def by_name(self) -> dict[str, DesiredServer]:
        return {server.name: server for server in self.servers}


def backend_spec(
    containers: Iterable[ContainerInfo],
    weights: Mapping[str, float],
    draining: Collection[str] = (),
    *,
    evict: Collection[str] = (),
) -> BackendSpec:
    """The desired backend for a pool: running, published workers become servers.

    `weights` are the kernel's routing weights (by container name); those of the
    containers taking traffic are turned into balancer integers together, so their
    ratios survive. A container in `draining` (SUNDOWN) is kept as a draining
    server; a container that is not running, or publishes no port, is left out
    (and so removed from the backend once idle). A name in `evict` (its drain
    timed out) is left out and deleted at once, sessions or not, even while its
    container still runs: the runtime removes the container after this sync.
    """
    evict = frozenset(evict)
    candidates = [
        c for c in containers
        if c.running and c.host_port is not None and c.name not in evict
    ]
    taking = {c.name: weights.get(c.name, 0.0) for c in candidates if c.name not in draining}
    taking = {name: (w if math.isfinite(w) and w > 0 else 0.0) for name, w in taking.items()}
    ints = integer_weights(taking)
    servers = []
    for c in candidates:
        assert c.host_port is not None
        drain = c.name in draining
        weight = MIN_WEIGHT if drain else ints[c.name]
        servers.append(DesiredServer(c.name, c.address, c.host_port, weight, drain))
    servers.sort(key=lambda s: s.name)
    return BackendSpec(tuple(servers), evict)


@dataclass(frozen=True, slots=True)
class ServerStats:
    """What the balancer measured for one server (HAProxy: one `show stat` row).

    Counters (`sessions_total`, `requests_total`, `responses_5xx`, the errors) are
    cumulative since the balancer (or the adapter) started: diff them between
    ticks, and treat a decrease as a restart. Times are HAProxy's averages over
    the server's last 1024 requests (or, see `Observation.interval_times`, over
    those since the previous observation), in milliseconds, NaN while it has
    served none (HAProxy prints 0 then).
    """

    name: str
    status: str  # HAProxy's words: "UP", "UP 1/3", "DOWN", "DRAIN", "MAINT", "no check"
    weight: int = 0  # effective weight
    user_weight: int = 0  # the weight the agent set (uweight)
    sessions: int = 0  # scur: requests in flight
    queued: int = 0  # qcur: requests waiting for a connection slot on this server
    sessions_total: int = 0  # stot: requests sent to it (HTTP mode: one per request)
    requests_total: int = 0  # req_tot: requests it answered (the count its times average)
    rate: int = 0  # sessions per second over the last second (servers have no req_rate)
    response_time_ms: float = math.nan  # rtime
    total_time_ms: float = math.nan  # ttime
    queue_time_ms: float = math.nan  # qtime
    connect_time_ms: float = math.nan  # ctime
    responses_2xx: int = 0
    responses_4xx: int = 0
    responses_5xx: int = 0  # hrsp_5xx: 5xx answered by the server itself
    response_errors: int = 0  # eresp: no valid answer (HAProxy made a 502 of it)
    connect_errors: int = 0  # econ
    retries: int = 0  # wretr
    redispatches: int = 0  # wredis: requests moved away from this server
    check_status: str = ""  # L7OK, L4CON, ... ("" when the server has no check)
    address: str = ""

    @property
    def idle(self) -> bool:
        """No request in flight or queued: a draining server may be removed."""
        return self.sessions == 0 and self.queued == 0

    @property
    def up(self) -> bool:
        """The balancer would send it traffic if it were in rotation."""
        return self.status.startswith("UP") or self.status == "no check"


class EventKind(enum.StrEnum):
    """What happened to the balancer itself; each becomes a ledger entry."""

    STARTED = "balancer_started"  # the agent launched its embedded haproxy
    ADOPTED = "balancer_adopted"  # a running embedded haproxy was taken over
    RESTARTED = "balancer_restarted"  # it had died (or restarted on its own)
    UNREACHABLE = "balancer_unreachable"  # the runtime API stopped answering
    RECOVERED = "balancer_recovered"  # it answers again


@dataclass(frozen=True, slots=True)
class BalancerEvent:
    kind: EventKind
    message: str

    def to_json(self) -> dict[str, str]:
        return {"kind": str(self.kind), "message": self.message}


@dataclass(frozen=True, slots=True)
class SyncReport:
    """The outcome of one `Balancer.sync`, as data for the ledger and the API.

    `ok` is False when the balancer could not be read or a command failed;
    `error` then says why. `stats` are the figures read at the start of the sync
    (before this sync's commands), for the agent's servers only. `pending` are the
    servers of ours waiting for their last sessions before deletion.
    """

    ok: bool
    error: str | None = None
    events: tuple[BalancerEvent, ...] = ()
    commands: tuple[str, ...] = ()
    failures: tuple[tuple[str, str], ...] = ()  # (command, HAProxy's answer)
    added: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    pending: tuple[str, ...] = ()
    stats: Mapping[str, ServerStats] = field(default_factory=dict)
    duration: float = 0.0  # seconds, connection included

    def idle(self, name: str) -> bool:
        """True when the server has no session left, or is not in the backend at all.

        False when the balancer could not be read: an unknown is never "drained".
        """
        if not self.ok and not self.stats:
            return False
        stats = self.stats.get(name)
        return stats is None or stats.idle


@dataclass(frozen=True, slots=True)
class Observation:
    """The outcome of `Balancer.observe`: per-server figures, or why there are none.

    With `interval_times`, the time averages of `stats` (``response_time_ms`` …)
    are over the requests answered since the previous `observe` only — the
    adapter reset the balancer's counters after reading them, and keeps the
    counters cumulative itself — so they are this interval's exact means.
    Otherwise they are the balancer's sliding averages (HAProxy: its last 1024
    requests), and `agent.core.traffic` recovers an interval's mean from two
    readings.
    """

    ok: bool
    stats: Mapping[str, ServerStats] = field(default_factory=dict)
    error: str | None = None
    events: tuple[BalancerEvent, ...] = ()
    interval_times: bool = False


@dataclass(frozen=True, slots=True)
class BalancerStatus:
    """The adapter's cached state for `/readyz` and `GET /balancer`; no I/O."""

    kind: str  # "haproxy"
    mode: str  # "embedded" or "external"
    backend: str
    socket: str
    frontend: str | None = None  # where the application is served (embedded)
    pid: int | None = None
    reachable: bool = False
    last_sync: float | None = None  # epoch seconds of the last completed sync
    last_error: str | None = None
    weights: Mapping[str, int] = field(default_factory=dict)  # as read back
    states: Mapping[str, str] = field(default_factory=dict)  # server -> status

    def to_json(self) -> dict[str, object]:
        return {
            "kind": self.kind,
            "mode": self.mode,
            "backend": self.backend,
            "socket": self.socket,
            "frontend": self.frontend,
            "pid": self.pid,
            "reachable": self.reachable,
            "last_sync": self.last_sync,
            "last_error": self.last_error,
            "servers": {
                name: {"weight": self.weights.get(name), "status": self.states.get(name)}
                for name in sorted(set(self.weights) | set(self.states))
            },
        }


@runtime_checkable
class Balancer(Protocol):
    """What the runtime needs from a load balancer (one adapter per product)."""

    async def start(self) -> tuple[BalancerEvent, ...]:
        """Get ready: launch or adopt the embedded balancer, or check the external one.

        Raises `ConfigError` (naming the setting) for what the user must fix, such as
        a backend whose algorithm takes no runtime weights, and `BalancerError` when
        an embedded balancer cannot be started at all. An external balancer that
        does not answer yet is not an error: it is an `UNREACHABLE` event.
        """
        ...

    async def sync(self, desired: BackendSpec) -> SyncReport:
        """Make the backend match `desired`, over one connection; never raises
        `BalancerError`. Idempotent: nothing is sent when nothing differs."""
        ...

    async def observe(self) -> Observation:
        """Per-server figures of the agent's servers (one command); never raises."""
        ...

    def status(self) -> BalancerStatus:
        """The last known state, without I/O."""
        ...

    async def aclose(self) -> None:
        """Release what the adapter holds. An embedded balancer keeps running."""
        ...
