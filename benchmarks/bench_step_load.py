"""Control quality, measured: one step load, four scaling policies, the same trace.

    python -m benchmarks.bench_step_load                     # four policies, ~12 min
    python -m benchmarks.bench_step_load --json bench-results/step-load.json \\
        --png bench-results/step-load-{policy}.png
    python -m benchmarks.bench_step_load --quick             # CI smoke: ours, ~100 s
    python -m benchmarks.bench_step_load --policies ours,hpa --baseline 20 --high 40 --low 60

On the real engine, for each policy in turn, a fresh pool: its own
APP_IDENTIFIER, data directory and redis-server, and the real agent as a child
process (``deployment-agent run``, BALANCER=haproxy on a free port), whose
embedded haproxy serves the demo workers, each held to ``--cpus``
(CONTAINER_CPUS), DEFAULT_CONTAINER ``--min`` and MAX_CONTAINERS ``--max``.
Through that haproxy, an open-loop load (`benchmarks.open_loop`: requests of
``/cgi-bin/work?ms=--work-ms`` sent on schedule whether or not earlier ones were
answered, latency from the scheduled time; loopback only, bounded in time and in
open requests) follows one trace, the same for every policy:

    baseline  --base-load worker-capacities   --baseline s (then to the phase below)
    step      ×--step of it                   --high s
    after     back to the baseline rate       --low s

The step comes at the same point of every policy's scale-check cycle
(``--step-phase`` of its SCALE_CHECK_PERIOD after one of its checks, read from
its ledger), so a policy's figures do not depend on where its cycle happened to
fall. A worker's capacity (requests/s at its CPU limit) is measured once before
the runs (``--capacity`` to give it): the rates and "needed" follow from it.

================  ============================================================
policy            settings (beyond sizes, CPUs and the balancer port)
================  ============================================================
ours              none: the defaults (threshold rules with the shortfall-sized
                  scale-up, stabilization 1.5 checks, flap guard, TICK 1 s,
                  SCALE_CHECK_PERIOD 10 s)
compat            SCALE_DOWN_STABILIZATION=0, FLAP_GUARD=false,
                  SCALE_UP_SIZING=step: the seed's rules (one step a decision)
hpa               an HPA-equivalent: SCALING_STRATEGY=target on CPU utilization
                  (CPU_WEIGHT=1, the other weights 0: utilization = CPU % of the
                  limit), TARGET_UTILIZATION 50, SCALE_TOLERANCE 0.1,
                  SCALE_CHECK_PERIOD 15 (its sync period), no scale-up cooldown
                  or stabilization, SCALE_UP_LIMIT 4 (HPA: max(4 pods, 100 %)
                  per period), SCALE_DOWN_LIMIT = MAX (100 % per period), and
                  its 300 s scale-down stabilization window **scaled down** to
                  ``--hpa-window`` (30 s: 300 s × 0.1, so that it ends inside
                  the run's low hold; unscaled it would not scale in at all)
target            SCALING_STRATEGY=target, everything else our defaults
================  ============================================================

Figures per policy (definitions in `benchmarks.step_analysis`): time from the
step to the first scale-up decision (the ledger's ``scale_check`` events, from
``/events``) and to the first request on the container it created (the agent's
haproxy stats socket, read every 0.2 s without resetting anything); overshoot
(most workers running − needed, needed = ceil(rate / capacity)); direction
reversals during each hold; failed requests (all, and during scale-in); p50/p99
per phase; container-seconds (from ``/history``); the rate achieved. Then the
targets, PASS/MISS. Output: a table on stdout, ``--json``, and with ``--png`` one
timeline per run (matplotlib, the ``bench`` extra). Every container, haproxy,
redis-server and agent the benchmark starts is stopped by pid or id at the end,
also after an error or Ctrl-C.

Shorter runs: ``--quick`` (the suite's, `tests/integration/test_step_load.py`),
``--policies``, the three durations, ``--until-scaled-in`` (the low hold ends once
the pool has scaled in), ``--capacity`` (no calibration), ``--calm 0`` (no waiting
for a calm host: the machine is shared, so each run waits for one by default).
"""
from __future__ import annotations

