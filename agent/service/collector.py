"""The collector: samples the workers on its own swarm node and posts them to Redis.

``deployment-agent collector`` is the agent's image run as a *global* Swarm service
(one task per node), for ENGINE=swarm. On a real cluster the leader cannot read
another host's cgroup files; each collector reads its own node's. Every tick it

1. lists the containers of the node's engine (``DOCKER_HOST``, the node's socket
   mounted in) that carry the agent's owner and app labels and belong to a Swarm
   task (the worker services put the labels on their container spec);
2. samples them with the single-engine `Sampler` — the same cgroup/proc fast path,
   through ``PROC_ROOT`` and ``CGROUP_ROOT`` (the host's ``/proc`` and cgroup mount,
   mounted read-only into the collector's container), the node engine's stats API
   as the fallback — without probes: the leader probes, from where the balancer is;
3. writes one `agent.core.sample_codec.NodeReport` (node id, wall time, sequence
   number, one reading per worker task) with one ``SET … PX COLLECTOR_REPORT_TTL``.

A node whose collector stops writing loses its report when the TTL runs out, and
the leader marks that node's workers stale; a collector that stops cleanly deletes
its report at once. The node id is the engine's own (``docker info``), and a
container labelled with another node's id is never reported, so a collector
pointed at the wrong socket cannot speak for another node.

``GET /healthz`` on BIND_HOST:HOST_PORT_HTTP_DEPLOYMENT_AGENT answers 200 while
reports are being written (the image's HEALTHCHECK asks it; Swarm replaces a
collector that stopped). Engine or Redis failures are logged and the loop goes on.
"""
from __future__ import annotations

import contextlib
import dataclasses
import logging
import signal
import sys
import time
from collections.abc import Callable
from typing import Any

import trio

from agent.adapters.docker_engine import DockerEngine
from agent.adapters.sample_board import SampleBoard
from agent.adapters.sampler import Sampler
from agent.adapters.swarm_engine import local_node_id
from agent.core.errors import ConfigError, EngineError, StoreError
from agent.core.records import ContainerInfo
from agent.core.sample_codec import NodeReport, WorkerReading
from agent.core.settings import Settings

__all__ = ["Collector", "run_collector", "NODE_ID_LABEL", "SERVICE_NAME_LABEL", "TASK_ID_LABEL"]

log = logging.getLogger("deployment_agent.collector")

# Labels Swarm puts on every task container.
SERVICE_NAME_LABEL = "com.docker.swarm.service.name"
TASK_ID_LABEL = "com.docker.swarm.task.id"
NODE_ID_LABEL = "com.docker.swarm.node.id"


