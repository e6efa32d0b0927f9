"""The pure cgroup parsing and formulas (`agent.core.cgroups`), on literal file contents,
and the sampler's file reading on fake /proc and cgroup trees (v1, v2, hybrid,
co-mounted, namespaced)."""
from __future__ import annotations

import math
from pathlib import Path

import pytest

from agent.core.cgroups import (
    CgroupPaths,
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
    parse_flat_keyed,
    parse_memory_limit,
    parse_meminfo_total,
    parse_net_dev,
    parse_proc_cgroup,
)
from agent.adapters.sampler import read_local

CID = "a25c34bec7526b84c68cdd3bef6911e8979a8270e7c24268abb35aacc1574fa5"

PROC_CGROUP_HYBRID = f"""\
9:name=systemd:/docker/{CID}
8:pids:/docker/{CID}
4:memory:/docker/{CID}
2:cpuacct:/docker/{CID}
1:cpu:/docker/{CID}
0::/docker/{CID}
"""
PROC_CGROUP_COMOUNTED = f"""\
12:memory:/docker/{CID}
3:cpu,cpuacct:/docker/{CID}
1:name=systemd:/docker/{CID}
"""
PROC_CGROUP_V2 = f"0::/system.slice/docker-{CID}.scope\n"

MEMORY_STAT_V1 = """\
cache 1052672
rss 102400
inactive_file 4096
active_file 4096
hierarchical_memory_limit 9223372036854771712
total_cache 1052672
total_rss 102400
total_inactive_file 1048576
total_active_file 4096
"""
MEMORY_STAT_V2 = """\
anon 1200128
file 2105344
inactive_file 1048576
active_file 1056768
"""
CPU_STAT_V2 = """\
usage_usec 2065584
user_usec 2045543
system_usec 20040
nr_periods 0
nr_throttled 0
throttled_usec 0
"""
NET_DEV = """\
Inter-|   Receive                                                |  Transmit
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed
    lo:  999999       9    0    0    0     0          0         0   999999       9    0    0    0     0       0          0
  eth0:    2009      24    0    0    0     0          0         0     1980      19    0    0    0     0       0          0
  eth1:100       1    0    0    0     0          0         0     11       1    0    0    0     0       0          0
"""
MEMINFO = "MemTotal:       24684084 kB\nMemFree:        23698596 kB\n"
UNLIMITED_V1 = "9223372036854771712\n"


def test_proc_cgroup_hybrid() -> None:
    paths = parse_proc_cgroup(PROC_CGROUP_HYBRID)
    assert paths.v1["cpuacct"] == f"/docker/{CID}"
    assert paths.v1["memory"] == f"/docker/{CID}"
    assert paths.v1_mounts["cpuacct"] == "cpuacct"
    assert paths.v1["name=systemd"] == f"/docker/{CID}"
    assert paths.v2 == f"/docker/{CID}"


def test_proc_cgroup_comounted_controllers_share_a_mount() -> None:
    paths = parse_proc_cgroup(PROC_CGROUP_COMOUNTED)
    assert paths.v1["cpu"] == paths.v1["cpuacct"] == f"/docker/{CID}"
    assert paths.v1_mounts["cpu"] == paths.v1_mounts["cpuacct"] == "cpu,cpuacct"
    assert paths.v2 is None


def test_proc_cgroup_pure_v2() -> None:
    assert parse_proc_cgroup(PROC_CGROUP_V2) == CgroupPaths(
        v1={}, v1_mounts={}, v2=f"/system.slice/docker-{CID}.scope"
    )


def test_cpu_counters() -> None:
    assert parse_cpuacct_usage("2042146589\n") == 2042146589
    assert parse_cpu_stat_usage(CPU_STAT_V2) == 2065584000
    with pytest.raises(ValueError, match="usage_usec"):
        parse_cpu_stat_usage("user_usec 1\n")


def test_flat_keyed_skips_odd_lines() -> None:
    assert parse_flat_keyed("a 1\nb x\nc\nd 4 5\ne 5\n") == {"a": 1, "e": 5}