import argparse
import collections
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
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import trio

from benchmarks.bench_agent import (
    ROOT,
    _docker_host,
    _wait,
    free_port,
    progress,
    redis_server,
    remove_app,
    stop_embedded_haproxy,
)
from benchmarks.open_loop import OpenLoop, Request
from benchmarks.step_analysis import (
    TARGETS,
    Check,
    Phase,
    RunRecord,
    figures,
    needed,
    verdicts,
)

POLICIES = ("ours", "compat", "hpa", "target")
_PASSED_ENV = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "DOCKER_HOST", "PYTHONPATH")
TICK = 1.0  # TICK_INTERVAL: the default, for every policy
#: Ledger entries kept in the JSON (with their inputs), to read a decision again.
LEDGER_KINDS = ("scale_check", "created", "removed", "reconcile", "balancer_restarted",
                "balancer_unreachable", "create_failed")


def policy_env(name: str, opts: Any) -> dict[str, str]:
    """The settings that make a policy, beyond the pool's sizes (see the doc)."""
    if name == "ours":
        return {}
    if name == "compat":
        return {"SCALE_DOWN_STABILIZATION": "0", "FLAP_GUARD": "false",
                "SCALE_UP_SIZING": "step"}
    if name == "hpa":
        return {
            "SCALING_STRATEGY": "target", "TARGET_UTILIZATION": "50", "SCALE_TOLERANCE": "0.1",
            "SCALE_CHECK_PERIOD": "15", "SCALE_DOWN_STABILIZATION": f"{opts.hpa_window:g}",
            "COOLDOWN_PERIOD": "0", "SCALE_UP_LIMIT": "4", "SCALE_DOWN_LIMIT": str(opts.max),
            "FLAP_GUARD": "false", "CPU_WEIGHT": "1", "MEMORY_WEIGHT": "0",
            "NETWORK_WEIGHT": "0", "AVAILABILITY_WEIGHT": "0",
        }
    if name == "target":
        return {"SCALING_STRATEGY": "target"}
    raise ValueError(name)


def check_period(env: dict[str, str]) -> float:
    return float(env.get("SCALE_CHECK_PERIOD", "10"))


# --------------------------------------------------------------------------- HTTP


def api(port: int, path: str) -> Any:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as response:
        return json.loads(response.read())


def ledger(port: int, kind: str | None = None, limit: int = 500) -> list[dict[str, Any]]:
    """Every ledger event (oldest first), paged through ``/events``."""
    out: list[dict[str, Any]] = []
    before = None
    while True:
        query = {"limit": str(limit)}
        if kind:
            query["kind"] = kind
        if before:
            query["before"] = before
        page = api(port, "/events?" + urllib.parse.urlencode(query))
        out += page["events"]
        before = page.get("next_before")
        if not before:
            return out[::-1]


# --------------------------------------------------------------------------- capacity


def calibrate(opts: Any, image: str, port: int) -> dict[str, float]:
    """Requests/s one worker serves at its CPU limit: CPU-seconds per request under
    a light open-loop load (no queueing), from the engine's CPU counter."""
    import docker

    from agent.adapters.docker_engine import DockerEngine

    app = f"stepcal-{secrets.token_hex(3)}"
    client = docker.APIClient(base_url=_docker_host(), version="auto", timeout=30)

    def cpu_ns(cid: str) -> int:
        return int(client.stats(cid, stream=False)["cpu_stats"]["cpu_usage"]["total_usage"])

    async def main() -> dict[str, float]:
        engine = DockerEngine(base_url=_docker_host(), app_identifier=app, image=image,
                              target_port=port, cpus=opts.cpus)
        try:
            worker = await engine.create()
        finally:
            await engine.aclose()
        warm = OpenLoop(worker.host_port, 5.0, opts.path, duration=2.0)
        await warm.run()
        rate = 0.3 * opts.cpus / (opts.work_ms / 1000)  # ~30 % of the limit
        before = await trio.to_thread.run_sync(cpu_ns, worker.id)
        gen = OpenLoop(worker.host_port, rate, opts.path, duration=opts.calibrate_seconds)
        await gen.run()
        after = await trio.to_thread.run_sync(cpu_ns, worker.id)
        if gen.statuses[200] < 10 or gen.failed:
            raise RuntimeError(f"calibration failed: {dict(gen.statuses)}")
        per_request = (after - before) / 1e9 / gen.statuses[200]
        return {"cpu_s_per_request": per_request, "capacity": opts.cpus / per_request,
                "requests": gen.statuses[200], "rate": rate}

    try:
        return trio.run(main)
    finally:
        client.close()
        remove_app(app)


