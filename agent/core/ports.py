"""The seams between the service and the outside world, as `typing.Protocol`s.

Each port has one real adapter, and the adapter's module holds a typing assertion
(under ``TYPE_CHECKING``) that mypy checks, so the day an adapter drifts from its
port the type check fails::

    Engine       agent.adapters.docker_engine.DockerEngine,
                 agent.adapters.swarm_engine.SwarmEngine (ENGINE=swarm)
    Store        agent.adapters.redis_store.RedisStore
    StatsSource  agent.adapters.docker_engine.DockerEngine.read_stats (the Sampler's
                 stats-API source)
    SampleSource agent.adapters.sampler.Sampler (one engine's cgroup/proc files),
                 agent.adapters.swarm_sampler.SwarmSampler (ENGINE=swarm: the nodes'
                 collectors' reports in Redis)
    Probe        agent.adapters.probe.NetworkProbe (the samplers' availability probe)
    Publisher    agent.service.hub.Hub (where the runtime publishes its snapshots)

A second engine (Swarm) or another store sits beside the first by implementing the
same port; the runtime, the scorer and the policy do not change. In-memory fakes of
these ports serve only the unit tests of pure logic.

The engine and the store are ``runtime_checkable`` so a test can assert that the
real adapter is one; that checks method names only, the signatures are mypy's job.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

from agent.core.lease import Holder
from agent.core.records import ContainerInfo, Sample, Snapshot
from agent.core.store_codec import SharedState, StoredState, TickWrite

__all__ = ["Engine", "Store", "StatsSource", "SampleSource", "Probe", "Publisher"]


@runtime_checkable
class Engine(Protocol):
    """What the runtime needs from a container engine (one adapter per backend).

    Every method raises `EngineError` (or its subclass `ContainerNotFound`) when the
    engine fails or cannot be reached, and `NotOwnedError` before touching a
    container that lacks the agent's labels.
    """

    async def list_owned(self) -> list[ContainerInfo]:
        """Every owned container, exited ones included; `pid` set for running ones."""
        ...

    async def create(self) -> ContainerInfo:
        """Create and start one worker; return it as running, with its host port."""
        ...

    async def remove(self, name_or_id: str) -> None:
        """Stop and remove an owned container; one that is already gone is fine."""
        ...

    async def inspect(self, name: str) -> ContainerInfo:
        """One owned container (`ContainerNotFound`, `NotOwnedError` otherwise)."""
        ...

    async def ping(self) -> None:
        """Return when the engine answers; raise `EngineError` otherwise."""
        ...

    async def watch(self, *, task_status: Any = ...) -> None:
        """Keep `list_owned` current from the engine's change notifications until
        cancelled (the runtime runs it with ``nursery.start``: `task_status` is
        Trio's); ``started`` once it is, or once the first attempt failed. An
        adapter without notifications calls ``started`` and returns."""
        ...

    async def aclose(self) -> None:
        """Release the connection pool. Idempotent."""
        ...


@runtime_checkable
class Store(Protocol):
    """Where the agent persists its state (SPEC §6), and where agents sharing a
    pool elect their leader (SPEC §9).

    Failures raise `StoreError`; `available` and `last_error` say whether the last
    attempt reached the store, for health reports. A write given ``fence`` (the
    lease holder record the caller believes in) is applied only while that record
    holds the leader lease, and raises `FencedOut` (nothing applied) otherwise.
    """

    @property
    def available(self) -> bool: ...

    @property
    def last_error(self) -> str | None: ...

    def status(self) -> dict[str, object]: ...

    async def load(self) -> StoredState: ...

    async def write_tick(
        self, state: TickWrite, *, fence: Holder | None = None,
        events: Sequence[tuple[str, Mapping[str, object]]] = (), only_changes: bool = False,
    ) -> None:
        """Replace the stored state with `state` (and add `events`); with `fence`,
        refused (`FencedOut`) unless that holder still holds the lease; with
        `only_changes`, the store may send only what differs from what it knows
        it wrote under that same fence (a delta write)."""
        ...

    async def flush_events(self) -> None: ...

    async def read_shared(self, cursor: str | None) -> SharedState: ...

    async def acquire_lease(self, agent_id: str, ttl: float, url: str | None) -> Holder | None:
        """One acquire-or-renew attempt; the holder afterwards (None: nobody)."""
        ...

    async def release_lease(self, holder: Holder) -> bool: ...

    async def append_event(self, kind: str, data: Mapping[str, object]) -> None: ...

    async def events(
        self, limit: int = 50, before: str | None = None, kind: str | None = None
    ) -> list[dict[str, Any]]: ...

    async def save_config(
        self, overrides: Mapping[str, object], *, fence: Holder | None = None
    ) -> None: ...

    async def ping(self) -> float: ...

    async def aclose(self) -> None: ...


class StatsSource(Protocol):
    """A blocking ``container id → engine stats document`` call (the stats API's
    one-shot JSON), which the Sampler runs in its worker threads when a container's
    cgroup files cannot be read. Raises `EngineError` on failure."""

    def __call__(self, container_id: str, /) -> Mapping[str, Any]: ...


class SampleSource(Protocol):
    """One tick's raw observations of the running containers (the runtime's
    *sample* step), each by `deadline` (Trio clock) at the latest.

    Returns one `Sample` per container name: all-NaN for a container that is not
    running, ``stale=True`` for one whose numbers or probe did not arrive in time.
    Never raises on a failure to observe (that is a stale sample).
    """

    async def sample(
        self,
        containers: list[ContainerInfo],
        *,
        deadline: float,
        probe_timeout: float,
        health_path: str | None = None,
    ) -> dict[str, Sample]: ...


class Probe(Protocol):
    """Measures a container's availability (SPEC §3).

    Returns the response time in seconds, or NaN when the container did not answer
    within `timeout`; never raises on a network failure (it is an observation).
    With `health_path`, an HTTP ``GET`` of that path must answer 2xx/3xx;
    without, a TCP connect is timed.
    """

    async def response_time(
        self, host: str, port: int, *, timeout: float, health_path: str | None = None
    ) -> float: ...


class Publisher(Protocol):
    """Where the runtime publishes one snapshot per tick (latest value wins).

    `publish` never blocks the tick; after `close` (shutdown) it is ignored.
    """

    @property
    def latest(self) -> Snapshot: ...

    def publish(self, snapshot: Snapshot) -> None: ...

    def close(self) -> None: ...