@pytest.mark.parametrize(
    ("usage", "stat", "v2", "expected"),
    [
        pytest.param("2101248\n", MEMORY_STAT_V1, False, 2101248 - 1048576, id="v1-total_inactive_file"),
        pytest.param("2101248\n", "inactive_file 4096\n", False, 2101248 - 4096, id="v1-no-total"),
        pytest.param("3305472\n", MEMORY_STAT_V2, True, 3305472 - 1048576, id="v2-inactive_file"),
        pytest.param("1000\n", "inactive_file 5000\n", True, 1000, id="cache-above-usage-ignored"),
        pytest.param("1000\n", "", True, 1000, id="no-stat"),
        pytest.param("1000\n", "total_inactive_file 10\n", True, 1000, id="v2-ignores-total_"),
        pytest.param("1000\n", "inactive_file 10", True, 990, id="first-line-no-newline"),
    ],
)
def test_memory_usage_subtracts_inactive_file(usage: str, stat: str, v2: bool, expected: int) -> None:
    assert memory_usage(usage, stat, v2=v2) == expected


@pytest.mark.parametrize(
    ("text", "host", "expected"),
    [
        pytest.param(UNLIMITED_V1, 25_276_502_016, 25_276_502_016, id="v1-unlimited-host"),
        pytest.param(UNLIMITED_V1, None, None, id="v1-unlimited-unknown-host"),
        pytest.param("67108864\n", 25_276_502_016, 67108864, id="v1-limit"),
        pytest.param("67108864\n", 1000, 1000, id="limit-above-host-capped"),
        pytest.param("max\n", 25_276_502_016, 25_276_502_016, id="v2-max"),
        pytest.param("max\n", None, None, id="v2-max-unknown-host"),
        pytest.param("33554432\n", None, 33554432, id="v2-limit"),
    ],
)
def test_memory_limit(text: str, host: int | None, expected: int | None) -> None:
    assert parse_memory_limit(text, host) == expected


def test_meminfo_total_in_bytes() -> None:
    assert parse_meminfo_total(MEMINFO) == 24684084 * 1024
    assert parse_meminfo_total("MemFree: 1 kB\n") is None


def test_net_dev_sums_rx_tx_without_lo() -> None:
    assert parse_net_dev(NET_DEV) == 2009 + 1980 + 100 + 11
    assert parse_net_dev(NET_DEV.split("\n", 2)[0]) == 0


@pytest.mark.parametrize(
    ("quota", "period", "expected"),
    [("-1\n", "100000\n", None), ("50000\n", "100000\n", 0.5), ("200000\n", "100000\n", 2.0)],
)
def test_cfs_quota(quota: str, period: str, expected: float | None) -> None:
    assert parse_cfs_quota(quota, period) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [("max 100000\n", None), ("50000 100000\n", 0.5), ("150000 100000\n", 1.5), ("max\n", None)],
)
def test_cpu_max(text: str, expected: float | None) -> None:
    assert parse_cpu_max(text) == expected


def _c(wall_ns: int, cpu_ns: int, net: int = 0, *, source: str = "cgroup", **kw: object) -> Counters:
    return Counters(source=source, wall_ns=wall_ns, cpu_ns=cpu_ns, memory_usage=None,
                    memory_limit=None, net_bytes=net, **kw)  # type: ignore[arg-type]


def test_cpu_percent_from_cgroup_is_cpu_over_wall() -> None:
    prev, cur = _c(0, 0), _c(1_000_000_000, 500_000_000)
    assert cpu_percent(prev, cur) == pytest.approx(50.0)
    assert cpu_percent(_c(0, 0), _c(1_000_000_000, 2_000_000_000)) == pytest.approx(200.0)


def test_cpu_percent_with_a_limit_is_share_of_the_limit() -> None:
    prev, cur = _c(0, 0), _c(1_000_000_000, 500_000_000)
    assert cpu_percent(prev, cur, 0.5) == pytest.approx(100.0)
    assert cpu_percent(prev, cur, 2.0) == pytest.approx(25.0)


def test_cpu_percent_compat_formula_for_stats() -> None:
    prev = _c(0, 100, source="stats", system_ns=1_000, online_cpus=2)
    cur = _c(1, 300, source="stats", system_ns=1_800, online_cpus=2)
    # 200 / 800 * 2 * 100
    assert cpu_percent(prev, cur) == pytest.approx(50.0)


