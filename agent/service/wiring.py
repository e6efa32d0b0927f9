"""Wires the real parts together: Redis (configured or embedded), the Docker engine,
the sampler, the scorer, the load balancer (BALANCER=haproxy: the agent's own
haproxy, or a backend of the user's with HAPROXY_SOCKET), the tick loop and the
web server, in one root nursery.

SIGINT/SIGTERM cancel that nursery: the tick in flight is abandoned or finished,
the state is written under a shielded scope, a leader releases its lease (a
follower takes over at its next tick), WebSocket clients get 1001, the embedded
redis-server is stopped, and `run_service` returns normally (exit 0). The
embedded haproxy is *not* stopped: like the workers, the data plane keeps serving
while the agent is away, and the next agent adopts it (see docs/balancer.md).
"""
from __future__ import annotations

import contextlib
import logging
import signal
import socket
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import trio

from agent.core.errors import ConfigError
from agent.core.ports import Engine, SampleSource
from agent.core.settings import Settings
from agent.adapters.docker_engine import DockerEngine, container_name_prefix
from agent.adapters.haproxy import HAProxyBalancer
from agent.core.balancer import Balancer
from agent.adapters.redis_server import EmbeddedRedis
from agent.adapters.secret_file import read_or_create_secret
from agent.service.facade import AgentFacade
from agent.service.runtime import Agent
from agent.adapters.sampler import Sampler
from agent.adapters.redis_store import RedisStore

__all__ = ["HAPROXY_DIR", "Running", "advertised_url", "ensure_token", "make_balancer",
           "open_agent", "run_service", "store_timing"]

log = logging.getLogger("deployment_agent.service")

TOKEN_FILE = "api-token"


def ensure_token(settings: Settings) -> tuple[str, Path | None]:
    """The API token: AGENT_API_TOKEN, or one generated once and kept (mode 0600)
    in the data directory so that restarts and the CLI agree on it."""
    if settings.agent_api_token:
        return settings.agent_api_token, None
    path = settings.data_dir / TOKEN_FILE
    return read_or_create_secret(path), path


@dataclass
class Running:
    """What `run_service` reports once everything listens."""

    agent: Agent
    http_port: int
    ws_port: int
    redis_url: str
    token_file: Path | None
    application: str | None = None  # where the embedded balancer serves the app


def advertised_url(settings: Settings, http_port: int) -> str:
    """This agent's API as the others name it: ADVERTISE_URL, else the bound
    address (the host name for a wildcard bind, which no client can dial)."""
    if settings.advertise_url:
        return settings.advertise_url
    host = settings.bind_host
    if host in ("0.0.0.0", "::", ""):
        host = socket.gethostname()
    host = f"[{host}]" if ":" in host else host
    return f"http://{host}:{http_port}"


def store_timing(settings: Settings) -> tuple[float, float, float]:
    """Store timeouts that fit the lease: a renewal never blocks for a third of the
    TTL, and after an outage the store retries at least four times per TTL, so a
    short outage does not cost the leader its lease."""
    ttl = settings.leader_lease_ttl
    # (socket_timeout, backoff_initial, backoff_max) of `RedisStore`
    return min(2.0, ttl / 3), min(0.25, ttl / 8), min(10.0, ttl / 4)


@asynccontextmanager
async def open_agent(settings: Settings) -> AsyncIterator[tuple[Agent, str]]:
    """An `Agent` over the real engine and Redis; the embedded redis-server (when
    no Redis is configured) lives exactly as long as this context."""
    if settings.engine == "swarm" and settings.redis_url is None:
        raise ConfigError("ENGINE", "swarm needs a Redis the collectors share: set "
                          "REDIS_URL (or REDIS_HOST); the embedded one is local")
    limiter = trio.CapacityLimiter(16)
    timeout, backoff_initial, backoff_max = store_timing(settings)
    async with _redis(settings) as redis_url:
        store = RedisStore(
            redis_url, settings.app_identifier, limiter=limiter,
            ledger_max_len=settings.ledger_max_len, socket_timeout=timeout,
            backoff_initial=backoff_initial, backoff_max=backoff_max,
        )
        engine, sampler, close_sampler = _engine_and_sampler(settings, limiter, redis_url)
        agent = Agent(settings, engine=engine, store=store, sampler=sampler,
                      balancer=make_balancer(settings))
        try:
            yield agent, redis_url
        finally:
            await agent.aclose()
            with trio.CancelScope(shield=True):
                await close_sampler()


