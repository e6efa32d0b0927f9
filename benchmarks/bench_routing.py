"""Routing that beats round robin, measured: four workers behind HAProxy, one degraded.

    python -m benchmarks.bench_routing                        # 45 s per strategy
    python -m benchmarks.bench_routing --seconds 20 --json bench-results/routing.json
    python -m benchmarks.bench_routing --quick                # smoke run (a few seconds each)

On the real engine: four demo workers, each held to ``--cpus`` (CONTAINER_CPUS), one
of them then degraded with ``docker update --cpus`` to ``--degraded`` of that. The
same open-loop load (`benchmarks.open_loop`: ``--rate`` GETs per second of
``/cgi-bin/work?ms=--work-ms``, sent on schedule whether or not earlier ones were
answered; latency from the scheduled time) goes through an embedded HAProxy to the
same four workers under each strategy in turn:

================  ==========================================================
strategy          what balances
================  ==========================================================
roundrobin        HAProxy ``balance roundrobin``, equal weights
leastconn         HAProxy ``balance leastconn``, equal weights
compat-score      roundrobin, weights proportional to the compat overall score
                  (SPEC §3 with the TCP probe, re-read every second: the seed's way)
ours              the agent itself (``deployment-agent run``, BALANCER=haproxy,
                  ``--algorithm``, roundrobin as by default): its live weights, fed
                  by what HAProxy measures
================  ==========================================================

Each strategy gets ``--warmup`` seconds of the load first (not measured: the score-
driven ones need it to learn), then ``--seconds`` measured, in ``--rounds`` rounds
of all of them, their order rotated each round, each phase starting once the load
average is down to ``--calm`` (this machine is shared: a burst of someone else's
load then falls on every strategy, not on one; each phase's load is in the JSON).
Printed: the rate
achieved, p50/p99/p999 and the error rate per strategy, and the target (ours has
the lowest p99, at most half of roundrobin's). Then, with the agent still running,
one scale-up: the time from the new container's start (the engine's StartedAt) to
the first request HAProxy sent its server, polled every 20 ms.

Every container, haproxy, redis-server and agent the benchmark starts is stopped
by pid or id at the end, also after an error.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import secrets
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import trio

from benchmarks.bench_agent import (
    ROOT,
    _docker_host,
    _wait,
    embedded_haproxy,
    free_port,
    progress,
    redis_server,
    remove_app,
    stop_embedded_haproxy,
)
from benchmarks.open_loop import OpenLoop

STRATEGIES = ("roundrobin", "leastconn", "compat-score", "ours")
TARGETS = {"ours_p99_lowest": True, "ours_p99_over_roundrobin_max": 0.5,
           "scale_up_first_request_s_max": 3.0}


# --------------------------------------------------------------------------- workers


def create_workers(app: str, n: int, image: str, port: int, cpus: float) -> list[Any]:
    from agent.adapters.docker_engine import DockerEngine

    async def main() -> list[Any]:
        engine = DockerEngine(base_url=_docker_host(), app_identifier=app, image=image,
                              target_port=port, cpus=cpus)
        try:
            return [await engine.create() for _ in range(n)]
        finally:
            await engine.aclose()

    return trio.run(main)


def degrade(container_id: str, cpus: float) -> None:
    """``docker update --cpus``: the worker gets `cpus` of a core from now on."""
    subprocess.run(["docker", "update", "--cpus", f"{cpus:g}", container_id], check=True,
                   capture_output=True, timeout=60)


# --------------------------------------------------------------------------- strategies


def balancer_in(directory: Path, app: str, port: int, algorithm: str) -> Any:
    from agent.adapters.docker_engine import container_name_prefix
    from agent.adapters.haproxy import HAProxyBalancer

    return HAProxyBalancer.embedded(directory, prefix=container_name_prefix(app), port=port,
                                    algorithm=algorithm)


async def static_weights(balancer: Any, workers: list[Any]) -> None:
    from agent.core.balancer import backend_spec

    await balancer.start()
    report = await balancer.sync(backend_spec(workers, {w.name: 1.0 for w in workers}))
    if not report.ok:
        raise RuntimeError(f"sync failed: {report.error}")


async def compat_driver(balancer: Any, workers: list[Any], stop: trio.Event) -> None:
    """The seed's way: every second, the compat scores (TCP probe availability,
    SPEC §3 weights) and HAProxy weights proportional to them."""
    from agent.adapters.sampler import Sampler
    from agent.core.balancer import backend_spec
    from agent.scoring import Scorer, ScorerConfig

    sampler = Sampler(True)
    scorer = Scorer(ScorerConfig())
    for w in workers:
        scorer.add(w.name, now=0.0)
    await static_weights(balancer, workers)
    start = trio.current_time()
    while not stop.is_set():
        t0 = trio.current_time()
        samples = await sampler.sample(workers, deadline=t0 + 0.8, probe_timeout=0.8)
        scores = scorer.update(samples, t0 - start)
        weights = {s.name: max(s.overall_score, 0.0) for s in scores
                   if math.isfinite(s.overall_score)}
        await balancer.sync(backend_spec(workers, weights))
        with trio.move_on_at(t0 + 1.0):
            await stop.wait()


async def load(port: int, rate: float, path: str, warmup: float, seconds: float) -> OpenLoop:
    warm = OpenLoop(port, rate, path, duration=warmup, max_in_flight=2000, timeout=30)
    await warm.run()
    measured = OpenLoop(port, rate, path, duration=seconds, max_in_flight=2000, timeout=30)
    await measured.run()
    return measured


def run_static(opts: Any, workdir: Path, app: str, workers: list[Any], algorithm: str,
               name: str) -> OpenLoop:
    port = free_port()
    directory = workdir / f"{name}-{secrets.token_hex(2)}"
    balancer = balancer_in(directory, app, port, algorithm)

    async def main() -> OpenLoop:
        await static_weights(balancer, workers)
        return await load(port, opts.rate, opts.path, opts.warmup, opts.seconds)

    try:
        return trio.run(main)
    finally:
        stop_haproxy(directory)


def run_compat(opts: Any, workdir: Path, app: str, workers: list[Any]) -> OpenLoop:
    port = free_port()
    directory = workdir / f"compat-{secrets.token_hex(2)}"
    balancer = balancer_in(directory, app, port, "roundrobin")

    async def main() -> OpenLoop:
        stop = trio.Event()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(compat_driver, balancer, workers, stop)
            await trio.sleep(1.0)  # the first weights
            result = await load(port, opts.rate, opts.path, opts.warmup, opts.seconds)
            stop.set()
        return result

    try:
        return trio.run(main)
    finally:
        stop_haproxy(directory)


def merged(runs: list[OpenLoop]) -> dict[str, Any]:
    """One strategy's figures over all its rounds (the same load each time)."""
    total = OpenLoop(runs[0].port, runs[0].rate, runs[0].path)
    for run in runs:
        total.statuses.update(run.statuses)
        total.latencies += run.latencies
        total.sent += run.sent
        total.elapsed += run.elapsed
    return {**total.summary(), "statuses": {str(k): v for k, v in total.statuses.items()},
            "rounds": [{"p50": r.summary()["p50"], "p99": r.summary()["p99"],
                        "error_rate": r.summary()["error_rate"]} for r in runs]}


