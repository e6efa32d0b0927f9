"""The agent with ENGINE=swarm on a single-node swarm of the host engine, end to end.

Workers are services; their numbers come from the collector — the agent's own image
run as a global service, as docs/swarm.md says — through Redis. The agent itself
samples nothing locally (`SwarmSampler`): when the collector stops, its workers go
stale although this host could read their cgroup files, and they come back when it
returns. Scale-up under real CPU load and scale-down through drain, a manual drain,
`kill -9` of the agent mid-creation, and foreign services left alone.
"""
from __future__ import annotations

import json
import math
import signal
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import trio

from agent.adapters.config_sources import load_settings
from agent.adapters.docker_engine import APP_LABEL, OWNER_LABEL, OWNER_VALUE
from agent.adapters.swarm_engine import SwarmEngine
from agent.adapters.swarm_sampler import SwarmSampler
from agent.core.records import Category
from agent.core.settings import Settings
from agent.service.runtime import Agent
from agent.service.wiring import open_agent
from tests.fixtures.host_swarm import HostSwarm, SwarmTestApp
from tests.integration.agent_harness import FAST, AgentProcess, burn, free_port, wait_for

from .collectors import create_collector, remove_collector, reports, wait_reporting

pytestmark = [pytest.mark.swarm, pytest.mark.docker, pytest.mark.redis, pytest.mark.slow]


def swarm_settings(app: SwarmTestApp, redis_url: str, data_dir: Path, **extra: object) -> Settings:
    environ = {**app.env(), **FAST, "REDIS_URL": redis_url, "DATA_DIR": str(data_dir)}
    environ.update({k: str(v) for k, v in extra.items()})
    return load_settings(environ=environ, env_file=None)


@pytest.fixture
def collector(host_swarm: HostSwarm, host_swarm_app: SwarmTestApp, agent_image: str,
              redis_url: str) -> Iterator[Any]:
    service = create_collector(host_swarm.client, agent_image,
                               app_identifier=host_swarm_app.app_identifier,
                               redis_url=redis_url, health_port=free_port())
    try:
        wait_reporting(redis_url, host_swarm_app.app_identifier, [host_swarm.node_id],
                       service=service)
        yield service
    finally:
        remove_collector(service)


def events(redis_client: Any, app: SwarmTestApp) -> list[dict[str, Any]]:
    rows = redis_client.xrange(f"da:{app.app_identifier}:events")
    return [{"kind": f["kind"], **json.loads(f["data"])} for _, f in rows]


def scored(agent: Agent, count: int) -> bool:
    """`count` workers, each with a complete, fresh score from the collector."""
    scores = agent.snapshot.scores
    return len(scores) == count and all(
        s.category is not Category.INIT and not s.stale and math.isfinite(s.cpu_score)
        for s in scores)


async def test_scale_up_under_load_then_down_through_drain(
    host_swarm: HostSwarm, host_swarm_app: SwarmTestApp, collector: Any, redis_url: str,
    redis_client: Any, tmp_path: Path,
) -> None:
    app = host_swarm_app
    settings = swarm_settings(app, redis_url, tmp_path, DEFAULT_CONTAINER=2, MAX_CONTAINERS=3)
    async with open_agent(settings) as (agent, _), trio.open_nursery() as nursery:
        assert isinstance(agent.engine, SwarmEngine) and isinstance(agent.sampler, SwarmSampler)
        await nursery.start(agent.run)
        await wait_for(lambda: len(app.running_tasks()) == 2, timeout=60,
                       what="the initial pool of DEFAULT_CONTAINER services")
        await wait_for(lambda: scored(agent, 2), timeout=30,
                       what="complete scores from the collector's reports")
        # The collector speaks for this node, about exactly these tasks.
        (report,) = reports(redis_url, app.app_identifier, [host_swarm.node_id]).values()
        tasks = app.running_tasks()
        assert {(r.service, r.task) for r in report.readings} == {
            (name, t["ID"]) for name, t in tasks.items()}

        period = agent.settings.scale_check_period
        for info in list(agent.snapshot.containers.values()):
            nursery.start_soon(partial(trio.to_thread.run_sync, burn, info.address,
                                       info.host_port, 15, abandon_on_cancel=True))
        # Two scale checks, plus a collector tick and a leader tick for the numbers to
        # travel through Redis, plus slack for this shared machine.
        await wait_for(lambda: agent.desired == 3, timeout=3 * period + 4,
                       what="a scale-up under CPU load")
        await wait_for(lambda: len(app.running_tasks()) == 3, timeout=60,
                       what="the third service running")
        await wait_for(lambda: agent.desired == 2, timeout=60, what="a scale-down after the load")
        await wait_for(lambda: len(app.services()) == 2, timeout=40,
                       what="the drained service removed")
        nursery.cancel_scope.cancel()

    ledger = events(redis_client, app)
    ups = [e for e in ledger if e["kind"] == "scale_check" and e["action"] == "scale_up"]
    downs = [e for e in ledger if e["kind"] == "scale_check" and e["action"] == "scale_down"]
    assert ups and downs and all(e["reason"] for e in ups + downs)
    (victim,) = downs[0]["sundown"]
    removed = [e for e in ledger if e["kind"] == "removed"]
    assert [e["name"] for e in removed] == [victim]
    assert removed[0]["reason"] in ("drained", "drain_timeout")
    assert victim not in app.services()