# --------------------------------------------------------------------------- one pool


@dataclass
class Pool:
    policy: str
    app: str
    http_port: int
    lb_port: int
    data_dir: Path
    env: dict[str, str]
    proc: subprocess.Popen[bytes]
    log: Path

    @property
    def socket(self) -> Path:
        from agent.service.wiring import HAPROXY_DIR

        return self.data_dir / HAPROXY_DIR / "haproxy.sock"

    def alive(self) -> None:
        if self.proc.poll() is not None:
            raise RuntimeError(f"the agent ({self.policy}) exited with {self.proc.returncode}; "
                               f"see {self.log}")


@contextmanager
def fresh_pool(opts: Any, workdir: Path, policy: str, image: str,
               target_port: int) -> Iterator[Pool]:
    """The real agent over a new pool, and everything it started stopped after."""
    folder = workdir / policy
    data_dir = folder / "agent"
    app = f"step-{policy}-{secrets.token_hex(3)}"
    with ExitStack() as stack:
        redis = stack.enter_context(redis_server(folder / "redis"))
        stack.callback(lambda: progress(f"{policy}: removed {remove_app(app)} containers"))
        stack.callback(stop_embedded_haproxy, data_dir)
        # Only what a process needs from here: no setting of the caller's leaks in.
        env = {k: v for k, v in os.environ.items() if k in _PASSED_ENV}
        http_port, lb_port = free_port(), free_port()
        settings = {
            "APP_IDENTIFIER": app, "DOCKER_IMAGE": image, "TARGET_PORT": str(target_port),
            "DEFAULT_CONTAINER": str(opts.min), "MAX_CONTAINERS": str(opts.max),
            "CONTAINER_CPUS": f"{opts.cpus:g}", "REDIS_URL": redis[0],
            "HOST_PORT_HTTP_DEPLOYMENT_AGENT": str(http_port),
            "HOST_PORT_WS_DEPLOYMENT_AGENT": str(free_port()), "DATA_DIR": str(data_dir),
            "AGENT_API_TOKEN": secrets.token_urlsafe(16), "LOG_LEVEL": opts.agent_log_level,
            "BALANCER": "haproxy", "BALANCER_PORT": str(lb_port),
            **policy_env(policy, opts),
        }
        env.update(settings, PYTHONPATH=str(ROOT) + os.pathsep + env.get("PYTHONPATH", ""))
        log = folder / "agent.log"
        out = stack.enter_context(open(log, "wb"))
        proc = subprocess.Popen(
            [sys.executable, "-m", "agent.interfaces.cli", "run", "--env-file", os.devnull],
            env=env, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT, start_new_session=True,
        )
        stack.callback(_stop, proc)
        pool = Pool(policy, app, http_port, lb_port, data_dir, settings, proc, log)
        _wait(lambda: _ready(pool, opts.min), 120, f"{policy}: the pool did not come up")
        yield pool


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _ready(pool: Pool, n: int) -> bool:
    """`n` servers in rotation at the balancer and `n` containers scored (not INIT)."""
    pool.alive()
    try:
        servers = api(pool.http_port, "/balancer").get("servers", {})
        stats = api(pool.http_port, "/stats")
    except OSError:
        return False
    up = [s for s in servers.values() if s.get("status") == "ready"]  # in rotation
    scored = [s for s in stats if s.get("utilization_category") not in (None, "INIT")]
    return len(up) == n and len(scored) == n


# --------------------------------------------------------------------------- the trace


