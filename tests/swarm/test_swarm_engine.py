"""`SwarmEngine` against a single-node swarm on the host engine and the demo image."""
from __future__ import annotations

import math
import time

import pytest
import trio

from agent.adapters.docker_engine import APP_LABEL, OWNER_LABEL, OWNER_VALUE, container_name_prefix
from agent.adapters.probe import probe_http
from agent.adapters.swarm_engine import SwarmEngine, local_node_id
from agent.core.errors import ContainerNotFound, EngineError, NotOwnedError
from agent.core.ports import Engine
from agent.core.swarm import SwarmWorker
from tests.fixtures.host_swarm import HostSwarm, SwarmTestApp

pytestmark = [pytest.mark.swarm, pytest.mark.docker]


async def _answers(host: str, port: int, path: str = "/cgi-bin/health", within: float = 15.0) -> None:
    with trio.fail_after(within):
        while not math.isfinite(await probe_http(host, port, path, 1.0)):
            await trio.sleep(0.1)


async def test_create_list_inspect_remove(host_swarm: HostSwarm, host_swarm_app: SwarmTestApp) -> None:
    app = host_swarm_app
    engine = app.engine()
    assert isinstance(engine, Engine)
    await engine.ping()
    a = await engine.create()
    b = await engine.create()
    assert a.name != b.name
    for info in (a, b):
        assert isinstance(info, SwarmWorker)
        assert info.running and info.pid is None  # a task's PID means nothing off its node
        assert info.name.startswith(container_name_prefix(app.app_identifier) + "-")
        assert info.image == app.image
        assert (info.labels[OWNER_LABEL], info.labels[APP_LABEL]) == (OWNER_VALUE, app.app_identifier)
        assert info.address == host_swarm.address and info.host_port
        assert info.node_id == host_swarm.node_id and info.task_id
        assert abs(info.created - time.time()) < 120
        await _answers(info.address, info.host_port)
        spec = host_swarm.client.api.inspect_service(info.id)["Spec"]
        container = spec["TaskTemplate"]["ContainerSpec"]
        assert container["Labels"] == app.labels and container["Init"] is True
        assert spec["Mode"] == {"Replicated": {"Replicas": 1}}
        assert spec["TaskTemplate"]["RestartPolicy"]["Condition"] == "none"
        assert spec["EndpointSpec"]["Ports"][0]["PublishMode"] == "host"
    assert a.host_port != b.host_port

    listed = {info.name: info for info in await engine.list_owned()}
    assert set(listed) == {a.name, b.name}
    assert listed[a.name] == a
    assert await engine.inspect(b.name) == listed[b.name] == await engine.inspect(b.id)

    await engine.remove(a.id)
    assert [info.name for info in await engine.list_owned()] == [b.name]
    await engine.remove(a.id)  # idempotent: already gone
    await engine.remove(b.name)  # by name too
    assert await engine.list_owned() == []
    assert app.services() == {}
    with pytest.raises(ContainerNotFound):
        await engine.inspect(a.name)


async def test_foreign_services_are_never_listed_or_touched(host_swarm_app: SwarmTestApp) -> None:
    app = host_swarm_app
    engine = app.engine()
    mine = await engine.create()
    owner_only = app.foreign_service(labels={OWNER_LABEL: OWNER_VALUE})
    app_only = app.foreign_service(labels={APP_LABEL: app.app_identifier})
    other_app = app.foreign_service(labels={OWNER_LABEL: OWNER_VALUE, APP_LABEL: "someone-else"})
    # Our labels on the containers only: the service is still not ours.
    containers_only = app.foreign_service(container_labels=app.labels)
    unlabelled = app.foreign_service()
    foreign = [owner_only, app_only, other_app, containers_only, unlabelled]

    assert [i.name for i in await engine.list_owned()] == [mine.name]
    for service_id in foreign:
        with pytest.raises(NotOwnedError, match="refusing to touch it"):
            await engine.inspect(service_id)
        with pytest.raises(NotOwnedError):
            await engine.remove(service_id)
    present = {s.id for s in app.client.services.list()}
    assert set(foreign) <= present


async def test_a_worker_that_cannot_be_placed_fails_with_the_reason_and_is_removed(
    host_swarm_app: SwarmTestApp,
) -> None:
    engine = host_swarm_app.engine(constraints=("node.labels.zone==nowhere",), start_timeout=3.0)
    with pytest.raises(EngineError, match=r"did not start within 3 s: its task is pending"):
        await engine.create()
    assert host_swarm_app.services() == {}


async def test_an_image_the_node_lacks_fails_and_is_removed(host_swarm_app: SwarmTestApp) -> None:
    engine = host_swarm_app.engine(image="sha256:" + "0" * 64, start_timeout=20.0)
    with pytest.raises(EngineError, match="did not start"):
        await engine.create()
    assert host_swarm_app.services() == {}


async def test_a_worker_whose_process_ends_reads_as_exited(host_swarm_app: SwarmTestApp) -> None:
    """Restart policy none: Swarm does not restart it; the agent's plan replaces it."""
    engine = host_swarm_app.engine()
    info = await engine.create()
    (container,) = host_swarm_app.client.containers.list(
        filters={"label": f"com.docker.swarm.service.id={info.id}"})
    container.kill()
    with trio.fail_after(30):
        while (await engine.inspect(info.name)).status != "exited":
            await trio.sleep(0.2)
    assert (await engine.inspect(info.name)).host_port is None


async def test_the_host_node_id_and_a_manager_check(host_swarm: HostSwarm) -> None:
    assert local_node_id(host_swarm.base_url) == host_swarm.node_id
    engine = SwarmEngine(base_url="unix:///nonexistent.sock", app_identifier="x", image="i",
                         target_port=80)
    with pytest.raises(EngineError, match="swarm manager unreachable"):
        await engine.ping()
    with pytest.raises(EngineError, match="Docker engine unreachable"):
        local_node_id("unix:///nonexistent.sock", timeout=2)
    await engine.aclose()
