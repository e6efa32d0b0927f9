"""Readiness and logs that tell the truth (issue 10 §1), against the real engine and
Redis: a failure that repeats every tick backs off, is one ledger entry with a
count (closed when it ends), makes /readyz say why, and is logged once when it
starts and once when it ends — never once per tick."""
from __future__ import annotations

import contextlib
import logging
import secrets

import docker.errors
import pytest
import trio

from .agent_harness import make_agent, running_names, wait_for

pytestmark = [pytest.mark.docker, pytest.mark.redis]

LOGGER = "deployment_agent.runtime"


def messages(caplog: pytest.LogCaptureFixture, needle: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if needle in r.getMessage()]


async def test_a_missing_image_backs_off_is_one_event_and_makes_readiness_false(
    docker_app, docker_client, redis_url, tmp_path, caplog
):
    repo = f"dat-missing-{secrets.token_hex(4)}"
    agent = make_agent(docker_app, redis_url, tmp_path, DOCKER_IMAGE=f"{repo}:latest",
                       DEFAULT_CONTAINER=1, MAX_CONTAINERS=2, TICK_INTERVAL=0.25)
    agent.engine.image = f"{repo}:latest"  # the harness's engine runs the demo image
    caplog.set_level(logging.INFO, logger=LOGGER)
    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(agent.run)
            await wait_for(lambda: agent.snapshot.tick >= 24, timeout=30, what="24 ticks")
            failing = agent._failures.get("create_failed")
            assert failing is not None
            # backoff: 1 + 2 + 4 + 8 s between attempts, so far fewer attempts than ticks
            assert 2 <= failing.count <= 5, failing
            ready, report = await agent.readiness()
            assert not ready
            assert report["redis"] == "ok"
            assert report["engine"].startswith("answers, but cannot create workers: ")
            assert "image not found" in report["engine"]
            opened = await agent.events(kind="create_failed")
            assert [e["data"]["state"] for e in opened] == ["open"]
            assert opened[0]["data"]["count"] == 1 and "repeats are counted" in opened[0]["data"]["message"]
            assert len(messages(caplog, "cannot create workers")) == 1

            docker_client.images.get(docker_app.image).tag(repo, "latest")  # the fix
            await wait_for(lambda: len(running_names(docker_app)) == 1, timeout=40,
                           what="the worker created once the image exists")
            await wait_for(lambda: agent._failures.get("create_failed") is None, timeout=10,
                           what="the condition closed")
            events = await agent.events(kind="create_failed")
            assert [e["data"]["state"] for e in events] == ["ended", "open"]
            assert events[0]["data"]["count"] >= failing.count
            assert events[0]["data"]["duration"] > 0
            assert (await agent.readiness())[0]
            assert len(messages(caplog, "creating workers again after")) == 1
            nursery.cancel_scope.cancel()
    finally:
        with contextlib.suppress(docker.errors.ImageNotFound):
            docker_client.images.remove(f"{repo}:latest")


async def test_an_unreachable_engine_is_logged_once(docker_app, redis_url, tmp_path, caplog):
    agent = make_agent(docker_app, redis_url, tmp_path, TICK_INTERVAL=0.2)
    agent.engine.base_url = f"unix://{tmp_path}/no-engine.sock"  # never answers
    caplog.set_level(logging.INFO, logger=LOGGER)
    async with trio.open_nursery() as nursery:
        await nursery.start(agent.run)
        await wait_for(lambda: agent.snapshot.tick >= 10, timeout=20, what="10 ticks")
        nursery.cancel_scope.cancel()
    assert len(messages(caplog, "engine unreachable")) == 1
    assert not messages(caplog, "tick ")  # no per-tick warning either
    assert [e["kind"] for e in await agent.events(kind="engine_error")] == ["engine_error"]


async def test_a_redis_outage_is_logged_once_lost_and_once_recovered(
    docker_app, redis_url, redis_server, tmp_path, caplog
):
    agent = make_agent(docker_app, redis_url, tmp_path, DEFAULT_CONTAINER=1, MAX_CONTAINERS=1,
                       TICK_INTERVAL=0.2)
    caplog.set_level(logging.INFO, logger=LOGGER)
    async with trio.open_nursery() as nursery:
        await nursery.start(agent.run)
        await wait_for(lambda: len(running_names(docker_app)) == 1, timeout=30, what="the pool")
        await redis_server.astop()
        tick = agent.snapshot.tick
        await wait_for(lambda: agent.snapshot.tick >= tick + 15, timeout=30, what="ticks in the outage")
        await redis_server.astart()
        await wait_for(lambda: messages(caplog, "Redis reachable again"), timeout=30,
                       what="the recovery logged")
        nursery.cancel_scope.cancel()
    lost = messages(caplog, "Redis unreachable")
    back = messages(caplog, "Redis reachable again")
    assert len(lost) == 1 and len(back) == 1, (lost, back)
    assert " s (" in back[0]  # the duration and the count
