"""The `Sampler` without an engine: fake /proc and cgroup trees, a fake stats
source, local sockets — deltas, forgetting, fallbacks and the tick deadline."""
from __future__ import annotations

import math
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trio

from agent.core.records import ContainerInfo
from agent.adapters.sampler import Sampler

from .test_sampler_parse import CID, MEMINFO, NET_DEV, PROC_CGROUP_HYBRID, _v1_tree, _write


def _info(cid: str = CID, *, pid: int | None = 42, status: str = "running",
          port: int | None = None, name: str = "w-1") -> ContainerInfo:
    return ContainerInfo(name=name, id=cid, image="img", status=status, created=0.0,
                         host_port=port, pid=pid)


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    _write(tmp_path / "proc" / "meminfo", MEMINFO)
    _write(tmp_path / "proc" / "42" / "cgroup", PROC_CGROUP_HYBRID)
    _write(tmp_path / "proc" / "42" / "net" / "dev", NET_DEV)
    _v1_tree(tmp_path / "cg", f"docker/{CID}")
    return tmp_path


def _sampler(tree: Path, **kw: Any) -> Sampler:
    return Sampler(True, proc_root=tree / "proc", cgroup_root=tree / "cg", **kw)


def _soon(seconds: float = 5.0) -> float:
    return trio.current_time() + seconds


def _bump(tree: Path, *, cpu_ns: int, net_rx: int) -> None:
    (tree / "cg" / "cpuacct" / "docker" / CID / "cpuacct.usage").write_text(f"{cpu_ns}\n")
    (tree / "proc" / "42" / "net" / "dev").write_text(NET_DEV.replace("    2009 ", f"{net_rx:8d} "))


async def test_first_sample_has_no_deltas_then_the_second_does(tree: Path) -> None:
    sampler = _sampler(tree)
    first = (await sampler.sample([_info()], deadline=_soon(), probe_timeout=1))["w-1"]
    assert math.isnan(first.cpu_percent) and math.isnan(first.network_bps)
    assert first.memory_percent == pytest.approx((2101248 - 1048576) / 67108864 * 100)
    assert math.isnan(first.response_time)  # no published port, no probe
    assert not first.stale
    _bump(tree, cpu_ns=2042146589 + 10_000_000, net_rx=2009 + 5000)
    second = (await sampler.sample([_info()], deadline=_soon(), probe_timeout=1))["w-1"]
    assert second.cpu_percent > 0 and math.isfinite(second.cpu_percent)
    assert second.network_bps > 0


async def test_vanished_containers_are_forgotten(tree: Path) -> None:
    sampler = _sampler(tree)
    await sampler.sample([_info()], deadline=_soon(), probe_timeout=1)
    await sampler.sample([], deadline=_soon(), probe_timeout=1)
    again = (await sampler.sample([_info()], deadline=_soon(), probe_timeout=1))["w-1"]
    assert math.isnan(again.cpu_percent)


async def test_a_stopped_container_gets_an_empty_sample(tree: Path) -> None:
    result = await _sampler(tree).sample(
        [_info(status="exited", pid=None)], deadline=_soon(), probe_timeout=1
    )
    sample = result["w-1"]
    assert math.isnan(sample.cpu_percent) and math.isnan(sample.memory_percent)
    assert not sample.stale


def _stats_doc(cpu: int, system: int, net: int, read: str) -> dict[str, Any]:
    return {
        "read": read,
        "cpu_stats": {"cpu_usage": {"total_usage": cpu}, "system_cpu_usage": system, "online_cpus": 2},
        "memory_stats": {"usage": 1000, "stats": {"total_inactive_file": 0}, "limit": 4000},
        "networks": {"eth0": {"rx_bytes": net, "tx_bytes": 0}},
    }