@dataclass
class Trace:
    """What the trace recorded, on the wall clock."""

    t0: float  # wall time the trace started
    phases: tuple[Phase, ...]  # relative to t0
    requests: list[Request]  # due relative to t0
    first_traffic: dict[str, float]  # relative to t0
    host_cpu: list[tuple[float, float]]  # (relative to t0, busy fraction of all cores)
    scores: list[dict[str, Any]]  # the pool's mean scores per second, relative to t0


async def watch_servers(pool: Pool, first: dict[str, float], every: float = 0.2) -> None:
    """When each server first had a request (wall time): its sessions, read from
    the agent's haproxy without resetting anything (the agent resets its own
    counters every tick; a new request shows until then)."""
    from agent.adapters.docker_engine import container_name_prefix
    from agent.adapters.haproxy import HAProxyBalancer

    reader = HAProxyBalancer.external(str(pool.socket), "pool",
                                      prefix=container_name_prefix(pool.app))
    while True:
        seen = await reader.observe()
        now = time.time()
        for name, s in seen.stats.items():
            if name not in first and (s.sessions_total > 0 or s.sessions > 0):
                first[name] = now
        await trio.sleep(every)


async def _step_due(pool: Pool, earliest: float, phase: float) -> float:
    """The wall time of the step: `phase` of the check period after one of the
    policy's scale checks, not before `earliest`."""
    period = check_period(pool.env)
    checks = await trio.to_thread.run_sync(
        lambda: api(pool.http_port, "/events?kind=scale_check&limit=1")["events"])
    if not checks or phase < 0:
        return earliest
    due = float(checks[0]["ts"]) + phase * period
    while due < earliest:
        due += period
    return due


async def run_trace(opts: Any, pool: Pool, base_rate: float, step_rate: float,
                    settled: Callable[[Pool, float], bool] | None = None) -> Trace:
    """The trace through the pool's balancer. With `settled` (a test's shortcut),
    the low hold ends three ticks after ``settled(pool, step_down_wall_time)``
    first holds (checked every second), at the latest after ``opts.low`` s."""
    gen = OpenLoop(pool.lb_port, base_rate, opts.path, max_in_flight=opts.max_in_flight,
                   timeout=opts.timeout, record=True)
    first: dict[str, float] = {}
    host: list[tuple[float, float]] = []
    scores: list[dict[str, Any]] = []
    offset = time.time() - trio.current_time()
    marks: list[tuple[str, float, float]] = []  # (phase, wall start, rate)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(watch_servers, pool, first)
        nursery.start_soon(watch_host, host)
        nursery.start_soon(watch_scores, pool, scores)
        nursery.start_soon(gen.run)
        t0 = time.time()
        marks.append(("baseline", t0, base_rate))
        await trio.sleep(opts.baseline)
        step = await _step_due(pool, time.time(), opts.step_phase)
        await trio.sleep_until(step - offset)
        gen.set_rate(step_rate)
        marks.append(("step", time.time(), step_rate))
        progress(f"{pool.policy}: step to {step_rate:.1f} req/s")
        await trio.sleep(opts.high)
        gen.set_rate(base_rate)
        marks.append(("after", time.time(), base_rate))
        progress(f"{pool.policy}: back to {base_rate:.1f} req/s")
        await _low_hold(opts, pool, marks[-1][1], settled)
        end = time.time()
        gen.stop()
        while gen._open:  # the requests in flight finish; none is cut
            await trio.sleep(0.1)
        nursery.cancel_scope.cancel()
    phases = tuple(Phase(name, start - t0, (marks[i + 1][1] if i + 1 < len(marks) else end) - t0,
                         rate) for i, (name, start, rate) in enumerate(marks))
    requests = [Request(r.due + offset - t0, r.status, r.latency) for r in gen.requests]
    return Trace(t0, phases, requests, {n: t - t0 for n, t in first.items()},
                 [(t - t0, busy) for t, busy in host],
                 [{**row, "time": row["time"] - t0} for row in scores])