class Collector:
    """One node's loop: list its worker containers, sample them, post the report.

    `node_id` is looked up from the engine (`local_node_id`) until it is known.
    `ttl` is how long a report stays in Redis; `tick_deadline` bounds a tick's
    sampling (late readings are posted as stale).
    """

    def __init__(
        self,
        *,
        engine: DockerEngine,
        sampler: Sampler,
        board: SampleBoard,
        ttl: float,
        tick_interval: float,
        tick_deadline: float,
        node_id: str | None = None,
        limiter: trio.CapacityLimiter | None = None,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.engine = engine
        self.sampler = sampler
        self.board = board
        self.ttl = ttl
        self.tick_interval = tick_interval
        self.tick_deadline = tick_deadline
        self.node_id = node_id
        self.seq = 0
        self.last_report: NodeReport | None = None
        self.last_error: str | None = None
        self._limiter = limiter
        self._wall = wall_clock
        self._started_at: float | None = None
        self._last_ok: float | None = None
        self._warned: set[str] = set()

    def health(self) -> tuple[bool, dict[str, Any]]:
        """Alive while reports are posted (three intervals of slack, and the first
        report is awaited as long)."""
        now = trio.current_time()
        since = self._last_ok if self._last_ok is not None else self._started_at
        budget = 3 * self.tick_interval + self.tick_deadline
        alive = since is not None and now - since <= budget
        report = self.last_report
        return alive, {
            "alive": alive,
            "role": "collector",
            "node": self.node_id,
            "seq": self.seq,
            "workers": 0 if report is None else len(report.readings),
            "last_report_age": None if self._last_ok is None else now - self._last_ok,
            "error": self.last_error,
        }

    async def tick(self) -> NodeReport | None:
        """One tick; the report posted, or None when nothing could be posted."""
        started = trio.current_time()
        try:
            node = await self._node()
            mine = self._own_tasks(node, await self.engine.list_owned())
        except EngineError as exc:
            self._failed(f"engine: {exc}")
            return None
        samples = await self.sampler.sample(
            [dataclasses.replace(i, host_port=None) for i in mine],
            deadline=started + self.tick_deadline, probe_timeout=self.tick_deadline,
        )
        readings = tuple(
            WorkerReading(
                service=i.labels[SERVICE_NAME_LABEL], task=i.labels[TASK_ID_LABEL],
                cpu_percent=s.cpu_percent, memory_percent=s.memory_percent,
                network_bps=s.network_bps, stale=s.stale,
            )
            for i in mine if (s := samples.get(i.name)) is not None
        )
        self.seq += 1
        report = NodeReport(node=node, time=self._wall(), seq=self.seq, readings=readings)
        try:
            await self.board.publish(report, self.ttl)
        except StoreError as exc:
            self._failed(f"redis: {exc}")
            return None
        self.last_report, self.last_error = report, None
        self._last_ok = trio.current_time()
        return report

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Tick every `tick_interval` until cancelled; then withdraw the report."""
        self._started_at = trio.current_time()
        task_status.started()
        try:
            while True:
                start = trio.current_time()
                await self.tick()
                await trio.sleep_until(start + self.tick_interval)
        finally:
            with trio.CancelScope(shield=True), trio.move_on_after(3):
                if self.node_id is not None:
                    with contextlib.suppress(StoreError):
                        await self.board.withdraw(self.node_id)

    # -- steps -----------------------------------------------------------------

    async def _node(self) -> str:
        if self.node_id is None:
            base_url = self.engine.base_url
            self.node_id = await trio.to_thread.run_sync(
                lambda: local_node_id(base_url), limiter=self._limiter, abandon_on_cancel=True
            )
            log.info("collecting for swarm node %s through %s", self.node_id, base_url)
        return self.node_id

    def _own_tasks(self, node: str, infos: list[ContainerInfo]) -> list[ContainerInfo]:
        """The running task containers of this node (a container of another node's
        id is a misconfiguration: said once, never reported)."""
        mine = []
        for info in infos:
            labels = info.labels
            if not info.running or TASK_ID_LABEL not in labels or SERVICE_NAME_LABEL not in labels:
                continue
            other = labels.get(NODE_ID_LABEL)
            if other is not None and other != node:
                if info.id not in self._warned:
                    self._warned.add(info.id)
                    log.error("container %s belongs to node %s, not to this node %s: "
                              "not reported", info.name, other, node)
                continue
            mine.append(info)
        return mine

    def _failed(self, error: str) -> None:
        if error != self.last_error:
            log.warning("no report this tick: %s", error)
        self.last_error = error


async def run_collector(
    settings: Settings,
    *,
    task_status: trio.TaskStatus[tuple[Collector, int]] = trio.TASK_STATUS_IGNORED,
    handle_signals: bool = True,
) -> None:
    """Run a collector and its health endpoint until SIGINT/SIGTERM or cancellation."""
    from agent.interfaces.health_http import serve_health

    if settings.redis_url is None:
        raise ConfigError("REDIS_URL", "the collector posts to the agents' Redis: set "
                          "REDIS_URL (or REDIS_HOST) to the one the agent uses")
    limiter = trio.CapacityLimiter(8)
    engine = DockerEngine(
        base_url=settings.docker_host, app_identifier=settings.app_identifier,
        image=settings.docker_image, target_port=settings.target_port, limiter=limiter,
    )  # read-only here: listed and asked for stats, never told to create
    sampler = Sampler(engine.is_local, limiter=limiter, stats_source=engine.read_stats,
                      proc_root=settings.proc_root, cgroup_root=settings.cgroup_root)
    board = SampleBoard(settings.redis_url, settings.app_identifier, limiter=limiter)
    collector = Collector(
        engine=engine, sampler=sampler, board=board, ttl=settings.collector_report_ttl,
        tick_interval=settings.tick_interval, tick_deadline=settings.tick_deadline,
        limiter=limiter,
    )
    receiver = (trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM)
                if handle_signals else contextlib.nullcontext(None))
    try:
        with receiver as signals:
            async with trio.open_nursery() as nursery:
                if signals is not None:
                    nursery.start_soon(_cancel_on_signal, signals, nursery.cancel_scope)
                port = await nursery.start(serve_health, settings.bind_host,
                                           settings.http_port, collector.health)
                # The node's containers from the engine's event stream, not a
                # listing and an inspect of each every tick (agent.adapters.engine_watch).
                await nursery.start(engine.watch)
                await nursery.start(collector.run)
                task_status.started((collector, port))
    finally:
        with trio.CancelScope(shield=True):
            await engine.aclose()
            await board.aclose()
            sampler.close()


async def _cancel_on_signal(signals: Any, scope: trio.CancelScope) -> None:
    async for signum in signals:
        print(f"deployment-agent collector: {signal.Signals(signum).name} received, stopping",
              file=sys.stderr, flush=True)
        scope.cancel()
        return
