"""The agent's own cost: CPU per container-sample, tick time and memory at N containers.

    python -m benchmarks.bench_agent                           # N = 20, 100, 300; 60 s each
    python -m benchmarks.bench_agent --n 100 --seconds 30 --json bench-results/agent.json
    python -m benchmarks.bench_agent --n 3 --seconds 5 --quick  # smoke run

For each N, on the real engine:

1. N idle demo workers are created with the agent's labels under a fresh
   APP_IDENTIFIER (concurrently, through the project's own `DockerEngine`), and a
   redis-server is started for this run, so that every process involved is known;
2. the real agent runs in a child process (``deployment-agent run``, TICK_INTERVAL
   1 s, DEFAULT_CONTAINER = MAX_CONTAINERS = N, so it adopts the pool and neither
   scales nor replaces), and after a warm-up its CPU and that of every process it
   makes work for is measured over `--seconds`: the agent itself, dockerd,
   containerd, the workers' shims and port proxies, redis-server (and an embedded
   haproxy when the agent runs one);
3. the *net* cost, the part due to sampling: N idle containers cost the
   engine something with nothing sampling them (the shims' own timers,
   dockerd's housekeeping) and, on a shared machine, dockerd also serves
   everyone else meanwhile. So the same processes are measured over `--pairs`
   pairs of `--pair-seconds` windows, the agent running in one and stopped
   (SIGSTOP) in the other, in alternating order: net = running − stopped, per
   second, which cancels what does not come from the agent as far as it does
   not change faster than the windows. The stopped windows' rate is also the
   idle baseline subtracted from the stats-API way's figures;
   The agent reaches the engine through a relay of the benchmark's
   (`EngineRelay`, unless `--no-relay`), which counts its API requests by
   kind: what it asks of dockerd, exactly, however busy dockerd is otherwise;
4. with the agent gone, the way the seed sampled — the engine's stats API,
   docker-py ``stats(stream=False, one_shot=True)`` for every container once a
   second from 16 threads — runs in a child process over the same containers for
   the same time, and the same processes (the poller instead of the agent) are
   measured the same way.

CPU per container-sample = CPU seconds of those processes over the window /
(N × samples taken in it); net per group = (running − stopped CPU per second)
/ (N × samples per second). CPU time is read from each
process's CPU clock (nanoseconds, exited threads included), not from /proc's
10 ms clock ticks. The agent's samples are its ticks (from its own
`/metrics`); the poller's are its completed rounds. Tick p50/p99 come from the
agent's `tick_duration_seconds` histogram (interpolated inside a bucket), RSS
from /proc. dockerd and containerd are shared by everything on the engine: other
work on this machine during a run shows up in their figures (the load average is
recorded). Every container and process the benchmark started is removed at the
end, also after an error or Ctrl-C.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import platform
import re
import secrets
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_NS = (20, 100, 300)
STATS_THREADS = 16
_CLK_TCK = os.sysconf("SC_CLK_TCK")

TARGETS = {
    "cost_ms_per_sample_n100": 0.35,
    "stats_api_ratio": 20.0,
    "tick_p99_ms_n100": 100.0,
    "tick_p99_ms_n300": 250.0,
    "agent_rss_mib_n300": 150.0,
}


# --------------------------------------------------------------------------- /proc


def cpu_seconds(pid: int) -> float:
    """CPU time of a process (all its threads, the exited ones included), 0 when
    it is gone: its process CPU clock (nanoseconds, `clock_getcpuclockid`'s id
    computed here), else utime + stime from /proc (clock ticks: 10 ms, too
    coarse for an agent that spends a few ms a second)."""
    try:
        return time.clock_gettime_ns((~pid << 3) | 2) / 1e9  # CPUCLOCK_SCHED of `pid`
    except OSError:
        pass
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / _CLK_TCK


def rss_mib(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except FileNotFoundError:
        pass
    return math.nan


def _comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def _cmdline(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return []


def _ppid(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return int(f.read().rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return None


def all_pids() -> Iterator[int]:
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            yield int(entry.name)


def engine_processes(container_pids: Iterable[int], host_ports: Iterable[int]) -> dict[str, list[int]]:
    """dockerd, containerd, the shims of these containers and their port proxies."""
    ports = {str(p) for p in host_ports}
    groups: dict[str, list[int]] = {"dockerd": [], "containerd": [], "shims": [], "proxies": []}
    for pid in all_pids():
        comm = _comm(pid)
        if comm == "dockerd":
            groups["dockerd"].append(pid)
        elif comm == "containerd":
            groups["containerd"].append(pid)
        elif comm == "docker-proxy":
            args = _cmdline(pid)
            if "-host-port" in args and args[args.index("-host-port") + 1] in ports:
                groups["proxies"].append(pid)
    shims = {_ppid(pid) for pid in container_pids}
    groups["shims"] = sorted(p for p in shims if p is not None and _comm(p).startswith("containerd-shim"))
    return groups


@dataclass
class CpuMeter:
    """CPU seconds of named groups of processes between `start()` and `stop()`."""

    groups: Mapping[str, list[int]]
    before: dict[int, float] = field(default_factory=dict)
    spent: dict[str, float] = field(default_factory=dict)

    def start(self) -> None:
        self.before = {pid: cpu_seconds(pid) for pids in self.groups.values() for pid in pids}

    def stop(self) -> dict[str, float]:
        self.spent = {
            name: sum(max(0.0, cpu_seconds(pid) - self.before.get(pid, 0.0)) for pid in pids)
            for name, pids in self.groups.items()
        }
        return self.spent


def load_average() -> float:
    return os.getloadavg()[0]


# --------------------------------------------------------------------------- the agent's metrics


_BUCKET = re.compile(r'^deployment_agent_tick_duration_seconds_bucket\{le="([^"]+)"\} ([0-9.e+]+)$')
_GAUGE = re.compile(r"^deployment_agent_(last_tick|containers_running) ([0-9.e+]+)$")


def scrape(port: int) -> tuple[dict[float, float], dict[str, float]]:
    """The tick histogram's cumulative buckets and a few gauges from /metrics."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    buckets: dict[float, float] = {}
    gauges: dict[str, float] = {}
    for line in text.splitlines():
        if m := _BUCKET.match(line):
            buckets[math.inf if m[1] == "+Inf" else float(m[1])] = float(m[2])
        elif m := _GAUGE.match(line):
            gauges[m[1]] = float(m[2])
    return buckets, gauges