async def _low_hold(opts: Any, pool: Pool, since: float,
                    settled: Callable[[Pool, float], bool] | None) -> None:
    if settled is None:
        await trio.sleep(opts.low)
        return
    with trio.move_on_after(opts.low):
        while not await trio.to_thread.run_sync(settled, pool, since):
            await trio.sleep(1.0)
        await trio.sleep(3 * TICK)


async def watch_scores(pool: Pool, out: list[dict[str, Any]], every: float = 1.0) -> None:
    """The pool's mean scores each second (``/stats``), to read the policy's inputs."""
    kinds = ("overall_score", "cpu_score", "memory_score", "network_score", "availability_score")
    while True:
        try:
            stats = await trio.to_thread.run_sync(api, pool.http_port, "/stats")
        except OSError:
            stats = []
        live = [s for s in stats if s.get("utilization_category") not in ("INIT", "SUNDOWN")]
        row: dict[str, Any] = {"time": time.time(), "n": len(live)}
        for k in kinds:
            xs = [s[k] for s in live if isinstance(s.get(k), (int, float))]
            row[k] = sum(xs) / len(xs) if xs else None
        out.append(row)
        await trio.sleep(every)


def _cpu_jiffies() -> tuple[int, int]:
    """(busy, total) jiffies of all cores since boot (/proc/stat)."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return sum(fields) - idle, sum(fields)


def _busy_since(last: tuple[int, int]) -> tuple[float, tuple[int, int]]:
    now = _cpu_jiffies()
    total = now[1] - last[1]
    return ((now[0] - last[0]) / total if total else math.nan), now


async def watch_host(out: list[tuple[float, float]], every: float = 1.0) -> None:
    """The host's busy CPU fraction (all cores) each second: whether the machine
    could deliver the workers' limits, or others were using it."""
    last = _cpu_jiffies()
    while True:
        await trio.sleep(every)
        busy, last = _busy_since(last)
        out.append((time.time(), busy))


def wait_for_calm(limit: float, patience: float, window: float = 5.0) -> dict[str, float]:
    """Wait (at most `patience` s) until the host's CPU, all cores, was busy less
    than `limit` (0..1) over `window` s: this 2-core machine is shared, and a
    burst of someone else's work would land on one policy only. The load average
    would not do: the queued requests of the previous run count in it."""
    start = time.monotonic()
    busy = math.nan
    while limit > 0:
        last = _cpu_jiffies()
        time.sleep(window)
        busy, _ = _busy_since(last)
        if busy <= limit or time.monotonic() - start >= patience:
            break
    return {"waited_s": time.monotonic() - start, "host_cpu_busy": busy}


def _calm_text(calm: dict[str, float]) -> str:
    if not math.isfinite(calm["host_cpu_busy"]):
        return "not waiting for a calm machine"
    return (f"waited {calm['waited_s']:.0f} s for a calm machine: host CPU "
            f"{100 * calm['host_cpu_busy']:.0f} % busy")


def scaled_in(pool: Pool, since: float) -> bool:
    """A container was removed after `since` (wall time): the pool has scaled in."""
    removed = api(pool.http_port, "/events?kind=removed&limit=5")["events"]
    return any(float(e["ts"]) >= since for e in removed)


def record_of(opts: Any, pool: Pool, trace: Trace, capacity: float) -> RunRecord:
    """The run as `step_analysis` reads it: the trace, the ledger, the history."""
    events = ledger(pool.http_port)
    t0 = trace.t0
    checks = [Check(e["ts"] - t0, e["data"].get("action", "none"), e["data"].get("reason", ""),
                    int(e["data"].get("desired", 0))) for e in events if e["kind"] == "scale_check"]
    created = [(e["ts"] - t0, e["data"]["name"]) for e in events if e["kind"] == "created"]
    removed = [(e["ts"] - t0, e["data"]["name"]) for e in events if e["kind"] == "removed"]
    history = [(p["time"] - t0, p["desired"], p["running"])
               for p in api(pool.http_port, "/history")["points"]]
    return RunRecord(
        policy=pool.policy, phases=trace.phases, requests=trace.requests, checks=checks,
        created=created, removed=removed, first_traffic=trace.first_traffic,
        history=[h for h in history if h[0] >= -5], capacity=capacity, tick=TICK,
        check_period=check_period(pool.env), host_cpu=trace.host_cpu,
        notes={"settings": policy_env(pool.policy, opts), "app": pool.app,
               "scores": trace.scores,
               "load_average": os.getloadavg()[0],
               "statuses": dict(collections.Counter(str(r.status) for r in trace.requests)),
               "ledger": [{"t": e["ts"] - t0, "kind": e["kind"], **e["data"]} for e in events
                          if e["kind"] in LEDGER_KINDS]},
    )


