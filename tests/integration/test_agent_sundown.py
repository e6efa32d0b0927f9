"""SUNDOWN marks survive a restart, and a drained container is never reactivated."""
from __future__ import annotations

import pytest

from agent.core.errors import ContainerNotFound
from agent.core.records import Category

from .agent_harness import all_owned_names, make_agent, running_names, wait_for

pytestmark = [pytest.mark.docker, pytest.mark.redis, pytest.mark.slow]


async def _tick_until(agent, predicate, *, what: str, timeout: float = 30) -> None:
    async def step():
        await agent.tick()
        return predicate()

    await wait_for(step, timeout=timeout, what=what, every=0.3)


async def test_sundown_mark_survives_a_restart_and_the_container_drains(docker_app, redis_url, tmp_path):
    first = make_agent(docker_app, redis_url, tmp_path, DEFAULT_CONTAINER=2, MAX_CONTAINERS=3,
                       DRAIN_TIMEOUT=60)
    await first.recover()
    await _tick_until(first, lambda: len(running_names(docker_app)) == 2, what="the initial pool")
    victim = sorted(running_names(docker_app))[0]
    with pytest.raises(ContainerNotFound):
        await first.request_sundown("not-one-of-ours")
    result = await first.request_sundown(victim)
    assert result["action"] == "sundown" and result["replacement"] is True  # at the floor
    # The first agent dies here (no further tick): the mark is already in Redis.
    await first.aclose()

    second = make_agent(docker_app, redis_url, tmp_path, DEFAULT_CONTAINER=2, MAX_CONTAINERS=3,
                        DRAIN_TIMEOUT=60)
    await second.recover()
    assert victim in second.pool.sundown
    await second.tick()
    queue = {item.dns_name: item for item in second.snapshot.queue}
    assert queue[victim].utilization_category is Category.SUNDOWN
    assert queue[victim].weight == 0.0
    assert second.snapshot.queue[-1].dns_name == victim  # SUNDOWN last
    # A replacement keeps two active containers; the drained one goes once idle.
    await _tick_until(second, lambda: victim not in all_owned_names(docker_app)
                      and len(running_names(docker_app)) == 2,
                      what="the victim drained and removed")
    assert second.desired == 2