@pytest.mark.parametrize(
    ("prev", "cur"),
    [
        pytest.param(_c(0, 100), _c(10, 100), id="no-cpu-delta"),
        pytest.param(_c(0, 200), _c(10, 100), id="counter-went-back"),
        pytest.param(_c(10, 0), _c(10, 100), id="no-wall-delta"),
        pytest.param(_c(0, 0, source="stats", system_ns=5), _c(1, 9, source="stats", system_ns=5),
                     id="no-system-delta"),
    ],
)
def test_cpu_percent_is_zero_when_a_delta_is_not_positive(prev: Counters, cur: Counters) -> None:
    assert cpu_percent(prev, cur) == 0.0


def test_cpu_and_network_are_nan_without_a_comparable_previous_reading() -> None:
    cur = _c(1_000, 5, 10)
    assert math.isnan(cpu_percent(None, cur))
    assert math.isnan(network_rate(None, cur))
    other = _c(0, 0, 0, source="stats", system_ns=0)
    assert math.isnan(cpu_percent(other, cur))
    assert math.isnan(network_rate(other, cur))


def test_network_rate_bytes_per_second() -> None:
    assert network_rate(_c(0, 0, 1_000), _c(500_000_000, 0, 6_000)) == pytest.approx(10_000.0)
    assert network_rate(_c(0, 0, 6_000), _c(500_000_000, 0, 1_000)) == 0.0  # reset


def test_memory_percent() -> None:
    cur = Counters("cgroup", 0, 0, memory_usage=25, memory_limit=200, net_bytes=0)
    assert memory_percent(cur) == 12.5
    assert math.isnan(memory_percent(Counters("cgroup", 0, 0, 25, None, 0)))


# A stats document as dockerd 20.10 returns it with stream=False, one_shot=True.
STATS = {
    "read": "2026-11-26T19:45:20.522415052Z",
    "preread": "0001-01-01T00:00:00Z",
    "cpu_stats": {
        "cpu_usage": {"total_usage": 2055480830, "percpu_usage": [8801180, 2046679650]},
        "system_cpu_usage": 649110000000,
        "online_cpus": 2,
    },
    "precpu_stats": {"cpu_usage": {"total_usage": 0}},
    "memory_stats": {
        "usage": 532480,
        "stats": {"inactive_file": 0, "total_inactive_file": 4096},
        "limit": 25276502016,
    },
    "networks": {"eth0": {"rx_bytes": 3144, "tx_bytes": 2465}},
}


def test_counters_from_stats_document() -> None:
    c = counters_from_stats(STATS, now_ns=0)
    assert c.source == "stats"
    assert c.cpu_ns == 2055480830
    assert c.system_ns == 649110000000
    assert c.online_cpus == 2
    assert c.memory_usage == 532480 - 4096
    assert c.memory_limit == 25276502016
    assert c.net_bytes == 3144 + 2465
    assert c.wall_ns == pytest.approx(1795722320.522415052e9, abs=1e3)


def test_counters_from_a_stopped_containers_stats() -> None:
    c = counters_from_stats({"read": "0001-01-01T00:00:00Z", "cpu_stats": {}, "memory_stats": {}},
                            now_ns=123)
    assert c.cpu_ns is None and c.memory_usage is None and c.net_bytes is None
    assert c.online_cpus is None
    assert c.wall_ns == 123  # no `read` time: the caller's clock stands in


# -- read_local on fake trees ------------------------------------------------------


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def _proc(root: Path, pid: int, cgroup: str) -> Path:
    _write(root / str(pid) / "cgroup", cgroup)
    _write(root / str(pid) / "net" / "dev", NET_DEV)
    return root


def _v1_tree(cg: Path, rel: str, *, quota: str = "-1\n", mounts: tuple[str, ...] = ("cpu", "cpuacct", "memory")) -> None:
    cpu_mount, cpuacct_mount, memory_mount = mounts
    _write(cg / cpuacct_mount / rel / "cpuacct.usage", "2042146589\n")
    _write(cg / cpu_mount / rel / "cpu.cfs_quota_us", quota)
    _write(cg / cpu_mount / rel / "cpu.cfs_period_us", "100000\n")
    _write(cg / memory_mount / rel / "memory.usage_in_bytes", "2101248\n")
    _write(cg / memory_mount / rel / "memory.stat", MEMORY_STAT_V1)
    _write(cg / memory_mount / rel / "memory.limit_in_bytes", "67108864\n")


