"""Pure cgroup and proc parsing, and the sampler's formulas (SPEC §3).

File contents in, numbers out: nothing here opens a file, a socket or a thread, so
every function is unit-tested on literal file contents (and on literal engine stats
documents). The file reading that feeds these functions, and the concurrency around
it, is in `agent.adapters.sampler`.

Files understood
----------------
``/proc/<pid>/cgroup`` (`parse_proc_cgroup`); cgroup v1 ``cpuacct.usage``,
``memory.usage_in_bytes`` − ``total_inactive_file``, ``memory.limit_in_bytes``,
``cpu.cfs_quota_us``/``cpu.cfs_period_us``; cgroup v2 ``cpu.stat`` usage_usec,
``memory.current`` − ``inactive_file``, ``memory.max``, ``cpu.max``;
``/proc/meminfo`` MemTotal and ``/proc/<pid>/net/dev``; and the engine's one-shot
stats document (`counters_from_stats`).

Formulas
--------
A reading is a `Counters`; the rates are taken between two readings of the same
source. CPU % = Δcpu_ns / Δwall_ns × 100 for cgroup readings, and the compat
Δcontainer / Δsystem × online_cpus × 100 for stats readings; 100 = one busy core,
0 when a delta is ≤ 0, NaN without a comparable previous reading, divided by the
CPU limit in cores when there is one. Memory % = (usage − inactive file cache) /
min(limit, host MemTotal) × 100. Network = Δ(rx+tx bytes, all interfaces but
``lo``) / Δt.
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from agent.core.timestamps import parse_engine_time

__all__ = [
    "CgroupPaths",
    "Counters",
    "counters_from_stats",
    "cpu_percent",
    "memory_percent",
    "memory_usage",
    "network_rate",
    "parse_cfs_quota",
    "parse_cpu_max",
    "parse_cpu_stat_usage",
    "parse_cpuacct_usage",
    "parse_flat_keyed",
    "parse_memory_limit",
    "parse_meminfo_total",
    "parse_net_dev",
    "parse_proc_cgroup",
]

_UNLIMITED_V1 = 1 << 62  # v1 reports "no limit" as ~2**63 rounded to the page size


@dataclass(frozen=True, slots=True)
class CgroupPaths:
    """A process's cgroups from ``/proc/<pid>/cgroup``.

    `v1` maps each v1 controller (``cpuacct``, ``memory``, ...) to its path, and
    `v1_mounts` maps it to the mount directory name, which is the comma-joined
    controller list (``cpu,cpuacct``) when controllers are co-mounted. `v2` is the
    path in the unified hierarchy (the ``0::`` line), if any.
    """

    v1: Mapping[str, str]
    v1_mounts: Mapping[str, str]
    v2: str | None


def parse_proc_cgroup(text: str) -> CgroupPaths:
    """Parse ``/proc/<pid>/cgroup`` (``hierarchy-id:controllers:path`` lines)."""
    v1: dict[str, str] = {}
    mounts: dict[str, str] = {}
    v2: str | None = None
    for line in text.splitlines():
        parts = line.strip().split(":", 2)
        if len(parts) != 3:
            continue
        hierarchy, controllers, path = parts
        if hierarchy == "0" and controllers == "":
            v2 = path
            continue
        names = [c for c in controllers.split(",") if c]
        for name in names:
            v1[name] = path
            mounts[name] = ",".join(names)
    return CgroupPaths(v1=v1, v1_mounts=mounts, v2=v2)


def parse_cpuacct_usage(text: str) -> int:
    """cgroup v1 ``cpuacct.usage``: cumulative CPU time in ns."""
    return int(text.strip())


def parse_flat_keyed(text: str) -> dict[str, int]:
    """``key value`` lines (``memory.stat``, ``cpu.stat``) as a dict; others skipped."""
    result: dict[str, int] = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2:
            try:
                result[parts[0]] = int(parts[1])
            except ValueError:
                continue
    return result


def parse_cpu_stat_usage(text: str) -> int:
    """cgroup v2 ``cpu.stat``: cumulative CPU time in ns (from ``usage_usec``)."""
    stat = parse_flat_keyed(text)
    if "usage_usec" not in stat:
        raise ValueError("cpu.stat has no usage_usec")
    return stat["usage_usec"] * 1000


def _stat_value(text: str, key: str) -> int | None:
    """One key of a ``key value`` file, without parsing the rest (memory.stat has
    dozens of lines; this runs for every container every tick)."""
    start = 0 if text.startswith(key + " ") else text.find("\n" + key + " ") + 1
    if start == 0 and not text.startswith(key + " "):
        return None
    end = text.find("\n", start)
    try:
        return int(text[start + len(key) + 1 : end if end >= 0 else len(text)])
    except ValueError:
        return None


def memory_usage(usage_text: str, stat_text: str, *, v2: bool) -> int:
    """Working-set bytes: usage minus the inactive file cache, as `docker stats` does.

    v1: ``memory.usage_in_bytes`` − ``total_inactive_file``; v2: ``memory.current``
    − ``inactive_file``. The cache is subtracted only when it is below the usage.
    """
    usage = int(usage_text.strip())
    inactive = _stat_value(stat_text, "inactive_file" if v2 else "total_inactive_file")
    if inactive is None and not v2:
        inactive = _stat_value(stat_text, "inactive_file")
    if inactive is not None and inactive < usage:
        return usage - inactive
    return usage


def parse_memory_limit(text: str, host_total: int | None) -> int | None:
    """The effective memory limit in bytes, capped by the host's memory.

    v1 ``memory.limit_in_bytes`` (≈2**63 when unlimited) or v2 ``memory.max``
    (``max`` when unlimited). None when unlimited and the host total is unknown.
    """
    value = text.strip()
    limit: int | None = None
    if value != "max":
        limit = int(value)
        if limit >= _UNLIMITED_V1:
            limit = None
    if host_total is not None and host_total > 0:
        return host_total if limit is None else min(limit, host_total)
    return limit


def parse_meminfo_total(text: str) -> int | None:
    """``MemTotal`` of ``/proc/meminfo`` in bytes."""
    for line in text.splitlines():
        if line.startswith("MemTotal:"):
            parts = line.split()
            factor = 1024 if len(parts) > 2 and parts[2].lower() == "kb" else 1
            return int(parts[1]) * factor
    return None


def parse_net_dev(text: str) -> int:
    """``/proc/<pid>/net/dev``: rx + tx bytes summed over every interface but ``lo``."""
    total = 0
    for line in text.splitlines():
        if ":" not in line:
            continue
        name, _, fields = line.partition(":")
        name = name.strip()
        values = fields.split()
        if name == "lo" or len(values) < 9 or not values[0].isdigit():
            continue
        total += int(values[0]) + int(values[8])
    return total


def parse_cfs_quota(quota_text: str, period_text: str) -> float | None:
    """cgroup v1 CPU limit in cores (``cpu.cfs_quota_us`` / ``cpu.cfs_period_us``)."""
    quota, period = int(quota_text.strip()), int(period_text.strip())
    if quota <= 0 or period <= 0:
        return None
    return quota / period


def parse_cpu_max(text: str) -> float | None:
    """cgroup v2 CPU limit in cores from ``cpu.max`` (``max 100000`` = none)."""
    parts = text.split()
    if not parts or parts[0] == "max":
        return None
    period = int(parts[1]) if len(parts) > 1 else 100_000
    quota = int(parts[0])
    if quota <= 0 or period <= 0:
        return None
    return quota / period


@dataclass(frozen=True, slots=True)
class Counters:
    """One reading of a container's cumulative counters.

    `wall_ns` is when it was taken (our monotonic clock for cgroup reads, the
    engine's ``read`` time for stats documents); `system_ns` and `online_cpus` are
    set only for stats-API readings (compat CPU formula). `source` is ``"cgroup"``
    or ``"stats"``: deltas are only taken between readings of the same source.
    """

    source: str
    wall_ns: int
    cpu_ns: int | None
    memory_usage: int | None
    memory_limit: int | None
    net_bytes: int | None
    system_ns: int | None = None
    online_cpus: int | None = None
    cpu_limit: float | None = None  # cores, from the cgroup quota


def cpu_percent(prev: Counters | None, cur: Counters, cpu_limit: float | None = None) -> float:
    """CPU % between two readings (NaN without a comparable previous one).

    cgroup readings: Δcpu_ns / Δwall_ns × 100. Stats readings (compat):
    Δcpu / Δsystem × online_cpus × 100. 0 when a delta is ≤ 0. Divided by
    `cpu_limit` (cores) when given, so 100 means the limit is used up.
    """
    if prev is None or prev.source != cur.source or prev.cpu_ns is None or cur.cpu_ns is None:
        return math.nan
    d_cpu = cur.cpu_ns - prev.cpu_ns
    if cur.source == "stats":
        if cur.system_ns is None or prev.system_ns is None:
            return math.nan
        d_sys = cur.system_ns - prev.system_ns
        if d_cpu <= 0 or d_sys <= 0:
            return 0.0
        percent = d_cpu / d_sys * (cur.online_cpus or 1) * 100.0
    else:
        d_wall = cur.wall_ns - prev.wall_ns
        if d_cpu <= 0 or d_wall <= 0:
            return 0.0
        percent = d_cpu / d_wall * 100.0
    if cpu_limit is not None and cpu_limit > 0:
        percent /= cpu_limit
    return percent


def memory_percent(cur: Counters) -> float:
    """usage / limit × 100 (NaN when either is unknown)."""
    if cur.memory_usage is None or not cur.memory_limit:
        return math.nan
    return cur.memory_usage / cur.memory_limit * 100.0


def network_rate(prev: Counters | None, cur: Counters) -> float:
    """rx+tx bytes per second between two readings (NaN without a previous one)."""
    if prev is None or prev.source != cur.source or prev.net_bytes is None or cur.net_bytes is None:
        return math.nan
    d_wall = cur.wall_ns - prev.wall_ns
    d_bytes = cur.net_bytes - prev.net_bytes
    if d_wall <= 0 or d_bytes <= 0:
        return 0.0
    return d_bytes / (d_wall / 1e9)


def counters_from_stats(stats: Mapping[str, Any], *, now_ns: int) -> Counters:
    """A `Counters` from one engine stats document (``stream=False``).

    Its time is the document's ``read`` timestamp; `now_ns` (the caller's wall
    clock, in ns) stands in when that is missing or unparseable."""
    cpu = stats.get("cpu_stats") or {}
    usage = cpu.get("cpu_usage") or {}
    online = cpu.get("online_cpus") or len(usage.get("percpu_usage") or ()) or None
    mem = stats.get("memory_stats") or {}
    mem_usage: int | None = mem.get("usage")
    if mem_usage is not None:
        mstats = mem.get("stats") or {}
        inactive = mstats.get("total_inactive_file", mstats.get("inactive_file"))
        if inactive is not None and inactive < mem_usage:
            mem_usage -= inactive
    networks = stats.get("networks")
    net: int | None = None
    if networks is not None:
        net = sum(
            int(n.get("rx_bytes", 0)) + int(n.get("tx_bytes", 0))
            for name, n in networks.items()
            if name != "lo"
        )
    read = parse_engine_time(str(stats.get("read", "")))
    wall_ns = int(read * 1e9) if math.isfinite(read) else now_ns
    return Counters(
        source="stats",
        wall_ns=wall_ns,
        cpu_ns=usage.get("total_usage"),
        memory_usage=mem_usage,
        memory_limit=mem.get("limit") or None,
        net_bytes=net,
        system_ns=cpu.get("system_cpu_usage"),
        online_cpus=online,
    )
