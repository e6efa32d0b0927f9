"""The swarm lab works: ready nodes, services spread over them, a lost node replaced.

These tests prove the fixture (`tests/fixtures/swarm_lab.py`), not the agent: they
drive Swarm directly through the manager's engine. The timings they measure (node
Down, task rescheduled, node rejoined) go to the terminal summary.
"""
from __future__ import annotations

import functools
import http.client
import secrets
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import docker
import pytest
from docker.models.containers import Container
from docker.models.services import Service
from docker.types import EndpointSpec, ServiceMode

from agent.adapters.demo_image import DEMO_PORT
from tests.fixtures.swarm_lab import SwarmLab, SwarmNode, process_alive, wait_until

pytestmark = [pytest.mark.swarm, pytest.mark.slow, pytest.mark.docker]

SERVICE_LABEL = "io.deployment-agent.swarm-lab-test"
Report = Callable[[str, float], None]


@pytest.fixture
def services(swarm_lab: SwarmLab) -> Iterator[Callable[..., Service]]:
    """``create(**kwargs)``: a service of the demo image (by ID, with an init), removed
    at teardown, after every node is back up, and waited for until its containers are
    gone from every node, so that the next test starts from an empty lab."""
    made: list[Service] = []

    def create(**kwargs: Any) -> Service:
        name = f"lab-{secrets.token_hex(3)}"
        service = swarm_lab.manager.client.services.create(
            swarm_lab.image_id, name=name, init=True, labels={SERVICE_LABEL: "1"}, **kwargs
        )
        made.append(service)
        return service

    yield create
    for node in swarm_lab.nodes:
        if not node.running:
            node.start()
    swarm_lab.wait_states({n.name: "ready" for n in swarm_lab.nodes}, timeout=90)
    for service in made:
        service.remove()

    def containers_gone() -> bool:
        return not any(
            node.client.containers.list(all=True, filters={"label": "com.docker.swarm.service.id"})
            for node in swarm_lab.nodes
        )

    wait_until(containers_gone, timeout=60, message="the test's service containers removed")


def running_tasks(service: Service) -> list[dict[str, Any]]:
    tasks = service.tasks(filters={"desired-state": "running"})
    return [t for t in tasks if t["Status"]["State"] == "running"]


def wait_running(
    service: Service, count: int, *, avoid: str = "", timeout: float = 60
) -> list[dict[str, Any]]:
    """Poll until `count` tasks run (none on node id `avoid`); return them."""

    def probe() -> list[dict[str, Any]]:
        tasks = running_tasks(service)
        ok = len(tasks) == count and all(t["NodeID"] != avoid for t in tasks)
        return tasks if ok else []

    return wait_until(probe, timeout=timeout, message=f"{count} running tasks of {service.name}")[0]


def http_get(ip: str, port: int, path: str) -> tuple[int, str]:
    """A direct GET (no proxy settings can reroute it)."""
    conn = http.client.HTTPConnection(ip, port, timeout=3)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.read().decode()
    finally:
        conn.close()


def task_container(node: SwarmNode, service: Service) -> Container:
    label = f"com.docker.swarm.service.id={service.id}"
    (container,) = node.client.containers.list(filters={"label": label})
    return container


def test_every_node_is_ready_with_its_own_engine_and_no_way_out(
    swarm_lab: SwarmLab, docker_client: docker.DockerClient
) -> None:
    manager = swarm_lab.manager
    listed = subprocess.run(
        ["docker", "-H", manager.socket, "node", "ls", "--format", "{{.Hostname}} {{.Status}}"],
        capture_output=True, text=True, check=True, timeout=30,
    ).stdout.split()  # fmt: skip
    assert sorted(zip(listed[::2], listed[1::2])) == [(n, "Ready") for n in swarm_lab.names]

    by_id = {n.attrs["ID"]: n.attrs for n in manager.client.nodes.list()}
    assert set(by_id) == {n.node_id for n in swarm_lab.nodes}
    for node in swarm_lab.nodes:
        attrs = by_id[node.node_id]
        assert (attrs["Status"]["Addr"], attrs["Spec"]["Role"]) == (node.ip, node.role)
        assert node.client.images.get(swarm_lab.image_id).id == swarm_lab.image_id
        assert "default" not in node.run("ip", "route").stdout  # nothing can leave
    assert [n.role for n in swarm_lab.nodes] == ["manager", "worker", "worker"]
    # A private /etc/docker per node: distinct engine IDs (else all share key.json).
    assert len({c.info()["ID"] for c in swarm_lab.clients.values()}) == len(swarm_lab.nodes)
    # The host engine is none of them and is not in the lab's swarm.
    host = docker_client.info()
    assert host["ID"] not in {c.info()["ID"] for c in swarm_lab.clients.values()}
    assert (host["Swarm"].get("Cluster") or {}).get("ID") != swarm_lab.cluster_id


