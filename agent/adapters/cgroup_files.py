"""Reading a container's counters from its cgroup and proc files (blocking I/O).

Two ways, one result (`Counters`):

* `read_local` opens, reads and closes every file, each time: the plain way,
  kept for callers that read once and as the fallback;
* `OpenCounters` opens a container's files once — when it is first sampled with
  a given init pid — and then reads them with ``pread`` each tick: one system
  call per file instead of three, and no path walk. The memory limit and the
  CPU quota change only through ``docker update``: they are re-read every
  `LIMITS_REFRESH` seconds, not every tick. At 100 containers that cuts the
  file reads of a tick from ~100 µs to ~15 µs per container.

Safety is the same as `read_local`'s: a cgroup path is used only if it names
the container's id. It is checked once, when the files are opened, and again
right after ``/proc/<pid>/net/dev`` is opened, so a pid recycled in between is
caught; after that the descriptors stay bound to the container's own cgroup
files and network namespace, whatever becomes of the pid.

Descriptors are a cache with a budget: a quarter of the process's open-file
limit at most (`descriptor_budget`); containers beyond it are read the plain
way. Pure parsing lives in `agent.core.cgroups`.
"""
from __future__ import annotations

import os
import resource
import threading
import time
import weakref
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from agent.core.cgroups import (
    Counters,
    memory_usage,
    parse_meminfo_total,
    parse_cfs_quota,
    parse_cpu_max,
    parse_cpu_stat_usage,
    parse_cpuacct_usage,
    parse_memory_limit,
    parse_net_dev,
    parse_proc_cgroup,
)

__all__ = ["LIMITS_REFRESH", "LocalReader", "OpenCounters", "descriptor_budget", "read_local"]

LIMITS_REFRESH = 10.0  # seconds between two reads of the memory limit and CPU quota
_FDS_PER_CONTAINER = 4  # cpu, memory usage, memory.stat, net/dev



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




# -- open descriptors ---------------------------------------------------------------


