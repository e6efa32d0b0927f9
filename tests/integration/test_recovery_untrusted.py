"""What Redis holds is untrusted at recovery (issue 10 §1): a real Redis seeded with
hostile and corrupt values, a real Agent recovering from it. Each bad value is left
out or corrected with a warning; everything else is kept; the stored config is
rewritten without the bad keys."""
from __future__ import annotations

import json
import logging
import time

import pytest

from .agent_harness import make_agent

pytestmark = [pytest.mark.docker, pytest.mark.redis]


async def test_one_bad_key_costs_only_itself(docker_app, redis_url, redis_client, tmp_path, caplog):
    key = f"da:{docker_app.app_identifier}"
    now = time.time()
    redis_client.set(f"{key}:desired", "100000000")
    redis_client.hset(f"{key}:config", mapping={
        "DOCKER_IMAGE": json.dumps("evil:latest"),       # start-up only
        "MAX_CONTAINERS": json.dumps(10**8),              # above the ceiling
        "COOLDOWN_PERIOD": json.dumps(7.0),               # fine
        "SCALE_STEP": "{not json",                        # does not decode
    })
    redis_client.hset(f"{key}:policy", mapping={
        "desired": "4", "last_scale_up": json.dumps(now + 10 * 365 * 86400), "recommendations": "[]",
    })
    redis_client.hset(f"{key}:sundown", mapping={"w-kept": repr(now - 3), "w-future": repr(now + 1e7),
                                                  "bad name!": repr(now)})
    redis_client.hset(f"{key}:containers", mapping={"w-kept": "{broken", "w-ok": '{"name":"w-ok"}'})

    agent = make_agent(docker_app, redis_url, tmp_path, DEFAULT_CONTAINER=1, MAX_CONTAINERS=3)
    with caplog.at_level(logging.WARNING, logger="deployment_agent.runtime"):
        await agent.leadership.step(agent.store)  # as `run` does: only a leader writes back
        assert agent.lease.role == "leader"
        await agent.recover()

    assert agent.settings.cooldown_period == 7.0                    # the good key is kept
    assert agent.settings.docker_image == docker_app.image          # the start-up key is not
    assert (agent.settings.max_containers, agent.desired) == (3, 3)  # ceiling and clamp
    assert agent.pool.policy.last_scale_up is None                  # the cooldown can pass
    assert agent.pool.sundown["w-kept"] == pytest.approx(now - 3)   # a mark keeps its time
    assert now <= agent.pool.sundown["w-future"] <= time.time()     # ...a future one is now
    assert "bad name!" not in agent.pool.sundown
    warnings = [r.getMessage() for r in caplog.records]
    for needle in ("DOCKER_IMAGE dropped", "MAX_CONTAINERS dropped", "config[SCALE_STEP]",
                   "containers[w-kept]", "last_scale_up", "desired 100000000", "moved to now"):
        assert any(needle in w for w in warnings), (needle, warnings)
    # the stored config is rewritten with the keys that were kept
    assert redis_client.hgetall(f"{key}:config") == {"COOLDOWN_PERIOD": "7.0"}
