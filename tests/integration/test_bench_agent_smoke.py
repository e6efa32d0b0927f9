"""`benchmarks/bench_agent.py` end to end on a tiny pool: it measures and cleans up."""
from __future__ import annotations

import json
import math
from pathlib import Path

import docker
import pytest

from agent.adapters.docker_engine import APP_LABEL, OWNER_LABEL, OWNER_VALUE
from benchmarks import bench_agent

pytestmark = [pytest.mark.docker, pytest.mark.slow]


def test_bench_agent_smoke(tmp_path: Path, docker_client: docker.DockerClient, demo_image: str) -> None:
    out = tmp_path / "agent.json"
    assert bench_agent.main(["--n", "2", "--seconds", "3", "--quick", "--json", str(out)]) == 0
    doc = json.loads(out.read_text())
    (result,) = doc["results"]
    assert result["n"] == 2
    agent, stats = result["agent"], result["stats_api"]
    assert agent["ticks"] >= 2 and agent["samples"] == 2 * agent["ticks"]
    assert stats["rounds"] >= 1 and stats["samples"] == 2 * stats["rounds"]
    assert set(agent["cpu_s"]) >= {"agent", "dockerd", "containerd", "shims", "proxies", "redis"}
    assert agent["cpu_s"]["agent"] > 0 and math.isfinite(agent["tick_p99_ms"])
    assert agent["agent_rss_mib"] > 10
    left = docker_client.containers.list(all=True, filters={"label": [
        f"{OWNER_LABEL}={OWNER_VALUE}", f"{APP_LABEL}={result['app']}"]})
    assert left == []


def test_bench_agent_counts_the_embedded_haproxy_and_stops_it(
    tmp_path: Path, docker_client: docker.DockerClient, demo_image: str
) -> None:
    out = tmp_path / "agent.json"
    assert bench_agent.main(["--n", "2", "--seconds", "3", "--quick", "--balancer",
                             "--json", str(out)]) == 0
    doc = json.loads(out.read_text())
    assert doc["settings"]["balancer"] is True
    (result,) = doc["results"]
    agent = result["agent"]
    assert "haproxy" in agent["cpu_s"] and agent["cpu_s"]["haproxy"] >= 0
    pid = agent["haproxy_pid"]
    assert isinstance(pid, int)  # found through the pidfile in the agent's DATA_DIR
    cmdline = Path(f"/proc/{pid}/cmdline")
    assert not cmdline.exists() or b"haproxy" not in cmdline.read_bytes()  # stopped
    left = docker_client.containers.list(all=True, filters={"label": [
        f"{OWNER_LABEL}={OWNER_VALUE}", f"{APP_LABEL}={result['app']}"]})
    assert left == []
