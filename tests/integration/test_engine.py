"""`DockerEngine` against the real engine and the demo worker image."""
from __future__ import annotations

import math
import socket
import time
from pathlib import Path

import docker
import pytest
import trio

from agent.adapters.docker_engine import (
    APP_LABEL,
    OWNER_LABEL,
    OWNER_VALUE,
    DockerEngine,
    container_name_prefix,
    parse_engine_time,
)
from agent.core.errors import ContainerNotFound, EngineError, NotOwnedError
from agent.core.ports import Engine
from agent.adapters.probe import probe_http
from tests.fixtures.docker import DockerTestApp

pytestmark = pytest.mark.docker


async def _wait_http(host: str, port: int, path: str = "/", within: float = 10.0) -> float:
    """Poll until `path` answers 2xx/3xx; return the answer time."""
    with trio.fail_after(within):
        while True:
            elapsed = await probe_http(host, port, path, 1.0)
            if math.isfinite(elapsed):
                return elapsed
            await trio.sleep(0.05)


async def test_create_list_remove(docker_app: DockerTestApp, docker_client: docker.DockerClient) -> None:
    engine = docker_app.engine()
    assert isinstance(engine, Engine)
    a = await engine.create()
    b = await engine.create()
    assert a.name != b.name
    for info in (a, b):
        assert info.running and info.pid and info.pid > 1
        assert info.name.startswith(container_name_prefix(docker_app.app_identifier) + "-")
        assert info.image == docker_app.image
        assert info.labels[OWNER_LABEL] == OWNER_VALUE
        assert info.labels[APP_LABEL] == docker_app.app_identifier
        assert info.address == "127.0.0.1" and info.host_port
        assert abs(info.created - time.time()) < 120
        raw = docker_client.api.inspect_container(info.id)
        assert raw["HostConfig"]["Init"] is True
        binding = raw["HostConfig"]["PortBindings"][f"{docker_app.target_port}/tcp"][0]
        assert binding["HostIp"] == "127.0.0.1" and binding["HostPort"] == ""
    listed = {info.name: info for info in await engine.list_owned()}
    assert set(listed) == {a.name, b.name}
    assert listed[a.name].pid == a.pid and listed[a.name].host_port == a.host_port
    assert (await engine.inspect(b.name)) == listed[b.name]

    await engine.remove(a.name)
    assert [info.name for info in await engine.list_owned()] == [b.name]
    await engine.remove(a.name)  # idempotent: already gone
    await engine.remove(a.id)
    await engine.remove(b.id)  # by id too
    assert await engine.list_owned() == []
    assert docker_app.owned_ids() == []


async def test_published_port_answers_http(docker_app: DockerTestApp) -> None:
    engine = docker_app.engine()
    info = await engine.create()
    assert info.host_port is not None
    await _wait_http(info.address, info.host_port, "/")
    await _wait_http(info.address, info.host_port, "/cgi-bin/health")


async def test_remove_stops_quickly_thanks_to_init(docker_app: DockerTestApp) -> None:
    engine = docker_app.engine(stop_timeout=10)
    info = await engine.create()
    start = trio.current_time()
    await engine.remove(info.name)
    assert trio.current_time() - start < 5.0  # not the 10 s stop timeout


async def test_exited_containers_are_listed_without_pid(
    docker_app: DockerTestApp, docker_client: docker.DockerClient
) -> None:
    engine = docker_app.engine()
    info = await engine.create()
    docker_client.api.kill(info.id)
    with trio.fail_after(10):
        while (listed := await engine.list_owned())[0].running:
            await trio.sleep(0.05)
    assert listed[0].name == info.name
    assert listed[0].status == "exited" and listed[0].pid is None
    await engine.remove(info.name)
    assert await engine.list_owned() == []


async def test_foreign_containers_are_never_listed_nor_touched(
    docker_app: DockerTestApp, docker_client: docker.DockerClient
) -> None:
    engine = docker_app.engine()
    mine = await engine.create()
    foreign = [
        docker_app.run_foreign(),  # same image, no labels
        docker_app.run_foreign(labels={OWNER_LABEL: OWNER_VALUE}),  # owner only
        docker_app.run_foreign(labels={APP_LABEL: docker_app.app_identifier}),  # app only
        docker_app.run_foreign(  # both labels, another app
            labels={OWNER_LABEL: OWNER_VALUE, APP_LABEL: docker_app.app_identifier + "-other"}
        ),
        docker_app.run_foreign(  # right app, wrong owner value
            labels={OWNER_LABEL: "someone-else", APP_LABEL: docker_app.app_identifier}
        ),
    ]
    assert [info.name for info in await engine.list_owned()] == [mine.name]
    for container_id in foreign:
        name = docker_client.api.inspect_container(container_id)["Name"].lstrip("/")
        for ref in (container_id, name):
            with pytest.raises(NotOwnedError, match="refusing"):
                await engine.remove(ref)
            with pytest.raises(NotOwnedError):
                await engine.inspect(ref)
        assert docker_client.api.inspect_container(container_id)["State"]["Running"]
    await engine.remove(mine.name)
    for container_id in foreign:  # they all survived
        assert docker_client.api.inspect_container(container_id)["State"]["Running"]


