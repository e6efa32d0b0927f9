"""The balancer's part of a tick: read it, feed its figures to the scores, sync it.

The runtime (`agent.service.runtime`) calls this in three of its steps, always
through the `agent.core.balancer.Balancer` protocol (HAProxy today)::

    observe  (with the sampler)  →  Observation: every server's figures, one command
    feed     (before scoring)    →  per-container traffic; availability inputs
                                    (`agent.core.traffic`); the drained truth
                                    (`agent.core.pool.drain_sessions`)
    sync     (in `_execute`, after creations, before timed-out drains go)
                                 →  the backend made equal to the pool, one connection

Every call returns values; errors are values too: an unreachable balancer is an
`Observation` / `SyncReport` with ``ok=False``, reported once as a ledger event
(the adapter emits UNREACHABLE and RECOVERED on transitions only) and in
`/readyz`, and the loop goes on. What `GET /balancer` shows is `state()`.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Collection, Iterable, Mapping
from typing import Any

import trio

from agent.core.balancer import (
    Balancer,
    BalancerEvent,
    BackendSpec,
    Observation,
    SyncReport,
    backend_spec,
)
from agent.core.plan import Event
from agent.core.pool import PoolState
from agent.core.records import Sample
from agent.core.steady_weights import first_weights
from agent.core.traffic import (
    UNLOADED,
    ServerTraffic,
    TrafficState,
    availability_inputs,
    traffic_step,
)
from agent.service.metrics import Metrics

__all__ = ["Balancing", "balancer_event", "disabled_state"]

log = logging.getLogger("deployment_agent.balancer")


def balancer_event(event: BalancerEvent) -> Event:
    """The ledger entry of something that happened to the balancer itself."""
    return Event(str(event.kind), {"message": event.message})


class Balancing:
    """The runtime's side of one `Balancer`: its calls, their outcomes, its state."""

    def __init__(
        self, balancer: Balancer, metrics: Metrics, *, algorithm: str | None = None,
        application: str | None = None, first_share: float = 0.1,
    ) -> None:
        self.balancer = balancer
        self.metrics = metrics
        self.algorithm = algorithm
        self.application = application
        self.first_share = first_share
        self._report: SyncReport | None = None
        self._spec: BackendSpec | None = None
        self._synced_at: float | None = None  # epoch seconds
        self._observed: Observation | None = None

    async def start(self) -> list[Event]:
        """Launch or adopt the embedded balancer, or check the external one.

        Raises what the adapter raises (`ConfigError`, `BalancerError`): the agent
        must not start against a balancer it cannot use.
        """
        events = await self.balancer.start()
        self._gauge()
        return self._events(events)

    async def observe(self, deadline: float) -> tuple[Observation, list[Event]]:
        """The servers' figures, by `deadline` (``trio.current_time()`` scale)."""
        observation = Observation(ok=False, error="no answer by the tick deadline")
        with trio.move_on_at(deadline):
            observation = await self.balancer.observe()
        self._observed = observation
        if not observation.ok:
            self.metrics.error("balancer")
        self._gauge()
        return observation, self._events(observation.events)

    def feed(
        self, pool: PoolState, samples: Mapping[str, Sample], observation: Observation,
        now: float,
    ) -> tuple[TrafficState, dict[str, ServerTraffic], dict[str, Sample]]:
        """This tick's traffic per container and the samples the scorer is to see.

        `now` is the monotonic clock (rates). An observation that failed gives no
        traffic: every container is fed as one without traffic (the probe says
        only whether it answers), and the next good reading starts the intervals
        over.
        """
        state = pool.feedback.traffic
        running = {i.name: i for i in pool.running()}
        traffic: dict[str, ServerTraffic] = {}
        if observation.ok:
            stats = {n: s for n, s in observation.stats.items() if n in running}
            state, traffic = traffic_step(state, stats, now,
                                          interval_times=observation.interval_times)
        else:  # no figures: the next good reading starts every interval over
            state = TrafficState(baseline=state.baseline, fed=state.fed)
        cores = {n: i.cpus or 1.0 for n, i in running.items()}
        state, fed = availability_inputs(state, samples, traffic, cores, now)
        self.metrics.traffic.record(traffic)
        if log.isEnabledFor(logging.DEBUG):
            _log_feed(state, traffic, samples, fed, now)
        return state, traffic, fed

    async def sync(self, pool: PoolState, evict: Collection[str] = ()) -> list[Event]:
        """Make the backend match `pool`: its running containers as servers with
        their published weights, SUNDOWN ones draining, `evict` cut at once."""
        running = pool.running()
        weights = first_weights({n: s.weight for n, s in pool.scores.items()},
                                [i.name for i in running], self.first_share)
        spec = backend_spec(running, weights, set(pool.sundown), evict=evict)
        report = await self.balancer.sync(spec)
        previous = self._report
        self._report, self._spec, self._synced_at = report, spec, time.time()
        self.metrics.traffic.sync(report.duration, report.ok)
        if not report.ok:
            self.metrics.error("balancer")
            if previous is None or previous.error != report.error:  # once per new error
                log.warning("balancer sync: %s", report.error)
        self._gauge()
        return self._events(report.events)

    # -- state ---------------------------------------------------------------------

    def readiness(self) -> str:
        """"ok", or why the balancer cannot be counted on (no I/O: the last call's word)."""
        status = self.balancer.status()
        if status.reachable:
            return "ok"
        return status.last_error or "not reached yet"

    def state(self) -> dict[str, Any]:
        """What `GET /balancer` reports: the adapter's state and the last sync."""
        status = self.balancer.status().to_json()
        report = self._report
        spec = self._spec
        return {
            "enabled": True,
            **status,
            "algorithm": self.algorithm,
            "application": self.application,
            "weights_sent": {} if spec is None else {
                s.name: {"weight": s.weight, "drain": s.drain} for s in spec.servers},
            "last_sync": None if report is None else {
                "at": self._synced_at,
                "ok": report.ok,
                "error": report.error,
                "duration": report.duration,
                "commands": list(report.commands),
                "failures": [{"command": c, "answer": a} for c, a in report.failures],
                "added": list(report.added),
                "removed": list(report.removed),
                "pending": list(report.pending),
            },
            "observed": None if self._observed is None else {
                "ok": self._observed.ok, "error": self._observed.error,
                "servers": len(self._observed.stats),
            },
        }

    def _events(self, events: Iterable[BalancerEvent]) -> list[Event]:
        out = []
        for event in events:
            self.metrics.traffic.event(str(event.kind))
            log.info("%s: %s", event.kind, event.message)
            out.append(balancer_event(event))
        return out

    def _gauge(self) -> None:
        self.metrics.traffic.up(self.balancer.status().reachable)


def _log_feed(state: TrafficState, traffic: Mapping[str, ServerTraffic],
              samples: Mapping[str, Sample], fed: Mapping[str, Sample], now: float) -> None:
    """One debug line per tick: what the balancer saw and what the scorer is fed."""
    baseline = state.baseline.now(now)
    rows = []
    for name, t in sorted(traffic.items()):
        if name in samples:
            rows.append(f"{name}: {t.rate:.0f}/s in-flight {t.in_flight} "
                        f"{t.response_time * 1e3:.0f} ms{'*' if t.estimated else ''} "
                        f"cpu {samples[name].cpu_percent:.0f}% "
                        f"slowdown {fed[name].response_time / UNLOADED:.1f}")
    log.debug("feed (baseline %s ms): %s",
              "none" if baseline is None else f"{baseline * 1e3:.1f}", "; ".join(rows))


def disabled_state() -> dict[str, Any]:
    """`GET /balancer` when BALANCER=none."""
    return {"enabled": False, "kind": "none", "mode": None, "reachable": None,
            "application": None, "servers": {}, "weights_sent": {}, "last_sync": None}


