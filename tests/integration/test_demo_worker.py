"""The demo worker's `/cgi-bin/work?ms=N`: a fixed amount of CPU time per request."""
from __future__ import annotations

import pytest
import trio

from agent.adapters.sampler import read_local
from agent.core.records import ContainerInfo
from tests.fixtures.docker import DockerTestApp, worker_get, worker_ready

pytestmark = pytest.mark.docker


def _cpu_ns(info: ContainerInfo) -> int:
    assert info.pid is not None
    counters, _ = read_local(info.id, info.pid)
    return counters.cpu_ns


async def test_work_costs_the_cpu_time_asked_for(docker_app: DockerTestApp) -> None:
    # Under a CPU limit the work still costs its CPU time (it only takes longer).
    info = await docker_app.engine(cpus=0.5).create()
    await worker_ready(info, "/cgi-bin/health")
    before = await trio.to_thread.run_sync(_cpu_ns, info)
    for _ in range(4):
        answer = await worker_get(info, "/cgi-bin/work?ms=100")
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
    await worker_ready(info, "/cgi-bin/health")
    answer = await worker_get(info, f"/cgi-bin/work?{query}")
    assert answer.split(b"\r\n", 1)[0].split()[1] == status
    assert body in answer