def stop_haproxy(directory: Path) -> None:
    from agent.adapters.haproxy_process import CONFIG_NAME, PID_NAME, process_runs_config

    try:
        pid = int((directory / PID_NAME).read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return
    if process_runs_config(pid, directory / CONFIG_NAME):
        os.kill(pid, signal.SIGTERM)
        _wait(lambda: not process_runs_config(pid, directory / CONFIG_NAME), 10,
              "haproxy did not stop")


# --------------------------------------------------------------------------- ours


@contextmanager
def the_agent(opts: Any, workdir: Path, app: str, image: str, target_port: int,
              n: int) -> Iterator[dict[str, Any]]:
    """The real agent adopting the `n` workers, with its embedded balancer."""
    data_dir = workdir / "agent"
    http_port, lb_port = free_port(), free_port()
    token = secrets.token_urlsafe(16)
    with redis_server(workdir / "redis") as redis:
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("DOCKER_IMAGE", "TARGET_PORT"))}
        env.update({
            "PYTHONPATH": str(ROOT) + os.pathsep + env.get("PYTHONPATH", ""),
            "APP_IDENTIFIER": app, "DOCKER_IMAGE": image, "TARGET_PORT": str(target_port),
            "DEFAULT_CONTAINER": str(n), "MAX_CONTAINERS": str(n),
            "CONTAINER_CPUS": f"{opts.cpus:g}", "REDIS_URL": redis[0],
            "HOST_PORT_HTTP_DEPLOYMENT_AGENT": str(http_port),
            "HOST_PORT_WS_DEPLOYMENT_AGENT": str(free_port()),
            "DATA_DIR": str(data_dir), "AGENT_API_TOKEN": token, "LOG_LEVEL": "WARNING",
            "BALANCER": "haproxy", "BALANCER_PORT": str(lb_port),
            "BALANCER_ALGORITHM": opts.algorithm,
        })
        log = open(workdir / "agent.log", "wb")
        proc = subprocess.Popen(
            [sys.executable, "-m", "agent.interfaces.cli", "run", "--env-file", os.devnull],
            env=env, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT, start_new_session=True,
        )
        try:
            def synced() -> bool:
                if proc.poll() is not None:
                    raise RuntimeError(f"the agent exited with {proc.returncode}; "
                                       f"see {log.name}")
                try:
                    state = api(http_port, "/balancer")
                except OSError:
                    return False
                return bool(state.get("last_sync")) and len(state.get("servers", {})) == n

            _wait(synced, 90, "the agent did not sync its balancer")
            yield {"http_port": http_port, "lb_port": lb_port, "token": token,
                   "data_dir": data_dir}
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            log.close()
            stop_embedded_haproxy(data_dir)