def run_policy(opts: Any, workdir: Path, policy: str, image: str, target_port: int,
               capacity: float, settled: Callable[[Pool, float], bool] | None = None) -> RunRecord:
    """One policy on a fresh pool, through the whole trace (see `run_trace`)."""
    base_rate, step_rate = rates(opts, capacity)
    with fresh_pool(opts, workdir, policy, image, target_port) as pool:
        progress(f"{policy}: pool ready; baseline {base_rate:.1f} req/s")
        trace = trio.run(run_trace, opts, pool, base_rate, step_rate, settled)
        pool.alive()
        return record_of(opts, pool, trace, capacity)


def rates(opts: Any, capacity: float) -> tuple[float, float]:
    base = opts.base_load * capacity
    return base, opts.step * base


# --------------------------------------------------------------------------- output


def table(results: dict[str, dict[str, Any]], opts: Any, capacity: float) -> str:
    base, step = rates(opts, capacity)
    need = needed(step, capacity)
    lines = [
        f"Step load: {opts.min}..{opts.max} workers at {opts.cpus:g} CPU "
        f"({capacity:.1f} req/s each); {base:.1f} → {step:.1f} → {base:.1f} req/s of "
        f"{opts.path} (needed at the step: {need}); holds {opts.high:g} s / {opts.low:g} s",
        f"hpa: SCALE_CHECK_PERIOD 15 s, scale-down window 300 s scaled to {opts.hpa_window:g} s",
    ]
    head = ("policy", "decide s", "traffic s", "peak", "over", "rev h/l", "failed", "fail-in",
            "p50 ms", "p99 ms", "p99 low", "cont-s", "rate")
    widths = (8, 9, 10, 5, 5, 8, 7, 8, 7, 8, 8, 7, 11)
    rule = "-" * sum(widths)
    lines += [rule, "".join(f"{h:>{w}}" if i else f"{h:<{w}}" for i, (h, w) in
                           enumerate(zip(head, widths))), rule]
    for name, r in results.items():
        st, lo = r["phases"]["step"], r["phases"]["after"]
        si = r["scale_in"]
        cells = (name, _f(r["decision_s"], 1), _f(r["traffic_s"], 1), _f(r["peak_running"]),
                 _f(r["overshoot"]), f"{r['reversals']['step']}/{r['reversals']['after']}",
                 str(r["failed"]), "-" if si is None else str(si["failed"]),
                 _ms(st["p50"]), _ms(st["p99"]), _ms(lo["p99"]),
                 _f(r["container_seconds"], 0),
                 f"{st['achieved_rate']:.1f}/{st['rate']:.1f}")
        lines.append("".join(f"{c:>{w}}" if i else f"{c:<{w}}" for i, (c, w) in
                             enumerate(zip(cells, widths))))
    lines += [rule, "decide/traffic: s from the step to the first scale-up decision / to the "
              "first request on its container; p50/p99: step-up phase; p99 low: after the step "
              "down; rev h/l: reversals in the high/low hold; rate: achieved/offered at the step",
              rule]
    lines += phase_table(results) + [rule]
    lines += [f"{n:<66}{v:>16}  {d}" for n, v, d in verdicts(results)]
    return "\n".join(lines)


