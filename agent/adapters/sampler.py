"""One tick's raw observations of every container, all at once, within a deadline.

For each running container the `Sampler` measures CPU %, memory %, network bytes/s
and the availability probe's response time, and returns one `Sample` per container
name. Everything runs concurrently in one nursery bounded by the tick's deadline;
whatever has not arrived by then is left out and the container's sample is marked
``stale`` — the tick never waits on a slow container.

Where the numbers come from
---------------------------
*Local engine* (the default path): the container's cgroup files, found through
``/proc/<pid>/cgroup`` of its init process, and ``/proc/<pid>/net/dev`` of its
network namespace, opened once per container and read with ``pread`` every tick
(`agent.adapters.cgroup_files`): four reads per container, ~15 µs, all
containers in one worker-thread call. cgroup v1 (``cpuacct.usage``, ``memory.usage_in_bytes`` −
``total_inactive_file``, ``memory.limit_in_bytes``, ``cpu.cfs_quota_us``) and v2
(``cpu.stat`` usage_usec, ``memory.current`` − ``inactive_file``, ``memory.max``,
``cpu.max``) are both read; in a hybrid layout the v1 controllers win. A cgroup
path is used only if it names the container's id, so a recycled pid or a pid from
another namespace can never make us read a stranger's counters.

*The probe* connects to the container's own address on its bridge network when
the engine is local and this host routes there (`ContainerInfo.direct`), and to
the published port otherwise (`probe_address`). Through the published port a
connection on the loopback is accepted by the engine's userland proxy
(docker-proxy) before it dials the worker: it costs the proxy a connection pair
and two goroutines per probe, and it measures the proxy, which accepts even
when the worker does not. The direct connect measures what SPEC §3 asks — the
time to open a TCP connection to the container's target port — and only the
worker's kernel answers it.

*Remote engine, or unreadable files*: the engine's stats API, one-shot, all
containers concurrently in threads (``stats_source``, e.g.
`DockerEngine.read_stats`). The daemon answers on its own ~1 s sampling clock, so
such a call often outlives the tick: it is then left running, its result is kept,
and the next tick uses it — one call in flight per container at most.

Formulas (SPEC §3)
------------------
CPU % is computed from our own successive readings, never from the engine's
``precpu``: Δcpu_ns / Δwall_ns × 100 from cgroup files, and the compat
Δcontainer / Δsystem × online_cpus × 100 from the stats API; 100 = one busy core,
0 when a delta is ≤ 0. With a CPU limit (``cpu_limits`` or the cgroup quota) the
result is divided by it, so 100 % means the limit is used up. The first reading of
a container has no delta: CPU and network are NaN. Memory % = (usage − inactive
file cache) / min(limit, host MemTotal) × 100. Network = Δ(rx+tx bytes, all
interfaces but ``lo``) / Δt.

The parsing functions and these formulas are pure (file contents in, numbers out)
and live in `agent.core.cgroups`, unit-tested on literal file contents; the file I/O
is `agent.adapters.cgroup_files`; this module is the concurrency around them
(`Sampler`).
"""
from __future__ import annotations

import logging
import math
import os
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import trio

from agent.adapters.cgroup_files import LocalReader, _Resolved, _Unreadable, read_local
from agent.core.cgroups import (
    Counters,
    counters_from_stats,
    cpu_percent,
    memory_percent,
    network_rate,
)
from agent.adapters.probe import NetworkProbe, is_ip_literal
from agent.core.errors import AgentError
from agent.core.ports import Probe, StatsSource
from agent.core.records import ContainerInfo, Sample

__all__ = [
    "Sampler",
    "probe_address",
    "read_local",
]

log = logging.getLogger(__name__)

_DEFAULT_THREADS = 16


# -- the sampler ---------------------------------------------------------------------------


def probe_address(info: ContainerInfo) -> tuple[str, int]:
    """Where the availability probe connects: the container itself when this host
    routes to it (`ContainerInfo.direct`), else its published port. A container
    without a published port (or a SUNDOWN one, see `PoolState.probe_targets`)
    is not probed."""
    assert info.host_port is not None
    return info.direct if info.direct is not None else (info.address, info.host_port)


