"""`DockerEngine.watch`: the pool listed from the engine's event stream, on the real engine.

What changes outside the agent is seen through the stream; foreign containers
never enter the view; a broken stream stops serving the view at once, and the
reconnection resyncs what changed meanwhile.
"""
from __future__ import annotations

import pytest
import trio

from agent.adapters.docker_engine import APP_LABEL, OWNER_LABEL, OWNER_VALUE, DockerEngine
from agent.core.errors import EngineError, NotOwnedError
from agent.core.records import ContainerInfo
from tests.fixtures.docker import DockerTestApp
from tests.web.util import eventually

from .engine_proxy import EngineRelay

pytestmark = pytest.mark.docker


def _by_name(listed: list[ContainerInfo]) -> dict[str, ContainerInfo]:
    return {info.name: info for info in listed}


def _run_labelled(app: DockerTestApp, name_suffix: str) -> str:
    """A worker of this app started by someone else (same labels, not via the agent)."""
    container = app.client.containers.run(
        app.image, detach=True, init=True, labels=app.labels,
        name=f"{app.app_identifier}-outside-{name_suffix}",
        ports={f"{app.target_port}/tcp": ("127.0.0.1", None)},
    )
    return str(container.id)


async def _listed_from_view(engine: DockerEngine) -> list[ContainerInfo]:
    assert engine.view.live
    return await engine.list_owned()


async def test_changes_made_outside_are_seen_through_the_stream(docker_app: DockerTestApp) -> None:
    engine = docker_app.engine()
    engine.watcher.resync_interval = 3600  # only the stream may tell
    mine = await engine.create()
    async with trio.open_nursery() as nursery:
        await nursery.start(engine.watch)
        assert engine.view.live and engine.watcher.resyncs == 1
        assert [i.name for i in await _listed_from_view(engine)] == [mine.name]
        # Our own creation is in the view at once, before its events arrive.
        second = await engine.create()
        assert {i.name for i in await _listed_from_view(engine)} == {mine.name, second.name}

        outside = _run_labelled(docker_app, "a")
        seen = await eventually(
            lambda: [i for i in engine.view.listing() if i.id == outside and i.running and i.pid],
            timeout=10, message="the container started outside")
        assert seen[0].host_port and seen[0].labels[APP_LABEL] == docker_app.app_identifier

        docker_app.client.api.kill(mine.id)
        await eventually(lambda: _by_name(engine.view.listing())[mine.name].status == "exited",
                         timeout=10, message="the kill seen")
        killed = _by_name(await _listed_from_view(engine))[mine.name]
        assert killed.pid is None and not killed.running

        docker_app.client.api.remove_container(outside, force=True)
        await eventually(lambda: all(i.id != outside for i in engine.view.listing()),
                         timeout=10, message="the removal seen")
        await engine.remove(second.name)
        assert second.name not in _by_name(await _listed_from_view(engine))
        assert engine.watcher.resyncs == 1 and engine.watcher.events > 0
        # The view agrees with a direct listing of the engine.
        direct = await engine.run_blocking(engine._list_owned_sync, "listing")
        assert [(i.id, i.status) for i in await _listed_from_view(engine)] == [
            (i.id, i.status) for i in direct
        ]
        nursery.cancel_scope.cancel()
    assert not engine.view.live


async def test_foreign_containers_never_enter_the_view(docker_app: DockerTestApp) -> None:
    engine = docker_app.engine()
    async with trio.open_nursery() as nursery:
        await nursery.start(engine.watch)
        mine = await engine.create()
        foreign = [
            docker_app.run_foreign(),
            docker_app.run_foreign(labels={OWNER_LABEL: OWNER_VALUE}),
            docker_app.run_foreign(labels={APP_LABEL: docker_app.app_identifier}),
            docker_app.run_foreign(
                labels={OWNER_LABEL: OWNER_VALUE, APP_LABEL: docker_app.app_identifier + "-other"}),
            docker_app.run_foreign(
                labels={OWNER_LABEL: "someone-else", APP_LABEL: docker_app.app_identifier}),
        ]
        # A light resync over the engine's listing, and the events of their start
        # and kill: still only ours.
        await engine.run_blocking(lambda: engine.watcher.resync(full=False), "resync")
        for cid in foreign:
            docker_app.client.api.kill(cid)
        outside = _run_labelled(docker_app, "b")  # an event after the foreign ones
        await eventually(lambda: any(i.id == outside for i in engine.view.listing()),
                         timeout=10, message="the owned container started outside")
        assert {i.id for i in await _listed_from_view(engine)} == {mine.id, outside}
        assert all(engine.view.get(cid) is None for cid in foreign)
        # Removal still checks the labels on the engine, whatever the view holds.
        info = await engine.inspect(mine.name)
        engine.view.put(ContainerInfo(name="x", id=foreign[0], image="i", status="running",
                                      created=0.0, labels=dict(info.labels)), engine.view.ticket())
        with pytest.raises(NotOwnedError):
            await engine.remove(foreign[0])
        nursery.cancel_scope.cancel()


async def test_a_broken_stream_stops_the_view_and_the_reconnection_resyncs(
    docker_app: DockerTestApp, docker_base_url: str, tmp_path
) -> None:
    if not docker_base_url.startswith("unix://"):
        pytest.fail(f"this test relays a unix-socket engine, not {docker_base_url}")
    relay = EngineRelay(tmp_path / "engine.sock", docker_base_url.removeprefix("unix://"))
    engine = docker_app.engine(base_url=relay.url, timeout=3)
    engine.watcher.resync_interval = 3600
    async with trio.open_nursery() as nursery:
        await nursery.start(relay.serve)
        first = await engine.create()
        killed = await engine.create()
        await nursery.start(engine.watch)
        assert engine.view.live and engine.watcher.connects == 1

        await relay.cut()  # the engine "goes away": the stream breaks
        await eventually(lambda: not engine.view.live, timeout=10,
                         message="the view no longer served")
        with pytest.raises(EngineError, match="unreachable"):
            await engine.list_owned()  # the engine is asked, and it fails
        # Meanwhile, outside the agent: one started, one killed.
        outside = _run_labelled(docker_app, "c")
        docker_app.client.api.kill(killed.id)
        await eventually(
            lambda: docker_app.client.api.inspect_container(killed.id)["State"]["Status"] == "exited",
            timeout=10, message="the kill done")

        await nursery.start(relay.serve)  # the engine "comes back"
        await eventually(lambda: engine.view.live, timeout=20, message="the stream back")
        assert engine.watcher.connects == 2 and engine.watcher.resyncs == 2
        listed = {i.id: i for i in await _listed_from_view(engine)}
        assert set(listed) == {first.id, killed.id, outside}
        assert listed[killed.id].status == "exited" and listed[first.id].running
        assert listed[outside].running and listed[outside].pid
        nursery.cancel_scope.cancel()


async def test_without_the_stream_list_owned_asks_the_engine(docker_app: DockerTestApp) -> None:
    engine = docker_app.engine()
    info = await engine.create()
    assert not engine.view.live
    docker_app.client.api.kill(info.id)
    # No watch: the listing is the engine's, so the kill is visible at once.
    listed = await engine.list_owned()
    assert listed[0].id == info.id and listed[0].status == "exited"
