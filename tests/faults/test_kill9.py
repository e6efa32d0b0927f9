"""``kill -9`` of the agent at random points of scale-up, scale-down and drain, over
many rounds of a seeded random schedule (FAULT_SEED, FAULT_ROUNDS): after each
restart the pool settles with no duplicate and no orphan, and every SUNDOWN mark
keeps its time — its drain timer runs from the mark, not from the restart."""
from __future__ import annotations

import http.client
import json
import os
import random
import statistics
import threading
import time
import urllib.request

import docker

from agent.adapters.docker_engine import APP_LABEL, OWNER_LABEL, OWNER_VALUE

from . import report
from .harness import Pool, poll

SEED = int(os.environ.get("FAULT_SEED", "20261201"))
ROUNDS = int(os.environ.get("FAULT_ROUNDS", "15"))
DRAIN_TIMEOUT = 6.0
MAX = 4
SLACK = 2.5  # seconds: ticks of 0.5 s, a removal, the machine's load


class Traffic:
    """Requests to every worker of the app, so that a SUNDOWN worker is never idle
    (it drains by DRAIN_TIMEOUT, which is the timer under test)."""

    def __init__(self, base_url: str, app: str) -> None:
        self.client = docker.DockerClient(base_url=base_url, version="auto", timeout=10)
        self.labels = [f"{OWNER_LABEL}={OWNER_VALUE}", f"{APP_LABEL}={app}"]
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _ports(self) -> list[int]:
        rows = self.client.api.containers(filters={"label": self.labels, "status": "running"})
        return [p["PublicPort"] for r in rows for p in r.get("Ports", []) if p.get("PublicPort")]

    def _run(self) -> None:
        while not self.stop.is_set():
            try:
                ports = self._ports()
            except Exception:  # noqa: BLE001 - the engine is shared; try again
                ports = []
            for _ in range(10):
                for port in ports:
                    try:
                        urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=0.5).read()
                    except (OSError, http.client.HTTPException):
                        pass  # a worker stopped mid-answer
                if self.stop.wait(0.05):
                    return

    def __enter__(self) -> Traffic:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(10)
        self.client.close()


def stored(store, app: str) -> tuple[int | None, dict[str, float], set[str]]:
    prefix = f"da:{app}:"
    desired = store.get(prefix + "desired")
    marks = {n: float(t) for n, t in store.hgetall(prefix + "sundown").items()}
    return (None if desired is None else int(desired)), marks, set(store.hkeys(prefix + "containers"))


def stopped_at(client: docker.DockerClient, name: str, since: float) -> float:
    """When the engine was first told to stop `name` after `since` (its first
    ``kill`` event): the moment an agent acted (the killed one, perhaps, just
    before it died), before the stop and the removal take their own time."""
    events = client.api.events(since=int(since) - 1, until=int(time.time()) + 1, decode=True,
                               filters={"container": name, "event": "kill"})
    times = [e["timeNano"] / 1e9 for e in events if e["timeNano"] / 1e9 >= since]
    assert times, f"no stop of {name} seen by the engine"
    return min(times)


def problems(pool: Pool, agent, store, app: str) -> list[str]:
    """Broken invariants once settled: exactly `desired` running workers, no other
    container of the app, no SUNDOWN left, Redis records = containers."""
    pool.read()
    desired, marks, records = stored(store, app)
    queue = agent.queue()
    out = []
    if desired is None or queue["desired"] != desired:
        out.append(f"desired: Redis {desired}, agent {queue['desired']}")
    if len(pool.running) != desired or set(pool.states) != pool.running:
        out.append(f"engine {pool.states} for desired {desired}")
    if marks:
        out.append(f"still draining {sorted(marks)}")
    if records != set(pool.states):
        out.append(f"Redis records {sorted(records)} != containers {sorted(pool.states)}")
    return out