def _engine_and_sampler(
    settings: Settings, limiter: trio.CapacityLimiter, redis_url: str
) -> tuple[Engine, SampleSource, Callable[[], Awaitable[None]]]:
    """The engine, the sampler, and what closes the sampler's own clients.

    ENGINE=docker: the engine at DOCKER_HOST, sampled from its cgroup files here.
    ENGINE=swarm: the swarm's services, sampled by the nodes' collectors, whose
    reports come through Redis (so no cgroup file is read here)."""
    if settings.engine == "swarm":
        from agent.adapters.sample_board import SampleBoard
        from agent.adapters.swarm_engine import SwarmEngine
        from agent.adapters.swarm_sampler import SwarmSampler

        swarm = SwarmEngine(
            base_url=settings.docker_host, app_identifier=settings.app_identifier,
            image=settings.docker_image, target_port=settings.target_port, limiter=limiter,
            constraints=settings.swarm_constraints, network=settings.swarm_network,
            cpus=settings.container_cpus, memory_bytes=settings.container_memory_bytes,
        )
        board = SampleBoard(redis_url, settings.app_identifier, limiter=limiter)
        return swarm, SwarmSampler(board), board.aclose
    engine = DockerEngine(
        base_url=settings.docker_host,
        app_identifier=settings.app_identifier,
        image=settings.docker_image,
        target_port=settings.target_port,
        limiter=limiter,
        cpus=settings.container_cpus,
        mem_limit=settings.container_memory,
    )
    sampler = Sampler(engine.is_local, limiter=limiter, stats_source=engine.read_stats,
                      proc_root=settings.proc_root, cgroup_root=settings.cgroup_root)
    return engine, sampler, trio.lowlevel.checkpoint


#: The embedded haproxy's files (haproxy.cfg, haproxy.sock, haproxy.pid, haproxy.log)
#: live in this subdirectory of DATA_DIR.
HAPROXY_DIR = "haproxy"


def make_balancer(settings: Settings) -> Balancer | None:
    """The balancer the settings ask for (None for BALANCER=none).

    Raises `ConfigError` naming the setting (a static algorithm, a bad socket) and
    `BalancerError` (a data directory whose socket path is too long).
    """
    prefix = container_name_prefix(settings.app_identifier)
    if settings.balancer_mode == "embedded":
        return HAProxyBalancer.embedded(
            settings.data_dir / HAPROXY_DIR, prefix=prefix, bind=settings.balancer_bind,
            port=settings.balancer_port, algorithm=settings.balancer_algorithm,
            health_path=settings.health_path,
        )
    if settings.balancer_mode == "external":
        assert settings.haproxy_socket is not None and settings.haproxy_backend is not None
        return HAProxyBalancer.external(settings.haproxy_socket, settings.haproxy_backend,
                                        prefix=prefix)
    return None


@asynccontextmanager
async def _redis(settings: Settings) -> AsyncIterator[str]:
    if settings.redis_url is not None:
        yield settings.redis_url
        return
    server = EmbeddedRedis(settings.data_dir / "redis")
    url = await server.start()
    try:
        yield url
    finally:
        with trio.CancelScope(shield=True):
            await server.stop()


async def run_service(
    settings: Settings,
    *,
    task_status: trio.TaskStatus[Running] = trio.TASK_STATUS_IGNORED,
    handle_signals: bool = True,
) -> None:
    """Run the agent and its web server until SIGINT/SIGTERM or cancellation."""
    from agent.interfaces.web.server import serve

    token, token_file = ensure_token(settings)
    if token != settings.agent_api_token:
        settings = settings.with_token(token)
    # The receiver stays open until everything is shut down, so a second Ctrl-C
    # (or `timeout`, which signals the child and then its process group) during
    # the final writes is absorbed instead of raising KeyboardInterrupt.
    receiver = (
        trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM)
        if handle_signals else contextlib.nullcontext(None)
    )
    with receiver as signals:
        async with open_agent(settings) as (agent, redis_url), trio.open_nursery() as nursery:
            if signals is not None:
                nursery.start_soon(_cancel_on_signal, signals, nursery.cancel_scope)
            # Listen first: a port in use must fail before any container is made.
            facade: AgentFacade = agent  # mypy: the real agent offers the whole facade
            info: Any = await nursery.start(serve, facade)
            agent.advertise(advertised_url(settings, info.http_port))
            await nursery.start(agent.run)
            task_status.started(Running(
                agent=agent,
                http_port=info.http_port,
                ws_port=info.ws_port,
                redis_url=redis_url,
                token_file=token_file,
                application=settings.application_url,
            ))


async def _cancel_on_signal(signals: Any, scope: trio.CancelScope) -> None:
    async for signum in signals:
        print(f"deployment-agent: {signal.Signals(signum).name} received, stopping",
              file=sys.stderr, flush=True)
        scope.cancel()
        return
