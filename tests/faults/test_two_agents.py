"""Two agents, one pool (issue 10 §1, issue 9 §3): both on the same Redis and the
same engine with the same APP_IDENTIFIER. Round after round the leader is
``kill -9``-ed in the middle of a scale-up or a scale-down it was asked for; the
follower takes over, finishes it, and the killed agent comes back as a follower.

Counted in the engine's own event stream (not in what the agents say): each
round creates exactly the containers the new count needs, plus one replacement
for each container the killed leader left half-made (created, never started),
and removes exactly those in excess — no double scaling, none missed; no
container lost (every one running is routed and recorded), none orphaned. The
follower answers a change with 409 naming the leader's URL, and its queue (fed
by the leader's tick views) shows the same pool."""
from __future__ import annotations

import json
import os
import random
import statistics
import threading
import time
from typing import Any

import docker

from agent.adapters.docker_engine import APP_LABEL, OWNER_LABEL, OWNER_VALUE

from . import report
from .harness import AgentRun, Pool, losses, poll, settle

SEED = int(os.environ.get("FAULT_SEED", "20261201"))
ROUNDS = int(os.environ.get("FAULT_TWO_AGENT_ROUNDS", "6"))
MAX = 5
TTL = 4.0  # LEADER_LEASE_TTL of the suite (harness.FAST)
TICK = 0.5
ACTING = {"created", "replaced", "removed", "scale_check", "manual_scale", "drain", "reconcile"}


def role(agent: AgentRun) -> str | None:
    return agent.api("/healthz", timeout=2).json().get("role")


def engine_events(client: docker.DockerClient, app: str, since: float, until: float,
                  action: str) -> list[str]:
    """Names of the app's containers the engine reports `action` for (create,
    start, destroy) between `since` and `until` (epoch seconds)."""
    events = client.api.events(
        since=int(since) - 1, until=int(until) + 1, decode=True,
        filters={"type": "container", "event": action,
                 "label": [f"{OWNER_LABEL}={OWNER_VALUE}", f"{APP_LABEL}={app}"]})
    return [e["Actor"]["Attributes"]["name"] for e in events if e["timeNano"] / 1e9 >= since]


def ledger(store: Any, app: str, after: str) -> list[dict[str, Any]]:
    """The pool's ledger after the entry id `after` (exclusive), oldest first."""
    rows = store.xrange(f"da:{app}:events", min="-" if after == "-" else "(" + after, max="+")
    return [{"id": i, "kind": f["kind"], "ts": float(f["ts"]), "data": json.loads(f["data"])}
            for i, f in rows]


def last_id(store: Any, app: str) -> str:
    rows = store.xrevrange(f"da:{app}:events", count=1)
    return rows[0][0] if rows else "-"


def scale_in_background(agent: AgentRun, count: int) -> threading.Event:
    done = threading.Event()

    def send() -> None:
        try:
            agent.api("/scale", "POST", body={"count": count}, token=agent.token, timeout=20)
        except OSError:
            pass  # killed mid-request
        finally:
            done.set()

    threading.Thread(target=send, daemon=True).start()
    return done


def first_action(pool: Pool, store: Any, app: str, before: set[str], up: bool) -> bool:
    if up:
        return bool(pool.read().running - before)
    return bool(store.hlen(f"da:{app}:sundown"))


