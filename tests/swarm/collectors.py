"""The collector as the docs say to run it: the agent's image as a global service.

Each task gets its node's engine socket, the host's ``/proc`` and cgroup mount
(read-only, at ``/host/proc`` and ``/host/sys/fs/cgroup``) and the node's own
network (to reach Redis); its health endpoint answers the image's HEALTHCHECK.
`socket_source` may hold a Swarm template (``{{.Node.Hostname}}``): in the lab
every node's engine has a socket of its own under the lab's directory.
"""
from __future__ import annotations

import secrets
import time
from typing import Any

import docker
import docker.errors
import redis
from docker.types import Mount, ServiceMode

from agent.core.sample_codec import NodeReport, decode_report, report_key
from agent.core.store_codec import Keys

COLLECTOR_LABEL = "io.deployment-agent.test-collector"
HEALTH_PORT = 25547  # in each node's network; the host test's nodes are the host


def create_collector(
    client: docker.DockerClient,
    image_id: str,
    *,
    app_identifier: str,
    redis_url: str,
    socket_source: str = "/var/run/docker.sock",
    health_port: int = HEALTH_PORT,
    tick_interval: float = 0.5,
    extra_env: dict[str, str] | None = None,
) -> Any:
    """A global collector service for `app_identifier`; returns the Service."""
    env = {
        "APP_IDENTIFIER": app_identifier,
        "REDIS_URL": redis_url,
        "DOCKER_HOST": "unix:///var/run/docker.sock",
        "PROC_ROOT": "/host/proc",
        "CGROUP_ROOT": "/host/sys/fs/cgroup",
        "TICK_INTERVAL": str(tick_interval),
        "BIND_HOST": "127.0.0.1",
        "HOST_PORT_HTTP_DEPLOYMENT_AGENT": str(health_port),
        "LOG_LEVEL": "DEBUG",
        **(extra_env or {}),
    }
    return client.services.create(
        image_id,
        args=["collector"],
        name=f"collector-{secrets.token_hex(3)}",
        mode=ServiceMode("global"),
        networks=["host"],
        env=[f"{k}={v}" for k, v in env.items()],
        labels={COLLECTOR_LABEL: app_identifier},
        mounts=[
            Mount("/var/run/docker.sock", socket_source, type="bind"),
            Mount("/host/proc", "/proc", type="bind", read_only=True),
            Mount("/host/sys/fs/cgroup", "/sys/fs/cgroup", type="bind", read_only=True),
        ],
    )


def reports(redis_url: str, app_identifier: str, nodes: list[str]) -> dict[str, NodeReport]:
    """The reports in Redis now, by node id."""
    prefix = Keys.for_app(app_identifier).prefix
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    try:
        texts = client.mget([report_key(prefix, n) for n in nodes])
    finally:
        client.close()
    return {n: decode_report(t) for n, t in zip(nodes, texts) if t is not None}


def wait_reporting(redis_url: str, app_identifier: str, nodes: list[str], *,
                   timeout: float = 90.0, service: Any = None) -> dict[str, NodeReport]:
    """Poll until every node in `nodes` has a report; say what the tasks say if not."""
    deadline = time.monotonic() + timeout
    while True:
        found = reports(redis_url, app_identifier, nodes)
        if set(found) == set(nodes):
            return found
        if time.monotonic() > deadline:
            tasks = "" if service is None else repr([
                (t.get("NodeID"), t["Status"].get("State"), t["Status"].get("Err"))
                for t in service.tasks()])
            raise TimeoutError(f"reports of {sorted(set(nodes) - set(found))} missing "
                               f"after {timeout} s; collector tasks: {tasks}")
        time.sleep(0.2)


def remove_collector(service: Any) -> None:
    try:
        service.remove()
    except docker.errors.NotFound:
        pass