class Sampler:
    """Samples every container of a tick concurrently, within the tick's deadline.

    `engine_is_local`: the engine runs on this host, so cgroup and proc files are
    tried first (see `DockerEngine.is_local`). `stats_source` is a blocking
    ``container_id -> stats document`` callable (`DockerEngine.read_stats`), used
    when the engine is remote or a container's files cannot be read; without it
    such a container's CPU, memory and network are NaN. `probe` measures
    availability (`NetworkProbe` unless given; with it, a tick's TCP probes run in
    one worker thread, `NetworkProbe.tcp_many`). `cpu_limits` maps a
    container name or id to its CPU limit in cores; otherwise the cgroup quota is
    used when there is one. `limiter` bounds this sampler's worker threads.
    `proc_root`/`cgroup_root` locate the host's ``/proc`` and cgroup mount (an agent
    in a container with the host's mounted elsewhere, or tests).

    Keeps the previous reading per container id (for deltas) and forgets the
    containers that are no longer passed in.
    """

    def __init__(
        self,
        engine_is_local: bool,
        *,
        limiter: trio.CapacityLimiter | None = None,
        cpu_limits: Mapping[str, float] | None = None,
        stats_source: StatsSource | None = None,
        probe: Probe | None = None,
        proc_root: str | os.PathLike[str] = "/proc",
        cgroup_root: str | os.PathLike[str] = "/sys/fs/cgroup",
    ) -> None:
        self.engine_is_local = engine_is_local
        self.cpu_limits: dict[str, float] = dict(cpu_limits or {})
        self._stats_source = stats_source
        self._probe: Probe = probe if probe is not None else NetworkProbe()
        self._limiter = limiter if limiter is not None else trio.CapacityLimiter(
            _DEFAULT_THREADS
        )
        self._local = LocalReader(Path(proc_root), Path(cgroup_root))
        self._previous: dict[str, Counters] = {}
        # stats-API calls outlive ticks: guarded by a lock because abandoned
        # worker threads finish (and store their result) outside Trio.
        self._lock = threading.Lock()
        self._in_flight: set[str] = set()
        self._landed: dict[str, Counters | BaseException] = {}

    async def sample(
        self,
        containers: list[ContainerInfo],
        *,
        deadline: float,
        probe_timeout: float,
        health_path: str | None = None,
    ) -> dict[str, Sample]:
        """One `Sample` per container name, returned by `deadline` (``trio.current_time()``
        scale) at the latest.

        A running container whose readings or probe did not arrive in time gets
        ``stale=True`` (with whatever did arrive). A container that is not running
        gets an all-NaN sample. Probes use TCP connect time, or ``GET health_path``
        when given, each bounded by `probe_timeout`.
        """
        running = [c for c in containers if c.running]
        self._forget({c.id for c in running})
        readings: dict[str, Counters] = {}
        metrics_done: set[str] = set()
        probes: dict[str, float] = {}

        async def probe(info: ContainerInfo) -> None:
            host, port = probe_address(info)
            probes[info.id] = await self._probe.response_time(
                host, port, timeout=probe_timeout, health_path=health_path
            )

        probed_tcp: list[ContainerInfo] = []
        answers: list[float | None] = []
        with trio.move_on_at(deadline):
            async with trio.open_nursery() as nursery:
                targets = [info for info in running if info.host_port is not None]
                if not health_path and isinstance(self._probe, NetworkProbe):
                    # the real probe's TCP connects: IP literals in one batch, names one by one
                    probed_tcp = [i for i in targets if is_ip_literal(probe_address(i)[0])]
                    targets = [i for i in targets if not is_ip_literal(probe_address(i)[0])]
                if probed_tcp:
                    answers = [None] * len(probed_tcp)
                    nursery.start_soon(self._probe_tcp, probed_tcp, answers, probe_timeout, deadline)
                for info in targets:
                    nursery.start_soon(probe, info)
                nursery.start_soon(self._collect, running, readings, metrics_done)
        for info, answer in zip(probed_tcp, answers):
            if answer is not None:
                probes[info.id] = answer

        samples: dict[str, Sample] = {}
        for info in containers:
            if not info.running:
                samples[info.name] = Sample()
                continue
            cur = readings.get(info.id)
            cpu = mem = net = math.nan
            if cur is not None:
                prev = self._previous.get(info.id)
                limit = self.cpu_limits.get(info.name, self.cpu_limits.get(info.id, cur.cpu_limit))
                cpu = cpu_percent(prev, cur, limit)
                mem = memory_percent(cur)
                net = network_rate(prev, cur)
                self._previous[info.id] = cur
            probed = info.host_port is None or info.id in probes
            samples[info.name] = Sample(
                cpu_percent=cpu,
                memory_percent=mem,
                network_bps=net,
                response_time=probes.get(info.id, math.nan),
                stale=not (probed and info.id in metrics_done),
            )
        return samples

    def close(self) -> None:
        """Close the files kept open for the containers (idempotent)."""
        self._local.close()

    def forget(self, container_id: str) -> None:
        """Drop the state kept for one container (its next CPU/network are NaN)."""
        self._previous.pop(container_id, None)
        self._local.forget(container_id)
        with self._lock:
            self._landed.pop(container_id, None)

    # -- internals -------------------------------------------------------------------

    def _forget(self, keep: set[str]) -> None:
        for cid in [c for c in self._previous if c not in keep]:
            del self._previous[cid]
        with self._lock:
            for cid in [c for c in self._landed if c not in keep]:
                del self._landed[cid]

    async def _probe_tcp(
        self, targets: list[ContainerInfo], answers: list[float | None], timeout: float,
        deadline: float,
    ) -> None:
        """Every TCP probe of the tick in one worker thread (`NetworkProbe.tcp_many`).

        The thread fills `answers` as they come, so when the tick's deadline
        cancels this call the answers that did arrive are kept."""
        stop_in = deadline - trio.current_time()
        await trio.to_thread.run_sync(
            NetworkProbe.tcp_many, [probe_address(info) for info in targets], timeout, stop_in, answers,
            limiter=self._limiter, abandon_on_cancel=True,
        )

    async def _collect(
        self, running: list[ContainerInfo], readings: dict[str, Counters], done: set[str]
    ) -> None:
        """Fill `readings` (and `done`) for `running`: files first, then the stats API."""
        remote: list[ContainerInfo] = []
        if self.engine_is_local:
            local = [c for c in running if c.pid]
            remote = [c for c in running if not c.pid]
            if local or self._local.open_count():
                results = await trio.to_thread.run_sync(
                    self._local.read_all,
                    [(c.id, c.pid or 0) for c in local],
                    {c.id for c in running},
                    limiter=self._limiter,
                    abandon_on_cancel=True,
                )
                for info in local:
                    result = results[info.id]
                    if isinstance(result, _Unreadable):
                        log.debug("cgroup read failed, using the stats API: %s", result)
                        remote.append(info)
                        continue
                    readings[info.id] = result
                    done.add(info.id)
        else:
            remote = list(running)
        if not remote:
            return
        if self._stats_source is None:
            done.update(c.id for c in remote)  # nothing more will come: not late, unknown
            return
        async with trio.open_nursery() as nursery:
            for info in remote:
                nursery.start_soon(self._stats_one, info.id, readings, done)

    async def _stats_one(
        self, container_id: str, readings: dict[str, Counters], done: set[str]
    ) -> None:
        """One container through the stats API, one call in flight at most.

        A call that outlives the deadline keeps running in its thread and leaves its
        result in `_landed`; the next tick takes it from there.
        """
        source = self._stats_source
        assert source is not None
        with self._lock:
            landed = self._landed.pop(container_id, None)
            busy = container_id in self._in_flight
        if isinstance(landed, Counters):
            readings[container_id] = landed
            done.add(container_id)
        if busy:
            return

        def work() -> None:
            # Marked in flight by the thread itself: a call cancelled while still
            # waiting for the limiter never started and leaves nothing behind.
            with self._lock:
                self._in_flight.add(container_id)
            result: Counters | BaseException
            try:
                # The wall clock stands in for a document without a `read` time.
                result = counters_from_stats(source(container_id), now_ns=time.time_ns())
            except Exception as exc:  # stored, reported by the Trio side
                result = exc
            with self._lock:
                self._in_flight.discard(container_id)
                self._landed[container_id] = result

        await trio.to_thread.run_sync(work, limiter=self._limiter, abandon_on_cancel=True)
        with self._lock:
            result = self._landed.pop(container_id, None)
        if isinstance(result, Counters):
            readings[container_id] = result
        elif isinstance(result, AgentError):
            log.debug("stats of %s failed: %s", container_id[:12], result)
        elif result is not None:
            log.warning("stats of %s failed", container_id[:12], exc_info=result)
        done.add(container_id)


if TYPE_CHECKING:  # mypy holds the sampler to its port

    from agent.core.ports import SampleSource

    def _implements(sampler: Sampler) -> SampleSource:
        return sampler