def phase_table(results: dict[str, dict[str, Any]]) -> list[str]:
    """Per phase and policy: p50/p99 (ms), failed requests, the host's CPU busy."""
    names = ("baseline", "step", "after")
    lines = ["per phase: p50/p99 ms, failed requests, host CPU busy (all cores)",
             f"{'policy':<8}" + "".join(f"{n:>28}" for n in names)]
    for policy, r in results.items():
        cells = []
        for n in names:
            ph = r["phases"][n]
            cpu = ph.get("host_cpu_busy")
            cells.append(f"{_ms(ph['p50'])}/{_ms(ph['p99'])}, {ph['failed']}, "
                         f"{_f(None if cpu is None else 100 * cpu, 0)} %")
        lines.append(f"{policy:<8}" + "".join(f"{c:>28}" for c in cells))
    return lines


def _ms(seconds: float | None) -> str:
    return _f(None if seconds is None else 1000 * seconds, 0)


def _f(x: Any, digits: int | None = None) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "-"
    return str(x) if digits is None else f"{x:.{digits}f}"


def write_json(path: str, opts: Any, calibration: dict[str, float],
               results: dict[str, dict[str, Any]], records: dict[str, RunRecord]) -> None:
    from benchmarks.step_analysis import time_series

    base, step = rates(opts, calibration["capacity"])
    doc = {
        "benchmark": "step_load",
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                    "python": platform.python_version(), "load_average": os.getloadavg()},
        "settings": {k: getattr(opts, k) for k in (
            "min", "max", "cpus", "work_ms", "path", "base_load", "step", "baseline", "high",
            "low", "step_phase", "hpa_window", "timeout", "max_in_flight", "until_scaled_in", "calm")},
        "policies": {p: policy_env(p, opts) for p in results},
        "hpa_window_note": f"HPA's 300 s scale-down stabilization window scaled down to "
                           f"{opts.hpa_window:g} s for the benchmark's time budget",
        "calibration": calibration,
        "rates": {"baseline": base, "step": step},
        "targets": TARGETS,
        "results": results,
        "verdicts": [{"name": n, "value": v, "verdict": d} for n, v, d in verdicts(results)],
        "timelines": {p: {**time_series(r), "history": r.history,
                          "checks": [[c.time, c.action, c.reason, c.desired] for c in r.checks]}
                      for p, r in records.items()},
    }
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(doc, indent=1, default=_json_default))


def _json_default(x: Any) -> Any:
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return str(x)


