"""`LocalReader` / `OpenCounters` on fake /proc and cgroup trees: files opened
once and read in place, reopened for a new pid, closed when a container leaves."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from agent.adapters.cgroup_files import LocalReader, OpenCounters, _Unreadable, read_local

from .test_sampler_parse import CID, MEMINFO, NET_DEV, PROC_CGROUP_HYBRID, _v1_tree, _write


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    _write(tmp_path / "proc" / "meminfo", MEMINFO)
    for pid in (42, 43):
        _write(tmp_path / "proc" / str(pid) / "cgroup", PROC_CGROUP_HYBRID)
        _write(tmp_path / "proc" / str(pid) / "net" / "dev", NET_DEV)
    _v1_tree(tmp_path / "cg", f"docker/{CID}", quota="50000\n")
    return tmp_path


def _reader(tree: Path, **kw: int) -> LocalReader:
    return LocalReader(tree / "proc", tree / "cg", **kw)


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_the_same_counters_as_read_local(tree: Path) -> None:
    plain, _ = read_local(CID, 42, proc_root=tree / "proc", cgroup_root=tree / "cg",
                          host_memory=10**12)
    files = OpenCounters.open(CID, 42, proc_root=tree / "proc", cgroup_root=tree / "cg")
    try:
        counters = files.read(10**12)
    finally:
        files.close()
    assert counters.cpu_ns == plain.cpu_ns and counters.memory_usage == plain.memory_usage
    assert counters.memory_limit == plain.memory_limit and counters.net_bytes == plain.net_bytes
    assert counters.cpu_limit == plain.cpu_limit == 0.5


def test_files_are_opened_once_and_read_in_place(tree: Path) -> None:
    reader = _reader(tree)
    first = reader.read_all([(CID, 42)], {CID})[CID]
    assert not isinstance(first, _Unreadable) and reader.open_count() == 1
    fds = _open_fds()
    usage = tree / "cg" / "cpuacct" / "docker" / CID / "cpuacct.usage"
    usage.write_text("3000000000\n")  # the same file, new contents
    second = reader.read_all([(CID, 42)], {CID})[CID]
    assert not isinstance(second, _Unreadable) and second.cpu_ns == 3_000_000_000
    assert _open_fds() == fds  # nothing opened for the second reading
    reader.close()
    assert reader.open_count() == 0


def test_a_new_pid_reopens_and_a_departed_container_is_closed(tree: Path) -> None:
    reader = _reader(tree)
    before = _open_fds()
    reader.read_all([(CID, 42)], {CID})
    opened = _open_fds() - before
    assert opened == 4
    reader.read_all([(CID, 43)], {CID})  # restarted: another init process
    assert reader.open_count() == 1 and _open_fds() - before == 4
    reader.read_all([], set())  # gone from the pool: its files are closed
    assert reader.open_count() == 0 and _open_fds() == before
    reader.read_all([(CID, 42)], {CID})
    reader.forget(CID)
    reader.read_all([], {CID})  # forgotten: closed at the next call
    assert reader.open_count() == 0


def test_beyond_the_budget_files_are_read_the_plain_way(tree: Path) -> None:
    reader = _reader(tree, budget=0)
    result = reader.read_all([(CID, 42)], {CID})[CID]
    assert not isinstance(result, _Unreadable) and result.cpu_ns == 2042146589
    assert reader.open_count() == 0


def test_a_pid_without_files_is_unreadable_and_leaves_nothing_open(tree: Path) -> None:
    reader = _reader(tree)
    reader.read_all([(CID, 42)], {CID})
    before = _open_fds()
    result = reader.read_all([(CID, 99)], {CID})[CID]  # restarted, files not there
    assert isinstance(result, _Unreadable)
    assert reader.open_count() == 0 and _open_fds() == before - 4
