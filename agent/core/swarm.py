"""Docker Swarm in the pure core: the worker record, the service spec, task → state.

Engine documents in, records out, nothing else: `agent.adapters.swarm_engine` sends
what `service_spec` builds and hands what the manager answers (services, tasks,
nodes, as the Engine API's JSON) to `worker_from`. Both are tested on literal
documents.

One worker is one service with one replica (docs/swarm.md says why): its name is
the worker's name, its service ID the worker's id, and what the pool calls its
*state* follows from the service's current task and the node that task is on::

    current task running, node up             -> "running"
    current task on a node that is Down       -> "lost"      (dead: removed, replaced)
    current task not started yet              -> "starting"  (left alone)
      ... for longer than `start_timeout`      -> "created"   (dead: it never started)
    no task yet                               -> "starting" / "created" (same rule)
    current task ended (failed, shut down...) -> "exited"    (dead: removed, replaced)

The restart policy is ``none``: Swarm never restarts or moves a worker behind the
agent's back, so every replacement is the agent's decision, recorded in its
ledger, exactly as on one engine. "lost" is how a worker on a Down node shows;
`agent.core.pool.DEAD_STATES` holds it.

A worker's address is its node's (host-mode published ports: the port Swarm chose
on that node), or, with an overlay `network`, the task's address on it and the
target port (dnsrr, no published port). `pid` is always None: the manager's task
objects carry the PID of a container on another host, which means nothing here.
"""
from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from agent.core.records import ContainerInfo
from agent.core.settings_parsers import Invalid, got
from agent.core.timestamps import parse_engine_time

__all__ = [
    "SwarmWorker",
    "PRE_RUNNING",
    "constraints",
    "current_task",
    "network_name",
    "node_address",
    "service_spec",
    "worker_from",
    "worker_status",
]

#: Task states before ``running`` (the Engine API's order).
PRE_RUNNING = frozenset({
    "new", "allocated", "pending", "assigned", "accepted", "preparing", "ready", "starting",
})
_DESIRED_RUNNING = frozenset({"running", "ready", "accepted"})


@dataclass(frozen=True, slots=True)
class SwarmWorker(ContainerInfo):
    """A worker as the Swarm adapter lists it: a `ContainerInfo` (name = service
    name, id = service ID, `pid` None) plus where its current task runs."""

    node_id: str = ""  # the node of the current task ("" before it is assigned)
    task_id: str = ""  # the current task ("" before there is one)


# -- settings --------------------------------------------------------------------------

_CONSTRAINT = re.compile(
    r"(node\.(?:id|hostname|role|platform\.os|platform\.arch|labels\.[\w.-]+)"
    r"|engine\.labels\.[\w.-]+)\s*(==|!=)\s*([\w.:/@+-]+)"
)
_NETWORK = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}")


def constraints(raw: object) -> tuple[str, ...]:
    """SWARM_CONSTRAINTS: comma-separated placement constraints, normalised
    (``node.role == worker`` → ``node.role==worker``); a list is taken as is."""
    items = raw if isinstance(raw, (list, tuple)) else str(raw).split(",")
    out: list[str] = []
    for item in items:
        text = str(item).strip()
        if not text:
            continue
        match = _CONSTRAINT.fullmatch(text)
        if match is None:
            raise Invalid(
                f"{text!r} is not a placement constraint such as node.role==worker, "
                f"node.hostname!=edge-1 or node.labels.zone==a, {got(raw)}"
            )
        out.append(f"{match[1]}{match[2]}{match[3]}")
    return tuple(out)


def network_name(raw: object) -> str:
    """SWARM_NETWORK: a network name or ID as Docker spells them."""
    text = str(raw).strip()
    if not _NETWORK.fullmatch(text):
        raise Invalid(f"must be a Docker network name such as workers-net, {got(raw)}")
    return text


# -- what the agent asks for -------------------------------------------------------------


def service_spec(
    *,
    name: str,
    image: str,
    target_port: int,
    labels: Mapping[str, str],
    constraints: Sequence[str] = (),
    network: str | None = None,
    cpus: float | None = None,
    memory_bytes: int | None = None,
    stop_grace_seconds: float = 5.0,
) -> dict[str, Any]:
    """The body of ``POST /services/create`` for one worker.

    The labels go on the service (the agent's ownership check) and on its
    container spec (so each node's collector finds the worker's container by
    them). One replica, restart policy ``none``, an init process (busybox as PID 1
    ignores SIGTERM), optional CPU and memory limits. Ports: with `network`, the
    workers join it and the endpoint is dnsrr (no VIP: no IPVS needed); without,
    `target_port` is published in host mode on a port each node chooses.
    """
    resources: dict[str, Any] = {}
    if cpus is not None:
        resources["NanoCPUs"] = round(cpus * 1e9)
    if memory_bytes is not None:
        resources["MemoryBytes"] = memory_bytes
    task: dict[str, Any] = {
        "ContainerSpec": {
            "Image": image,
            "Labels": dict(labels),
            "Init": True,
            "StopGracePeriod": round(stop_grace_seconds * 1e9),
        },
        "RestartPolicy": {"Condition": "none"},
        "Placement": {"Constraints": list(constraints)},
    }
    if resources:
        task["Resources"] = {"Limits": resources}
    endpoint: dict[str, Any] = {"Mode": "dnsrr"}
    if network is None:
        endpoint["Ports"] = [{"Protocol": "tcp", "TargetPort": target_port, "PublishMode": "host"}]
    else:
        task["Networks"] = [{"Target": network}]
    return {
        "Name": name,
        "Labels": dict(labels),
        "TaskTemplate": task,
        "Mode": {"Replicated": {"Replicas": 1}},
        "EndpointSpec": endpoint,
    }