def api(port: int, path: str, *, method: str = "GET", body: object = None,
        token: str | None = None) -> Any:
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", method=method,
                                     data=None if body is None else json.dumps(body).encode())
    request.add_header("Content-Type", "application/json")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def run_ours(opts: Any, agent: dict[str, Any], weights: list[dict[str, int]]) -> OpenLoop:
    result = trio.run(load, agent["lb_port"], opts.rate, opts.path, opts.warmup, opts.seconds)
    state = api(agent["http_port"], "/balancer")
    weights.append({n: s["weight"] for n, s in state["servers"].items()})
    return result


def scale_up_to_first_request(opts: Any, agent: dict[str, Any], app: str, n: int) -> dict[str, Any]:
    """POST /scale n+1 under the load; seconds from the new container's start to the
    first request its server answered."""
    import docker

    from agent.adapters.haproxy import HAProxyBalancer
    from agent.adapters.docker_engine import container_name_prefix
    from agent.core.timestamps import parse_engine_time

    client = docker.APIClient(base_url=_docker_host(), version="auto", timeout=30)
    # a reader of the agent's haproxy that never resets its counters (the agent's
    # own adapter does, after each of its readings)
    reader = HAProxyBalancer.external(str(agent["data_dir"] / "haproxy" / "haproxy.sock"),
                                      "pool", prefix=container_name_prefix(app))

    async def main() -> dict[str, Any]:
        gen = OpenLoop(agent["lb_port"], opts.rate, opts.path, max_in_flight=2000, timeout=30)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(gen.run)
            await trio.sleep(2.0)
            before = set((await reader.observe()).stats)

            def scale_up() -> None:
                # the ceiling was the pool (no scaling of its own during the strategies)
                api(agent["http_port"], "/config", method="PUT",
                    body={"MAX_CONTAINERS": n + 1}, token=agent["token"])
                api(agent["http_port"], "/scale", method="POST", body={"count": n + 1},
                    token=agent["token"])

            await trio.to_thread.run_sync(scale_up)
            first = None
            deadline = trio.current_time() + 30
            while first is None and trio.current_time() < deadline:
                stats = (await reader.observe()).stats
                new = [s for name, s in stats.items() if name not in before]
                if new and (new[0].sessions_total > 0 or new[0].sessions > 0):
                    first = (time.time(), new[0].name)  # a request was sent to it
                await trio.sleep(0.02)
            gen.stop()
        if first is None:
            seen = {n: (s.status, s.sessions_total, s.sessions) for n, s in stats.items()}
            return {"ok": False, "error": f"no request reached the new server within 30 s: {seen}"}
        started = parse_engine_time(client.inspect_container(first[1])["State"]["StartedAt"])
        return {"ok": True, "container": first[1], "seconds": first[0] - started}

    try:
        return trio.run(main)
    finally:
        client.close()