async def test_a_silent_collector_makes_its_workers_stale_not_zero(
    host_swarm: HostSwarm, host_swarm_app: SwarmTestApp, collector: Any, agent_image: str,
    redis_url: str, tmp_path: Path,
) -> None:
    """This host could read the workers' cgroup files itself; the agent does not:
    without the collector its samples are stale, and the scores stay as they were."""
    app = host_swarm_app
    settings = swarm_settings(app, redis_url, tmp_path, DEFAULT_CONTAINER=2, MAX_CONTAINERS=2)
    async with open_agent(settings) as (agent, _), trio.open_nursery() as nursery:
        await nursery.start(agent.run)
        await wait_for(lambda: scored(agent, 2), timeout=60, what="complete scores")
        names = {s.name for s in agent.snapshot.scores}

        remove_collector(collector)  # it withdraws its report as it stops
        await wait_for(lambda: all(s.stale for s in agent.snapshot.scores), timeout=30,
                       what="the workers stale once their node stops reporting")
        first = agent.snapshot
        await wait_for(lambda: agent.snapshot.tick >= first.tick + 4, timeout=10,
                       what="four more ticks")
        later = agent.snapshot
        assert {s.name for s in later.scores} == names
        # The last scores are kept while nothing new comes: never zero, never moved.
        kept = {s.name: s.overall_score for s in first.scores}
        assert all(s.stale and s.overall_score == kept[s.name] > 0 for s in later.scores)
        assert agent.desired == 2 and len(app.services()) == 2  # no action on stale samples

        back = create_collector(host_swarm.client, agent_image, app_identifier=app.app_identifier,
                                redis_url=redis_url, health_port=free_port())
        try:
            await wait_for(lambda: scored(agent, 2), timeout=90,
                           what="fresh scores again with the collector back")
        finally:
            remove_collector(back)
        nursery.cancel_scope.cancel()


async def test_manual_drain_at_the_floor_starts_a_replacement_and_foreign_services_survive(
    host_swarm_app: SwarmTestApp, collector: Any, redis_url: str, redis_client: Any,
    tmp_path: Path,
) -> None:
    app = host_swarm_app
    foreign = [app.foreign_service(), app.foreign_service(labels={OWNER_LABEL: OWNER_VALUE}),
               app.foreign_service(labels={APP_LABEL: app.app_identifier},
                                   container_labels=app.labels)]
    settings = swarm_settings(app, redis_url, tmp_path, DEFAULT_CONTAINER=2, MAX_CONTAINERS=3)
    async with open_agent(settings) as (agent, _), trio.open_nursery() as nursery:
        await nursery.start(agent.run)
        await wait_for(lambda: scored(agent, 2), timeout=60, what="complete scores")
        first = set(app.services())
        name = sorted(first)[0]
        reply = await agent.request_sundown(name)
        assert reply["action"] == "sundown" and reply["replacement"] is True
        await wait_for(lambda: name not in app.services() and len(app.running_tasks()) == 2,
                       timeout=60, what="the drained service replaced")
        nursery.cancel_scope.cancel()
    assert set(foreign) <= {s.id for s in app.client.services.list()}
    kinds = [e["kind"] for e in events(redis_client, app)]
    assert "drain" in kinds and "removed" in kinds and kinds.count("created") == 3


@pytest.mark.parametrize("kill_after", [1, 2])
async def test_kill_9_mid_creation_then_restart_leaves_exactly_desired(
    host_swarm_app: SwarmTestApp, collector: Any, redis_url: str, redis_client: Any,
    tmp_path: Path, kill_after: int,
) -> None:
    app = host_swarm_app
    agent = AgentProcess(app, redis_url, tmp_path, DEFAULT_CONTAINER=3, MAX_CONTAINERS=4)
    key = f"da:{app.app_identifier}"
    agent.start()
    try:
        await wait_for(lambda: len(app.services()) >= kill_after, timeout=60, every=0.02,
                       what=f"{kill_after} service(s) made\n{agent.tail()}")
        agent.signal(signal.SIGKILL)
        await trio.to_thread.run_sync(agent.wait, 10)
        agent.start()
        await wait_for(lambda: len(app.running_tasks()) == 3
                       and set(redis_client.hkeys(f"{key}:containers")) == set(app.services()),
                       timeout=90, what=f"exactly the desired pool\n{agent.tail()}")
        stable = set(app.services())
        ticks = len(redis_client.xrange(f"{key}:events"))
        await wait_for(lambda: len(redis_client.xrange(f"{key}:events")) > ticks + 2,
                       timeout=30, what="further ledger entries")
        assert set(app.services()) == stable and len(stable) == 3
        assert redis_client.get(f"{key}:desired") == "3"
    finally:
        agent.stop()
