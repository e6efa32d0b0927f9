"""The agent with its load balancer, end to end (issue 12 §6): real haproxy, real
workers, real Redis, continuous requests through the balancer's port, every one
counted.

Each test's DATA_DIR is a short directory of the `haproxy_farm`, which stops the
embedded haproxy there at teardown (it outlives the agent by design).
"""
from __future__ import annotations

import json
import os
import signal
import urllib.error
import urllib.request

import pytest
import trio

from agent.adapters.docker_engine import container_name_prefix
from agent.adapters.haproxy import HAProxyBalancer
from agent.adapters.haproxy_process import process_runs_config
from agent.adapters.redis_server import free_loopback_port
from agent.core.haproxy_text import parse_servers_state
from tests.fixtures.haproxy import haproxy_pids

from .agent_harness import AgentProcess, all_owned_names, make_agent, running_names, wait_for
from .http_load import RequestLoop, http_get

pytestmark = [pytest.mark.docker, pytest.mark.redis, pytest.mark.slow]


def events(redis_client, app_identifier: str) -> list[dict]:
    rows = redis_client.xrange(f"da:{app_identifier}:events")
    return [{"kind": f["kind"], **json.loads(f["data"])} for _, f in rows]


def kinds(redis_client, app_identifier: str) -> list[str]:
    return [e["kind"] for e in events(redis_client, app_identifier)]


def balancer_of(agent) -> HAProxyBalancer:
    assert agent.balancing is not None
    balancer = agent.balancing.balancer
    assert isinstance(balancer, HAProxyBalancer)
    return balancer


async def backend(balancer: HAProxyBalancer) -> dict[str, int]:
    """Every server of the backend (ours or not), name -> weight, read from HAProxy."""
    answer = (await balancer.api.run([f"show servers state {balancer.backend}"]))[0]
    return {s.name: s.user_weight for s in parse_servers_state(answer)}


def reader(balancer: HAProxyBalancer) -> HAProxyBalancer:
    """A second client of the same HAProxy that never resets its counters (the
    agent's embedded adapter resets them after each of its own readings)."""
    return HAProxyBalancer.external(str(balancer.api), balancer.backend,
                                    prefix=balancer.naming.prefix)


async def sent(balancer: HAProxyBalancer) -> dict[str, int]:
    """Requests HAProxy sent each server (since the agent's last reading)."""
    observation = await reader(balancer).observe()
    assert observation.ok, observation.error
    return {name: s.sessions_total + s.sessions for name, s in observation.stats.items()}


def embedded(haproxy_farm, **extra):
    """Settings of an agent with its embedded balancer on a free port."""
    return {"BALANCER": "haproxy", "BALANCER_PORT": free_loopback_port(),
            "HEALTH_PATH": "/cgi-bin/health", **extra}


# Thresholds the autoscaler never reaches: the test alone changes the pool.
INERT = {"CRITICAL_LOAD_THRESHOLD": 0, "HIGH_LOAD_THRESHOLD": 1, "LOW_LOAD_THRESHOLD": 100}


