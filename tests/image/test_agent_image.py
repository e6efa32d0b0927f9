"""The agent's image, run as its Dockerfile says, against demo workers on this engine.

The container gets what the agent needs to manage workers on its own host: the
engine socket, ``--network host`` (the workers publish on the host's 127.0.0.1,
which the agent probes; its API then listens on the host's 127.0.0.1),
``--pid host`` and the host's cgroup mount (the sampler's file fast path). The
test's unique APP_IDENTIFIER keeps the workers apart from everything else; they
outlive the agent by design, and the `docker_app` fixture removes them by their
labels.
"""
from __future__ import annotations

import socket
from collections.abc import Callable
from typing import Any

import docker
import docker.errors
import pytest
import trio

from agent.client import QueueSubscriber
from tests.fixtures.docker import DockerTestApp
from tests.web.http import request
from tests.web.util import eventually

pytestmark = [pytest.mark.slow, pytest.mark.docker]

WORKERS = 2
# The image's HEALTHCHECK runs first 10 s after the start; then the agent must
# be answering. The margin is for a loaded 2-core machine.
HEALTHY_WITHIN = 60.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _in_thread(fn: Callable[[], Any]) -> Any:
    return await trio.to_thread.run_sync(fn)


def _run_agent(
    client: docker.DockerClient, image: str, app: DockerTestApp, http_port: int, ws_port: int
) -> Any:
    """``docker run`` of the agent's image with the flags of the Dockerfile's comment."""
    return client.containers.run(
        image,
        detach=True,
        name=f"{app.app_identifier}-agent",
        network_mode="host",
        pid_mode="host",
        cgroupns="host",
        volumes={
            "/var/run/docker.sock": {"bind": "/var/run/docker.sock", "mode": "rw"},
            "/sys/fs/cgroup": {"bind": "/sys/fs/cgroup", "mode": "ro"},
        },
        environment={
            "DOCKER_IMAGE": app.image,
            "TARGET_PORT": str(app.target_port),
            "APP_IDENTIFIER": app.app_identifier,
            "DEFAULT_CONTAINER": str(WORKERS),
            "MAX_CONTAINERS": str(WORKERS + 1),
            "HOST_PORT_HTTP_DEPLOYMENT_AGENT": str(http_port),
            "HOST_PORT_WS_DEPLOYMENT_AGENT": str(ws_port),
            # DEBUG: the sampler says so when it falls back from the cgroup files.
            "LOG_LEVEL": "DEBUG",
        },
    )


def _health(container: Any) -> str | None:
    """'healthy' once it is; raises at once if the agent's container has exited."""
    container.reload()
    if container.status in ("exited", "dead"):
        logs = container.logs(tail=40).decode(errors="replace")
        raise AssertionError(f"the agent's container stopped ({container.status}):\n{logs}")
    status = container.attrs["State"].get("Health", {}).get("Status")
    return status if status == "healthy" else None


def _running_workers(app: DockerTestApp) -> dict[str, int]:
    """name -> published host port of the app's running workers (by its labels)."""
    rows = app.client.api.containers(
        filters={"label": [f"{k}={v}" for k, v in app.labels.items()], "status": "running"}
    )
    return {
        row["Names"][0].lstrip("/"): next(p["PublicPort"] for p in row["Ports"] if p.get("PublicPort"))
        for row in rows
    }


async def _scored(base: str, names: set[str]) -> list[dict[str, Any]] | None:
    """The /stats rows once every worker has a complete score from real samples."""
    reply = await request(f"{base}/stats")
    assert reply.status == 200, reply.text
    rows = reply.json()
    if {r["name"] for r in rows} != names:
        return None
    complete = all(
        r["utilization_category"] != "INIT"
        and all(r[k] is not None for k in ("cpu_score", "memory_score", "overall_score"))
        and r["availability_score"] > 0  # the probes reach the workers
        for r in rows
    )
    return rows if complete else None


async def test_image_runs_the_agent_against_demo_workers(
    agent_image: str, docker_app: DockerTestApp, docker_client: docker.DockerClient
) -> None:
    app = docker_app
    http_port, ws_port = _free_port(), _free_port()
    base = f"http://127.0.0.1:{http_port}"
    container = await _in_thread(lambda: _run_agent(docker_client, agent_image, app, http_port, ws_port))
    volumes = [m["Name"] for m in container.attrs["Mounts"] if m.get("Type") == "volume"]
    try:
        await eventually(lambda: _in_thread(lambda: _health(container)),
                         timeout=HEALTHY_WITHIN, interval=0.5,
                         message="the agent's container is healthy")
        workers = await eventually(
            lambda: _in_thread(lambda: (w := _running_workers(app)) and len(w) == WORKERS and w),
            timeout=30, interval=0.5, message=f"{WORKERS} workers with our labels run",
        )

        reply = await request(f"{base}/healthz")
        assert reply.status == 200 and reply.json()["alive"] is True, reply.text
        rows = await eventually(lambda: _scored(base, set(workers)), timeout=30, interval=0.5,
                                message="every worker is scored")
        assert len(rows) == WORKERS

        reply = await request(f"{base}/queue")
        assert reply.status == 200, reply.text
        queue = reply.json()
        assert queue["running"] == WORKERS and queue["desired"] == WORKERS
        assert {(i["dns_name"], i["port"]) for i in queue["queue"]} == set(workers.items())
        with trio.fail_after(10):  # the WebSocket feed, as a load balancer reads it
            async with QueueSubscriber(base) as subscriber:
                async for items in subscriber:
                    if {i.dns_name for i in items} == set(workers):
                        break

        logs = (await _in_thread(container.logs)).decode(errors="replace")
        fallbacks = [line for line in logs.splitlines() if "cgroup read failed" in line]
        assert not fallbacks, (
            "the sampler fell back to the stats API (--pid host or the cgroup mount "
            f"does not work in the image): {fallbacks[0]}"
        )
        # The HEALTHCHECK can fail: the same command against a port nobody serves.
        check = container.attrs["Config"]["Healthcheck"]["Test"]
        assert check[0] == "CMD-SHELL"
        failed = await _in_thread(lambda: container.exec_run(
            ["sh", "-c", check[1]], environment={"HOST_PORT_HTTP_DEPLOYMENT_AGENT": "1"}))
        assert failed.exit_code == 1, failed.output

        # SIGTERM: a clean shutdown, exit code 0; the workers keep running.
        await _in_thread(lambda: container.stop(timeout=20))
        result = await _in_thread(lambda: container.wait(timeout=30))
        assert result["StatusCode"] == 0, (await _in_thread(container.logs))[-3000:]
        assert set(await _in_thread(lambda: _running_workers(app))) == set(workers)
    finally:
        await _in_thread(lambda: container.remove(force=True, v=True))

    await _in_thread(app.cleanup)
    assert await _in_thread(app.owned_ids) == []
    for name in volumes:
        with pytest.raises(docker.errors.NotFound):
            await _in_thread(lambda: docker_client.volumes.get(name))
