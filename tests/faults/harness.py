"""The fault suite's tools: the real agent in a subprocess (optionally inside a
network namespace), its HTTP API, its memory, the pool as the engine and Redis
see it, and a check of what a fault lost.

Everything here is synchronous: the agent runs in its own process, so a test
blocks on its probes and polls with `poll` (a deadline, never a bare sleep; a
fault's own duration, such as Redis down 30 s, is the exception).
"""
from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import docker
import redis

from agent.adapters.docker_engine import APP_LABEL, OWNER_LABEL, OWNER_VALUE

T = TypeVar("T")

TOKEN = "fault-suite-token-5f0c2a"

# Short periods: every fault recovers in a few ticks.
FAST = {
    "TICK_INTERVAL": "0.5",
    "SCALE_CHECK_PERIOD": "2",
    "COOLDOWN_PERIOD": "1",
    # Scores must not move the pool while faults are injected: no scale decision
    # can fire (the thresholds are out of reach), reconcile alone acts.
    "HIGH_LOAD_THRESHOLD": "0.5",
    "CRITICAL_LOAD_THRESHOLD": "0",
    "LOW_LOAD_THRESHOLD": "100",
    "DRAIN_TIMEOUT": "6",
    "PROBE_TIMEOUT": "0.4",
    "LOG_LEVEL": "INFO",
    # A restarted agent follows until its killed predecessor's lease lapses
    # (docs/leadership.md): 4 s, not the default 10 s.
    "LEADER_LEASE_TTL": "4",
}


def poll(probe: Callable[[], T], *, timeout: float, message: str, interval: float = 0.1) -> tuple[T, float]:
    """Call `probe` until it returns something truthy; (value, seconds taken).

    OS, HTTP, Docker and Redis errors count as "not yet" (what is being faulted
    refuses calls). Raises AssertionError with `message` and the last value."""
    start = time.monotonic()
    last: Any = None
    while True:
        try:
            last = probe()
        except (OSError, http.client.HTTPException, docker.errors.DockerException,
                redis.exceptions.RedisError, ValueError) as exc:
            last = exc
        else:
            if last:
                return last, time.monotonic() - start
        if time.monotonic() - start > timeout:
            raise AssertionError(f"{message}: not within {timeout} s (last: {last!r:.2000})")
        time.sleep(interval)


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def text(self) -> str:
        return self.body.decode(errors="replace")


def http_call(
    host: str, port: int, path: str, method: str = "GET", *, body: Any = None,
    raw: bytes | None = None, headers: Mapping[str, str] | None = None, timeout: float = 10.0,
) -> Reply:
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        hdrs = dict(headers or {})
        data = raw
        if body is not None:
            data = json.dumps(body).encode()
            hdrs.setdefault("Content-Type", "application/json")
        conn.request(method, path, body=data, headers=hdrs)
        response = conn.getresponse()
        return Reply(response.status, {k.lower(): v for k, v in response.getheaders()},
                     response.read())
    finally:
        conn.close()