async def test_unreadable_files_fall_back_to_the_stats_api(tmp_path: Path) -> None:
    docs = iter([
        _stats_doc(100, 1_000, 0, "2026-01-01T00:00:00Z"),
        _stats_doc(300, 1_800, 4_000, "2026-01-01T00:00:02Z"),
    ])
    calls: list[str] = []

    def source(cid: str) -> dict[str, Any]:
        calls.append(cid)
        return next(docs)

    sampler = Sampler(True, stats_source=source, proc_root=tmp_path, cgroup_root=tmp_path)
    first = (await sampler.sample([_info()], deadline=_soon(), probe_timeout=1))["w-1"]
    assert math.isnan(first.cpu_percent) and first.memory_percent == 25.0 and not first.stale
    second = (await sampler.sample([_info()], deadline=_soon(), probe_timeout=1))["w-1"]
    assert second.cpu_percent == pytest.approx(200 / 800 * 2 * 100)
    assert second.network_bps == pytest.approx(2_000.0)
    assert calls == [CID, CID]


@pytest.mark.parametrize("key", ["w-1", CID])
async def test_a_configured_cpu_limit_makes_100_percent_the_limit(tmp_path: Path, key: str) -> None:
    docs = iter([
        _stats_doc(100, 1_000, 0, "2026-01-01T00:00:00Z"),
        _stats_doc(300, 1_800, 0, "2026-01-01T00:00:01Z"),
    ])
    sampler = Sampler(False, stats_source=lambda cid: next(docs), cpu_limits={key: 0.5})
    await sampler.sample([_info()], deadline=_soon(), probe_timeout=1)
    second = (await sampler.sample([_info()], deadline=_soon(), probe_timeout=1))["w-1"]
    assert second.cpu_percent == pytest.approx(200 / 800 * 2 * 100 / 0.5)


async def test_without_a_stats_source_unreadable_metrics_are_nan_not_stale(tmp_path: Path) -> None:
    sampler = Sampler(False, proc_root=tmp_path, cgroup_root=tmp_path)
    sample = (await sampler.sample([_info()], deadline=_soon(), probe_timeout=1))["w-1"]
    assert math.isnan(sample.memory_percent) and not sample.stale


async def test_a_slow_stats_call_is_stale_then_used_next_tick_one_call_in_flight() -> None:
    gate = threading.Event()
    calls: list[str] = []

    def source(cid: str) -> dict[str, Any]:
        calls.append(cid)
        gate.wait(10)
        return _stats_doc(100 * len(calls), 1_000 * len(calls), 0, "2026-01-01T00:00:00Z")

    sampler = Sampler(False, stats_source=source)
    for _ in range(3):
        start = trio.current_time()
        sample = (await sampler.sample([_info(pid=None)], deadline=start + 0.05, probe_timeout=1))["w-1"]
        assert sample.stale
        assert trio.current_time() - start < 1.0
    assert calls == [CID]  # never a second call while one is in flight
    gate.set()
    with trio.fail_after(5):
        while CID in sampler._in_flight or not sampler._landed:  # the thread finishes
            await trio.sleep(0.01)
    # The late result is used, and a new call is made at once (it answers now).
    sample = (await sampler.sample([_info(pid=None)], deadline=_soon(), probe_timeout=1))["w-1"]
    assert not sample.stale and sample.memory_percent == 25.0
    assert calls == [CID, CID]


@pytest.fixture
def silent_server() -> Iterator[int]:
    """A TCP server that accepts and never answers."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.05)
        while not stop.is_set():
            try:
                accepted.append(listener.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        stop.set()
        thread.join()
        for conn in accepted:
            conn.close()
        listener.close()


async def test_the_deadline_makes_a_slow_probe_stale(tree: Path, silent_server: int) -> None:
    sampler = _sampler(tree)
    slow = _info("b" * 64, pid=None, port=silent_server, name="slow")
    start = trio.current_time()
    result = await sampler.sample([_info(), slow], deadline=start + 0.3, probe_timeout=5,
                                  health_path="/health")
    elapsed = trio.current_time() - start
    assert 0.25 <= elapsed < 1.0
    assert result["slow"].stale and math.isnan(result["slow"].response_time)
    assert not result["w-1"].stale