def wait_for_calm(limit: float, patience: float = 180.0) -> float:
    """Seconds waited for the 1-minute load average to fall to `limit` (this machine
    is shared: a burst of someone else's work would land on one strategy only)."""
    if limit <= 0:
        return 0.0
    start = time.monotonic()
    while os.getloadavg()[0] > limit and time.monotonic() - start < patience:
        time.sleep(2.0)
    return time.monotonic() - start


# --------------------------------------------------------------------------- report


def verdicts(results: dict[str, dict[str, Any]], scale: dict[str, Any]) -> list[tuple[str, str, str]]:
    rows = []
    p99 = {name: r["p99"] for name, r in results.items()}
    if "ours" in p99:
        best = min(p99, key=lambda k: p99[k] if math.isfinite(p99[k]) else math.inf)
        rows.append(("lowest p99", best, "PASS" if best == "ours" else "MISS (ours)"))
        if "roundrobin" in p99:
            ratio = p99["ours"] / p99["roundrobin"]
            limit = TARGETS["ours_p99_over_roundrobin_max"]
            rows.append(("p99 ours / roundrobin", f"{ratio:.3f}",
                         f"{'PASS' if ratio <= limit else 'MISS'} (≤ {limit:g})"))
    if scale.get("ok"):
        limit = TARGETS["scale_up_first_request_s_max"]
        rows.append(("scale-up: start → first request (s)", f"{scale['seconds']:.2f}",
                     f"{'PASS' if scale['seconds'] <= limit else 'MISS'} (≤ {limit:g})"))
    elif scale:
        rows.append(("scale-up: start → first request (s)", "none", f"MISS ({scale.get('error')})"))
    return rows