async def test_inspect_missing_is_container_not_found(docker_app: DockerTestApp) -> None:
    engine = docker_app.engine()
    with pytest.raises(ContainerNotFound):
        await engine.inspect(f"{docker_app.app_identifier}-nope")
    await engine.remove(f"{docker_app.app_identifier}-nope")  # gone is fine


async def test_cpu_and_memory_limits_are_applied(
    docker_app: DockerTestApp, docker_client: docker.DockerClient
) -> None:
    engine = docker_app.engine(cpus=0.5, mem_limit="64m")
    info = await engine.create()
    host_config = docker_client.api.inspect_container(info.id)["HostConfig"]
    assert host_config["NanoCpus"] == 500_000_000
    assert host_config["Memory"] == 64 * 1024 * 1024


async def test_missing_image_is_an_engine_error_and_leaves_nothing(docker_app: DockerTestApp) -> None:
    engine = docker_app.engine(image="deployment-agent-no-such-image:never")
    with pytest.raises(EngineError, match="image not found") as caught:
        await engine.create()
    assert not isinstance(caught.value, ContainerNotFound)
    assert docker_app.owned_ids() == []


async def test_ping_and_locality(docker_app: DockerTestApp) -> None:
    engine = docker_app.engine()
    await engine.ping()
    assert engine.is_local
    await engine.aclose()
    await engine.aclose()  # idempotent
    with pytest.raises(EngineError, match="closed"):
        await engine.ping()


def _unreachable_urls(tmp_path: Path) -> list[str]:
    dangling = tmp_path / "bound-not-listening.sock"
    with socket.socket(socket.AF_UNIX) as s:
        s.bind(str(dangling))  # the file exists, nobody listens
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return [
        f"unix://{tmp_path / 'missing.sock'}",
        f"unix://{dangling}",
        f"tcp://127.0.0.1:{port}",
    ]


async def test_unreachable_engine_fails_fast_with_engine_error(tmp_path: Path) -> None:
    for url in _unreachable_urls(tmp_path):
        engine = DockerEngine(base_url=url, app_identifier="dat-unreachable", image="x",
                              target_port=8080)
        async with engine:
            for call in (engine.ping, engine.list_owned, engine.create,
                         lambda: engine.remove("x"), lambda: engine.inspect("x")):
                start = trio.current_time()
                with trio.fail_after(5), pytest.raises(EngineError, match="unreachable") as caught:
                    await call()
                assert not isinstance(caught.value, ContainerNotFound)
                assert url.rsplit("/", 1)[-1] in str(caught.value)
                assert trio.current_time() - start < 2.0


def test_constructor_validates() -> None:
    kwargs = dict(base_url="unix:///x", app_identifier="a", image="i", target_port=8080)
    with pytest.raises(ValueError, match="target_port"):
        DockerEngine(**{**kwargs, "target_port": 0})  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="cpus"):
        DockerEngine(**kwargs, cpus=0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="app_identifier"):
        DockerEngine(**{**kwargs, "app_identifier": ""})  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("url", "local"),
    [
        ("unix:///var/run/docker.sock", True),
        ("tcp://127.0.0.1:2375", True),
        ("tcp://localhost:2375", True),
        ("tcp://10.1.2.3:2376", False),
        ("ssh://user@build-host", False),
    ],
)
def test_is_local(url: str, local: bool) -> None:
    engine = DockerEngine(base_url=url, app_identifier="a", image="i", target_port=1)
    assert engine.is_local is local


def test_names_and_times() -> None:
    assert container_name_prefix("RUSTYBALANCER") == "rustybalancer"
    assert container_name_prefix("My App/1") == "my-app-1"
    assert container_name_prefix("--") == "worker"
    assert parse_engine_time("2026-11-26T19:45:20.522415052Z") == pytest.approx(
        1795722320.522415052, abs=1e-6
    )
    assert parse_engine_time("2026-11-26T20:45:20+01:00") == pytest.approx(1795722320.0)
    assert math.isnan(parse_engine_time("0001-01-01T00:00:00Z"))
    assert math.isnan(parse_engine_time("yesterday"))
