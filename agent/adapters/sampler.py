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
network namespace. A few sysfs reads per container (tens of µs), all containers in
one worker-thread call. cgroup v1 (``cpuacct.usage``, ``memory.usage_in_bytes`` −
``total_inactive_file``, ``memory.limit_in_bytes``, ``cpu.cfs_quota_us``) and v2
(``cpu.stat`` usage_usec, ``memory.current`` − ``inactive_file``, ``memory.max``,
``cpu.max``) are both read; in a hybrid layout the v1 controllers win. A cgroup
path is used only if it names the container's id, so a recycled pid or a pid from
another namespace can never make us read a stranger's counters.

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
and live in `agent.core.cgroups`, unit-tested on literal file contents; this module does
the file I/O (`read_local`) and the concurrency around it (`Sampler`).
"""
from __future__ import annotations

import logging
import math
import os
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import trio

from agent.core.cgroups import (
    Counters,
    counters_from_stats,
    cpu_percent,
    memory_percent,
    memory_usage,
    network_rate,
    parse_cfs_quota,
    parse_cpu_max,
    parse_cpu_stat_usage,
    parse_cpuacct_usage,
    parse_memory_limit,
    parse_meminfo_total,
    parse_net_dev,
    parse_proc_cgroup,
)
from agent.adapters.probe import NetworkProbe
from agent.core.errors import AgentError
from agent.core.ports import Probe, StatsSource
from agent.core.records import ContainerInfo, Sample

__all__ = [
    "Sampler",
    "read_local",
]

log = logging.getLogger(__name__)

_DEFAULT_THREADS = 16


# -- file I/O ---------------------------------------------------------------------------


class _Unreadable(Exception):
    """The cgroup/proc files of a container cannot be read (or are not its own)."""


@dataclass(frozen=True, slots=True)
class _Resolved:
    """The files to read for one container, found once per (pid, cgroup text)."""

    cgroup_text: str
    cpu_file: Path
    cpu_v2: bool
    quota_files: tuple[Path, ...]  # (quota, period) for v1, (cpu.max,) for v2, () unknown
    mem_usage_file: Path
    mem_stat_file: Path
    mem_limit_file: Path
    mem_v2: bool


def _read(path: Path | str) -> str:
    # os.open/os.read: about 40 % cheaper than open() on these tiny sysfs files.
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        chunks = []
        while chunk := os.read(fd, 65536):
            chunks.append(chunk)
    finally:
        os.close(fd)
    return b"".join(chunks).decode("ascii", "replace")


def _candidates(mount: Path, path: str) -> Iterable[Path]:
    """`mount`/`path`, then with leading components dropped (cgroup namespaces and
    containerised agents see a shorter path than the one the host prints)."""
    parts = [p for p in path.split("/") if p and p != ".."]
    for i in range(len(parts)):
        yield mount.joinpath(*parts[i:])
    if not parts:
        yield mount


def _find_dir(mounts: Iterable[Path], path: str, probe: str) -> Path | None:
    for mount in mounts:
        for candidate in _candidates(mount, path):
            if (candidate / probe).exists():
                return candidate
    return None


def _resolve(cgroup_text: str, container_id: str, cgroup_root: Path) -> _Resolved:
    paths = parse_proc_cgroup(cgroup_text)

    def own(path: str | None) -> str | None:
        return path if path is not None and container_id in path else None

    unified_mounts = [cgroup_root, cgroup_root / "unified"]

    def controller(name: str, v1_probe: str, v2_probe: str, what: str) -> tuple[Path, bool]:
        """The container's directory for a v1 controller, else its v2 group."""
        if (p := own(paths.v1.get(name))) is not None:
            mounts = [cgroup_root / name, cgroup_root / paths.v1_mounts[name]]
            if (found := _find_dir(mounts, p, v1_probe)) is not None:
                return found, False
        if (p := own(paths.v2)) is not None:
            if (found := _find_dir(unified_mounts, p, v2_probe)) is not None:
                return found, True
        raise _Unreadable(f"no cgroup {what} accounting for {container_id[:12]}")

    cpu_dir, cpu_v2 = controller("cpuacct", "cpuacct.usage", "cpu.stat", "CPU")
    quota_files: tuple[Path, ...] = ()
    if cpu_v2:
        if (cpu_dir / "cpu.max").exists():
            quota_files = (cpu_dir / "cpu.max",)
    elif (p := own(paths.v1.get("cpu"))) is not None:
        mounts = [cgroup_root / "cpu", cgroup_root / paths.v1_mounts["cpu"]]
        if (quota_dir := _find_dir(mounts, p, "cpu.cfs_quota_us")) is not None:
            quota_files = (quota_dir / "cpu.cfs_quota_us", quota_dir / "cpu.cfs_period_us")
    mem_dir, mem_v2 = controller("memory", "memory.usage_in_bytes", "memory.current", "memory")
    return _Resolved(
        cgroup_text=cgroup_text,
        cpu_file=cpu_dir / ("cpu.stat" if cpu_v2 else "cpuacct.usage"),
        cpu_v2=cpu_v2,
        quota_files=quota_files,
        mem_usage_file=mem_dir / ("memory.current" if mem_v2 else "memory.usage_in_bytes"),
        mem_stat_file=mem_dir / "memory.stat",
        mem_limit_file=mem_dir / ("memory.max" if mem_v2 else "memory.limit_in_bytes"),
        mem_v2=mem_v2,
    )