def test_two_agents_one_pool_leader_killed_mid_scale(
    redis_url, redis_client, docker_app, docker_client, agents
):
    app = docker_app.app_identifier
    env = {**docker_app.env(), "REDIS_URL": redis_url, "DEFAULT_CONTAINER": "1",
           "MAX_CONTAINERS": str(MAX)}
    one, two = agents(env, "agent-a"), agents(env, "agent-b")
    pool = Pool(docker_client, app)
    rng = random.Random(SEED)
    one.start()
    one.wait_ready()
    poll(lambda: role(one) == "leader", timeout=30, message=f"A leading\n{one.tail()}")
    two.start()
    two.wait_ready()
    assert role(two) == "follower", two.tail()
    settle(pool, one, desired=1, store=redis_client)
    rss_first = (one.rss(), two.rss())

    leader, follower = one, two
    desired = 1
    takeovers, settles, half_made, in_flight, finished, successor = [], [], 0, 0, 0, 0
    ops: dict[str, int] = {}
    for round_ in range(ROUNDS):
        # at least two creations, so that a kill after the first leaves work undone
        up = desired + 2 <= MAX and (desired == 1 or rng.random() < 0.5)
        target = rng.randint(desired + 2, MAX) if up else rng.randint(1, desired - 1)
        op = "scale_up" if up else "scale_down"
        ops[op] = ops.get(op, 0) + 1
        before = set(pool.read().states)
        old_id, new_id = (a.api("/healthz").json()["agent_id"] for a in (leader, follower))
        mark, start = last_id(redis_client, app), time.time()
        done = scale_in_background(leader, target)
        # The kill lands in the middle: after the first container of a scale-up has
        # started, or the first worker of a scale-down is marked SUNDOWN (drained, it
        # is removed a tick later), plus a random part of a tick.
        poll(lambda: first_action(pool, redis_client, app, before, up), timeout=20,
             interval=0.02, message=f"round {round_}: the leader acting\n{leader.tail()}")
        time.sleep(rng.uniform(0, TICK / 2))
        in_flight += not done.is_set()
        leader.kill9()
        killed = time.time()

        poll(lambda: role(follower) == "leader", timeout=TTL + 10 * TICK + 10,
             message=f"round {round_}: the follower leading\n{follower.tail()}")
        # Was the scale written ahead before the kill? Then the new leader finishes
        # it; if not, the old count stands: either is right, never something else.
        stored = int(redis_client.get(f"da:{app}:desired"))
        assert stored in (desired, target), (round_, desired, target, stored)
        settle(pool, follower, desired=stored, store=redis_client, timeout=60,
               what=f"round {round_} ({op} {desired}→{target}) settled")
        settles.append(time.time() - killed)
        leader.start()  # back, as a follower
        leader.wait_ready()
        poll(lambda: role(leader) == "follower", timeout=10,
             message=f"round {round_}: the restarted agent following\n{leader.tail()}")
        leader, follower = follower, leader
        events = ledger(redis_client, app, mark)
        acquired = [e for e in events if e["kind"] == "lease_acquired"
                    and e["data"].get("agent") == new_id]
        assert acquired, (round_, [e["kind"] for e in events])
        takeovers.append(acquired[0]["ts"] - killed)
        assert takeovers[-1] <= TTL + 2 * TICK, (round_, takeovers[-1])

        # The engine's count: exactly what the change needs, nothing twice.
        now = pool.read().states
        created = engine_events(docker_client, app, start, time.time(), "create")
        started = set(engine_events(docker_client, app, start, time.time(), "start"))
        destroyed = engine_events(docker_client, app, start, time.time(), "destroy")
        unstarted = set(created) - started  # half made by the killed leader
        half_made += len(unstarted)
        assert len(set(created)) == len(created) and len(set(destroyed)) == len(destroyed)
        assert set(now) == (before | set(created)) - set(destroyed), (
            round_, before, created, destroyed, now)
        assert unstarted <= set(destroyed), (round_, unstarted, destroyed)  # none orphaned
        assert len(started) == max(0, stored - desired), (round_, op, desired, stored, started)
        excess = set(destroyed) - unstarted
        assert excess <= before and len(excess) == max(0, desired - stored), (round_, destroyed)
        # Only a leader acted: the killed one until its death, then its successor.
        for e in events:
            if e["kind"] in ACTING:
                who = e["data"].get("agent")
                assert who == new_id and e["ts"] >= acquired[0]["ts"] or (
                    who == old_id and e["ts"] <= killed), (round_, e, old_id, new_id)
        finished += stored == target
        successor += len([e for e in events if e["kind"] in ("created", "removed")
                          and e["data"].get("agent") == new_id])
        # The follower: 409 naming the leader, and the leader's pool in its queue.
        refused = follower.api("/scale", "POST", body={"count": stored}, token=follower.token)
        assert refused.status == 409, (refused.status, refused.text)
        assert refused.json()["leader"] == f"http://127.0.0.1:{leader.http_port}", refused.json()
        poll(lambda: not losses(pool, follower, desired=stored), timeout=10,
             message=f"round {round_}: the follower's queue\n{follower.tail()}")
        desired = stored

    assert successor, "no round left the successor anything to do: the kills missed"
    lost = losses(pool, leader, desired=desired, store=redis_client)
    lost += [f"follower: {p}" for p in losses(pool, follower, desired=desired)]
    rss_last = (leader.rss(), follower.rss())
    report.record(
        f"two agents, one pool: the leader killed mid-scale ({ROUNDS} rounds, seed {SEED})",
        lost=lost,
        recovery=f"takeover {statistics.median(takeovers):.1f} s median / "
        f"{max(takeovers):.1f} s max after the kill (LEADER_LEASE_TTL {TTL:g}, tick {TICK:g}); "
        f"pool complete {statistics.median(settles):.1f} s median / {max(settles):.1f} s max "
        f"after the kill",
        rss=(sum(rss_first) // 2, sum(rss_last) // 2),
        detail=f"ops {ops}, {in_flight} killed with the request in flight, {finished} "
        f"written ahead before the kill and finished by the successor ({successor} of its "
        f"creations/removals); engine events "
        f"counted: each round created exactly the new count's containers (+1 for each of "
        f"{half_made} left created-not-started by the killed leader) and removed exactly the "
        f"excess: no double scaling, none missed, no container lost or orphaned; the "
        f"follower answered 409 naming the leader and showed its pool (RSS is the mean of "
        f"the two agents)",
    )
