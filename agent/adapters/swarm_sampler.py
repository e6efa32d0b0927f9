"""The leader's samples in swarm mode: the nodes' reports from Redis, its own probes.

`SwarmSampler` stands where `agent.adapters.sampler.Sampler` stands on one engine
(the runtime's `agent.core.ports.SampleSource`), but it reads no cgroup or proc
file and asks no engine for stats: on a real cluster the workers run on other
hosts, whose files the leader cannot see. CPU, memory and network come from the
report each node's collector wrote to Redis (`agent.adapters.sample_board`);
availability is the leader's own probe of each worker's address and port — the
path the balancer beside it takes, so a worker its node can reach but the
balancer cannot scores as unavailable.

Within the tick's deadline, the reports are read (one MGET) while the workers are
probed concurrently; whatever has not arrived by then makes the worker's sample
stale (`agent.core.sample_codec.samples_from_reports` decides, purely). Redis
failing makes every worker stale for that tick, never zero.
"""
from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import trio

from agent.adapters.probe import NetworkProbe
from agent.adapters.sample_board import SampleBoard
from agent.core.errors import StoreError
from agent.core.ports import Probe
from agent.core.records import ContainerInfo, Sample
from agent.core.sample_codec import NodeReport, Placement, samples_from_reports

__all__ = ["SwarmSampler"]

log = logging.getLogger(__name__)


class SwarmSampler:
    """Samples of swarm workers from their nodes' reports plus the leader's probes."""

    def __init__(self, board: SampleBoard, *, probe: Probe | None = None) -> None:
        self.board = board
        self._probe: Probe = probe if probe is not None else NetworkProbe()
        self.last_error: str | None = None

    async def sample(
        self,
        containers: list[ContainerInfo],
        *,
        deadline: float,
        probe_timeout: float,
        health_path: str | None = None,
    ) -> dict[str, Sample]:
        """One `Sample` per container name by `deadline` (Trio clock); a container
        that is not running gets an all-NaN sample, as on one engine."""
        running = [c for c in containers if c.running]
        placements = [
            Placement(name=c.name, node=getattr(c, "node_id", ""),
                      task=getattr(c, "task_id", ""), probed=c.host_port is not None)
            for c in running
        ]
        reports: dict[str, NodeReport] = {}
        probes: dict[str, float] = {}

        async def read() -> None:
            try:
                reports.update(await self.board.read(p.node for p in placements))
                self.last_error = None
            except StoreError as exc:
                if self.last_error is None:
                    log.warning("node reports unavailable, samples stale: %s", exc)
                self.last_error = str(exc)

        async def probe(info: ContainerInfo) -> None:
            assert info.host_port is not None
            probes[info.name] = await self._probe.response_time(
                info.address, info.host_port, timeout=probe_timeout, health_path=health_path
            )

        with trio.move_on_at(deadline):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(read)
                for info in running:
                    if info.host_port is not None:
                        nursery.start_soon(probe, info)
        samples = samples_from_reports(placements, reports, probes)
        for info in containers:
            if not info.running:
                samples[info.name] = Sample()
        return samples


if TYPE_CHECKING:  # mypy holds the sampler to its port

    from agent.core.ports import SampleSource

    def _implements(sampler: SwarmSampler) -> SampleSource:
        return sampler