def table(results: dict[str, dict[str, Any]], scale: dict[str, Any], opts: Any) -> str:
    head = ("strategy", "rate", "sent", "p50 ms", "p99 ms", "p999 ms", "errors")
    lines = [f"Routing, 4 workers at {opts.cpus:g} CPU, one at {opts.degraded:g} of it; "
             f"{opts.rate:g} req/s of {opts.path}, {opts.rounds} x {opts.seconds:g} s each",
             "-" * 84, f"{head[0]:<14}" + "".join(f"{h:>11}" for h in head[1:])]
    for name, r in results.items():
        cells = (r["achieved_rate"], r["sent"], 1000 * r["p50"], 1000 * r["p99"], 1000 * r["p999"],
                 r["error_rate"])
        lines.append(f"{name:<14}" + "".join(
            f"{c:>11}" if isinstance(c, int) else f"{c:>11.4g}" for c in cells))
    lines.append("-" * 84)
    lines += [f"{name:<44}{value:>14}  {verdict}" for name, value, verdict in verdicts(results, scale)]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=45.0, help="measured per strategy")
    parser.add_argument("--warmup", type=float, default=15.0, help="load before measuring")
    parser.add_argument("--rate", type=float, default=50.0, help="requests per second")
    parser.add_argument("--work-ms", type=int, default=8, help="CPU ms per request")
    parser.add_argument("--cpus", type=float, default=0.3, help="CONTAINER_CPUS of each worker")
    parser.add_argument("--degraded", type=float, default=0.2,
                        help="the degraded worker's share of --cpus")
    parser.add_argument("--algorithm", default="roundrobin",
                        help="BALANCER_ALGORITHM of the agent (ours; default: the setting's "
                        "default)")
    parser.add_argument("--strategies", default=",".join(STRATEGIES))
    parser.add_argument("--calm", type=float, default=2.0 * (os.cpu_count() or 1),
                        help="before each phase, wait (up to 3 min) for the 1-minute load "
                        "average to fall to this (default: 2 x the CPUs; 0 = never wait)")
    parser.add_argument("--rounds", type=int, default=2,
                        help="rounds of all strategies, their order rotated each round (a "
                        "burst of load from elsewhere on the machine then hits them all)")
    parser.add_argument("--quick", action="store_true", help="smoke run: 4 s each, 2 s warm-up")
    parser.add_argument("--json", metavar="PATH")
    opts = parser.parse_args(argv)
    if opts.quick:
        opts.seconds, opts.warmup, opts.rounds = 4.0, 2.0, 1
    opts.path = f"/cgi-bin/work?ms={opts.work_ms}"
    chosen = [s.strip() for s in opts.strategies.split(",") if s.strip()]
    if not chosen or set(chosen) - set(STRATEGIES) or not 1 <= opts.rate <= 1000:
        parser.error(f"--strategies among {', '.join(STRATEGIES)}; --rate in 1..1000")
    from agent.adapters.demo_image import DEMO_IMAGE, DEMO_PORT, ensure_demo_image

    image = ensure_demo_image(_docker_host(), DEMO_IMAGE)
    app = f"route-{secrets.token_hex(3)}"
    results: dict[str, dict[str, Any]] = {}
    scale: dict[str, Any] = {}
    runs: dict[str, list[OpenLoop]] = {name: [] for name in chosen}
    loads: dict[str, list[float]] = {name: [] for name in chosen}
    weights: list[dict[str, int]] = []
    with tempfile.TemporaryDirectory(prefix="bench-route-") as tmp, ExitStack() as stack:
        workdir = Path(tmp)
        stack.callback(lambda: progress(f"removed {remove_app(app)} containers"))
        workers = create_workers(app, 4, image, DEMO_PORT, opts.cpus)
        degrade(workers[0].id, opts.cpus * opts.degraded)
        progress(f"workers {', '.join(w.name for w in workers)}; {workers[0].name} degraded")
        agent = None
        if "ours" in chosen:  # one agent for every round; idle when not measured
            agent = stack.enter_context(the_agent(opts, workdir, app, image, DEMO_PORT, 4))
        for round_ in range(opts.rounds):
            order = chosen[round_ % len(chosen):] + chosen[:round_ % len(chosen)]
            for name in order:
                waited = wait_for_calm(opts.calm)
                progress(f"round {round_ + 1}, {name}: {opts.warmup:g} s warm-up, "
                         f"{opts.seconds:g} s measured (load {os.getloadavg()[0]:.1f}"
                         f"{f', after {waited:.0f} s waiting' if waited else ''})")
                loads[name].append(os.getloadavg()[0])
                if name in ("roundrobin", "leastconn"):
                    runs[name].append(run_static(opts, workdir, app, workers, name, name))
                elif name == "compat-score":
                    runs[name].append(run_compat(opts, workdir, app, workers))
                else:
                    assert agent is not None
                    runs[name].append(run_ours(opts, agent, weights))
                time.sleep(3.0)  # the workers' queues drain between strategies
        results = {name: {**merged(r), "load_average": loads[name]} for name, r in runs.items()}
        if agent is not None:
            results["ours"]["weights"] = weights
            progress("ours: one scale-up under the load")
            scale = scale_up_to_first_request(opts, agent, app, 4)
    print(table(results, scale, opts))
    if opts.json:
        doc = {
            "benchmark": "routing",
            "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                        "python": platform.python_version(), "load_average": os.getloadavg()[0]},
            "settings": {k: getattr(opts, k) for k in ("seconds", "warmup", "rate", "work_ms",
                                                         "cpus", "degraded", "algorithm", "path",
                                                         "rounds")},
            "targets": TARGETS,
            "results": results,
            "scale_up": scale,
            "verdicts": [{"name": n, "value": v, "verdict": d} for n, v, d in verdicts(results, scale)],
        }
        Path(opts.json).parent.mkdir(parents=True, exist_ok=True)
        Path(opts.json).write_text(json.dumps(doc, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
