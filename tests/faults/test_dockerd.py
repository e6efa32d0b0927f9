"""dockerd faults, against a private engine (never the host's, which others use):
restarted (it stops the workers), and killed (unreachable while the workers live
on). The agent runs in the engine's network namespace, where the workers publish
their ports, with its embedded Redis; the test reads it over its HTTP API."""
from __future__ import annotations

import secrets
import time

from . import report
from .harness import Pool, losses, poll

HTTP_PORT = 12550  # inside the engine's own namespace: nothing else listens there


def start_agent(lab, agents, name: str):
    node = lab.node(1)
    app = f"dat-dockerd-{secrets.token_hex(3)}"
    agent = agents({"DOCKER_HOST": node.socket, "DOCKER_IMAGE": lab.image_id, "TARGET_PORT": "8080",
                    "APP_IDENTIFIER": app, "DEFAULT_CONTAINER": "2", "MAX_CONTAINERS": "3",
                    "HOST_PORT_WS_DEPLOYMENT_AGENT": str(HTTP_PORT + 1)},
                   name, netns=node.netns, host=node.ip, http_port=HTTP_PORT)
    agent.start()
    agent.wait_ready()
    pool = Pool(node.client, app)
    poll(lambda: not losses(pool, agent, desired=2), timeout=60,
         message=f"the pool settled\n{agent.tail()}")
    return node, agent, pool


def test_dockerd_restarted_workers_killed(private_engine, agents):
    node, agent, pool = start_agent(private_engine, agents, "restart")
    before = set(pool.read().states)
    rss_before = agent.rss()
    stop_s = node.stop()  # SIGTERM: dockerd stops every container on its way out
    poll(lambda: agent.lines("engine unreachable, actuation"), timeout=10, message="the loss logged")
    tick = agent.queue()["tick"]
    poll(lambda: agent.queue()["tick"] >= tick + 6, timeout=10, message="ticks while it is down")
    assert agent.api("/healthz").status == 200 and agent.api("/readyz").status == 503
    start_s = node.start()
    _, recovery = poll(lambda: not losses(pool, agent, desired=2), timeout=60,
                       message=f"the pool back\n{agent.tail()}")
    after = set(pool.read().states)
    assert not before & after  # the killed workers were removed and replaced, none kept
    poll(lambda: agent.lines("engine reachable again after"), timeout=10,
         message=f"the recovery logged\n{agent.tail()}")
    assert len(agent.lines("engine unreachable, actuation paused")) == 1, agent.tail()
    assert len(agent.lines("engine reachable again after")) == 1, agent.tail()
    # Once the engine is known unreachable, the workers' removals and creations
    # fail for that one reason: no line of their own. (Before it, a dockerd on its
    # way down may refuse a replacement with an error of its own; that is told.)
    after_loss = agent.output().split("engine unreachable, actuation paused", 1)[1]
    assert "cannot remove" not in after_loss and "cannot create" not in after_loss, agent.tail()
    assert [e["kind"] for e in agent.events("engine_error")] == ["engine_error"]
    assert len(agent.events("engine_recovered")) == 1
    report.record(
        "dockerd restarted (SIGTERM; it stops the workers)",
        lost=losses(pool, agent, desired=2), rss=(rss_before, agent.rss()),
        recovery=f"{recovery:.1f} s from dockerd answering to the pool full again",
        detail=f"dockerd stop {stop_s:.1f} s, start {start_s:.1f} s; both workers replaced; "
        "stderr: one line lost, one recovered",
    )


def test_dockerd_unreachable_workers_alive(private_engine, agents):
    node, agent, pool = start_agent(private_engine, agents, "kill")
    before = set(pool.read().states)
    rss_before = agent.rss()
    node.kill()  # SIGKILL: containerd dies with it, the shims and the workers live on
    down = time.monotonic()
    poll(lambda: agent.lines("engine unreachable, actuation"), timeout=10, message="the loss logged")
    tick = agent.queue()["tick"]
    poll(lambda: agent.queue()["tick"] >= tick + 10, timeout=15, message="ticks while it is away")
    routed = {i["dns_name"] for i in agent.queue()["queue"] if i["weight"] > 0}
    assert routed == before, "the live workers are still routed to while the engine is away"
    assert agent.queue()["desired"] == 2
    away = time.monotonic() - down
    start_s = node.start()
    _, recovery = poll(lambda: not losses(pool, agent, desired=2), timeout=60,
                       message=f"the pool back\n{agent.tail()}")
    kept = before & set(pool.read().states)
    poll(lambda: agent.lines("engine reachable again after"), timeout=10,
         message=f"the recovery logged\n{agent.tail()}")
    assert len(agent.lines("engine unreachable, actuation paused")) == 1, agent.tail()
    assert len(agent.lines("engine reachable again after")) == 1, agent.tail()
    assert len(agent.events("engine_recovered")) == 1
    report.record(
        "dockerd killed (SIGKILL; workers alive, engine unreachable)",
        lost=losses(pool, agent, desired=2), rss=(rss_before, agent.rss()),
        recovery=f"{recovery:.1f} s from dockerd answering to the pool settled",
        detail=f"engine away {away:.1f} s: actuation paused, both workers kept in the queue; "
        f"dockerd start {start_s:.1f} s; {len(kept)} of 2 workers survived the restart",
    )