def descriptor_budget() -> int:
    """How many containers may keep open descriptors: a quarter of the soft
    open-file limit, four per container."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        soft = 65536
    return max(0, soft // 4 // _FDS_PER_CONTAINER)


def _pread(fd: int) -> str:
    data = os.pread(fd, 4096, 0)
    if len(data) == 4096:  # a long memory.stat: read on
        chunks = [data]
        while len(chunk := os.pread(fd, 65536, sum(map(len, chunks)))) > 0:
            chunks.append(chunk)
        data = b"".join(chunks)
    return data.decode("ascii", "replace")


class OpenCounters:
    """The open files of one container (its id and init pid), read each tick.

    Made by `open`, which raises `_Unreadable` like `read_local`. `read` raises
    `_Unreadable` once a file fails (the container is gone, or its cgroup was
    removed); the caller then closes it and falls back. Not thread-safe: one
    reader at a time (the sampler's lock).
    """

    __slots__ = ("container_id", "pid", "_resolved", "_fds", "_limits", "_limits_at")

    def __init__(self, container_id: str, pid: int, resolved: _Resolved, fds: tuple[int, ...]) -> None:
        self.container_id = container_id
        self.pid = pid
        self._resolved = resolved
        self._fds = fds  # cpu, memory usage, memory.stat, net/dev
        self._limits: tuple[int | None, float | None] = (None, None)
        self._limits_at = -float("inf")

    @classmethod
    def open(
        cls, container_id: str, pid: int, *, proc_root: Path, cgroup_root: Path,
        resolved: _Resolved | None = None,
    ) -> OpenCounters:
        proc = proc_root / str(pid)
        fds: list[int] = []
        try:
            cgroup_text = _read(proc / "cgroup")
            if resolved is None or resolved.cgroup_text != cgroup_text:
                resolved = _resolve(cgroup_text, container_id, cgroup_root)
            for path in (resolved.cpu_file, resolved.mem_usage_file, resolved.mem_stat_file,
                         proc / "net" / "dev"):
                fds.append(os.open(path, os.O_RDONLY | os.O_CLOEXEC))
            if _read(proc / "cgroup") != cgroup_text:  # the pid was recycled meanwhile
                raise _Unreadable(f"{container_id[:12]} (pid {pid}): its process changed")
        except (OSError, ValueError, IndexError, _Unreadable) as exc:
            _close_all(fds)
            if isinstance(exc, _Unreadable):
                raise
            raise _Unreadable(f"{container_id[:12]} (pid {pid}): {exc}") from exc
        return cls(container_id, pid, resolved, tuple(fds))

    def read(self, host_memory: int | None, now: float | None = None) -> Counters:
        now = time.monotonic() if now is None else now
        resolved = self._resolved
        cpu_fd, mem_fd, stat_fd, net_fd = self._fds
        try:
            if now - self._limits_at >= LIMITS_REFRESH:
                self._limits = _read_limits(resolved, host_memory)
                self._limits_at = now
            wall_ns = time.monotonic_ns()
            cpu_text = _pread(cpu_fd)
            cpu_ns = parse_cpu_stat_usage(cpu_text) if resolved.cpu_v2 else parse_cpuacct_usage(cpu_text)
            usage = memory_usage(_pread(mem_fd), _pread(stat_fd), v2=resolved.mem_v2)
            net = parse_net_dev(_pread(net_fd))
        except (OSError, ValueError, IndexError) as exc:
            raise _Unreadable(f"{self.container_id[:12]} (pid {self.pid}): {exc}") from exc
        limit, cpu_limit = self._limits
        return Counters(
            source="cgroup", wall_ns=wall_ns, cpu_ns=cpu_ns, memory_usage=usage,
            memory_limit=limit, net_bytes=net, cpu_limit=cpu_limit,
        )

    def close(self) -> None:
        fds, self._fds = self._fds, ()
        _close_all(fds)


def _read_limits(resolved: _Resolved, host_memory: int | None) -> tuple[int | None, float | None]:
    limit = parse_memory_limit(_read(resolved.mem_limit_file), host_memory)
    cpu_limit = None
    if len(resolved.quota_files) == 2:
        cpu_limit = parse_cfs_quota(*(_read(f) for f in resolved.quota_files))
    elif len(resolved.quota_files) == 1:
        cpu_limit = parse_cpu_max(_read(resolved.quota_files[0]))
    return limit, cpu_limit


def _close_all(fds: Iterable[int]) -> None:
    for fd in fds:
        try:
            os.close(fd)
        except OSError:
            pass


# -- every container of a tick -----------------------------------------------------------


class LocalReader:
    """Every local container's counters in one blocking call: one thread hop a tick.

    Keeps an `OpenCounters` per container (within `budget` containers; the
    others are read with `read_local`, their paths resolved once per pid).
    `read_all` closes the files of the containers it is no longer asked about.
    Thread-safe: a call abandoned by a cancelled tick and the next tick's call
    take turns on one lock (in their worker threads, never in Trio's).
    """

    def __init__(self, proc_root: Path, cgroup_root: Path, *, budget: int | None = None) -> None:
        self.proc_root = proc_root
        self.cgroup_root = cgroup_root
        self.budget = descriptor_budget() if budget is None else budget
        self._lock = threading.Lock()
        self._open: dict[str, OpenCounters] = {}
        self._paths: dict[str, tuple[int, _Resolved]] = {}
        self._forgotten: set[str] = set()
        self._forgotten_lock = threading.Lock()
        self._host_memory: int | None = None
        self._host_memory_read = False
        weakref.finalize(self, _close_counters, self._open)

    def read_all(
        self, items: Iterable[tuple[str, int]], keep: set[str]
    ) -> dict[str, Counters | _Unreadable]:
        """`(container id, pid)` pairs → their counters, or why they are unreadable."""
        with self._lock:
            self._prune(keep)
            if not self._host_memory_read:
                try:
                    self._host_memory = parse_meminfo_total(_read(self.proc_root / "meminfo"))
                except (OSError, ValueError):
                    self._host_memory = None
                self._host_memory_read = True
            now = time.monotonic()
            return {cid: self._read_one(cid, pid, now) for cid, pid in items}

    def forget(self, container_id: str) -> None:
        """Close a container's files at the next `read_all` (callable from any thread)."""
        with self._forgotten_lock:
            self._forgotten.add(container_id)

    def open_count(self) -> int:
        return len(self._open)

    def close(self) -> None:
        """Close every file (waits a moment for a read in progress)."""
        if self._lock.acquire(timeout=5):
            try:
                _close_counters(self._open)
            finally:
                self._lock.release()

    def _read_one(self, cid: str, pid: int, now: float) -> Counters | _Unreadable:
        files = self._open.get(cid)
        if files is not None and files.pid != pid:  # restarted: a new init process
            files.close()
            del self._open[cid]
            files = None
        cached = self._paths.get(cid)
        resolved = cached[1] if cached is not None and cached[0] == pid else None
        if files is None and len(self._open) < self.budget:
            try:
                files = OpenCounters.open(cid, pid, proc_root=self.proc_root,
                                          cgroup_root=self.cgroup_root, resolved=resolved)
            except _Unreadable as exc:
                return exc
            self._open[cid] = files
        if files is not None:
            try:
                return files.read(self._host_memory, now)
            except _Unreadable as exc:
                files.close()
                del self._open[cid]
                return exc
        try:
            counters, resolved = read_local(
                cid, pid, proc_root=self.proc_root, cgroup_root=self.cgroup_root,
                host_memory=self._host_memory, resolved=resolved,
            )
        except _Unreadable as exc:
            self._paths.pop(cid, None)
            return exc
        self._paths[cid] = (pid, resolved)
        return counters

    def _prune(self, keep: set[str]) -> None:
        with self._forgotten_lock:
            forgotten, self._forgotten = self._forgotten, set()
        for cid in [c for c in self._open if c not in keep or c in forgotten]:
            self._open.pop(cid).close()
        for cid in [c for c in self._paths if c not in keep or c in forgotten]:
            del self._paths[cid]


def _close_counters(files: dict[str, OpenCounters]) -> None:
    for counters in files.values():
        counters.close()
    files.clear()