def read_local(
    container_id: str,
    pid: int,
    *,
    proc_root: Path = Path("/proc"),
    cgroup_root: Path = Path("/sys/fs/cgroup"),
    host_memory: int | None = None,
    resolved: _Resolved | None = None,
) -> tuple[Counters, _Resolved]:
    """Read one container's counters from its cgroup and proc files (blocking).

    `resolved` is the previous call's second result, reused while the process's
    cgroup membership is unchanged. Raises `_Unreadable` when the files are missing,
    unreadable, or do not belong to `container_id`.
    """
    proc = proc_root / str(pid)
    try:
        cgroup_text = _read(proc / "cgroup")
        if resolved is None or resolved.cgroup_text != cgroup_text:
            resolved = _resolve(cgroup_text, container_id, cgroup_root)
        wall_ns = time.monotonic_ns()
        cpu_text = _read(resolved.cpu_file)
        cpu_ns = parse_cpu_stat_usage(cpu_text) if resolved.cpu_v2 else parse_cpuacct_usage(cpu_text)
        usage = memory_usage(
            _read(resolved.mem_usage_file), _read(resolved.mem_stat_file), v2=resolved.mem_v2
        )
        limit = parse_memory_limit(_read(resolved.mem_limit_file), host_memory)
        cpu_limit = None
        if len(resolved.quota_files) == 2:
            cpu_limit = parse_cfs_quota(*(_read(f) for f in resolved.quota_files))
        elif len(resolved.quota_files) == 1:
            cpu_limit = parse_cpu_max(_read(resolved.quota_files[0]))
        net = parse_net_dev(_read(proc / "net" / "dev"))
    except (OSError, ValueError, IndexError) as exc:
        raise _Unreadable(f"{container_id[:12]} (pid {pid}): {exc}") from exc
    counters = Counters(
        source="cgroup",
        wall_ns=wall_ns,
        cpu_ns=cpu_ns,
        memory_usage=usage,
        memory_limit=limit,
        net_bytes=net,
        cpu_limit=cpu_limit,
    )
    return counters, resolved


# -- the sampler ---------------------------------------------------------------------------


class Sampler:
    """Samples every container of a tick concurrently, within the tick's deadline.

    `engine_is_local`: the engine runs on this host, so cgroup and proc files are
    tried first (see `DockerEngine.is_local`). `stats_source` is a blocking
    ``container_id -> stats document`` callable (`DockerEngine.read_stats`), used
    when the engine is remote or a container's files cannot be read; without it
    such a container's CPU, memory and network are NaN. `probe` measures
    availability (`NetworkProbe` unless given). `cpu_limits` maps a
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
        self._proc_root = Path(proc_root)
        self._cgroup_root = Path(cgroup_root)
        self._host_memory: int | None = None
        self._host_memory_read = False
        self._previous: dict[str, Counters] = {}
        self._resolved: dict[str, tuple[int, _Resolved]] = {}
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
            assert info.host_port is not None
            probes[info.id] = await self._probe.response_time(
                info.address, info.host_port, timeout=probe_timeout, health_path=health_path
            )

        with trio.move_on_at(deadline):
            async with trio.open_nursery() as nursery:
                for info in running:
                    if info.host_port is not None:
                        nursery.start_soon(probe, info)
                nursery.start_soon(self._collect, running, readings, metrics_done)

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

    def forget(self, container_id: str) -> None:
        """Drop the state kept for one container (its next CPU/network are NaN)."""
        self._previous.pop(container_id, None)
        self._resolved.pop(container_id, None)
        with self._lock:
            self._landed.pop(container_id, None)

    # -- internals -------------------------------------------------------------------

    def _forget(self, keep: set[str]) -> None:
        for cid in [c for c in self._previous if c not in keep]:
            del self._previous[cid]
        for cid in [c for c in self._resolved if c not in keep]:
            del self._resolved[cid]
        with self._lock:
            for cid in [c for c in self._landed if c not in keep]:
                del self._landed[cid]

    async def _collect(
        self, running: list[ContainerInfo], readings: dict[str, Counters], done: set[str]
    ) -> None:
        """Fill `readings` (and `done`) for `running`: files first, then the stats API."""
        remote: list[ContainerInfo] = []
        if self.engine_is_local:
            local = [c for c in running if c.pid]
            remote = [c for c in running if not c.pid]
            if local:
                results = await trio.to_thread.run_sync(
                    self._read_all_local,
                    [(c.id, c.pid, self._resolved.get(c.id)) for c in local],
                    limiter=self._limiter,
                    abandon_on_cancel=True,
                )
                for info in local:
                    result = results[info.id]
                    if isinstance(result, _Unreadable):
                        log.debug("cgroup read failed, using the stats API: %s", result)
                        self._resolved.pop(info.id, None)
                        remote.append(info)
                        continue
                    counters, resolved = result
                    self._resolved[info.id] = (info.pid or 0, resolved)
                    readings[info.id] = counters
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

    def _read_all_local(
        self, items: list[tuple[str, int | None, tuple[int, _Resolved] | None]]
    ) -> dict[str, tuple[Counters, _Resolved] | _Unreadable]:
        """Worker thread: read every local container. Writes no shared state but
        the host's MemTotal, read once (a benign race if two threads both do)."""
        if not self._host_memory_read:
            try:
                self._host_memory = parse_meminfo_total(_read(self._proc_root / "meminfo"))
            except (OSError, ValueError):
                self._host_memory = None
            self._host_memory_read = True
        out: dict[str, tuple[Counters, _Resolved] | _Unreadable] = {}
        for cid, pid, cached in items:
            assert pid is not None
            resolved = cached[1] if cached is not None and cached[0] == pid else None
            try:
                out[cid] = read_local(
                    cid,
                    pid,
                    proc_root=self._proc_root,
                    cgroup_root=self._cgroup_root,
                    host_memory=self._host_memory,
                    resolved=resolved,
                )
            except _Unreadable as exc:
                out[cid] = exc
        return out

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
