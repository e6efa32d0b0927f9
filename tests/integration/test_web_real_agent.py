"""The web interfaces over a real Agent (real engine, real Redis): compat /stats and
/ws, management calls that really create and drain containers, the dashboard in
headless Chromium, and schemathesis finding no 5xx and no schema violation."""
from __future__ import annotations

import json
from functools import partial
from typing import Any

import pytest
import trio

from agent.core.records import Category
from agent.interfaces.web import serve
from tests.web import browser
from tests.web.http import request
from tests.web.test_schemathesis import conformance_failures, writable_config
from tests.web.util import websocket

from .agent_harness import make_agent, running_names, wait_for

pytestmark = [pytest.mark.docker, pytest.mark.redis, pytest.mark.slow]

TOKEN = "real-agent-token"
COMPAT_STATS = {"id", "name", "cpu_score", "memory_score", "network_score",
                "availability_score", "overall_score", "utilization_category"}


async def _start(nursery: trio.Nursery, docker_app: Any, redis_url: str, tmp_path: Any, **extra: object):
    agent = make_agent(docker_app, redis_url, tmp_path, DEFAULT_CONTAINER=1, MAX_CONTAINERS=3,
                       AGENT_API_TOKEN=TOKEN, **extra)
    info = await nursery.start(partial(serve, agent, host="127.0.0.1", http_port=0, ws_port=0))
    await nursery.start(agent.run)
    await wait_for(lambda: len(agent.snapshot.queue) == 1 and agent.snapshot.scores[0].category
                   is not Category.INIT, timeout=30, what="the first worker scored")
    return agent, info


async def test_compat_and_management_endpoints_drive_real_containers(docker_app, redis_url, tmp_path):
    async with trio.open_nursery() as nursery:
        agent, info = await _start(nursery, docker_app, redis_url, tmp_path)
        base = info.http_url

        stats = (await request(base + "/stats")).json()
        assert len(stats) == 1 and set(stats[0]) >= COMPAT_STATS
        assert stats[0]["name"] in running_names(docker_app)

        async with websocket(info.ws_url) as ws:  # the compat port
            queue = json.loads(await ws.get_message())
            assert [q["dns_name"] for q in queue] == [stats[0]["name"]]
            assert {"dns_name", "score", "utilization_category"} <= set(queue[0])

            assert (await request(base + "/scale", "POST", json={"count": 2})).status == 401
            assert (await request(base + "/scale", "POST", json={"count": 2}, token="nope")).status == 403
            assert (await request(base + "/scale", "POST", json={"count": 9}, token=TOKEN)).status in (400, 422)
            reply = await request(base + "/scale", "POST", json={"count": 2}, token=TOKEN)
            assert reply.status == 200, reply.text
            await wait_for(lambda: len(running_names(docker_app)) == 2, timeout=20,
                           what="POST /scale creating a container")

            # The WebSocket pushes the rebuilt queue with both containers.
            async def two_in_queue() -> bool:
                return len(json.loads(await ws.get_message())) == 2
            await wait_for(two_in_queue, timeout=20, what="a queue of two over /ws", every=0)

        name = sorted(running_names(docker_app))[0]
        assert (await request(base + "/containers/nope/sundown", "POST", token=TOKEN)).status == 404
        reply = await request(base + f"/containers/{name}/sundown", "POST", token=TOKEN)
        assert reply.status == 200, reply.text
        await wait_for(lambda: name not in running_names(docker_app), timeout=30,
                       what="the drained container removed")
        assert agent.desired == 1

        reply = await request(base + "/config", "PUT", json={"MAX_CONTAINERS": 2}, token=TOKEN)
        assert reply.status == 200 and reply.json()["MAX_CONTAINERS"] == 2
        assert (await request(base + "/config", "PUT", json={"DOCKER_IMAGE": "evil"}, token=TOKEN)).status in (400, 422)
        assert agent.settings.docker_image == docker_app.image

        ready = await request(base + "/readyz")
        assert ready.status == 200 and ready.json()["checks"] == {"engine": "ok", "redis": "ok"}
        metrics = (await request(base + "/metrics")).text
        assert "desired" in metrics and "tick" in metrics
        events = (await request(base + "/events?kind=scale_check&limit=5")).json()["events"]
        assert events and all(e["kind"] == "scale_check" for e in events)
        nursery.cancel_scope.cancel()


@pytest.mark.browser
async def test_dashboard_shows_the_real_containers_and_follows_a_scale_up(docker_app, redis_url, tmp_path):
    async with trio.open_nursery() as nursery:
        agent, info = await _start(nursery, docker_app, redis_url, tmp_path)
        async with browser.chromium_page(info.http_url + "/") as page:
            async def rows() -> list[str]:
                value = await page.evaluate(
                    "JSON.stringify([...document.querySelectorAll('#queue tbody tr')]"
                    ".map(r => r.dataset.name))")
                return json.loads(value) if value else []

            first = await wait_for(rows, timeout=30, what="the dashboard listing the worker")
            assert set(first) == running_names(docker_app)
            await agent.request_scale(2)
            await wait_for(lambda: len(running_names(docker_app)) == 2, timeout=20, what="scale-up")

            async def shows_both() -> bool:
                return set(await rows()) == running_names(docker_app)
            await wait_for(shows_both, timeout=30, what="the dashboard following the new queue")
            assert not page.errors, page.errors
        nursery.cancel_scope.cancel()


async def test_schemathesis_finds_no_5xx_on_a_real_agent(docker_app, redis_url, tmp_path):
    import schemathesis
    from schemathesis import GenerationMode

    async with trio.open_nursery() as nursery:
        agent, info = await _start(nursery, docker_app, redis_url, tmp_path, TICK_INTERVAL=2)
        api = await trio.to_thread.run_sync(
            schemathesis.openapi.from_url, info.http_url + "/openapi.json")
        restore = writable_config(agent)
        failures: list[str] = []
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            failures += await trio.to_thread.run_sync(partial(
                conformance_failures, api, info.http_url, TOKEN, restore, mode, True, examples=15))
        assert not failures, "\n\n".join(failures)
        nursery.cancel_scope.cancel()
