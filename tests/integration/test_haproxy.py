"""The HAProxy adapter against real haproxy processes and real demo workers.

Requests go through the balancer's frontend on a free loopback port; who served
them is read back from HAProxy's own counters (`show stat`). Every haproxy a test
starts is killed by pid at teardown (`tests/fixtures/haproxy.py`).
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import trio

from agent.adapters.docker_engine import container_name_prefix
from agent.adapters.haproxy import HAProxyBalancer
from agent.adapters.haproxy_process import process_runs_config
from agent.adapters.redis_server import free_loopback_port
from agent.core.balancer import Balancer, BackendSpec, EventKind, backend_spec
from agent.core.errors import BalancerError, ConfigError
from agent.core.haproxy_config import EmbeddedConfig, render_config
from agent.core.haproxy_text import CheckState, parse_servers_state
from tests.fixtures.haproxy import HAProxyFarm, haproxy_pids
from tests.web.util import eventually

from .http_load import RequestLoop, http_get

def kinds(events) -> list[str]:
    return [str(e.kind) for e in events]


async def servers_of(balancer: HAProxyBalancer) -> dict[str, int]:
    """Every server of the balancer's backend (ours or not), name -> weight."""
    answer = (await balancer.api.run([f"show servers state {balancer.backend}"]))[0]
    return {s.name: s.user_weight for s in parse_servers_state(answer)}


async def served(balancer: HAProxyBalancer) -> dict[str, int]:
    observation = await balancer.observe()
    assert observation.ok, observation.error
    return {name: s.sessions_total for name, s in observation.stats.items()}


async def started(farm: HAProxyFarm, balancer: HAProxyBalancer) -> tuple[str, ...]:
    events = await balancer.start()
    assert balancer.process is not None
    farm.note(balancer.process.pid, balancer.process.config_path)
    return tuple(kinds(events))


# -- configuration -------------------------------------------------------------------