class AgentRun:
    """``deployment-agent run`` in a subprocess; `netns` runs it inside a network
    namespace (``nsenter --net``: the lab engine's workers publish their ports
    there). Its stderr goes to `log`."""

    def __init__(self, env: Mapping[str, str], data_dir: Path, *, host: str = "127.0.0.1",
                 http_port: int, netns: Path | None = None) -> None:
        self.env = {**os.environ, **env, "DATA_DIR": str(data_dir), "BIND_HOST": host,
                    "HOST_PORT_HTTP_DEPLOYMENT_AGENT": str(http_port),
                    "AGENT_API_TOKEN": env.get("AGENT_API_TOKEN", TOKEN)}
        self.env.setdefault("HOST_PORT_WS_DEPLOYMENT_AGENT", str(http_port))
        self.host, self.http_port = host, http_port
        self.token = self.env["AGENT_API_TOKEN"]
        self.data_dir = data_dir
        self.log = data_dir.parent / f"{data_dir.name}-agent.log"
        self.netns = netns
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self) -> None:
        argv = [sys.executable, "-m", "agent.interfaces.cli", "run", "--env-file", os.devnull]
        if self.netns is not None:
            argv = ["nsenter", f"--net={self.netns}", *argv]  # execs: the pid is the agent's
        self.data_dir.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(argv, env=self.env, stdout=out, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL)
        self.starts += 1

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> int | None:
        """SIGTERM, then SIGKILL after 20 s; the exit code."""
        if self.proc is None or self.proc.poll() is not None:
            return None if self.proc is None else self.proc.returncode
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait(10)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def output(self) -> str:
        try:
            return self.log.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def tail(self, chars: int = 4000) -> str:
        return self.output()[-chars:]

    def rss(self) -> int:
        """Resident memory of the agent process, bytes."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        raise AssertionError("no VmRSS")

    def api(self, path: str, method: str = "GET", *, body: Any = None, token: str | None = None,
            headers: Mapping[str, str] | None = None, timeout: float = 10.0) -> Reply:
        hdrs = dict(headers or {})
        if token is not None:
            hdrs["Authorization"] = f"Bearer {token}"
        return http_call(self.host, self.http_port, path, method, body=body, headers=hdrs,
                         timeout=timeout)

    def wait_ready(self, timeout: float = 60.0) -> float:
        """Seconds until /healthz answers 200 (the loop runs)."""
        return poll(lambda: self.alive() and self.api("/healthz", timeout=2).status == 200
                    or self._dead(), timeout=timeout, message=f"the agent up\n{self.tail()}")[1]

    def _dead(self) -> bool:
        if not self.alive():
            raise AssertionError(f"the agent exited ({self.proc and self.proc.returncode}):\n{self.tail()}")
        return False

    def queue(self) -> dict[str, Any]:
        return dict(self.api("/queue", timeout=3).json())

    def events(self, kind: str | None = None, limit: int = 500) -> list[dict[str, Any]]:
        query = f"/events?limit={limit}" + (f"&kind={kind}" if kind else "")
        return list(self.api(query, timeout=5).json()["events"])

    def lines(self, needle: str) -> list[str]:
        """Lines of the agent's stderr that contain `needle`."""
        return [line for line in self.output().splitlines() if needle in line]


# --------------------------------------------------------------------------- the pool


@dataclass
class Pool:
    """One app's containers as the engine lists them (name -> state)."""

    client: docker.DockerClient
    app: str
    states: dict[str, str] = field(default_factory=dict)

    def read(self) -> Pool:
        rows = self.client.api.containers(all=True, filters={"label": [
            f"{OWNER_LABEL}={OWNER_VALUE}", f"{APP_LABEL}={self.app}"]})
        self.states = {row["Names"][0].lstrip("/"): row["State"] for row in rows}
        return self

    @property
    def running(self) -> set[str]:
        return {n for n, s in self.states.items() if s == "running"}


def losses(pool: Pool, agent: AgentRun, *, desired: int, store: redis.Redis | None = None,
           config: Mapping[str, Any] | None = None) -> list[str]:
    """What a fault lost, once the agent has settled: each broken invariant as a
    sentence (empty: nothing lost). The engine must run exactly `desired` owned
    containers and nothing else of the app; the agent must want `desired` and
    route to exactly those; `store` (Redis), when given, must hold the same
    records, desired count and `config` overrides."""
    pool.read()
    out = []
    if pool.running != set(pool.states) or len(pool.running) != desired:
        out.append(f"engine: {len(pool.running)} running of {desired} desired, states {pool.states}")
    queue = agent.queue()
    routed = {i["dns_name"] for i in queue["queue"] if i["utilization_category"] != "SUNDOWN"}
    if queue["desired"] != desired:
        out.append(f"agent: desired {queue['desired']}, expected {desired}")
    if routed != pool.running:
        out.append(f"agent routes {sorted(routed)}, the engine runs {sorted(pool.running)}")
    if store is not None:
        prefix = f"da:{pool.app}:"
        records = set(store.hkeys(prefix + "containers"))
        if records != set(pool.states):
            out.append(f"Redis records {sorted(records)} != containers {sorted(pool.states)}")
        if store.get(prefix + "desired") != str(desired):
            out.append(f"Redis desired {store.get(prefix + 'desired')!r}, expected {desired}")
        for name, value in (config or {}).items():
            stored = store.hget(prefix + "config", name)
            if stored is None or json.loads(stored) != value:
                out.append(f"Redis config {name} = {stored!r}, expected {value!r}")
    return out


def settle(pool: Pool, agent: AgentRun, *, desired: int, timeout: float = 60.0,
           what: str = "the pool settled", **kw: Any) -> float:
    """Poll until `losses` is empty; the seconds it took (the failure names what
    is still wrong, and the agent's log)."""
    found: list[str] = []

    def done() -> bool:
        found[:] = losses(pool, agent, desired=desired, **kw)
        return not found

    try:
        return poll(done, timeout=timeout, message=what)[1]
    except AssertionError as exc:
        raise AssertionError(f"{exc}\nstill: {found}\n{agent.tail()}") from None


def mib(n: int) -> float:
    return n / 2**20