def http(port: int, method: str, path: str, body: object = None,
         token: str | None = None) -> tuple[int, dict]:
    """A request to the agent's API (blocking; run it in a thread)."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=data, method=method)
    request.add_header("Content-Type", "application/json")
    if token is not None:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


async def test_scale_up_adds_a_server_that_takes_traffic_and_scale_in_drains_it_without_a_failure(
    docker_app, redis_url, redis_client, haproxy_farm
):
    data_dir = haproxy_farm.directory()
    agent = make_agent(docker_app, redis_url, data_dir, DEFAULT_CONTAINER=2, MAX_CONTAINERS=3,
                       DRAIN_TIMEOUT=60, **INERT, **embedded(haproxy_farm))
    port = agent.settings.balancer_port
    balancer = balancer_of(agent)
    async with trio.open_nursery() as nursery:
        await nursery.start(agent.run)
        await wait_for(lambda: len(running_names(docker_app)) == 2, timeout=30,
                       what="the initial pool")
        await wait_for(lambda: _servers_are(balancer, running_names(docker_app)), timeout=20,
                       what="a server per worker")
        # short GETs, and a client of one-second POSTs (never retried by HAProxy:
        # a worker removed under one would fail it)
        loop = RequestLoop(port, concurrency=3, path="/cgi-bin/work?ms=2")
        slow = RequestLoop(port, concurrency=1, path="/cgi-bin/burn?seconds=1", method="POST")
        nursery.start_soon(loop.run)
        nursery.start_soon(slow.run)
        await wait_for(lambda: loop.total >= 50, timeout=30, what="traffic flowing")

        before = running_names(docker_app)
        await agent.request_scale(3)  # the plan's creation and its sync, at once
        (new,) = running_names(docker_app) - before
        assert new in await backend(balancer)  # a server within the request's own step
        await wait_for(lambda: _served_some(balancer, new), timeout=30,
                       what="the new server taking requests")

        await agent.request_scale(2)  # scale-in: one goes SUNDOWN, drains, is removed
        sundown = set(agent.pool.sundown)
        assert len(sundown) == 1
        (gone,) = sundown
        await wait_for(lambda: gone not in all_owned_names(docker_app), timeout=60,
                       what="the drained container removed")
        await wait_for(lambda: _servers_are(balancer, running_names(docker_app)), timeout=20,
                       what="its server deleted")
        mark = loop.total
        await wait_for(lambda: loop.total >= mark + 30, timeout=30, what="traffic after it")
        loop.stop()
        slow.stop()
        await wait_for(lambda: slow.total >= 1, timeout=10, what="a slow request answered")
        nursery.cancel_scope.cancel()
    assert (loop.failed, slow.failed) == (0, 0), (loop.statuses, slow.statuses)
    log = events(redis_client, docker_app.app_identifier)
    (removed,) = [e for e in log if e["kind"] == "removed"]
    assert (removed["name"], removed["reason"]) == (gone, "drained")  # not the timeout
    assert [e["kind"] for e in log].count("balancer_started") == 1


async def _servers_are(balancer: HAProxyBalancer, names: set[str]) -> bool:
    return set(await backend(balancer)) == names


async def _served_some(balancer: HAProxyBalancer, name: str) -> bool:
    return (await sent(balancer)).get(name, 0) > 0


async def test_kill_9_of_the_agent_and_a_restart_resync_the_backend_without_dropping_a_request(
    docker_app, redis_url, redis_client, haproxy_farm
):
    data_dir = haproxy_farm.directory()
    settings = embedded(haproxy_farm, DEFAULT_CONTAINER=2, MAX_CONTAINERS=3, **INERT)
    port = settings["BALANCER_PORT"]
    agent = AgentProcess(docker_app, redis_url, data_dir, own_group=True, **settings)
    agent.start()
    loop = RequestLoop(port, concurrency=3, path="/cgi-bin/work?ms=2")
    try:
        await wait_for(lambda: _synced(agent, 2), timeout=40,
                       what=f"the pool in the backend\n{agent.tail()}")
        pool = running_names(docker_app)
        pid = int((data_dir / "haproxy" / "haproxy.pid").read_text().split()[0])
        await _tokenless_client_changes_nothing(agent)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(loop.run)
            await wait_for(lambda: loop.total >= 50, timeout=30, what="traffic flowing")
            agent.kill_group()  # the agent and everything in its process group
            mark = loop.total
            await wait_for(lambda: loop.total >= mark + 50, timeout=30,
                           what="traffic while the agent is gone")
            agent.start()  # adopts the workers and the balancer
            await wait_for(lambda: "balancer_adopted" in kinds(redis_client,
                                                               docker_app.app_identifier),
                           timeout=40, what=f"the balancer adopted\n{agent.tail()}")
            await wait_for(lambda: _synced(agent, 2), timeout=30,
                           what=f"the restarted agent's first syncs\n{agent.tail()}")
            mark = loop.total
            await wait_for(lambda: loop.total >= mark + 50, timeout=30, what="traffic after")
            loop.stop()
        assert loop.failed == 0, loop.statuses
        assert running_names(docker_app) == pool
        config = data_dir / "haproxy" / "haproxy.cfg"
        assert haproxy_pids(config) == [pid]  # the same haproxy, never restarted
        balancer = HAProxyBalancer.embedded(data_dir / "haproxy",
                                            prefix=container_name_prefix(docker_app.app_identifier),
                                            port=port, health_path="/cgi-bin/health")
        assert set(await backend(balancer)) == pool  # no duplicate, none lost
    finally:
        agent.stop()


async def _synced(agent: AgentProcess, servers: int) -> bool:
    """The agent answers, has synced its balancer, and has `servers` servers."""
    try:
        status, state = await trio.to_thread.run_sync(http, agent.http_port, "GET", "/balancer")
    except OSError:
        return False
    sync = state.get("last_sync") or {}
    return status == 200 and sync.get("ok") is True and len(state["servers"]) == servers


async def _tokenless_client_changes_nothing(agent: AgentProcess) -> None:
    """No request without the token changes the pool, hence the balancer; none
    with it changes the balancer's settings; the balancer has no write route."""
    port = agent.http_port
    _, before = await trio.to_thread.run_sync(http, port, "GET", "/balancer")
    attempts = [("POST", "/scale", {"count": 3}), ("PUT", "/config", {"BALANCER_PORT": 9000}),
                ("PUT", "/config", {"MAX_CONTAINERS": 2}),
                ("POST", f"/containers/{sorted(before['servers'])[0]}/sundown", None)]
    for method, path, body in attempts:
        status, reply = await trio.to_thread.run_sync(http, port, method, path, body)
        assert status == 401 and reply["error"], (method, path, status, reply)
    status, reply = await trio.to_thread.run_sync(http, port, "PUT", "/config",
                                                  {"BALANCER_PORT": 9000}, "test-token")
    assert 400 <= status < 500 and "run time" in reply["detail"], reply
    for method in ("POST", "PUT", "DELETE"):
        status, _ = await trio.to_thread.run_sync(http, port, method, "/balancer", {})
        assert status == 405
    _, after = await trio.to_thread.run_sync(http, port, "GET", "/balancer")
    assert after["servers"] == before["servers"]
    assert after["frontend"] == before["frontend"]