# -- what the manager answers ----------------------------------------------------------------


def _task_time(task: Mapping[str, Any]) -> float:
    t = parse_engine_time(str(task.get("CreatedAt", "")))
    return -math.inf if math.isnan(t) else t


def current_task(tasks: Iterable[Mapping[str, Any]]) -> Mapping[str, Any] | None:
    """The task that stands for a one-replica service now: the newest one Swarm
    still wants running, else the newest of all (the last one that ended)."""
    tasks = list(tasks)
    wanted = [t for t in tasks if t.get("DesiredState") in _DESIRED_RUNNING]
    pool = wanted or tasks
    if not pool:
        return None
    return max(pool, key=lambda t: (_task_time(t), str(t.get("ID", ""))))


def worker_status(
    task: Mapping[str, Any] | None,
    node: Mapping[str, Any] | None,
    *,
    since: float,
    now: float,
    start_timeout: float,
) -> str:
    """The pool's state of a worker (see the module docstring). `since` is when
    the current task (or, without one, the service) was created, epoch seconds."""
    if task is not None and task.get("NodeID") and _node_down(node):
        return "lost"
    state = "" if task is None else str((task.get("Status") or {}).get("State", ""))
    if state == "running":
        return "running"
    if task is None or state in PRE_RUNNING:
        young = math.isnan(since) or now - since < start_timeout
        return "starting" if young else "created"
    return "exited"


def _node_down(node: Mapping[str, Any] | None) -> bool:
    if node is None:
        return True  # removed from the swarm (`docker node rm`)
    return str((node.get("Status") or {}).get("State", "")) == "down"


def node_address(node: Mapping[str, Any] | None) -> str | None:
    """Where a node's host-mode ports answer: its status address, or its manager
    address when the status one is a wildcard (older managers report 0.0.0.0)."""
    if node is None:
        return None
    addr = str((node.get("Status") or {}).get("Addr", ""))
    if addr and addr not in ("0.0.0.0", "::"):
        return addr
    manager = str((node.get("ManagerStatus") or {}).get("Addr", ""))
    host = manager.rsplit(":", 1)[0].strip("[]") if manager else ""
    return host or None


def _published_port(task: Mapping[str, Any], target_port: int) -> int | None:
    ports = ((task.get("Status") or {}).get("PortStatus") or {}).get("Ports") or []
    for port in ports:
        if port.get("TargetPort") == target_port and port.get("PublishMode") == "host":
            published = port.get("PublishedPort")
            if published:
                return int(published)
    return None


def _network_address(task: Mapping[str, Any], network: str) -> str | None:
    for attachment in task.get("NetworksAttachments") or []:
        net = attachment.get("Network") or {}
        if network in (net.get("ID"), (net.get("Spec") or {}).get("Name")):
            for cidr in attachment.get("Addresses") or []:
                return str(cidr).split("/", 1)[0]
    return None


def worker_from(
    service: Mapping[str, Any],
    tasks: Iterable[Mapping[str, Any]],
    nodes: Mapping[str, Mapping[str, Any]],
    *,
    target_port: int,
    network: str | None,
    now: float,
    start_timeout: float,
) -> SwarmWorker:
    """One worker from its service, the service's tasks and the swarm's nodes (by
    ID). A running worker has an address and port unless Swarm has not reported
    them yet; `now` is the wall clock, epoch seconds."""
    spec = service.get("Spec") or {}
    created = parse_engine_time(str(service.get("CreatedAt", "")))
    task = current_task(tasks)
    node_id = "" if task is None else str(task.get("NodeID") or "")
    node = nodes.get(node_id) if node_id else None
    since = created if task is None else _task_time(task)
    status = worker_status(task, node, since=since, now=now, start_timeout=start_timeout)
    address, port = None, None
    if status == "running" and task is not None:
        if network is None:
            address, port = node_address(node), _published_port(task, target_port)
        else:
            address, port = _network_address(task, network), target_port
    image = str(((spec.get("TaskTemplate") or {}).get("ContainerSpec") or {}).get("Image", ""))
    return SwarmWorker(
        name=str(spec.get("Name", "")),
        id=str(service.get("ID", "")),
        image=image,
        status=status,
        created=0.0 if math.isnan(created) else created,
        host_port=port if address is not None else None,
        address=address or "127.0.0.1",
        pid=None,
        labels=dict(spec.get("Labels") or {}),
        node_id=node_id,
        task_id="" if task is None else str(task.get("ID", "")),
    )