def test_kill_9_at_random_points(redis_url, redis_client, docker_app, docker_client, agents):
    app = docker_app.app_identifier
    agent = agents({**docker_app.env(), "REDIS_URL": redis_url, "DEFAULT_CONTAINER": "1",
                    "MAX_CONTAINERS": str(MAX), "DRAIN_TIMEOUT": str(DRAIN_TIMEOUT)})
    pool = Pool(docker_client, app)
    rng = random.Random(SEED)
    agent.start()
    agent.wait_ready()
    rss_first = agent.rss()
    poll(lambda: not problems(pool, agent, redis_client, app), timeout=60,
         message=f"the pool settled\n{agent.tail()}")
    ops: dict[str, int] = {}
    in_flight: dict[str, int] = {}
    recoveries, restarts, timers = [], [], []
    with Traffic(docker_app.base_url, app):
        for round_ in range(ROUNDS):
            desired, _, _ = stored(redis_client, app)
            assert desired is not None
            choices = ["drain"] + (["scale_up"] if desired < MAX else []) + (
                ["scale_down"] if desired > 1 else [])
            op = rng.choice(choices)
            ops[op] = ops.get(op, 0) + 1
            if op == "drain":
                target = rng.choice(sorted(pool.read().running))
                call = ("POST", f"/containers/{target}/sundown", None)
                delay = rng.uniform(0, DRAIN_TIMEOUT)
            else:
                count = rng.randint(desired + 1, MAX) if op == "scale_up" else rng.randint(1, desired - 1)
                call = ("POST", "/scale", {"count": count})
                # a scale-up's creations take a few tenths of a second each
                delay = rng.uniform(0, 0.6 if op == "scale_up" else DRAIN_TIMEOUT)
            done = threading.Event()

            def send(call=call, done=done) -> None:
                try:
                    agent.api(call[1], call[0], body=call[2], token=agent.token, timeout=20)
                except OSError:
                    pass  # killed mid-request
                finally:
                    done.set()

            threading.Thread(target=send, daemon=True).start()
            time.sleep(delay)  # the schedule: where in the operation the kill lands
            if not done.is_set():
                in_flight[op] = in_flight.get(op, 0) + 1
            agent.kill9()
            killed = time.time()
            _, marks, _ = stored(redis_client, app)
            agent.start()
            restarts.append(agent.wait_ready())
            # It acts once it leads: its predecessor's lease lapses first (≤ LEADER_LEASE_TTL).
            poll(lambda: agent.api("/healthz", timeout=2).json().get("role") == "leader",
                 timeout=30, message=f"round {round_}: the restarted agent leading\n{agent.tail()}")
            ready = time.time()
            # SUNDOWN kept, with its time (the drain timer): unchanged in Redis
            _, after, _ = stored(redis_client, app)
            for name, when in marks.items():
                if name in after:
                    assert after[name] == when, (round_, name, when, after[name])
            _, recovery = poll(lambda: not problems(pool, agent, redis_client, app), timeout=60,
                               message=f"round {round_} ({op}, kill after {delay:.2f} s) settled\n"
                               f"{agent.tail()}")
            recoveries.append(recovery)
            removed = {e["data"]["name"] for e in agent.events("removed")
                       if e["ts"] >= killed and e["data"].get("reason") == "drain_timeout"}
            for name, when in marks.items():
                if name in removed:  # the timer ran from the mark, not from the restart
                    acted = stopped_at(docker_client, name, when)
                    bound = max(when + DRAIN_TIMEOUT, ready) + SLACK
                    assert acted <= bound, (round_, name, acted - when, ready - when)
                    timers.append(acted - when)
            assert len(pool.read().states) == len(set(pool.states))
    rss_last = agent.rss()
    report.record(
        f"kill -9 of the agent at random points ({ROUNDS} rounds, seed {SEED})",
        lost=problems(pool, agent, redis_client, app),
        recovery=f"restart {statistics.median(restarts):.1f} s (median), settled "
        f"{statistics.median(recoveries):.1f} s median / {max(recoveries):.1f} s max after it",
        rss=(rss_first, rss_last),
        detail=f"ops {json.dumps(ops, sort_keys=True)}, killed with the request in flight "
        f"{json.dumps(in_flight, sort_keys=True)}; no duplicate, no orphan after any round; SUNDOWN marks unchanged across "
        f"every restart; {len(timers)} drained by the timer, "
        f"stopped {max(timers, default=0):.1f} s after their mark at most (DRAIN_TIMEOUT "
        f"{DRAIN_TIMEOUT:g}, the agent down meanwhile)",
    )
