"""Helpers to run a real Agent (real engine, real Redis) in-process or as the CLI in
a subprocess, and to poll for conditions with a deadline."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import urllib.request
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import trio

from agent.adapters.config_sources import load_settings
from agent.core.settings import Settings
from agent.service.runtime import Agent
from agent.service.wiring import make_balancer
from agent.adapters.sampler import Sampler
from agent.adapters.redis_store import RedisStore
from tests.web.util import eventually

T = TypeVar("T")

# Agents made by `make_agent` in the current test; tests/integration/conftest.py
# closes their engine and store clients at teardown.
CREATED: list[Agent] = []

# Fast settings for tests. CPU carries most of the weight so that the real load the
# tests drive (a busy core, shared with whatever else this 2-core machine runs) is
# what moves the score: with the compat weights a saturated core alone gives ≈ 65.
FAST = {
    "CPU_WEIGHT": "0.8",
    "MEMORY_WEIGHT": "0.1",
    "NETWORK_WEIGHT": "0.05",
    "AVAILABILITY_WEIGHT": "0.05",
    "TICK_INTERVAL": "0.5",
    "SCALE_CHECK_PERIOD": "2",
    "COOLDOWN_PERIOD": "1",
    "HIGH_LOAD_THRESHOLD": "75",
    "LOW_LOAD_THRESHOLD": "90",
    "CRITICAL_LOAD_THRESHOLD": "5",
    "DRAIN_TIMEOUT": "8",
    "PROBE_TIMEOUT": "0.4",
}


def settings_for(app: Any, redis_url: str, data_dir: Path, *, fast: bool = True,
                 **extra: object) -> Settings:
    environ = {**app.env(), **(FAST if fast else {}), "REDIS_URL": redis_url,
               "DATA_DIR": str(data_dir)}
    environ.update({k: str(v) for k, v in extra.items()})
    return load_settings(environ=environ, env_file=None)


def make_agent(app: Any, redis_url: str, data_dir: Path, *, fast: bool = True,
               **extra: object) -> Agent:
    """An in-process Agent on the real engine and Redis; with BALANCER=haproxy in
    `extra`, with its real balancer (`make_balancer`), the embedded one in
    `data_dir`/haproxy (keep `data_dir` short: a unix socket path has 107 bytes)."""
    settings = settings_for(app, redis_url, data_dir, fast=fast, **extra)
    engine_kwargs: dict[str, Any] = {}
    if settings.container_cpus is not None:
        engine_kwargs["cpus"] = settings.container_cpus
    if settings.container_memory is not None:
        engine_kwargs["mem_limit"] = settings.container_memory
    limiter = trio.CapacityLimiter(16)
    engine = app.engine(limiter=limiter, **engine_kwargs)
    store = RedisStore(redis_url, settings.app_identifier, limiter=limiter)
    sampler = Sampler(engine.is_local, limiter=limiter, stats_source=engine.read_stats)
    agent = Agent(settings, engine=engine, store=store, sampler=sampler,
                  balancer=make_balancer(settings))
    CREATED.append(agent)
    return agent


async def wait_for(
    predicate: Callable[[], Awaitable[T] | T], *, timeout: float, what: str, every: float = 0.2
) -> T:
    """Poll `predicate` until it returns something truthy; fail after `timeout`."""
    return await eventually(predicate, timeout=timeout, interval=every, message=f"waiting for {what}")


def running_names(app: Any) -> set[str]:
    rows = app.client.api.containers(
        filters={"label": [f"{k}={v}" for k, v in app.labels.items()], "status": "running"}
    )
    return {row["Names"][0].lstrip("/") for row in rows}


def all_owned_names(app: Any) -> set[str]:
    rows = app.client.api.containers(
        all=True, filters={"label": [f"{k}={v}" for k, v in app.labels.items()]}
    )
    return {row["Names"][0].lstrip("/") for row in rows}


def burn(address: str, port: int, seconds: int) -> None:
    """Keep one core of the container busy for `seconds` (blocks until done)."""
    url = f"http://{address}:{port}/cgi-bin/burn?seconds={seconds}"
    try:
        with urllib.request.urlopen(url, timeout=seconds + 10) as resp:
            resp.read()
    except OSError:
        pass  # the container may be removed while it burns


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# A short lease for agents in subprocesses: a killed agent's successor (a restart,
# or another agent of the pool) takes over within 4 s instead of the default 10 s.
# Not shorter: an engine call must end within half of it (docs/leadership.md),
# and a create takes over a second here when the machine is loaded.
PROCESS_LEASE_TTL = 4.0


class AgentProcess:
    """`deployment-agent run` in a subprocess (for SIGTERM, kill -9, SIGSTOP and
    several-agent tests)."""

    def __init__(self, app: Any, redis_url: str, data_dir: Path, *, own_group: bool = False,
                 **extra: object) -> None:
        self.own_group = own_group  # its own process group, for a kill -9 of all of it
        http_port = free_port()
        self.env = {
            **os.environ,
            **app.env(),
            **FAST,
            "LEADER_LEASE_TTL": str(PROCESS_LEASE_TTL),
            "REDIS_URL": redis_url,
            "DATA_DIR": str(data_dir),
            "HOST_PORT_HTTP_DEPLOYMENT_AGENT": str(http_port),
            "HOST_PORT_WS_DEPLOYMENT_AGENT": str(free_port()),
            "AGENT_API_TOKEN": "test-token",
        }
        self.env.update({k: str(v) for k, v in extra.items()})
        self.log = data_dir / "agent.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        out = self.log.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "agent.interfaces.cli", "run", "--env-file", os.devnull],
            env=self.env, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=self.own_group,
        )
        out.close()

    @property
    def url(self) -> str:
        """The agent's API, as it advertises it (BIND_HOST is 127.0.0.1)."""
        return f"http://127.0.0.1:{self.env['HOST_PORT_HTTP_DEPLOYMENT_AGENT']}"

    @property
    def token(self) -> str:
        return self.env["AGENT_API_TOKEN"]

    def signal(self, signum: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(signum)

    def wait(self, timeout: float) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout)

    def kill_group(self) -> None:
        """``kill -9`` of the agent's whole process group (it must have its own)."""
        assert self.proc is not None and self.own_group
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)

    @property
    def http_port(self) -> int:
        return int(self.env["HOST_PORT_HTTP_DEPLOYMENT_AGENT"])

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.send_signal(signal.SIGCONT)  # a stopped process dies only once resumed
            self.proc.wait(10)

    def tail(self) -> str:
        try:
            return self.log.read_text()[-3000:]
        except FileNotFoundError:
            return ""