def _clean(x: Any) -> Any:
    """NaN/inf → None, recursively (strict JSON)."""
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    if isinstance(x, dict):
        return {k: _clean(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_clean(v) for v in x]
    return x


# --------------------------------------------------------------------------- main


def parse(argv: list[str] | None) -> Any:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add = parser.add_argument
    add("--policies", default=",".join(POLICIES), help=f"among {', '.join(POLICIES)}")
    add("--min", type=int, default=2, help="DEFAULT_CONTAINER")
    add("--max", type=int, default=6, help="MAX_CONTAINERS")
    add("--cpus", type=float, default=0.25, help="CONTAINER_CPUS of each worker")
    add("--work-ms", type=int, default=8, help="CPU ms per request (/cgi-bin/work?ms=)")
    add("--capacity", type=float, help="requests/s of one worker (default: measured)")
    add("--calibrate-seconds", type=float, default=8.0)
    add("--base-load", type=float, default=1.0,
        help="baseline load in worker-capacities (1.0: two workers at half their limit)")
    add("--step", type=float, default=3.5, help="the step's factor on the baseline rate")
    add("--baseline", type=float, default=25.0, help="s of baseline before the step")
    add("--high", type=float, default=50.0, help="s of the step-up hold")
    add("--low", type=float, default=75.0, help="s of the hold after the step down")
    add("--step-phase", type=float, default=0.5,
        help="the step comes this fraction of a check period after a scale check (<0: any)")
    add("--hpa-window", type=float, default=30.0,
        help="the HPA-equivalent's scale-down window, HPA's 300 s scaled down")
    add("--timeout", type=float, default=30.0, help="s before a request counts as failed")
    add("--max-in-flight", type=int, default=3000)
    add("--until-scaled-in", action="store_true",
        help="end the low hold three ticks after the first container removed in it "
        "(at the latest after --low s): the scale-in is seen without waiting it out")
    add("--quick", action="store_true",
        help="CI smoke (the suite's run), ~100 s: ours only, an 8 s baseline, a 40 s "
        "step ×3, --until-scaled-in with at most 60 s after the step down, a 4 s "
        "calibration (flags given as well win)")
    add("--calm", type=float, default=0.3,
        help="before each run, wait until the host's CPU is busy less than this "
        "fraction (all cores, over 5 s; 0: do not wait)")
    add("--patience", type=float, default=120.0, help="s to wait for --calm at most")
    add("--agent-log-level", default="WARNING",
        help="the agents' LOG_LEVEL (DEBUG logs what the balancer feeds the scores)")
    add("--keep", metavar="DIR", help="keep the runs' directories (agent logs) in DIR")
    add("--json", metavar="PATH")
    add("--png", metavar="PATTERN", help="a timeline per run; {policy} in the name is replaced")
    opts = parser.parse_args(argv)
    if opts.quick:  # its values as the defaults: what is given on the line wins
        parser.set_defaults(policies="ours", baseline=8.0, high=40.0, low=60.0, step=3.0,
                            calibrate_seconds=4.0, until_scaled_in=True)
        opts = parser.parse_args(argv)
    opts.path = f"/cgi-bin/work?ms={opts.work_ms}"
    opts.chosen = [p.strip() for p in opts.policies.split(",") if p.strip()]
    if not opts.chosen or set(opts.chosen) - set(POLICIES):
        parser.error(f"--policies: among {', '.join(POLICIES)}")
    if not (1 <= opts.min <= opts.max <= 10 and 0 < opts.cpus <= 1 and opts.step > 1):
        parser.error("need 1 ≤ --min ≤ --max ≤ 10, 0 < --cpus ≤ 1, --step > 1")
    if opts.baseline + opts.high + opts.low > 600:
        parser.error("the trace is bounded: --baseline + --high + --low ≤ 600 s")
    return opts


def main(argv: list[str] | None = None) -> int:
    opts = parse(argv)
    from agent.adapters.demo_image import DEMO_IMAGE, DEMO_PORT, build_context, ensure_demo_image

    # tagged by content: another checkout rebuilding the demo's :latest mid-run
    # cannot change the workers under the benchmark
    image = ensure_demo_image(_docker_host(),
                              f"{DEMO_IMAGE.split(':')[0]}:bench-{build_context()[1][:12]}")
    started = time.monotonic()
    calibration: dict[str, float]
    if opts.capacity:
        calibration = {"capacity": opts.capacity, "given": True}
    else:
        calm = wait_for_calm(opts.calm, opts.patience)
        progress(f"measuring one worker's capacity ({_calm_text(calm)})")
        calibration = calibrate(opts, image, DEMO_PORT)
    capacity = calibration["capacity"]
    progress(f"capacity {capacity:.1f} req/s per worker at {opts.cpus:g} CPU")
    records: dict[str, RunRecord] = {}
    results: dict[str, dict[str, Any]] = {}
    with ExitStack() as stack:
        tmp = opts.keep or stack.enter_context(tempfile.TemporaryDirectory(prefix="bst-"))
        for policy in opts.chosen:
            calm = wait_for_calm(opts.calm, opts.patience)
            progress(f"{policy}: {policy_env(policy, opts) or 'the default settings'} "
                     f"({_calm_text(calm)})")
            records[policy] = run_policy(opts, Path(tmp), policy, image, DEMO_PORT, capacity,
                                         settled=scaled_in if opts.until_scaled_in else None)
            records[policy].notes["calm"] = calm
            results[policy] = _clean(figures(records[policy]))
            if opts.png:
                from benchmarks.step_plot import plot_run

                path = opts.png.replace("{policy}", policy)
                plot_run(records[policy], results[policy], path)
                progress(f"{policy}: timeline {path}")
    print(table(results, opts, capacity))
    progress(f"whole run {time.monotonic() - started:.0f} s")
    if opts.json:
        write_json(opts.json, opts, calibration, results, records)
    return 0


if __name__ == "__main__":
    sys.exit(main())
