"""The agent with ENGINE=swarm on a three-node swarm lab: placement, collectors, a lost node.

The lab (`tests/fixtures/swarm_lab.py`) is three engines in network namespaces on this
host; the agent runs here on the host, against the manager's socket, as it would beside
a real cluster's manager. Each node runs the collector from the agent's image (loaded
into every node, as the demo image is) as one global service, with its own engine's
socket (a Swarm template in the mount's source picks it) and the host's /proc and
cgroup mount. Redis listens on the lab bridge's host address, the only address both the
host and the nodes reach.

What the lab shows that a real cluster would not — the host can read every node's
cgroup files — is kept out of the result: the agent reads no cgroup file at all
(`SwarmSampler`), each node's report names exactly the tasks on that node, and a node
whose collector is killed while its engine and workers go on has its workers stale.
"""
from __future__ import annotations

import ipaddress
import json
import math
import secrets
import shutil
import subprocess
import time
import urllib.request
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import docker
import pytest
import redis
import trio

from agent.adapters.config_sources import load_settings
from agent.adapters.demo_image import DEMO_PORT
from agent.adapters.redis_server import free_loopback_port, redis_server_argv
from agent.adapters.swarm_sampler import SwarmSampler
from agent.core.records import Category, Snapshot
from agent.core.swarm import SwarmWorker
from agent.service.runtime import Agent
from agent.service.wiring import open_agent
from tests.fixtures.swarm_lab import LAB_ROOT, SwarmLab, SwarmLabError, wait_until
from tests.integration.agent_harness import FAST, wait_for

from .collectors import create_collector, reports, wait_reporting

pytestmark = [pytest.mark.swarm, pytest.mark.slow, pytest.mark.docker, pytest.mark.redis]

APP = "das-lab"
WORKERS = 4


class LabRedis:
    """A redis-server on the lab bridge's host address, with a password (its
    protected mode refuses clients from other addresses otherwise)."""

    def __init__(self, binary: str, data_dir: Path, host: str) -> None:
        self.host, self.port = host, free_loopback_port(host)
        self.password = secrets.token_hex(16)
        config = data_dir / "redis.conf"
        config.write_text(f"requirepass {self.password}\n")
        config.chmod(0o600)
        argv = redis_server_argv(binary, port=self.port, data_dir=data_dir, bind=host,
                                 appendonly=False, config_file=config)
        with open(data_dir / "redis.log", "ab") as log:
            self._proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log,
                                          stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 15
        while True:
            try:
                with self.client() as client:
                    client.ping()
                break
            except redis.exceptions.ConnectionError:
                if self._proc.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise
                time.sleep(0.05)

    @property
    def url(self) -> str:
        return f"redis://:{self.password}@{self.host}:{self.port}/0"

    def client(self) -> redis.Redis:
        return redis.Redis.from_url(self.url, decode_responses=True, socket_timeout=5)

    def stop(self) -> None:
        if self._proc.poll() is None:
            self._proc.terminate()
            self._proc.wait(15)


class Lab:
    """The lab, its Redis and its collectors, for one module."""

    def __init__(self, lab: SwarmLab, redis: LabRedis, collector: Any,
                 timings: dict[str, float]) -> None:
        self.lab = lab
        self.redis = redis
        self.collector = collector
        self.timings = timings  # set-up steps of this module, seconds

    @property
    def redis_url(self) -> str:
        return self.redis.url

    @property
    def client(self) -> docker.DockerClient:
        return self.lab.manager.client

    def services(self) -> dict[str, Any]:
        rows = self.client.api.services(filters={"label": f"io.deployment-agent.app={APP}"})
        return {r["Spec"]["Name"]: r for r in rows}


def _load(lab: SwarmLab, host: docker.DockerClient, image_id: str) -> None:
    data = b"".join(host.images.get(image_id).save(named=False))
    with ThreadPoolExecutor(len(lab.nodes)) as pool:
        list(pool.map(lambda n: n.client.images.load(data), lab.nodes))
    for node in lab.nodes:
        node.client.images.get(image_id)