def test_read_local_cgroup_v1(tmp_path: Path) -> None:
    proc = _proc(tmp_path / "proc", 42, PROC_CGROUP_HYBRID)
    _v1_tree(tmp_path / "cg", f"docker/{CID}", quota="50000\n")
    counters, resolved = read_local(CID, 42, proc_root=proc, cgroup_root=tmp_path / "cg",
                                    host_memory=10**12)
    assert counters.source == "cgroup"
    assert counters.cpu_ns == 2042146589
    assert counters.memory_usage == 2101248 - 1048576
    assert counters.memory_limit == 67108864
    assert counters.net_bytes == 2009 + 1980 + 100 + 11
    assert counters.cpu_limit == 0.5
    # The resolution is reused while the process's cgroups are unchanged.
    again, resolved_again = read_local(CID, 42, proc_root=proc, cgroup_root=tmp_path / "cg",
                                       host_memory=10**12, resolved=resolved)
    assert resolved_again is resolved and again.cpu_ns == counters.cpu_ns


def test_read_local_comounted_cpu_cpuacct(tmp_path: Path) -> None:
    proc = _proc(tmp_path / "proc", 42, PROC_CGROUP_COMOUNTED)
    _v1_tree(tmp_path / "cg", f"docker/{CID}", mounts=("cpu,cpuacct", "cpu,cpuacct", "memory"))
    counters, _ = read_local(CID, 42, proc_root=proc, cgroup_root=tmp_path / "cg", host_memory=None)
    assert counters.cpu_ns == 2042146589 and counters.cpu_limit is None


def test_read_local_cgroup_v2(tmp_path: Path) -> None:
    rel = f"system.slice/docker-{CID}.scope"
    proc = _proc(tmp_path / "proc", 7, PROC_CGROUP_V2)
    cg = tmp_path / "cg"
    _write(cg / "cgroup.controllers", "cpu memory\n")
    _write(cg / rel / "cpu.stat", CPU_STAT_V2)
    _write(cg / rel / "cpu.max", "150000 100000\n")
    _write(cg / rel / "memory.current", "3305472\n")
    _write(cg / rel / "memory.stat", MEMORY_STAT_V2)
    _write(cg / rel / "memory.max", "max\n")
    counters, _ = read_local(CID, 7, proc_root=proc, cgroup_root=cg, host_memory=8 << 30)
    assert counters.cpu_ns == 2065584000
    assert counters.cpu_limit == 1.5
    assert counters.memory_usage == 3305472 - 1048576
    assert counters.memory_limit == 8 << 30


def test_read_local_inside_a_cgroup_namespace(tmp_path: Path) -> None:
    """An agent in a container sees its cgroup mount rooted lower than the path the
    host prints; the suffix of the path that names the container is found."""
    proc = _proc(tmp_path / "proc", 42, PROC_CGROUP_HYBRID.replace("/docker/", "/../../docker/"))
    _v1_tree(tmp_path / "cg", CID)  # mounted at .../docker: only the id remains
    counters, _ = read_local(CID, 42, proc_root=proc, cgroup_root=tmp_path / "cg", host_memory=None)
    assert counters.cpu_ns == 2042146589


def test_read_local_refuses_a_cgroup_of_another_container(tmp_path: Path) -> None:
    """A recycled pid (or one from another pid namespace) must not be read."""
    from agent.adapters.sampler import _Unreadable

    other = "f" * 64
    proc = _proc(tmp_path / "proc", 42, PROC_CGROUP_HYBRID.replace(CID, other))
    _v1_tree(tmp_path / "cg", f"docker/{other}")
    with pytest.raises(_Unreadable, match="no cgroup CPU accounting"):
        read_local(CID, 42, proc_root=proc, cgroup_root=tmp_path / "cg", host_memory=None)


def test_read_local_missing_files_are_unreadable(tmp_path: Path) -> None:
    from agent.adapters.sampler import _Unreadable

    with pytest.raises(_Unreadable):
        read_local(CID, 42, proc_root=tmp_path, cgroup_root=tmp_path, host_memory=None)
