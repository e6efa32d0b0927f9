"""The demo worker's `/cgi-bin/work?ms=N`: a fixed amount of CPU time per request."""
from __future__ import annotations

import math

import pytest
import trio

from agent.adapters.probe import probe_http
from agent.adapters.sampler import read_local
from agent.core.records import ContainerInfo
from tests.fixtures.docker import DockerTestApp

pytestmark = pytest.mark.docker


async def _get(info: ContainerInfo, path: str) -> bytes:
    assert info.host_port is not None
    stream = await trio.open_tcp_stream(info.address, info.host_port)
    async with stream:
        await stream.send_all(f"GET {path} HTTP/1.0\r\nHost: worker\r\n\r\n".encode())
        data = b""
        while chunk := await stream.receive_some(65536):
            data += chunk
    return data


async def _ready(info: ContainerInfo) -> None:
    assert info.host_port is not None
    with trio.fail_after(10):
        while not math.isfinite(await probe_http(info.address, info.host_port, "/cgi-bin/health", 1.0)):
            await trio.sleep(0.05)


def _cpu_ns(info: ContainerInfo) -> int:
    assert info.pid is not None
    counters, _ = read_local(info.id, info.pid)
    return counters.cpu_ns


async def test_work_costs_the_cpu_time_asked_for(docker_app: DockerTestApp) -> None:
    # Under a CPU limit the work still costs its CPU time (it only takes longer).
    info = await docker_app.engine(cpus=0.5).create()
    await _ready(info)
    before = await trio.to_thread.run_sync(_cpu_ns, info)
    for _ in range(4):
        answer = await _get(info, "/cgi-bin/work?ms=100")
        assert answer.startswith(b"HTTP/1.") and b" 200 " in answer.split(b"\r\n", 1)[0]
        assert answer.endswith(b"worked 100 ms\n")
    used_ms = (await trio.to_thread.run_sync(_cpu_ns, info) - before) / 1e6
    # 400 ms asked for; each request adds the CGI fork/exec (a few ms).
    assert 400 <= used_ms < 600, used_ms


@pytest.mark.parametrize(
    ("query", "status", "body"),
    [
        pytest.param("ms=abc", b"400", b"ms must be a whole number", id="not-a-number"),
        pytest.param("ms=", b"400", b"ms must be a whole number", id="empty"),
        pytest.param("ms=0", b"200", b"worked 0 ms", id="zero"),
        pytest.param("ms=007", b"200", b"worked 7 ms", id="leading-zeros"),
    ],
)
async def test_work_validates_its_argument(docker_app: DockerTestApp, query: str, status: bytes, body: bytes) -> None:
    info = await docker_app.engine().create()
    await _ready(info)
    answer = await _get(info, f"/cgi-bin/work?{query}")
    assert answer.split(b"\r\n", 1)[0].split()[1] == status
    assert body in answer