@pytest.fixture(scope="module")
def lab(docker_client: docker.DockerClient, demo_image: str, agent_image: str,
        tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    swarm = SwarmLab(3, host=docker_client, image=demo_image, heartbeat=1.0)
    try:
        swarm.start()
    except SwarmLabError as exc:
        pytest.fail(f"cannot make the swarm lab: {exc}", pytrace=False)
    redis: LabRedis | None = None
    timings = {"lab set-up (3 nodes, demo image)": swarm.timings["setup"]}
    try:
        begin = time.monotonic()
        _load(swarm, docker_client, agent_image)
        timings["agent image loaded into every node"] = time.monotonic() - begin
        binary = shutil.which("redis-server")
        assert binary is not None
        redis = LabRedis(binary, tmp_path_factory.mktemp("lab-redis"), swarm.gateway)
        collector = create_collector(
            swarm.manager.client, agent_image, app_identifier=APP, redis_url=redis.url,
            socket_source=f"{LAB_ROOT}/{{{{.Node.Hostname}}}}/docker.sock",
        )
        begin = time.monotonic()
        wait_reporting(redis.url, APP, [n.node_id for n in swarm.nodes], service=collector)
        timings["collector service created: every node reporting"] = time.monotonic() - begin
        yield Lab(swarm, redis, collector, timings)
    finally:
        try:
            if redis is not None:
                redis.stop()
        finally:
            swarm.close()


def _settings(lab: Lab, data_dir: Path, **extra: object) -> Any:
    environ = {**FAST, "ENGINE": "swarm", "DOCKER_HOST": lab.lab.manager.socket,
               "DOCKER_IMAGE": lab.lab.image_id, "TARGET_PORT": str(DEMO_PORT),
               "APP_IDENTIFIER": APP, "REDIS_URL": lab.redis_url, "DATA_DIR": str(data_dir)}
    environ.update({k: str(v) for k, v in extra.items()})
    return load_settings(environ=environ, env_file=None)


def _by_node(snapshot: Snapshot) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for info in snapshot.containers.values():
        if info.running and isinstance(info, SwarmWorker):
            out.setdefault(info.node_id, set()).add(info.name)
    return out


def _fresh(agent: Agent, names: set[str] | None = None) -> bool:
    scores = [s for s in agent.snapshot.scores if names is None or s.name in names]
    return bool(scores) and all(
        s.category is not Category.INIT and not s.stale and math.isfinite(s.cpu_score)
        for s in scores)


async def _record(agent: Agent, into: list[Snapshot]) -> None:
    async for snapshot in agent.hub.subscribe():
        into.append(snapshot)


Report = Callable[[str, float], None]


async def _placed_and_reported(lab: Lab, agent: Agent) -> dict[str, set[str]]:
    """WORKERS services on both worker nodes, none on the manager; each node's
    collector speaks for its own node's tasks, and only those. Returns node -> names."""
    swarm = lab.lab
    workers = {n.node_id: n for n in swarm.workers}
    await wait_for(lambda: agent.snapshot.running == WORKERS and _fresh(agent),
                   timeout=90, what="the pool running and scored from the reports")
    placed = _by_node(agent.snapshot)
    assert set(placed) == set(workers), placed
    for info in agent.snapshot.containers.values():
        assert isinstance(info, SwarmWorker)
        assert info.address == workers[info.node_id].ip and info.host_port
    found = reports(lab.redis_url, APP, [n.node_id for n in swarm.nodes])
    tasks = {i.name: i.task_id for i in agent.snapshot.containers.values()
             if isinstance(i, SwarmWorker)}
    for node in swarm.nodes:
        expected = {(name, tasks[name]) for name in placed.get(node.node_id, set())}
        assert {(r.service, r.task) for r in found[node.node_id].readings} == expected
    return placed


async def _collector_killed(lab: Lab, agent: Agent, placed: dict[str, set[str]],
                            report: Report) -> None:
    """A killed collector, its engine and workers up: that node's workers go stale,
    the other node's stay fresh; Swarm restarts the collector, fresh again."""
    quiet, loud = lab.lab.workers
    (container,) = quiet.client.containers.list(
        filters={"label": f"com.docker.swarm.service.id={lab.collector.id}"})
    begin = trio.current_time()
    container.kill()
    await wait_for(lambda: all(s.stale for s in agent.snapshot.scores
                               if s.name in placed[quiet.node_id]),
                   timeout=20, what=f"{quiet.name}'s workers stale without its collector")
    report("collector SIGKILL: its workers stale after", trio.current_time() - begin)
    assert _fresh(agent, placed[loud.node_id])
    assert agent.snapshot.running == WORKERS  # stale is not dead
    await wait_for(lambda: _fresh(agent), timeout=60,
                   what=f"{quiet.name}'s workers fresh with its collector back")


async def _engine_stopped(lab: Lab, agent: Agent, seen: list[Snapshot], lost: set[str],
                          report: Report) -> None:
    """A node's engine stopped: its workers go stale (never zero), then are
    replaced on the other node."""
    quiet, loud = lab.lab.workers
    mark = len(seen)
    begin = trio.current_time()
    await trio.to_thread.run_sync(quiet.stop)
    await wait_for(lambda: not (lost & set(agent.snapshot.containers))
                   and agent.snapshot.running == WORKERS and _fresh(agent),
                   timeout=90, what=f"the workers of {quiet.name} replaced on {loud.name}")
    report("engine SIGTERM: its workers replaced and scored after", trio.current_time() - begin)
    after = seen[mark:]
    first_stale = next(snap.time for snap in after
                       if any(s.stale for s in snap.scores if s.name in lost))
    first_gone = next(snap.time for snap in after if not lost & set(snap.containers))
    report("engine SIGTERM: stale for (first stale tick to replacement)",
           first_gone - first_stale)
    assert _by_node(agent.snapshot) == {loud.node_id: set(agent.snapshot.containers)}
    stale_before_gone = {s.name for snap in after for s in snap.scores
                         if s.name in lost and s.stale and s.overall_score > 0}
    assert stale_before_gone == lost


def _ledger(lab: Lab) -> list[dict[str, Any]]:
    client = lab.redis.client()
    try:
        return [{"kind": f["kind"], **json.loads(f["data"])}
                for _, f in client.xrange(f"da:{APP}:events")]
    finally:
        client.close()


async def test_workers_spread_each_node_reports_its_own_and_a_lost_node_is_replaced(
    lab: Lab, tmp_path: Path, swarm_report: Report,
) -> None:
    swarm = lab.lab
    for label, seconds in lab.timings.items():
        swarm_report(label, seconds)
    settings = _settings(lab, tmp_path, DEFAULT_CONTAINER=WORKERS, MAX_CONTAINERS=WORKERS,
                         SWARM_CONSTRAINTS="node.role==worker")
    quiet = swarm.workers[0]
    seen: list[Snapshot] = []
    try:
        async with open_agent(settings) as (agent, _), trio.open_nursery() as nursery:
            assert isinstance(agent.sampler, SwarmSampler)  # no cgroup file is read here
            await nursery.start(agent.run)
            nursery.start_soon(_record, agent, seen)
            placed = await _placed_and_reported(lab, agent)
            await _collector_killed(lab, agent, placed, swarm_report)
            lost = set(placed[quiet.node_id])
            await _engine_stopped(lab, agent, seen, lost, swarm_report)
            nursery.cancel_scope.cancel()
        assert {e["name"] for e in _ledger(lab) if e["kind"] == "replaced"} == lost
        assert not lost & set(lab.services())
        # The image's HEALTHCHECK asks the collector's /healthz (Swarm replaces a sick one).
        (first,) = swarm.manager.client.containers.list(
            filters={"label": f"com.docker.swarm.service.id={lab.collector.id}"})
        assert first.attrs["State"]["Health"]["Status"] == "healthy", first.attrs["State"]
    finally:  # the next test wants every node up and no worker of this one
        if not quiet.running:
            await trio.to_thread.run_sync(quiet.start)
        swarm.wait_states({n.name: "ready" for n in swarm.nodes}, timeout=60)
        for service in lab.services().values():
            lab.client.api.remove_service(service["ID"])


async def test_the_agent_as_a_service_on_a_manager_reaches_overlay_workers(
    lab: Lab, agent_image: str,
) -> None:
    """The shape docs/swarm.md recommends: the agent's image as a service on a
    manager, the workers on an overlay network (dnsrr, nothing published), reached
    by the agent at their task addresses; a collector per node."""
    swarm, app = lab.lab, "das-overlay"
    network = lab.client.networks.create("das-workers", driver="overlay", attachable=True)
    collector = create_collector(
        swarm.manager.client, agent_image, app_identifier=app, redis_url=lab.redis_url,
        socket_source=f"{LAB_ROOT}/{{{{.Node.Hostname}}}}/docker.sock", health_port=25548)
    env = {**FAST, "ENGINE": "swarm", "DOCKER_HOST": "unix:///var/run/docker.sock",
           "DOCKER_IMAGE": swarm.image_id, "TARGET_PORT": str(DEMO_PORT),
           "APP_IDENTIFIER": app, "REDIS_URL": lab.redis_url, "SWARM_NETWORK": "das-workers",
           "DEFAULT_CONTAINER": "2", "MAX_CONTAINERS": "2", "BIND_HOST": "0.0.0.0",
           "AGENT_API_TOKEN": "t"}
    agent = lab.client.services.create(
        agent_image, args=["run"], name="das-agent", networks=["das-workers"],
        constraints=["node.role==manager"], env=[f"{k}={v}" for k, v in env.items()],
        mounts=[docker.types.Mount("/var/run/docker.sock", swarm.manager.socket.removeprefix(
            "unix://"), type="bind")],
        endpoint_spec=docker.types.EndpointSpec(ports={2550: (2550, "tcp", "host")}),
    )
    base = f"http://{swarm.manager.ip}:2550"
    try:
        def queue() -> list[dict[str, Any]] | None:
            with urllib.request.urlopen(f"{base}/stats", timeout=3) as reply:
                stats = json.load(reply)
            with urllib.request.urlopen(f"{base}/queue", timeout=3) as reply:
                items = json.load(reply)["queue"]
            scored = len(stats) == 2 and all(
                r["utilization_category"] != "INIT" and r["availability_score"] > 0
                and r["cpu_score"] is not None for r in stats)
            return items if scored and len(items) == 2 else None

        items = await trio.to_thread.run_sync(lambda: wait_until(
            queue, timeout=120, interval=0.5, message="the agent service's queue")[0])
        subnet = ipaddress.ip_network(network.attrs["IPAM"]["Config"][0]["Subnet"])
        for item in items:
            assert ipaddress.ip_address(item["address"]) in subnet
            assert item["port"] == DEMO_PORT
        rows = lab.client.api.services(filters={"label": f"io.deployment-agent.app={app}"})
        assert len(rows) == 2
        for row in rows:
            assert row["Spec"]["EndpointSpec"] == {"Mode": "dnsrr"}
            assert not row["Endpoint"].get("Ports")  # nothing published on any node
    finally:
        for service in (agent, collector):
            service.remove()
        for row in lab.client.api.services(filters={"label": f"io.deployment-agent.app={app}"}):
            lab.client.api.remove_service(row["ID"])
