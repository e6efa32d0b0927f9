"""With the default settings, the demo pool scales up under a real HTTP load that
saturates it (issue 12 §2): what HAProxy measures reaches the scores.

No weight and no threshold is tuned: the agent runs with the defaults (TICK_INTERVAL
1 s, SCALE_CHECK_PERIOD 10 s, compat weights and thresholds, TCP probe); only the
pool's size is small for this 2-core machine, and the workers are bounded
(CONTAINER_CPUS), without which scaling out on one host adds no capacity. The load
is many short ``/cgi-bin/work?ms=8`` requests, open loop, through the balancer:
first a light one (the pool learns how fast an unloaded worker answers), then
twice what two workers can serve.
"""
from __future__ import annotations

import json

import pytest
import trio

from agent.adapters.redis_server import free_loopback_port
from agent.core.records import Category

from .agent_harness import make_agent, running_names, wait_for
from .http_load import OpenLoop

pytestmark = [pytest.mark.docker, pytest.mark.redis, pytest.mark.slow]

WORK = "/cgi-bin/work?ms=8"
CPUS = 0.25
# ~11 ms of CPU per request (8 of work, the CGI's fork and exec): 0.25 core serves
# about 22 per second
CAPACITY_PER_WORKER = 22.0


async def test_default_settings_scale_the_pool_up_under_a_saturating_http_load(
    docker_app, redis_url, redis_client, haproxy_farm
):
    agent = make_agent(docker_app, redis_url, haproxy_farm.directory(), fast=False,
                       DEFAULT_CONTAINER=2, MAX_CONTAINERS=4, CONTAINER_CPUS=CPUS,
                       BALANCER="haproxy", BALANCER_PORT=free_loopback_port())
    settings = agent.settings
    assert (settings.high_load_threshold, settings.cpu_weight, settings.scale_check_period,
            settings.tick_interval, settings.health_path) == (55.0, 0.35, 10.0, 1.0, None)
    port = settings.balancer_port
    async with trio.open_nursery() as nursery:
        await nursery.start(agent.run)
        await wait_for(lambda: len(running_names(docker_app)) == 2, timeout=40,
                       what="the initial pool")
        await wait_for(lambda: len(agent.snapshot.scores) == 2 and all(
            s.category is not Category.INIT for s in agent.snapshot.scores),
            timeout=30, what="first complete samples")
        # the limit is the engine's, as /containers/{name} and the dashboard show it
        from agent.interfaces.web.views import container_json

        for name, info in agent.snapshot.containers.items():
            assert info.cpus == CPUS and info.memory is None
            assert container_json(agent.snapshot, name)["cpus"] == CPUS
        light = OpenLoop(port, 0.25 * 2 * CAPACITY_PER_WORKER, WORK, duration=10)
        await light.run()
        assert light.failed == 0, light.statuses
        assert agent.desired == 2  # a light load is no reason to scale

        heavy = OpenLoop(port, 2.0 * 2 * CAPACITY_PER_WORKER, WORK, max_in_flight=600,
                         timeout=60)
        nursery.start_soon(heavy.run)
        await wait_for(lambda: agent.desired >= 3, timeout=75,
                       what="a scale-up under the saturating load")
        await wait_for(lambda: len(running_names(docker_app)) >= 3, timeout=30,
                       what="the third worker running")
        heavy.stop()
        nursery.cancel_scope.cancel()
    rows = redis_client.xrange(f"da:{docker_app.app_identifier}:events")
    checks = [json.loads(f["data"]) for _, f in rows if f["kind"] == "scale_check"]
    ups = [c for c in checks if c["action"] == "scale_up"]
    assert ups and ups[0]["reason"] in ("avg_below_high", "critical_container"), checks[-3:]
    assert ups[0]["inputs"]["avg"] < 55.0
