"""Worker faults on the host's engine (only our own containers are touched): a worker
paused 20 s, killed, and OOM-killed in its own main process. Each time the pool
comes back to exactly the desired workers, none duplicated and none left behind."""
from __future__ import annotations

import time
import urllib.request

from . import report
from .harness import Pool, losses, poll


def settled_agent(agents, docker_app, docker_client, **env: str):
    agent = agents({**docker_app.env(), "DEFAULT_CONTAINER": "2", "MAX_CONTAINERS": "3", **env})
    agent.start()
    agent.wait_ready()
    pool = Pool(docker_client, docker_app.app_identifier)
    poll(lambda: not losses(pool, agent, desired=2), timeout=60,
         message=f"the pool settled\n{agent.tail()}")
    return agent, pool


def kinds(agent, since: float) -> list[str]:
    return [e["kind"] for e in reversed(agent.events()) if e["ts"] >= since]


def test_a_worker_paused_20_s(redis_url, docker_app, docker_client, agents):
    agent, pool = settled_agent(agents, docker_app, docker_client, REDIS_URL=redis_url)
    victim = sorted(pool.read().running)[0]
    rss_before, start = agent.rss(), time.time()
    docker_client.api.pause(victim)
    paused = time.monotonic()
    # Paused is not running: it takes no traffic, and a replacement keeps the pool whole.
    poll(lambda: victim not in {i["dns_name"] for i in agent.queue()["queue"]}
         and agent.queue()["running"] == 2, timeout=20, message="a replacement while paused")
    time.sleep(max(0.0, 20 - (time.monotonic() - paused)))  # the fault: paused for 20 s
    docker_client.api.unpause(victim)
    _, recovery = poll(lambda: not losses(pool, agent, desired=2), timeout=60,
                       message=f"the pool settled after the pause\n{agent.tail()}")
    did = kinds(agent, start)
    report.record(
        "a worker paused 20 s (docker pause)", lost=losses(pool, agent, desired=2),
        rss=(rss_before, agent.rss()),
        recovery=f"{recovery:.1f} s from unpause to exactly 2 workers",
        detail=f"replaced while paused, one of three drained after: {did.count('created')} "
        f"created, {did.count('removed')} removed",
    )


def test_a_worker_killed(redis_url, docker_app, docker_client, agents):
    agent, pool = settled_agent(agents, docker_app, docker_client, REDIS_URL=redis_url)
    victim = sorted(pool.read().running)[0]
    rss_before, start = agent.rss(), time.time()
    docker_client.api.kill(victim)
    _, recovery = poll(lambda: not losses(pool, agent, desired=2) and victim not in pool.states,
                       timeout=60, message=f"the worker replaced\n{agent.tail()}")
    did = kinds(agent, start)
    assert did.count("replaced") == 1 and did.count("created") == 1, did
    report.record(
        "a worker killed (docker kill)", lost=losses(pool, agent, desired=2),
        rss=(rss_before, agent.rss()), recovery=f"{recovery:.1f} s from the kill to 2 workers",
        detail="removed as dead, one replacement created",
    )


def test_a_worker_oom_killed_in_its_main_process(redis_url, docker_app, docker_client, hog_image,
                                                 agents):
    agent, pool = settled_agent(agents, docker_app, docker_client, REDIS_URL=redis_url,
                                DOCKER_IMAGE=hog_image, CONTAINER_MEMORY="24m")
    victim = sorted(pool.read().running)[0]
    info = docker_client.api.inspect_container(victim)
    victim_id = info["Id"]
    port = info["NetworkSettings"]["Ports"]["8080/tcp"][0]["HostPort"]
    rss_before, start = agent.rss(), time.time()

    def grown() -> bool:
        try:  # one connection at a time: retry until the main process took the request
            urllib.request.urlopen(f"http://127.0.0.1:{port}/grow", timeout=2).read()
        except OSError:
            pass
        return victim not in pool.read().running

    poll(grown, timeout=30, message="the worker's main process grown and killed")
    _, recovery = poll(lambda: not losses(pool, agent, desired=2) and victim not in pool.states,
                       timeout=60, message=f"the worker replaced\n{agent.tail()}")
    events = docker_client.api.events(since=int(start) - 1, until=int(time.time()) + 1, decode=True,
                                      filters={"container": victim_id, "event": "oom"})
    assert list(events), "the engine reported no OOM kill of the worker"
    did = kinds(agent, start)
    assert did.count("replaced") == 1 and did.count("created") == 1, did
    report.record(
        "a worker OOM-killed in its own main process (CONTAINER_MEMORY=24m)",
        lost=losses(pool, agent, desired=2), rss=(rss_before, agent.rss()),
        recovery=f"{recovery:.1f} s from the OOM kill to 2 workers",
        detail="the engine's oom event seen; removed as dead, one replacement created",
    )