def test_a_global_service_runs_on_every_node_and_answers_on_each_node_ip(
    swarm_lab: SwarmLab, services: Callable[..., Service]
) -> None:
    port = 18080  # host mode: published on each node's own address, no routing mesh
    service = services(
        mode=ServiceMode("global"),
        endpoint_spec=EndpointSpec(ports={port: (DEMO_PORT, "tcp", "host")}),
    )
    tasks = wait_running(service, len(swarm_lab.nodes))
    assert sorted(t["NodeID"] for t in tasks) == sorted(n.node_id for n in swarm_lab.nodes)
    for node in swarm_lab.nodes:
        status, body = wait_until(
            functools.partial(http_get, node.ip, port, "/cgi-bin/health"),
            timeout=30, message=f"HTTP on {node.ip}:{port}",
        )[0]  # fmt: skip
        assert (status, body.strip()) == (200, "ok")
        assert task_container(node, service).attrs["Config"]["Image"] == swarm_lab.image_id


def test_a_replicated_service_is_placed_across_nodes(
    swarm_lab: SwarmLab, services: Callable[..., Service], swarm_report: Report
) -> None:
    begin = time.monotonic()
    service = services(mode=ServiceMode("replicated", replicas=4))
    tasks = wait_running(service, 4)
    swarm_report("replicated service of 4: all running", time.monotonic() - begin)
    nodes = {t["NodeID"] for t in tasks}
    assert len(nodes) >= 2, f"4 tasks on {len(nodes)} node(s)"
    assert nodes <= {n.node_id for n in swarm_lab.nodes}


def test_the_host_can_read_a_node_containers_cgroup_and_net_dev(
    swarm_lab: SwarmLab, services: Callable[..., Service]
) -> None:
    """A lab artefact, checked so that it stays known: PIDs and cgroups are the host's,
    so the host (and the manager, whose task objects carry the PID) reads a worker's
    container directly. On a real cluster it cannot: a collector test must not pass
    through this."""
    service = services(mode=ServiceMode("global"))
    wait_running(service, len(swarm_lab.nodes))
    worker = swarm_lab.workers[0]
    container = task_container(worker, service)
    pid = container.attrs["State"]["Pid"]
    cgroups = dict(
        line.split(":", 2)[1:] for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines()
    )
    memory = cgroups.get("memory") or cgroups[""]  # v1 memory controller, else v2
    assert memory == f"{worker.cgroup_parent}/{container.id}"
    memory_dir = Path("/sys/fs/cgroup/memory" if "memory" in cgroups else "/sys/fs/cgroup")
    usage_file = "memory.usage_in_bytes" if "memory" in cgroups else "memory.current"
    assert int((memory_dir / memory.lstrip("/") / usage_file).read_text()) > 0
    assert "eth0:" in Path(f"/proc/{pid}/net/dev").read_text()
    (task,) = [t for t in running_tasks(service) if t["NodeID"] == worker.node_id]
    assert task["Status"]["ContainerStatus"]["PID"] == pid


def test_a_stopped_node_goes_down_and_its_tasks_run_on_the_others(
    swarm_lab: SwarmLab, services: Callable[..., Service], swarm_report: Report
) -> None:
    service = services(mode=ServiceMode("replicated", replicas=3))
    tasks = wait_running(service, 3)
    # A worker with a task (one manager: stopping it would stop the swarm).
    victim = next(n for n in (swarm_lab.node(t["NodeID"]) for t in tasks) if n.role == "worker")
    container = task_container(victim, service)
    begin = time.monotonic()
    swarm_report("SIGTERM: dockerd exited", victim.stop())
    assert not process_alive(container.attrs["State"]["Pid"])  # a stopping engine stops its tasks
    swarm_lab.wait_states({victim.name: "down"}, timeout=90)
    swarm_report("SIGTERM: node Down after", time.monotonic() - begin)
    moved = wait_running(service, 3, avoid=victim.node_id, timeout=90)
    swarm_report("SIGTERM: 3 tasks running again without it after", time.monotonic() - begin)
    assert {t["NodeID"] for t in moved} <= {n.node_id for n in swarm_lab.nodes if n is not victim}

    begin = time.monotonic()
    victim.start()
    swarm_lab.wait_states({victim.name: "ready"}, timeout=90)
    swarm_report("restarted node Ready after", time.monotonic() - begin)
    assert all(t["NodeID"] != victim.node_id for t in running_tasks(service))  # not moved back


def test_a_killed_node_goes_down_and_its_orphan_runs_until_it_returns(
    swarm_lab: SwarmLab, services: Callable[..., Service], swarm_report: Report
) -> None:
    service = services(mode=ServiceMode("global"))
    wait_running(service, len(swarm_lab.nodes))
    victim = swarm_lab.workers[-1]
    orphan = task_container(victim, service).attrs["State"]["Pid"]
    begin = time.monotonic()
    victim.kill()
    swarm_lab.wait_states({victim.name: "down"}, timeout=90)
    swarm_report("SIGKILL: node Down after", time.monotonic() - begin)
    assert process_alive(orphan), "the killed engine's container goes on running"

    begin = time.monotonic()
    victim.start()
    swarm_lab.wait_states({victim.name: "ready"}, timeout=90)
    wait_until(lambda: not process_alive(orphan), timeout=60, message="the orphan killed")
    wait_running(service, len(swarm_lab.nodes))
    swarm_report("SIGKILL: node back and its orphan replaced after", time.monotonic() - begin)