def quantile(cumulative: Mapping[float, float], q: float) -> float:
    """`q`-quantile of a cumulative histogram, linear inside the bucket it falls in."""
    bounds = sorted(cumulative)
    total = cumulative[bounds[-1]] if bounds else 0
    if total <= 0:
        return math.nan
    rank = q * total
    lower, below = 0.0, 0.0
    for bound in bounds:
        count = cumulative[bound]
        if count >= rank:
            if math.isinf(bound):
                return lower
            inside = count - below
            return lower + (bound - lower) * ((rank - below) / inside if inside else 1.0)
        lower, below = bound, count
    return lower


# --------------------------------------------------------------------------- engine requests


_REQUEST = re.compile(rb"(?:^|\r\n)(GET|POST|PUT|DELETE|HEAD) (/[^ ?]*)[^ ]* HTTP/1\.[01]\r\n")


def request_kind(path: str) -> str:
    """What an engine API path asks for, by its shape."""
    tail = re.sub(r"^/v[0-9.]+", "", path)
    if tail == "/containers/json":
        return "list"
    if tail == "/events":
        return "events"
    if re.fullmatch(r"/containers/[^/]+/json", tail):
        return "inspect"
    if re.fullmatch(r"/containers/[^/]+/stats", tail):
        return "stats"
    return "other"


