"""`agent.core.swarm`: the service spec, and services + tasks + nodes read as workers.

The documents are literal Engine API JSON, shaped as a 20.10 manager answers (the
fields read, and a few around them)."""
from __future__ import annotations

import math
from typing import Any

import pytest

from agent.core.pool import DEAD_STATES
from agent.core.settings_parsers import Invalid
from agent.core.swarm import (
    SwarmWorker,
    constraints,
    current_task,
    network_name,
    node_address,
    service_spec,
    worker_from,
    worker_status,
)

LABELS = {"io.deployment-agent.owner": "deployment-agent", "io.deployment-agent.app": "web"}
NOW = 1_800_000_100.0  # 2027-01-15T08:01:40Z
CREATED = "2027-01-15T08:00:00.123456789Z"  # NOW - 100 s (and a fraction)


def node(node_id: str, state: str = "ready", addr: str = "10.0.0.2", manager: str | None = None) -> dict[str, Any]:
    doc: dict[str, Any] = {"ID": node_id, "Status": {"State": state, "Addr": addr}}
    if manager is not None:
        doc["ManagerStatus"] = {"Leader": True, "Reachability": "reachable", "Addr": manager}
    return doc


def task(task_id: str, state: str, *, node_id: str = "n1", desired: str = "running",
         created: str = CREATED, port: int | None = 30001, target: int = 8080,
         networks: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    status: dict[str, Any] = {"State": state, "Message": state}
    if port is not None:
        status["PortStatus"] = {"Ports": [
            {"Protocol": "tcp", "TargetPort": target, "PublishedPort": port, "PublishMode": "host"},
            {"Protocol": "tcp", "TargetPort": target, "PublishedPort": port, "PublishMode": "host"},
        ]}
    doc: dict[str, Any] = {"ID": task_id, "ServiceID": "s1", "NodeID": node_id, "Slot": 1,
                           "CreatedAt": created, "DesiredState": desired, "Status": status}
    if networks is not None:
        doc["NetworksAttachments"] = networks
    return doc


SERVICE = {
    "ID": "s1",
    "CreatedAt": CREATED,
    "Spec": {"Name": "web-1a2b3c4d", "Labels": LABELS,
             "TaskTemplate": {"ContainerSpec": {"Image": "sha256:abc", "Labels": LABELS}}},
}
NODES = {"n1": node("n1"), "n2": node("n2", "down", "10.0.0.3")}


def read(tasks: list[dict[str, Any]], *, network: str | None = None, nodes: Any = None,
         now: float = NOW, start_timeout: float = 60.0) -> SwarmWorker:
    return worker_from(SERVICE, tasks, NODES if nodes is None else nodes, target_port=8080,
                       network=network, now=now, start_timeout=start_timeout)


# -- the spec -------------------------------------------------------------------------------


def test_the_spec_labels_service_and_container_and_publishes_in_host_mode() -> None:
    body = service_spec(name="web-1", image="sha256:abc", target_port=8080, labels=LABELS,
                        constraints=("node.role==worker",), cpus=0.5, memory_bytes=2**28)
    assert body["Name"] == "web-1" and body["Labels"] == LABELS
    task_template = body["TaskTemplate"]
    container = task_template["ContainerSpec"]
    assert container == {"Image": "sha256:abc", "Labels": LABELS, "Init": True,
                         "StopGracePeriod": 5_000_000_000}
    assert task_template["RestartPolicy"] == {"Condition": "none"}
    assert task_template["Placement"] == {"Constraints": ["node.role==worker"]}
    assert task_template["Resources"] == {"Limits": {"NanoCPUs": 500_000_000,
                                                     "MemoryBytes": 2**28}}
    assert body["Mode"] == {"Replicated": {"Replicas": 1}}
    # Host mode, no PublishedPort: each node picks a free one (no clash between workers).
    assert body["EndpointSpec"] == {"Mode": "dnsrr", "Ports": [
        {"Protocol": "tcp", "TargetPort": 8080, "PublishMode": "host"}]}
    assert "Networks" not in task_template


def test_the_spec_on_an_overlay_network_publishes_nothing() -> None:
    body = service_spec(name="web-1", image="img@sha256:abc", target_port=8080, labels=LABELS,
                        network="workers")
    assert body["TaskTemplate"]["Networks"] == [{"Target": "workers"}]
    assert body["EndpointSpec"] == {"Mode": "dnsrr"}
    assert "Resources" not in body["TaskTemplate"]
    # The caller's labels are copied, not shared.
    assert body["Labels"] is not LABELS and body["TaskTemplate"]["ContainerSpec"]["Labels"] is not LABELS


# -- settings parsers -------------------------------------------------------------------------


@pytest.mark.parametrize(("raw", "parsed"), [
    ("", ()),
    ("node.role==worker", ("node.role==worker",)),
    (" node.role == worker , node.labels.zone!=edge ,", ("node.role==worker", "node.labels.zone!=edge")),
    ("node.hostname!=dalab1,engine.labels.ssd==true", ("node.hostname!=dalab1", "engine.labels.ssd==true")),
    (["node.platform.os==linux"], ("node.platform.os==linux",)),
])
def test_constraints_parse(raw: object, parsed: tuple[str, ...]) -> None:
    assert constraints(raw) == parsed


@pytest.mark.parametrize("raw", [
    "node.role=worker", "role==worker", "node.role==", "node.labels.==a", "node.role==a b",
    "node.role==worker;rm", "node.rol==worker",
])
def test_bad_constraints_are_refused_naming_the_item(raw: str) -> None:
    with pytest.raises(Invalid, match="is not a placement constraint such as node.role==worker"):
        constraints(raw)


def test_network_names() -> None:
    assert network_name(" workers-net ") == "workers-net"
    for bad in ("", "-x", "a b", "x" * 64, "net/1"):
        with pytest.raises(Invalid, match="must be a Docker network name"):
            network_name(bad)


# -- tasks, nodes, states ---------------------------------------------------------------------


def test_the_current_task_is_the_newest_wanted_running() -> None:
    old = task("t-old", "failed", desired="shutdown", created="2027-01-15T08:00:01Z")
    new = task("t-new", "running", created="2027-01-15T08:00:05Z")
    newer_shutdown = task("t-stop", "shutdown", desired="shutdown", created="2027-01-15T08:00:09Z")
    assert current_task([old, new, newer_shutdown]) == new
    assert current_task([old, newer_shutdown]) == newer_shutdown  # none wanted: the newest
    assert current_task([]) is None


@pytest.mark.parametrize(("state", "node_state", "age", "expected"), [
    ("running", "ready", 1, "running"),
    ("running", "down", 1, "lost"),
    ("starting", "down", 1, "lost"),
    ("pending", "ready", 1, "starting"),
    ("preparing", "ready", 59, "starting"),
    ("preparing", "ready", 61, "created"),
    ("failed", "ready", 1, "exited"),
    ("complete", "ready", 1, "exited"),
    ("shutdown", "ready", 1, "exited"),
    ("rejected", "ready", 1, "exited"),
    ("orphaned", "down", 1, "lost"),
])
def test_worker_status(state: str, node_state: str, age: float, expected: str) -> None:
    t = task("t", state)
    status = worker_status(t, node("n1", node_state), since=NOW - age, now=NOW, start_timeout=60)
    assert status == expected


def test_no_task_yet_is_starting_then_dead() -> None:
    assert worker_status(None, None, since=NOW - 5, now=NOW, start_timeout=60) == "starting"
    assert worker_status(None, None, since=NOW - 65, now=NOW, start_timeout=60) == "created"
    assert worker_status(None, None, since=math.nan, now=NOW, start_timeout=60) == "starting"
    # A pending task not yet on a node is not lost.
    unassigned = task("t", "pending", node_id="")
    assert worker_status(unassigned, None, since=NOW, now=NOW, start_timeout=60) == "starting"
    # A task on a node the swarm no longer lists (node rm) is lost.
    assert worker_status(task("t", "running"), None, since=NOW, now=NOW, start_timeout=60) == "lost"


def test_the_states_that_replace_a_worker_are_the_pools_dead_states() -> None:
    assert {"lost", "exited", "created"} <= DEAD_STATES
    assert "starting" not in DEAD_STATES and "running" not in DEAD_STATES


def test_node_address_falls_back_to_the_manager_address() -> None:
    assert node_address(node("n", addr="10.0.0.7")) == "10.0.0.7"
    assert node_address(node("n", addr="0.0.0.0", manager="10.0.0.9:2377")) == "10.0.0.9"
    assert node_address(node("n", addr="", manager="[fd00::1]:2377")) == "fd00::1"
    assert node_address(node("n", addr="0.0.0.0")) is None
    assert node_address(None) is None


def test_a_running_worker_reads_with_its_node_address_and_published_port() -> None:
    w = read([task("t1", "running")])
    assert w == SwarmWorker(
        name="web-1a2b3c4d", id="s1", image="sha256:abc", status="running",
        created=pytest.approx(NOW - 100 + 0.123456789), host_port=30001, address="10.0.0.2",
        pid=None, labels=LABELS, node_id="n1", task_id="t1",
    )
    assert w.running and w.pid is None


def test_a_worker_not_running_has_no_port_to_probe() -> None:
    for t in (task("t1", "pending"), task("t1", "running", node_id="n2"), task("t1", "failed")):
        w = read([t])
        assert not w.running and w.host_port is None, w.status
    lost = read([task("t1", "running", node_id="n2")])
    assert (lost.status, lost.node_id, lost.task_id) == ("lost", "n2", "t1")


def test_a_running_task_whose_port_is_not_reported_yet_has_no_port() -> None:
    w = read([task("t1", "running", port=None)])
    assert w.running and w.host_port is None


def test_on_an_overlay_network_the_worker_is_reached_at_its_task_address() -> None:
    attachments = [
        {"Network": {"ID": "ingress-id", "Spec": {"Name": "ingress"}}, "Addresses": ["10.0.0.5/24"]},
        {"Network": {"ID": "net-id", "Spec": {"Name": "workers"}}, "Addresses": ["10.232.1.7/24"]},
    ]
    t = task("t1", "running", port=None, networks=attachments)
    for network in ("workers", "net-id"):
        w = read([t], network=network)
        assert (w.address, w.host_port) == ("10.232.1.7", 8080)
    missing = read([t], network="other")
    assert missing.running and missing.host_port is None


def test_a_service_without_tasks_is_starting_until_the_start_timeout() -> None:
    assert read([], start_timeout=300).status == "starting"  # made 100 s ago
    assert read([], start_timeout=60).status == "created"
