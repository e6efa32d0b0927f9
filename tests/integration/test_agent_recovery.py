"""Crash safety of the real CLI process: SIGTERM exits 0 with state persisted;
`kill -9` at any point of a scale-up, then a restart, leaves exactly the desired
set — no duplicates, no orphans in Redis."""
from __future__ import annotations

import signal

import pytest
import trio

from .agent_harness import AgentProcess, all_owned_names, running_names, wait_for

pytestmark = [pytest.mark.docker, pytest.mark.redis, pytest.mark.slow]


async def test_sigterm_exits_zero_and_restart_adopts_the_pool(docker_app, redis_url, redis_client, tmp_path):
    agent = AgentProcess(docker_app, redis_url, tmp_path, DEFAULT_CONTAINER=2, MAX_CONTAINERS=3)
    agent.start()
    try:
        await wait_for(lambda: len(running_names(docker_app)) == 2, timeout=40,
                       what=f"the initial pool\n{agent.tail()}")
        before = running_names(docker_app)
        agent.signal(signal.SIGTERM)
        code = await trio.to_thread.run_sync(agent.wait, 20)
        assert code == 0, agent.tail()
        key = f"da:{docker_app.app_identifier}"
        assert redis_client.get(f"{key}:desired") == "2"
        assert set(redis_client.hkeys(f"{key}:containers")) == before

        agent.start()  # adopts the running containers, creates none
        await wait_for(lambda: len([1 for _, f in redis_client.xrange(f"{key}:events")
                                    if f["kind"] == "recovered"]) == 2,
                       timeout=30, what="the second recovery event")
        # Give it several ticks: still exactly the same containers.
        await wait_for(lambda: redis_client.hlen(f"{key}:summary") == 2, timeout=30,
                       what="scores of the adopted containers")
        assert running_names(docker_app) == before
        assert all_owned_names(docker_app) == before
    finally:
        agent.stop()


@pytest.mark.parametrize("kill_after", [1, 2])
async def test_kill_9_mid_scale_up_then_restart_leaves_exactly_desired(
    docker_app, redis_url, redis_client, tmp_path, kill_after
):
    agent = AgentProcess(docker_app, redis_url, tmp_path, DEFAULT_CONTAINER=3, MAX_CONTAINERS=4)
    agent.start()
    try:
        # kill -9 while the initial pool is being created.
        await wait_for(lambda: len(all_owned_names(docker_app)) >= kill_after, timeout=40,
                       what=f"{kill_after} container(s) created\n{agent.tail()}", every=0.02)
        agent.signal(signal.SIGKILL)
        await trio.to_thread.run_sync(agent.wait, 10)
        agent.start()
        key = f"da:{docker_app.app_identifier}"
        await wait_for(lambda: len(running_names(docker_app)) == 3 and
                       set(redis_client.hkeys(f"{key}:containers")) == all_owned_names(docker_app),
                       timeout=40, what=f"exactly the desired pool\n{agent.tail()}")
        stable = all_owned_names(docker_app)
        # A few more ticks change nothing: no duplicates appear.
        tick_events = len(redis_client.xrange(f"{key}:events"))
        await wait_for(lambda: len(redis_client.xrange(f"{key}:events")) > tick_events + 2,
                       timeout=30, what="further ledger entries")
        assert all_owned_names(docker_app) == stable
        assert len(stable) == 3
        assert redis_client.get(f"{key}:desired") == "3"
    finally:
        agent.stop()
