"""The collector's own rules, on records (no engine, no Redis is contacted), and its
health endpoint over a real loopback socket."""
from __future__ import annotations

import json

import trio

from agent.adapters.docker_engine import DockerEngine
from agent.adapters.sample_board import SampleBoard
from agent.adapters.sampler import Sampler
from agent.core.records import ContainerInfo
from agent.interfaces.health_http import serve_health
from agent.service.collector import NODE_ID_LABEL, SERVICE_NAME_LABEL, TASK_ID_LABEL, Collector


def _collector() -> Collector:
    engine = DockerEngine(base_url="unix:///nonexistent.sock", app_identifier="web",
                          image="unused", target_port=80)  # connects lazily: never here
    board = SampleBoard("redis://127.0.0.1:1/0", "web")
    return Collector(engine=engine, sampler=Sampler(True), board=board, ttl=1.5,
                     tick_interval=0.5, tick_deadline=0.4, node_id="n1")


def _container(name: str, *, node: str | None = "n1", running: bool = True,
               task: bool = True) -> ContainerInfo:
    labels = {SERVICE_NAME_LABEL: "web-1"}
    if task:
        labels[TASK_ID_LABEL] = f"t-{name}"
    if node is not None:
        labels[NODE_ID_LABEL] = node
    return ContainerInfo(name=name, id=f"id-{name}", image="i",
                         status="running" if running else "exited", created=0.0, pid=10,
                         labels=labels)


def test_only_this_nodes_running_task_containers_are_reported() -> None:
    collector = _collector()
    infos = [_container("mine"), _container("unlabelled-node", node=None),
             _container("elsewhere", node="n2"), _container("stopped", running=False),
             _container("plain", task=False)]
    assert [i.name for i in collector._own_tasks("n1", infos)] == ["mine", "unlabelled-node"]
    assert collector._warned == {"id-elsewhere"}  # said once


def test_health_is_alive_only_while_reports_are_posted() -> None:
    collector = _collector()

    async def main() -> None:
        ok, body = collector.health()
        assert not ok and body["role"] == "collector"  # not started
        collector._started_at = trio.current_time()
        assert collector.health()[0]  # the first report is awaited
        collector._started_at -= 10
        assert not collector.health()[0]
        collector._last_ok = trio.current_time()
        ok, body = collector.health()
        assert ok and body["node"] == "n1" and body["last_report_age"] >= 0

    trio.run(main)


async def _get(port: int, request: bytes) -> bytes:
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        await stream.send_all(request)
        data = b""
        while chunk := await stream.receive_some(4096):
            data += chunk
        return data


async def test_the_health_endpoint_answers_get_healthz_only() -> None:
    state = {"ok": True}

    def report() -> tuple[bool, dict[str, object]]:
        return state["ok"], {"alive": state["ok"]}

    async with trio.open_nursery() as nursery:
        port = await nursery.start(serve_health, "127.0.0.1", 0, report)
        reply = await _get(port, b"GET /healthz HTTP/1.0\r\nHost: x\r\n\r\n")
        head, _, body = reply.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.0 200 OK") and json.loads(body) == {"alive": True}
        state["ok"] = False
        assert (await _get(port, b"GET /healthz?x=1 HTTP/1.1\r\n\r\n")).startswith(
            b"HTTP/1.0 503 Service Unavailable")
        assert (await _get(port, b"GET / HTTP/1.0\r\n\r\n")).startswith(b"HTTP/1.0 404")
        assert (await _get(port, b"POST /healthz HTTP/1.0\r\n\r\n")).startswith(b"HTTP/1.0 405")
        assert (await _get(port, b"\r\n\r\n")).startswith(b"HTTP/1.0 405")
        nursery.cancel_scope.cancel()