class EngineRelay:
    """A unix-socket relay to the engine that counts the requests going through it.

    The agent is given ``DOCKER_HOST=unix://<relay>``: every engine request it
    makes is counted by kind (list, inspect, events, stats, other) — what it asks
    of the engine, exactly, whatever else dockerd is doing for others on this
    machine. (Request lines are found in the client's byte stream; a request body
    that contained one would be counted too — the agent's bodies do not.)
    """

    def __init__(self, path: Path, engine_socket: str) -> None:
        import socket

        self.path = path
        self.engine_socket = engine_socket
        self.counts: dict[str, int] = {}
        self._lock = threading.Lock()
        self._socks: list[Any] = []
        self._listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        path.unlink(missing_ok=True)
        self._listener.bind(str(path))
        self._listener.listen(64)
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"unix://{self.path}"

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(self.counts)

    def close(self) -> None:
        import socket

        for sock in [self._listener, *self._socks]:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                sock.close()
        self.path.unlink(missing_ok=True)

    def _accept(self) -> None:
        import socket

        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                upstream.connect(self.engine_socket)
            except OSError:
                client.close()
                continue
            self._socks += [client, upstream]
            threading.Thread(target=self._pump, args=(client, upstream, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, False), daemon=True).start()

    def _pump(self, source: Any, sink: Any, count: bool) -> None:
        tail = b""
        try:
            while data := source.recv(65536):
                if count:
                    window = tail + data
                    kinds = [request_kind(m[2].decode(errors="replace")) for m in _REQUEST.finditer(window)
                             if m.end() > len(tail)]
                    if kinds:
                        with self._lock:
                            for kind in kinds:
                                self.counts[kind] = self.counts.get(kind, 0) + 1
                    tail = window[-200:]
                sink.sendall(data)
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                sink.shutdown(1)  # SHUT_WR: the other direction may go on


# --------------------------------------------------------------------------- real parts


def free_port() -> int:
    from agent.adapters.redis_server import free_loopback_port

    return free_loopback_port()


@contextmanager
def redis_server(workdir: Path) -> Iterator[tuple[str, int]]:
    from agent.adapters.redis_server import redis_server_argv

    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    argv = redis_server_argv("redis-server", port=port, data_dir=workdir, appendonly=True)
    log = open(workdir / "redis.log", "wb")
    proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        _wait(lambda: _redis_ping(port), 15, "redis-server did not answer")
        yield f"redis://127.0.0.1:{port}/0", proc.pid
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def _redis_ping(port: int) -> bool:
    import socket

    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def _wait(check: Any, within: float, what: str, every: float = 0.2) -> Any:
    deadline = time.monotonic() + within
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        time.sleep(every)


def create_workers(app: str, n: int, image: str, port: int) -> list[Any]:
    """N running demo workers with the agent's labels, made 8 at a time."""
    import trio

    from agent.adapters.docker_engine import DockerEngine

    async def main() -> list[Any]:
        engine = DockerEngine(base_url=_docker_host(), app_identifier=app, image=image, target_port=port)
        made: list[Any] = []
        limiter = trio.Semaphore(8)

        async def one() -> None:
            async with limiter:
                made.append(await engine.create())
                if len(made) % 25 == 0:
                    progress(f"  {len(made)}/{n} workers")

        try:
            async with trio.open_nursery() as nursery:
                for _ in range(n):
                    nursery.start_soon(one)
        finally:
            await engine.aclose()
        return made

    return trio.run(main)


def remove_app(app: str) -> int:
    import docker

    from agent.adapters.docker_engine import APP_LABEL, OWNER_LABEL, OWNER_VALUE

    client = docker.APIClient(base_url=_docker_host(), version="auto", timeout=60)
    try:
        rows = client.containers(all=True, filters={"label": [f"{OWNER_LABEL}={OWNER_VALUE}", f"{APP_LABEL}={app}"]})
        threads = [threading.Thread(target=client.remove_container, args=(r["Id"],), kwargs={"force": True})
                   for r in rows]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return len(rows)
    finally:
        client.close()


