"""The agent against the real engine and a real Redis: pool start, scale-up under
real CPU load, scale-down with drain, replacement, ownership, Redis outages."""
from __future__ import annotations

import json
from functools import partial

import pytest
import trio

from agent.core.records import Category

from .agent_harness import all_owned_names, burn, make_agent, running_names, wait_for

pytestmark = [pytest.mark.docker, pytest.mark.redis, pytest.mark.slow]


async def _events(redis_client, app_identifier: str) -> list[dict]:
    rows = redis_client.xrange(f"da:{app_identifier}:events")
    return [{"kind": f["kind"], **json.loads(f["data"])} for _, f in rows]


async def test_scale_up_under_load_then_down_to_default(docker_app, redis_url, redis_client, tmp_path):
    agent = make_agent(docker_app, redis_url, tmp_path, DEFAULT_CONTAINER=2, MAX_CONTAINERS=3)
    async with trio.open_nursery() as nursery:
        await nursery.start(agent.run)
        await wait_for(lambda: len(running_names(docker_app)) == 2, timeout=30,
                       what="the initial pool of DEFAULT_CONTAINER workers")
        # Scores settle (CPU needs two readings) before the load starts.
        await wait_for(lambda: len(agent.snapshot.scores) == 2 and all(
            s.category is not Category.INIT for s in agent.snapshot.scores),
            timeout=20, what="first complete samples")

        period = agent.settings.scale_check_period
        load_started = trio.current_time()
        for info in list(agent.snapshot.containers.values()):
            nursery.start_soon(partial(trio.to_thread.run_sync, burn, info.address,
                                       info.host_port, 10, abandon_on_cancel=True))
        # Scale-up within two scale checks (+ one tick of sampling slack).
        await wait_for(lambda: agent.desired == 3, timeout=2 * period + 2,
                       what="a scale-up under CPU load")
        reaction = trio.current_time() - load_started
        assert reaction <= 2 * period + 2
        await wait_for(lambda: len(running_names(docker_app)) == 3, timeout=20,
                       what="the third worker running")
        assert agent.desired <= agent.settings.max_containers

        # Load gone: back to DEFAULT_CONTAINER through SUNDOWN, drain, removal.
        await wait_for(lambda: agent.desired == 2, timeout=60, what="a scale-down after the load")
        await wait_for(lambda: len(all_owned_names(docker_app)) == 2, timeout=40,
                       what="the drained worker removed")
        nursery.cancel_scope.cancel()

    events = await _events(redis_client, agent.settings.app_identifier)
    kinds = [e["kind"] for e in events]
    assert "created" in kinds and "removed" in kinds
    ups = [e for e in events if e["kind"] == "scale_check" and e["action"] == "scale_up"]
    downs = [e for e in events if e["kind"] == "scale_check" and e["action"] == "scale_down"]
    assert ups and downs
    # The least-loaded container was the one marked SUNDOWN.
    assert downs[0]["sundown"] and downs[0]["reason"]
    # Every scale check is in the ledger, with a reason and its inputs.
    checks = [e for e in events if e["kind"] == "scale_check"]
    assert all(e["reason"] and isinstance(e["inputs"], dict) for e in checks)
    assert len(checks) >= 5


async def test_killed_worker_is_replaced_and_foreign_containers_survive(
    docker_app, redis_url, redis_client, tmp_path
):
    foreign = docker_app.run_foreign()
    half_labelled = docker_app.run_foreign(labels={"io.deployment-agent.app": docker_app.app_identifier})
    agent = make_agent(docker_app, redis_url, tmp_path, DEFAULT_CONTAINER=2, MAX_CONTAINERS=3)
    async with trio.open_nursery() as nursery:
        await nursery.start(agent.run)
        first = await wait_for(lambda: running_names(docker_app) if len(running_names(docker_app)) == 2 else None,
                               timeout=30, what="the initial pool")
        victim = sorted(first)[0]
        docker_app.client.api.kill(victim)
        await wait_for(lambda: victim not in all_owned_names(docker_app)
                       and len(running_names(docker_app)) == 2,
                       timeout=30, what="the killed worker replaced")
        # Redis forgets the vanished container.
        await wait_for(lambda: victim not in redis_client.hkeys(f"da:{docker_app.app_identifier}:containers")
                       and len(redis_client.hkeys(f"da:{docker_app.app_identifier}:containers")) == 2,
                       timeout=10, what="Redis records matching the engine")
        nursery.cancel_scope.cancel()
    for cid in (foreign, half_labelled):
        assert docker_app.client.api.inspect_container(cid)["State"]["Running"]
    kinds = [e["kind"] for e in await _events(redis_client, docker_app.app_identifier)]
    assert "replaced" in kinds


async def test_redis_outage_loop_keeps_running_and_state_is_written_back(
    docker_app, redis_url, redis_server, redis_client, tmp_path
):
    # A leader acts through an outage only while its lease lasts (docs/leadership.md):
    # a long one, so that this machine's load cannot end it before the replacement.
    agent = make_agent(docker_app, redis_url, tmp_path, DEFAULT_CONTAINER=2, MAX_CONTAINERS=3,
                       LEADER_LEASE_TTL=120)
    key = f"da:{docker_app.app_identifier}:containers"
    async with trio.open_nursery() as nursery:
        await nursery.start(agent.run)
        await wait_for(lambda: len(running_names(docker_app)) == 2, timeout=30, what="the initial pool")
        await redis_server.astop(kill=True)
        tick = agent.snapshot.tick
        await wait_for(lambda: agent.snapshot.tick >= tick + 3 and not agent.snapshot.store_ok,
                       timeout=20, what="ticks continuing with Redis down")
        assert agent.health()["alive"]
        ready, report = await agent.readiness()
        assert not ready and report["redis"] != "ok" and report["engine"] == "ok"
        # Reconcile still acts while Redis is down.
        victim = sorted(running_names(docker_app))[0]
        docker_app.client.api.kill(victim)
        await wait_for(lambda: victim not in all_owned_names(docker_app)
                       and len(running_names(docker_app)) == 2, timeout=30,
                       what="replacement during the outage")
        # Redis comes back empty: the agent writes the complete state back.
        await redis_server.arestart(wipe=True)

        def stored_names() -> set[str]:
            client = redis_server.client()
            try:
                return set(client.hkeys(key))
            finally:
                client.close()

        await wait_for(lambda: stored_names() == all_owned_names(docker_app),
                       timeout=30, what="container records written back")
        fresh = redis_server.client()
        try:
            assert fresh.get(f"da:{docker_app.app_identifier}:desired") == "2"
        finally:
            fresh.close()
        assert (await agent.readiness())[0]
        nursery.cancel_scope.cancel()
    fresh = redis_server.client()
    try:
        kinds = [e["kind"] for e in await _events(fresh, docker_app.app_identifier)]
    finally:
        fresh.close()
    assert "replaced" in kinds  # buffered during the outage, flushed afterwards