@pytest.mark.parametrize("kwargs", [
    {}, {"algorithm": "leastconn", "health_path": "/cgi-bin/health"},
    {"algorithm": "random", "bind": "::1"},
])
def test_generated_config_is_accepted_by_haproxy(tmp_path: Path, kwargs):
    config = EmbeddedConfig(socket_path="/tmp/x.sock", pid_path="/tmp/x.pid", **kwargs)
    path = tmp_path / "haproxy.cfg"
    path.write_text(render_config(config))
    done = subprocess.run(["haproxy", "-c", "-f", str(path)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "stats socket /tmp/x.sock mode 600 level admin expose-fd listeners" in path.read_text()


@pytest.mark.parametrize("algorithm", ["static-rr", "source", "first", "uri"])
def test_static_algorithms_are_refused_naming_the_setting(algorithm):
    with pytest.raises(ConfigError) as info:
        HAProxyBalancer.embedded(Path("/tmp/unused"), prefix="app", algorithm=algorithm)
    assert info.value.variable == "BALANCER_ALGORITHM"
    assert "roundrobin, leastconn, random" in info.value.reason


@pytest.mark.parametrize("socket, backend, variable", [
    ("localhost", "web", "HAPROXY_SOCKET"),
    ("/tmp/x.sock", "", "HAPROXY_BACKEND"),
    ("/tmp/x.sock", "a;b", "HAPROXY_BACKEND"),
])
def test_external_settings_are_checked_naming_the_variable(socket, backend, variable):
    with pytest.raises(ConfigError) as info:
        HAProxyBalancer.external(socket, backend, prefix="app")
    assert info.value.variable == variable


def test_the_adapter_is_a_balancer():
    assert isinstance(HAProxyBalancer.external("/tmp/x.sock", "web", prefix="app"), Balancer)


async def test_an_embedded_haproxy_that_cannot_bind_says_why(haproxy_farm):
    with trio.socket.socket() as taken:
        await taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        balancer = haproxy_farm.embedded(prefix="app", port=port)
        with pytest.raises(BalancerError, match="failed to start") as info:
            await balancer.start()
    assert "cannot bind" in str(info.value)  # the tail of haproxy's own output
    assert balancer.process is not None and balancer.process.recorded_pid() is None


async def test_a_missing_binary_is_a_clear_error(haproxy_farm):
    balancer = haproxy_farm.embedded(prefix="app", binary="haproxy-not-installed")
    with pytest.raises(BalancerError, match="apt-get install haproxy"):
        await balancer.start()


async def test_one_session_pipelines_many_commands_answers_in_order(haproxy_farm):
    balancer = haproxy_farm.embedded(prefix="app")
    await started(haproxy_farm, balancer)
    closed = free_loopback_port()
    servers = [f"app-{i:08x}" for i in range(300)]
    commands = [f"add server pool/{name} 127.0.0.1:{closed} weight 1" for name in servers]
    commands[150] = "set weight pool/nope 3"  # an error answer in the middle of the batch
    commands += [f"set weight pool/{name} 7" for name in servers[:149]]
    async with balancer.api.session() as cli:
        answers = await cli.run(commands)  # about 25 KiB of commands: two chunks
        (state,) = await cli.run(["show servers state pool"])  # the same connection
    assert len(answers) == len(commands)
    assert answers[150].strip() == "No such server."
    assert {a.strip() for a in answers[:150]} == {"New server registered."}
    assert {a.strip() for a in answers[300:]} == {""}
    weights = {s.name: s.user_weight for s in parse_servers_state(state)}
    assert len(weights) == 299 and weights[servers[0]] == 7 and weights[servers[299]] == 1


async def test_an_unreachable_socket_is_a_report_not_a_crash():
    balancer = HAProxyBalancer.external("/tmp/dah-no-such.sock", "web", prefix="app")
    assert kinds(await balancer.start()) == ["balancer_unreachable"]
    report = await balancer.sync(BackendSpec())
    assert not report.ok and "unreachable" in (report.error or "")
    assert report.events == ()  # reported once, on the transition
    assert not (await balancer.observe()).ok
    status = balancer.status()
    assert not status.reachable and "dah-no-such.sock" in (status.last_error or "")


# -- embedded: traffic, weights, drain, removal --------------------------------------


@pytest.mark.docker
async def test_servers_take_traffic_in_proportion_to_their_weights(docker_app, haproxy_farm):
    engine = docker_app.engine()
    a, b = await engine.create(), await engine.create()
    # default health check (GET /, any answer below 500 is alive)
    balancer = haproxy_farm.embedded(prefix=container_name_prefix(docker_app.app_identifier),
                                     health_path=None)
    assert await started(haproxy_farm, balancer) == ("balancer_started",)
    spec = backend_spec([a, b], {a.name: 2 / 3, b.name: 1 / 3})
    report = await balancer.sync(spec)
    assert report.ok, report.error
    assert report.added == tuple(sorted([a.name, b.name]))
    assert await servers_of(balancer) == {a.name: 256, b.name: 128}  # read back
    assert balancer.status().weights == {a.name: 256, b.name: 128}
    assert (await balancer.sync(spec)).commands == ()  # idempotent

    port = int(balancer.frontend.rsplit(":", 1)[1])
    statuses = [await http_get(port) for _ in range(60)]
    assert statuses == [200] * 60
    counts = await served(balancer)
    assert counts[a.name] + counts[b.name] == 60
    assert abs(counts[a.name] - 40) <= 2 and abs(counts[b.name] - 20) <= 2, counts

    report = await balancer.sync(backend_spec([a, b], {a.name: 0.5, b.name: 0.5}))
    assert report.commands == (f"set weight pool/{b.name} 256",)
    assert await servers_of(balancer) == {a.name: 256, b.name: 256}


@pytest.mark.docker
async def test_drain_finishes_the_long_request_and_delete_waits_for_it(docker_app, haproxy_farm):
    engine = docker_app.engine()
    a, b = await engine.create(), await engine.create()
    balancer = haproxy_farm.embedded(prefix=container_name_prefix(docker_app.app_identifier))
    await started(haproxy_farm, balancer)
    port = int(balancer.frontend.rsplit(":", 1)[1])
    assert (await balancer.sync(backend_spec([a], {a.name: 1.0}))).ok
    long: list[int] = []

    async def long_request() -> None:
        long.append(await http_get(port, "/cgi-bin/burn?seconds=3"))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(long_request)
        await eventually(lambda: _sessions(balancer, a.name), message="the long request on a")
        report = await balancer.sync(backend_spec([a, b], {b.name: 1.0}, draining={a.name}))
        assert f"set server pool/{a.name} state drain" in report.commands
        assert [await http_get(port) for _ in range(20)] == [200] * 20
        counts = await served(balancer)
        assert (counts[a.name], counts[b.name]) == (1, 20)  # nothing new went to a

        report = await balancer.sync(backend_spec([b], {b.name: 1.0}))  # a no longer wanted
        assert report.pending == (a.name,) and report.removed == ()
        assert report.commands == (f"set server pool/{a.name} state maint",)
        assert a.name in await servers_of(balancer)  # kept while its request runs
    assert long == [200]  # the drained server finished it

    report = await eventually(lambda: _removed(balancer, backend_spec([b], {b.name: 1.0}), a.name),
                              message="a deleted once idle")
    assert report.stats[a.name].sessions == 0  # deleted only after sessions hit 0
    assert report.commands == (f"del server pool/{a.name}",)
    assert await servers_of(balancer) == {b.name: 256}


@pytest.mark.docker
async def test_a_timed_out_drain_is_evicted_with_its_request_in_flight(docker_app, haproxy_farm):
    engine = docker_app.engine()
    a, b = await engine.create(), await engine.create()
    balancer = haproxy_farm.embedded(prefix=container_name_prefix(docker_app.app_identifier))
    await started(haproxy_farm, balancer)
    port = int(balancer.frontend.rsplit(":", 1)[1])
    assert (await balancer.sync(backend_spec([a], {a.name: 1.0}))).ok
    long: list[int] = []

    async def long_request() -> None:
        long.append(await http_get(port, "/cgi-bin/burn?seconds=5", method="POST"))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(long_request)
        await eventually(lambda: _sessions(balancer, a.name), message="the long request on a")
        spec = backend_spec([a, b], {b.name: 1.0}, draining={a.name}, evict={a.name})
        with trio.fail_after(2):  # well before the request would end
            report = await eventually(lambda: _removed(balancer, spec, a.name),
                                      message="a evicted")
        assert f"shutdown sessions server pool/{a.name}" in report.commands
        assert await servers_of(balancer) == {b.name: 256}
    assert long and long[0] != 200  # its session was cut, as DRAIN_TIMEOUT means


async def _sessions(balancer: HAProxyBalancer, name: str) -> bool:
    stats = (await balancer.observe()).stats
    return name in stats and stats[name].sessions == 1


async def _removed(balancer: HAProxyBalancer, spec: BackendSpec, name: str):
    report = await balancer.sync(spec)
    return report if name in report.removed else None


@pytest.mark.docker
async def test_no_request_fails_while_servers_come_drain_and_go(docker_app, haproxy_farm):
    engine = docker_app.engine()
    a, b, c = [await engine.create() for _ in range(3)]
    balancer = haproxy_farm.embedded(prefix=container_name_prefix(docker_app.app_identifier))
    await started(haproxy_farm, balancer)
    port = int(balancer.frontend.rsplit(":", 1)[1])
    weights = {a.name: 0.25, b.name: 0.25, c.name: 0.5}
    assert (await balancer.sync(backend_spec([a, b, c], weights))).ok
    # short GETs, and one client of one-second POSTs, which HAProxy never retries:
    # a worker removed under one of those would fail it
    loop = RequestLoop(port, concurrency=3)
    slow = RequestLoop(port, concurrency=1, path="/cgi-bin/burn?seconds=1", method="POST")
    async with trio.open_nursery() as nursery:
        nursery.start_soon(loop.run)
        nursery.start_soon(slow.run)
        await eventually(lambda: loop.total >= 100, message="traffic flowing")

        d = await engine.create()  # scale up under load
        weights[d.name] = 0.25
        assert (await balancer.sync(backend_spec([a, b, c, d], weights))).added == (d.name,)
        await eventually(lambda: _served_some(balancer, d.name), message="d taking traffic")

        # a: SUNDOWN, drained, then its container goes, then its server
        spec = backend_spec([a, b, c, d], weights, draining={a.name})
        await eventually(lambda: _idle_after_sync(balancer, spec, a.name), message="a drained")
        await engine.remove(a.name)
        report = await balancer.sync(backend_spec([b, c, d], weights))
        assert report.removed == (a.name,), report

        # b: dropped straight from the pool while taking traffic: out of rotation at
        # once, deleted once idle, and only then its container removed
        spec = backend_spec([c, d], weights)
        await eventually(lambda: _removed(balancer, spec, b.name), message="b deleted")
        await engine.remove(b.name)

        mark = loop.total
        await eventually(lambda: loop.total >= mark + 100, message="traffic after removals")
        loop.stop()
        slow.stop()
    assert (loop.failed, slow.failed) == (0, 0), (loop.statuses, slow.statuses)
    assert loop.total >= 300 and slow.total >= 2
    assert set(await servers_of(balancer)) == {c.name, d.name}


async def _served_some(balancer: HAProxyBalancer, name: str) -> bool:
    return (await served(balancer)).get(name, 0) > 0


async def _idle_after_sync(balancer: HAProxyBalancer, spec: BackendSpec, name: str) -> bool:
    report = await balancer.sync(spec)
    return report.ok and name in report.stats and report.idle(name)


# -- embedded: the data plane outlives the control plane -----------------------------


@pytest.mark.docker
async def test_killed_haproxy_is_restarted_and_resynced_without_duplicates(
    docker_app, haproxy_farm
):
    engine = docker_app.engine()
    a, b = await engine.create(), await engine.create()
    balancer = haproxy_farm.embedded(prefix=container_name_prefix(docker_app.app_identifier))
    await started(haproxy_farm, balancer)
    spec = backend_spec([a, b], {a.name: 0.5, b.name: 0.5})
    assert (await balancer.sync(spec)).ok
    assert balancer.process is not None
    first = balancer.process.pid
    assert first is not None
    os.kill(first, signal.SIGKILL)
    await eventually(lambda: not process_runs_config(first, balancer.process.config_path),
                     message="haproxy gone")

    report = await balancer.sync(spec)
    haproxy_farm.note(balancer.process.pid, balancer.process.config_path)
    assert report.ok, report.error
    assert kinds(report.events) == ["balancer_restarted"]
    assert f"pid {first} died" in report.events[0].message
    assert report.added == tuple(sorted([a.name, b.name]))
    answer = (await balancer.api.run(["show servers state pool"]))[0]
    names = [s.name for s in parse_servers_state(answer)]
    assert sorted(names) == sorted([a.name, b.name])  # each once
    assert haproxy_pids(balancer.process.config_path) == [balancer.process.pid]
    port = int(balancer.frontend.rsplit(":", 1)[1])
    assert [await http_get(port) for _ in range(10)] == [200] * 10
    assert (await balancer.sync(spec)).commands == ()


@pytest.mark.docker
async def test_a_new_adapter_adopts_the_running_haproxy(docker_app, haproxy_farm):
    engine = docker_app.engine()
    a, b, c = [await engine.create() for _ in range(3)]
    prefix = container_name_prefix(docker_app.app_identifier)
    first = haproxy_farm.embedded(prefix=prefix)
    await started(haproxy_farm, first)
    assert first.process is not None
    assert (await first.sync(backend_spec([a, b], {a.name: 0.5, b.name: 0.5}))).ok

    port = int(first.frontend.rsplit(":", 1)[1])
    second = haproxy_farm.embedded(prefix=prefix, data_dir=first.process.data_dir, port=port)
    assert await started(haproxy_farm, second) == ("balancer_adopted",)
    assert second.process is not None and second.process.pid == first.process.pid
    assert haproxy_pids(second.process.config_path) == [first.process.pid]  # no second one

    report = await second.sync(backend_spec([b, c], {b.name: 0.75, c.name: 0.25}))
    assert report.ok, report.error
    assert (report.added, report.removed) == ((c.name,), (a.name,))
    assert await servers_of(second) == {b.name: 256, c.name: 85}  # rebuilt to match
    assert [await http_get(port) for _ in range(6)] == [200] * 6


@pytest.mark.docker
async def test_haproxy_survives_kill_9_of_the_agents_process_group(docker_app, haproxy_farm):
    engine = docker_app.engine()
    a = await engine.create()
    prefix = container_name_prefix(docker_app.app_identifier)
    data_dir, port = haproxy_farm.directory(), free_loopback_port()
    agent = textwrap.dedent(f"""
        import sys, trio
        from pathlib import Path
        from agent.adapters.haproxy import HAProxyBalancer
        from agent.core.balancer import BackendSpec, DesiredServer
        async def main():
            b = HAProxyBalancer.embedded(Path({str(data_dir)!r}), prefix={prefix!r},
                                         port={port}, health_path="/cgi-bin/health")
            await b.start()
            report = await b.sync(BackendSpec((DesiredServer({a.name!r}, "127.0.0.1",
                                                              {a.host_port}, 10),)))
            print(report.ok, b.process.pid, flush=True)
            await trio.sleep_forever()
        trio.run(main)
    """)
    proc = subprocess.Popen([sys.executable, "-c", agent], stdout=subprocess.PIPE, text=True,
                            start_new_session=True, env={**os.environ})
    try:
        assert proc.stdout is not None
        ok, pid = (await trio.to_thread.run_sync(proc.stdout.readline)).split()
        assert ok == "True"
        haproxy_farm.note(int(pid), data_dir / "haproxy.cfg")
        os.killpg(proc.pid, signal.SIGKILL)  # the agent's whole process group
    finally:
        proc.kill()
        proc.wait(timeout=10)
        proc.stdout.close()
    assert process_runs_config(int(pid), data_dir / "haproxy.cfg")
    assert [await http_get(port) for _ in range(5)] == [200] * 5  # still serving

    successor = haproxy_farm.embedded(prefix=prefix, data_dir=data_dir, port=port)
    assert await started(haproxy_farm, successor) == ("balancer_adopted",)
    report = await successor.sync(BackendSpec(backend_spec([a], {a.name: 1.0}).servers))
    assert report.commands == (f"set weight pool/{a.name} 256",)  # no duplicate add


@pytest.mark.docker
async def test_a_changed_configuration_reloads_and_resyncs(docker_app, haproxy_farm):
    engine = docker_app.engine()
    a = await engine.create()
    prefix = container_name_prefix(docker_app.app_identifier)
    first = haproxy_farm.embedded(prefix=prefix)
    await started(haproxy_farm, first)
    assert first.process is not None
    spec = backend_spec([a], {a.name: 1.0})
    assert (await first.sync(spec)).ok
    old = first.process.pid
    port = int(first.frontend.rsplit(":", 1)[1])

    second = haproxy_farm.embedded(prefix=prefix, data_dir=first.process.data_dir, port=port,
                                   algorithm="leastconn")
    assert await started(haproxy_farm, second) == ("balancer_restarted",)
    assert second.process is not None and second.process.pid != old
    report = await second.sync(spec)
    assert report.added == (a.name,)
    answer = (await second.api.run(["show stat pool 2 -1"]))[0]
    assert ",leastconn," in answer
    await eventually(lambda: not process_runs_config(old, second.process.config_path),
                     message="the old haproxy finished and left")
    assert [await http_get(port) for _ in range(5)] == [200] * 5


# -- external: the user's HAProxy ------------------------------------------------------

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
    balance leastconn
    option httpchk GET /cgi-bin/health
    server legacy 127.0.0.1:{legacy} weight 7 check

backend sticky
    balance source
    server s1 127.0.0.1:9
"""


@pytest.mark.docker
async def test_external_haproxy_foreign_server_untouched(docker_app, haproxy_farm):
    engine = docker_app.engine()
    a, b = await engine.create(), await engine.create()
    foreign = docker_app.run_foreign()
    legacy = int(docker_app.client.api.port(foreign, 8080)[0]["HostPort"])
    cli, port = free_loopback_port(), free_loopback_port()
    proxy = haproxy_farm.external(EXTERNAL.format(cli=cli, port=port, legacy=legacy))
    prefix = container_name_prefix(docker_app.app_identifier)
    balancer = HAProxyBalancer.external(f"127.0.0.1:{cli}", "web", prefix=prefix)
    assert await balancer.start() == ()

    def legacy_line(answer: str) -> tuple:
        (line,) = [s for s in parse_servers_state(answer) if s.name == "legacy"]
        check = line.check & ~CheckState.INPROGRESS  # a check may be running, or not
        return line.address, line.port, line.admin, line.user_weight, check

    before = legacy_line((await balancer.api.run(["show servers state web"]))[0])
    report = await balancer.sync(backend_spec([a, b], {a.name: 0.5, b.name: 0.5}))
    assert report.ok and report.added == tuple(sorted([a.name, b.name]))
    assert not any("legacy" in command for command in report.commands)
    assert [await http_get(port) for _ in range(30)] == [200] * 30
    assert set((await balancer.observe()).stats) == {a.name, b.name}  # only ours

    report = await balancer.sync(backend_spec([a], {a.name: 1.0}))  # b leaves
    assert report.removed == (b.name,)
    assert set(await servers_of(balancer)) == {"legacy", a.name}
    assert legacy_line((await balancer.api.run(["show servers state web"]))[0]) == before

    # the user's haproxy dies: reported, the loop goes on; back: re-synced
    os.kill(proxy.pid, signal.SIGKILL)
    report = await balancer.sync(backend_spec([a], {a.name: 1.0}))
    assert not report.ok and kinds(report.events) == ["balancer_unreachable"]
    await eventually(lambda: not process_runs_config(proxy.pid, proxy.config_path))
    haproxy_farm.note(proxy.start(), proxy.config_path)
    report = await balancer.sync(backend_spec([a], {a.name: 1.0}))
    assert report.ok and kinds(report.events) == ["balancer_recovered", "balancer_restarted"]
    assert report.added == (a.name,)
    assert set(await servers_of(balancer)) == {"legacy", a.name}


async def test_external_backend_must_exist_and_take_runtime_weights(haproxy_farm):
    cli, port = free_loopback_port(), free_loopback_port()
    haproxy_farm.external(EXTERNAL.format(cli=cli, port=port, legacy=9))
    for backend, why in [("sticky", "'source', which takes no runtime weights"),
                         ("nope", "has no backend 'nope'"),
                         ("web-in", "is not a backend")]:
        balancer = HAProxyBalancer.external(f"127.0.0.1:{cli}", backend, prefix="app")
        with pytest.raises(ConfigError, match=why) as info:
            await balancer.start()
        assert info.value.variable == "HAPROXY_BACKEND"


@pytest.mark.docker
async def test_random_balancing_works_though_haproxy_2_6_calls_it_unknown(docker_app, haproxy_farm):
    engine = docker_app.engine()
    a, b = await engine.create(), await engine.create()
    balancer = haproxy_farm.embedded(prefix=container_name_prefix(docker_app.app_identifier),
                                     algorithm="random")
    assert await started(haproxy_farm, balancer) == ("balancer_started",)
    answer = (await balancer.api.run(["show stat pool 2 -1"]))[0]
    assert ",unknown," in answer  # what 2.6 prints for `balance random`
    report = await balancer.sync(backend_spec([a, b], {a.name: 0.75, b.name: 0.25}))
    assert report.ok, report.error
    port = int(balancer.frontend.rsplit(":", 1)[1])
    assert [await http_get(port) for _ in range(10)] == [200] * 10
    assert sum((await served(balancer)).values()) == 10
