"""A worker's CPU and memory limits, read from the engine's inspect document."""
from __future__ import annotations

import pytest

from agent.adapters.docker_engine import _info_from_inspect


def inspect(host: dict) -> dict:
    return {
        "Id": "a" * 64, "Name": "/app-1a2b3c4d", "Created": "2026-12-01T10:00:00.5Z",
        "State": {"Status": "running", "Running": True, "Pid": 42},
        "Config": {"Image": "demo:1", "Labels": {}},
        "NetworkSettings": {"Ports": {"8080/tcp": [{"HostIp": "127.0.0.1", "HostPort": "32768"}]}},
        "HostConfig": host,
    }


@pytest.mark.parametrize("host, cpus, memory", [
    ({}, None, None),
    ({"NanoCpus": 0, "Memory": 0}, None, None),                       # the engine's "none"
    ({"NanoCpus": 500_000_000, "Memory": 64 * 1024**2}, 0.5, 64 * 1024**2),   # --cpus, --memory
    ({"CpuQuota": 25_000, "CpuPeriod": 100_000}, 0.25, None),         # a CFS quota
    ({"CpuQuota": -1, "CpuPeriod": 100_000}, None, None),
])
def test_limits_come_from_the_host_config(host, cpus, memory) -> None:
    info = _info_from_inspect(inspect(host))
    assert (info.cpus, info.memory) == (cpus, memory)
    assert info.host_port == 32768 and info.pid == 42
