"""Redis stopped 30 s (the issue's figure), then restarted empty: the loop goes on,
the outage is logged once lost and once recovered, and the agent writes its
complete state back — nothing is lost but the ledger Redis itself dropped."""
from __future__ import annotations

import time

from . import report
from .harness import Pool, losses, poll


def test_redis_down_30_s_then_back_empty(private_redis, docker_app, docker_client, agents):
    agent = agents({**docker_app.env(), "REDIS_URL": private_redis.url,
                    "DEFAULT_CONTAINER": "2", "MAX_CONTAINERS": "3"})
    agent.start()
    agent.wait_ready()
    store = private_redis.client()
    pool = Pool(docker_client, docker_app.app_identifier)
    poll(lambda: not losses(pool, agent, desired=2, store=store), timeout=60,
         message=f"the pool settled\n{agent.tail()}")
    assert agent.api("/config", "PUT", body={"DRAIN_TIMEOUT": 7}, token=agent.token).status == 200
    rss_before = agent.rss()
    names_before = set(pool.read().states)

    private_redis.stop()
    down = time.monotonic()
    tick = agent.queue()["tick"]
    poll(lambda: agent.api("/readyz").status == 503, timeout=10, message="readiness false")
    time.sleep(30 - (time.monotonic() - down))  # the fault itself: Redis away for 30 s
    assert agent.queue()["tick"] >= tick + 40, "the loop kept ticking (0.5 s ticks)"
    assert agent.api("/healthz").status == 200
    private_redis.wipe()
    private_redis.start()

    _, recovery = poll(lambda: not losses(pool, agent, desired=2, store=store,
                                          config={"DRAIN_TIMEOUT": 7}),
                       timeout=60, message=f"the state written back\n{agent.tail()}")
    assert set(pool.read().states) == names_before  # no worker replaced or duplicated
    poll(lambda: agent.api("/readyz").status == 200, timeout=20, message="ready again")
    outage = [e for e in agent.events("store_outage")]
    assert len(outage) == 1 and 29 <= outage[0]["data"]["duration"] <= 60, outage
    poll(lambda: agent.lines("Redis reachable again"), timeout=10, message="the recovery logged")
    lost_lines, back_lines = agent.lines("Redis unreachable"), agent.lines("Redis reachable again")
    assert len(lost_lines) == 1 and len(back_lines) == 1, agent.tail()
    rss_after = agent.rss()
    report.record(
        "Redis stopped 30 s, restarted empty",
        lost=losses(pool, agent, desired=2, store=store),
        recovery=f"{recovery:.1f} s after Redis came back (reconnect backoff ≤ 10 s)",
        rss=(rss_before, rss_after),
        detail=f"outage {outage[0]['data']['duration']:.1f} s, "
        f"{outage[0]['data']['failed_attempts']} failed attempts; stderr: "
        f"{lost_lines[0].split(': ', 1)[-1][:60]}… / {back_lines[0].split(': ', 1)[-1]}; "
        "desired, records and the config override written back in full (the ledger before "
        "the outage went with Redis' data)",
    )
    store.close()