def _docker_host() -> str:
    return os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"


def progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- one N


@dataclass
class Run:
    n: int
    seconds: float
    warmup: float
    workdir: Path
    image: str
    port: int
    pairs: int = 0
    pair_seconds: float = 5.0
    count_requests: bool = True


def agent_env(run: Run, app: str, redis_url: str, http_port: int, ws_port: int,
              docker_host: str | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DOCKER_IMAGE", "TARGET_PORT"))}
    if docker_host is not None:
        env["DOCKER_HOST"] = docker_host
    env.update({
        "PYTHONPATH": str(ROOT) + os.pathsep + env.get("PYTHONPATH", ""),
        "APP_IDENTIFIER": app,
        "DOCKER_IMAGE": run.image,
        "TARGET_PORT": str(run.port),
        "DEFAULT_CONTAINER": str(run.n),
        "MAX_CONTAINERS": str(run.n),
        "TICK_INTERVAL": "1",
        "REDIS_URL": redis_url,
        "HOST_PORT_HTTP_DEPLOYMENT_AGENT": str(http_port),
        "HOST_PORT_WS_DEPLOYMENT_AGENT": str(ws_port),
        "DATA_DIR": str(run.workdir / "agent"),
        "AGENT_API_TOKEN": secrets.token_urlsafe(16),
        "LOG_LEVEL": "WARNING",
    })
    return env


def measure_agent(run: Run, app: str, workers: list[Any], redis: tuple[str, int]) -> dict[str, Any]:
    http_port, ws_port = free_port(), free_port()
    log = open(run.workdir / f"agent-{run.n}.log", "wb")
    relay = None
    engine = _docker_host()
    if run.count_requests and engine.startswith("unix://"):
        relay = EngineRelay(run.workdir / "engine.sock", engine.removeprefix("unix://"))
    proc = subprocess.Popen(
        [sys.executable, "-m", "agent.interfaces.cli", "run", "--env-file", os.devnull],
        env=agent_env(run, app, redis[0], http_port, ws_port, relay.url if relay else None),
        stdout=log, stderr=subprocess.STDOUT, cwd=ROOT,
    )
    try:
        def warmed() -> bool:
            if proc.poll() is not None:
                raise RuntimeError(f"the agent exited with {proc.returncode}; see {log.name}")
            try:
                _, gauges = scrape(http_port)
            except OSError:
                return False
            return gauges.get("containers_running") == run.n and gauges.get("last_tick", 0) >= 3

        _wait(warmed, 120, "the agent did not adopt the pool")
        time.sleep(run.warmup)  # a fixed settling time before the window, not a synchronisation
        groups = engine_processes((w.pid for w in workers), (w.host_port for w in workers))
        groups.update({"agent": [proc.pid], "redis": [redis[1]]})
        groups.update(_haproxy_children(proc.pid))
        meter = CpuMeter(groups)
        buckets0, gauges0 = scrape(http_port)
        load0 = load_average()
        requests0 = relay.snapshot() if relay else {}
        meter.start()
        t0 = time.monotonic()
        time.sleep(run.seconds)
        spent = meter.stop()
        elapsed = time.monotonic() - t0
        requests = ({k: v - requests0.get(k, 0) for k, v in relay.snapshot().items()}
                    if relay else None)
        buckets1, gauges1 = scrape(http_port)
        rss = rss_mib(proc.pid)
        pairs = None
        if run.pairs > 0:
            progress(f"N={run.n}: {run.pairs} pairs of {run.pair_seconds:g} s windows, the agent "
                     "running and stopped")
            pairs = paired_windows(proc, groups, http_port, run)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
        if relay is not None:
            relay.close()
    ticks = gauges1.get("last_tick", 0) - gauges0.get("last_tick", 0)
    window = {b: buckets1.get(b, 0) - buckets0.get(b, 0) for b in buckets1}
    return {
        "elapsed_s": elapsed,
        "samples": ticks * run.n,
        "ticks": ticks,
        "cpu_s": spent,
        "tick_p50_ms": quantile(window, 0.50) * 1000,
        "tick_p99_ms": quantile(window, 0.99) * 1000,
        "agent_rss_mib": rss,
        "load_average": (load0 + load_average()) / 2,
        "pairs": pairs,
        "engine_requests": requests,
        "engine_requests_per_sample": (None if requests is None or not ticks else
                                       sum(requests.values()) / (ticks * run.n)),
    }


def _haproxy_children(agent_pid: int) -> dict[str, list[int]]:
    """An embedded haproxy runs in its own session: found by its command line."""
    pids = [p for p in all_pids() if _comm(p) == "haproxy" and str(agent_pid) in " ".join(_cmdline(p))]
    return {"haproxy": pids} if pids else {}


def measure_stats_api(run: Run, workers: list[Any], redis_pid: int) -> dict[str, Any]:
    ids = run.workdir / f"ids-{run.n}.txt"
    ids.write_text("\n".join(w.id for w in workers))
    proc = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.bench_agent", "--stats-poller", str(ids), "--seconds", str(run.seconds)],
        stdout=subprocess.PIPE, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert proc.stdout is not None
    if proc.stdout.readline().strip() != b"READY":
        raise RuntimeError("the stats poller did not start")
    groups = engine_processes((w.pid for w in workers), (w.host_port for w in workers))
    groups.update({"poller": [proc.pid], "redis": [redis_pid]})
    meter = CpuMeter(groups)
    meter.start()
    # The poller's CPU must be read before it exits: it reports its rounds, then
    # waits for a line on stdin.
    line = proc.stdout.readline()
    spent = meter.stop()
    proc.communicate(b"\n", timeout=30)
    rounds, elapsed = (float(x) for x in line.split())
    return {"elapsed_s": elapsed, "samples": rounds * run.n, "rounds": rounds, "cpu_s": spent}


def paired_windows(proc: subprocess.Popen[bytes], groups: Mapping[str, list[int]], http_port: int,
                   run: Run) -> dict[str, Any]:
    """The agent running and stopped (SIGSTOP) in turn, `run.pairs` times."""
    totals: dict[str, Any] = {"on_s": 0.0, "off_s": 0.0, "ticks_on": 0.0,
                              "cpu_on": dict.fromkeys(groups, 0.0), "cpu_off": dict.fromkeys(groups, 0.0),
                              "per_pair": []}
    current: dict[str, Any] = {}

    def window(running: bool) -> None:
        if running:
            before = scrape(http_port)[1].get("last_tick", 0)
        meter = CpuMeter(groups)
        meter.start()
        t0 = time.monotonic()
        time.sleep(run.pair_seconds)
        spent = meter.stop()
        side = "on" if running else "off"
        took = time.monotonic() - t0
        totals[f"{side}_s"] += took
        for name, seconds in spent.items():
            totals[f"cpu_{side}"][name] += seconds
        current[side] = {"seconds": took, "cpu_s": spent}
        if running:
            ticks = scrape(http_port)[1].get("last_tick", 0) - before
            totals["ticks_on"] += ticks
            current["ticks"] = ticks

    try:
        for k in range(run.pairs):
            for running in ((True, False) if k % 2 == 0 else (False, True)):
                if not running:
                    proc.send_signal(signal.SIGSTOP)
                try:
                    window(running)
                finally:
                    if not running:
                        proc.send_signal(signal.SIGCONT)
            totals["per_pair"].append(dict(current))
    finally:
        proc.send_signal(signal.SIGCONT)
    return totals


def stats_poller(ids_file: Path, seconds: float) -> None:
    """Child process: the stats API for every container once a second, 16 threads."""
    from concurrent.futures import ThreadPoolExecutor

    import docker

    ids = ids_file.read_text().split()
    client = docker.APIClient(base_url=_docker_host(), version="auto", timeout=30, max_pool_size=STATS_THREADS)
    print("READY", flush=True)
    rounds = 0
    start = time.monotonic()
    with ThreadPoolExecutor(STATS_THREADS) as pool:
        while time.monotonic() - start < seconds:
            t0 = time.monotonic()
            list(pool.map(lambda cid: client.stats(cid, stream=False, one_shot=True), ids))
            rounds += 1
            time.sleep(max(0.0, 1.0 - (time.monotonic() - t0)))
    print(f"{rounds} {time.monotonic() - start:.3f}", flush=True)
    sys.stdin.readline()
    client.close()


def bench_one(run: Run) -> dict[str, Any]:
    app = f"bench-{secrets.token_hex(3)}"
    progress(f"N={run.n}: creating {run.n} workers ({app})")
    try:
        t0 = time.monotonic()
        workers = create_workers(app, run.n, run.image, run.port)
        progress(f"N={run.n}: {len(workers)} workers in {time.monotonic() - t0:.0f} s; agent window {run.seconds:g} s")
        with redis_server(run.workdir / f"redis-{run.n}") as redis:
            agent = measure_agent(run, app, workers, redis)
            progress(f"N={run.n}: stats-API window {run.seconds:g} s")
            stats = measure_stats_api(run, workers, redis[1])
    finally:
        removed = remove_app(app)
        progress(f"N={run.n}: removed {removed} containers")
    return {"app": app, **summarise(run.n, agent, stats)}


def _per_sample_ms(cpu: Mapping[str, float], samples: float) -> dict[str, float]:
    return {name: (1000 * s / samples if samples else math.nan) for name, s in cpu.items()}


ENGINE_KEYS = ("dockerd", "containerd", "shims", "proxies")


def _paired_net(per_pair: list[dict[str, Any]], n: int) -> dict[str, Any]:
    """Net ms per container-sample of each group, the median over the pairs of
    (running − stopped CPU per second) / (N × samples per second): a burst of
    someone else's work in one window moves one pair, not the median."""
    diffs: dict[str, list[float]] = {}
    totals: list[float] = []
    for pair in per_pair:
        on, off, ticks = pair["on"], pair["off"], pair.get("ticks", 0)
        if not ticks or on["seconds"] <= 0 or off["seconds"] <= 0:
            continue
        per = {k: 1000 * (v / on["seconds"] - off["cpu_s"][k] / off["seconds"]) * on["seconds"] / (ticks * n)
               for k, v in on["cpu_s"].items()}
        for k, v in per.items():
            diffs.setdefault(k, []).append(v)
        totals.append(sum(per.values()))
    return {"median": {k: statistics.median(v) for k, v in diffs.items()}, "totals": sorted(totals)}


def summarise(n: int, agent: dict[str, Any], stats: dict[str, Any]) -> dict[str, Any]:
    a = _per_sample_ms(agent["cpu_s"], agent["samples"])
    s = _per_sample_ms(stats["cpu_s"], stats["samples"])
    a_total, s_total = sum(a.values()), sum(s.values())
    out: dict[str, Any] = {
        "n": n,
        "agent": {**agent, "ms_per_sample": a, "engine_ms_per_sample": sum(a[k] for k in ENGINE_KEYS),
                  "total_ms_per_sample": a_total},
        "stats_api": {**stats, "ms_per_sample": s, "engine_ms_per_sample": sum(s[k] for k in ENGINE_KEYS),
                      "total_ms_per_sample": s_total},
        "stats_api_ratio": s_total / a_total if a_total else math.nan,
    }
    pairs = agent.get("pairs")
    if pairs and pairs["on_s"] > 0 and pairs["off_s"] > 0 and pairs["ticks_on"] > 0:
        idle = {k: 1000 * v / (n * pairs["off_s"]) for k, v in pairs["cpu_off"].items()}  # ms / container-s
        net = _paired_net(pairs["per_pair"], n)
        out["idle_ms_per_container_second"] = idle
        out["idle_total_ms_per_container_second"] = sum(v for k, v in idle.items() if k != "agent")
        out["agent"]["net_ms_per_sample"] = net["median"]
        out["agent"]["net_total_ms_per_sample"] = (statistics.median(net["totals"]) if net["totals"]
                                                   else math.nan)
        out["agent"]["net_total_ms_per_sample_pairs"] = net["totals"]
        samples_per_s = stats["samples"] / (n * stats["elapsed_s"])
        s_net = {k: v - idle.get(k, 0.0) / max(samples_per_s, 1e-9) for k, v in s.items()}
        out["stats_api"]["net_ms_per_sample"] = s_net
        out["stats_api"]["net_total_ms_per_sample"] = sum(s_net.values())
        a_net = out["agent"]["net_total_ms_per_sample"]
        out["net_stats_api_ratio"] = sum(s_net.values()) / a_net if a_net > 0 else math.nan
    return out


# --------------------------------------------------------------------------- report


def verdicts(results: list[dict[str, Any]]) -> list[tuple[str, str, str]]:
    by_n = {r["n"]: r for r in results}
    rows: list[tuple[str, str, str]] = []

    def check(name: str, value: float, limit: float, *, at_least: bool = False) -> None:
        ok = value >= limit if at_least else value <= limit
        rows.append((name, f"{value:.3g}", f"{'PASS' if ok else 'MISS'} ({'≥' if at_least else '≤'} {limit:g})"))

    if 100 in by_n:
        r = by_n[100]
        check("CPU ms per container-sample, N=100", r["agent"]["total_ms_per_sample"], TARGETS["cost_ms_per_sample_n100"])
        if "net_total_ms_per_sample" in r["agent"]:
            check("  the same, net (running − stopped)", r["agent"]["net_total_ms_per_sample"],
                  TARGETS["cost_ms_per_sample_n100"])
        check("stats API / agent, N=100", r["stats_api_ratio"], TARGETS["stats_api_ratio"], at_least=True)
        if "net_stats_api_ratio" in r:
            check("  the same, net of the idle engine", r["net_stats_api_ratio"], TARGETS["stats_api_ratio"],
                  at_least=True)
        check("tick p99 ms, N=100", r["agent"]["tick_p99_ms"], TARGETS["tick_p99_ms_n100"])
    if 300 in by_n:
        r = by_n[300]
        check("tick p99 ms, N=300", r["agent"]["tick_p99_ms"], TARGETS["tick_p99_ms_n300"])
        check("agent RSS MiB, N=300", r["agent"]["agent_rss_mib"], TARGETS["agent_rss_mib_n300"])
    if len(by_n) >= 2:
        lo, hi = min(by_n), max(by_n)
        for label, key in (("", "total_ms_per_sample"), (" (net)", "net_total_ms_per_sample")):
            if key in by_n[hi]["agent"] and key in by_n[lo]["agent"]:
                growth = by_n[hi]["agent"][key] / by_n[lo]["agent"][key]
                rows.append((f"cost per sample N={hi} / N={lo}{label}", f"{growth:.2f}", "flat ≈ 1"))
        growth = by_n[hi]["agent"]["ms_per_sample"]["agent"] / by_n[lo]["agent"]["ms_per_sample"]["agent"]
        rows.append((f"agent process alone N={hi} / N={lo}", f"{growth:.2f}", "flat ≈ 1"))
    return rows


def table(results: list[dict[str, Any]]) -> str:
    head = ("N", "agent", "engine", "redis", "total", "idle", "net", "stats API", "stats net",
            "ratio", "net ratio", "eng req", "tick p50", "tick p99", "RSS MiB")
    width = 10 * len(head)
    lines = ["The agent's own cost (CPU ms per container-sample; idle: engine and Redis with the agent "
             "stopped, per container-second; net: running - stopped, median of the pairs; "
             "eng req: engine API requests per container-sample; ticks in ms)", "-" * width,
             "".join(f"{h:>10}" for h in head)]
    for r in results:
        a, s = r["agent"], r["stats_api"]
        idle = r.get("idle_total_ms_per_container_second", math.nan)
        cells = (r["n"], a["ms_per_sample"]["agent"], a["engine_ms_per_sample"], a["ms_per_sample"]["redis"],
                 a["total_ms_per_sample"], idle, a.get("net_total_ms_per_sample", math.nan),
                 s["total_ms_per_sample"], s.get("net_total_ms_per_sample", math.nan), r["stats_api_ratio"],
                 r.get("net_stats_api_ratio", math.nan),
                 math.nan if a.get("engine_requests_per_sample") is None else a["engine_requests_per_sample"],
                 a["tick_p50_ms"], a["tick_p99_ms"], a["agent_rss_mib"])
        lines.append("".join(f"{c:>10}" if isinstance(c, int) else f"{c:>10.3g}" for c in cells))
    lines.append("-" * width)
    lines += [f"{name:<44}{value:>12}  {verdict}" for name, value, verdict in verdicts(results)]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, action="append", help="pool size (repeatable; default 20, 100, 300)")
    parser.add_argument("--seconds", type=float, default=60.0, help="measured window per N and way (default 60)")
    parser.add_argument("--warmup", type=float, default=5.0, help="settling time before each window, s (default 5)")
    parser.add_argument("--pairs", type=int, default=4,
                        help="pairs of windows with the agent running and stopped, for the net cost (default 4; 0: none)")
    parser.add_argument("--pair-seconds", type=float, default=5.0, help="length of each of those windows, s (default 5)")
    parser.add_argument("--no-relay", action="store_true",
                        help="connect the agent to the engine directly, without counting its requests")
    parser.add_argument("--quick", action="store_true", help="smoke run: no settling time")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    parser.add_argument("--stats-poller", metavar="IDS", help=argparse.SUPPRESS)
    opts = parser.parse_args(argv)
    if opts.stats_poller:
        stats_poller(Path(opts.stats_poller), opts.seconds)
        return 0
    ns = opts.n or list(DEFAULT_NS)
    if any(not 1 <= n <= 1000 for n in ns) or not 1 <= opts.seconds <= 600 or not 0 <= opts.pairs <= 60 \
            or not 1 <= opts.pair_seconds <= 120:
        parser.error("--n must be in 1..1000, --seconds in 1..600, --pairs in 0..60, --pair-seconds in 1..120")
    from agent.adapters.demo_image import DEMO_IMAGE, DEMO_PORT, ensure_demo_image

    image = ensure_demo_image(_docker_host(), DEMO_IMAGE)
    results = []
    with tempfile.TemporaryDirectory(prefix="bench-agent-") as tmp:
        for n in ns:
            workdir = Path(tmp) / f"n{n}"
            workdir.mkdir()
            run = Run(n=n, seconds=opts.seconds, warmup=0.0 if opts.quick else opts.warmup,
                      workdir=workdir, image=image, port=DEMO_PORT,
                      pairs=0 if opts.quick else opts.pairs, pair_seconds=opts.pair_seconds,
                      count_requests=not opts.no_relay)
            results.append(bench_one(run))
    print(table(results))
    if opts.json:
        doc = {
            "benchmark": "agent_cost",
            "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
            "settings": {"seconds": opts.seconds, "warmup": opts.warmup, "tick_interval": 1.0,
                         "stats_threads": STATS_THREADS,
                         "pairs": opts.pairs, "pair_seconds": opts.pair_seconds},
            "targets": TARGETS,
            "results": results,
            "verdicts": [{"name": n, "value": v, "verdict": d} for n, v, d in verdicts(results)],
        }
        Path(opts.json).parent.mkdir(parents=True, exist_ok=True)
        Path(opts.json).write_text(json.dumps(doc, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