async def test_killed_embedded_haproxy_is_restarted_resynced_and_reported_once(
    docker_app, redis_url, redis_client, haproxy_farm
):
    data_dir = haproxy_farm.directory()
    agent = make_agent(docker_app, redis_url, data_dir, DEFAULT_CONTAINER=2, MAX_CONTAINERS=3,
                       **embedded(haproxy_farm))
    balancer = balancer_of(agent)
    assert balancer.process is not None
    async with trio.open_nursery() as nursery:
        await nursery.start(agent.run)
        await wait_for(lambda: len(running_names(docker_app)) == 2, timeout=30,
                       what="the initial pool")
        await wait_for(lambda: _servers_are(balancer, running_names(docker_app)), timeout=20,
                       what="a server per worker")
        first = balancer.process.pid
        assert first is not None
        os.kill(first, signal.SIGKILL)
        await wait_for(lambda: balancer.process.pid not in (None, first), timeout=20,
                       what="a new haproxy")
        haproxy_farm.note(balancer.process.pid, balancer.process.config_path)
        await wait_for(lambda: _servers_are(balancer, running_names(docker_app)), timeout=20,
                       what="the backend rebuilt")
        assert [await http_get(agent.settings.balancer_port) for _ in range(10)] == [200] * 10
        tick = agent.snapshot.tick
        await wait_for(lambda: agent.snapshot.tick >= tick + 3, timeout=20, what="more ticks")
        nursery.cancel_scope.cancel()
    assert not process_runs_config(first, balancer.process.config_path)
    log = kinds(redis_client, docker_app.app_identifier)
    assert log.count("balancer_restarted") == 1  # once, not every tick
    # a read at the start of a tick may have found it gone before the sync restarted it
    assert log.count("balancer_unreachable") == log.count("balancer_recovered") <= 1


EXTERNAL = """\
global
    stats socket 127.0.0.1:{cli} level admin
    pidfile {{dir}}/haproxy.pid

defaults
    mode http
    timeout connect 2s
    timeout client 30s
    timeout server 30s
    option redispatch 1
    retries 3

frontend web-in
    bind 127.0.0.1:{port}
    default_backend web

backend web
    balance roundrobin
    option httpchk GET /cgi-bin/health
    server legacy 127.0.0.1:{legacy} weight 7 check
"""


async def test_external_haproxy_the_users_server_untouched_its_death_reported_and_recovered(
    docker_app, redis_url, redis_client, haproxy_farm
):
    foreign = docker_app.run_foreign()
    legacy = int(docker_app.client.api.port(foreign, 8080)[0]["HostPort"])
    cli, port = free_loopback_port(), free_loopback_port()
    proxy = haproxy_farm.external(EXTERNAL.format(cli=cli, port=port, legacy=legacy))
    agent = make_agent(docker_app, redis_url, haproxy_farm.directory(), DEFAULT_CONTAINER=2,
                       MAX_CONTAINERS=3, BALANCER="haproxy", HAPROXY_SOCKET=f"127.0.0.1:{cli}",
                       HAPROXY_BACKEND="web", **INERT)
    balancer = balancer_of(agent)
    before = await _legacy(balancer)
    async with trio.open_nursery() as nursery:
        await nursery.start(agent.run)
        await wait_for(lambda: len(running_names(docker_app)) == 2, timeout=30,
                       what="the initial pool")
        await wait_for(lambda: _servers_are(balancer, running_names(docker_app) | {"legacy"}),
                       timeout=20, what="our servers beside the user's")
        assert [await http_get(port) for _ in range(20)] == [200] * 20
        assert await _legacy(balancer) == before  # address, state, weight, check

        os.kill(proxy.pid, signal.SIGKILL)
        await wait_for(lambda: not agent.health().get("balancer") == "ok", timeout=20,
                       what="the balancer reported away")
        ready, checks = await agent.readiness()
        assert not ready and checks["balancer"] != "ok"
        tick = agent.snapshot.tick
        await wait_for(lambda: agent.snapshot.tick >= tick + 4, timeout=20,
                       what="the loop going on")
        await wait_for(lambda: not process_runs_config(proxy.pid, proxy.config_path), timeout=10,
                       what="the user's haproxy gone")
        haproxy_farm.note(proxy.start(), proxy.config_path)  # the user starts it again
        await wait_for(lambda: _servers_are(balancer, running_names(docker_app) | {"legacy"}),
                       timeout=20, what="our servers added again")
        assert (await agent.readiness())[0]
        assert await _legacy(balancer) == before
        nursery.cancel_scope.cancel()
    log = kinds(redis_client, docker_app.app_identifier)
    assert log.count("balancer_unreachable") == 1 and log.count("balancer_recovered") == 1
    assert docker_app.client.api.inspect_container(foreign)["State"]["Running"]


async def _legacy(balancer: HAProxyBalancer) -> tuple:
    answer = (await balancer.api.run(["show servers state web"]))[0]
    (line,) = [s for s in parse_servers_state(answer) if s.name == "legacy"]
    return line.address, line.port, line.admin, line.user_weight, line.initial_weight
