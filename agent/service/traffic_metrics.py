"""Prometheus series of the balancer and of what it saw per container.

In the agent's registry beside `agent.service.metrics.Metrics` (which owns one of
these as ``metrics.traffic``). Series (prefix ``deployment_agent_``):

=================================== ========= ======================================
name                                type      labels
=================================== ========= ======================================
``container_requests_per_second``   gauge     ``container``: answered at the balancer
``container_in_flight``             gauge     ``container``: sent and not answered,
                                              or queued (HAProxy scur + qcur)
``container_response_seconds``      gauge     ``container``: mean response time of
                                              the last interval
``container_responses_5xx_total``   counter   ``container``: 5xx it answered
``balancer_up``                     gauge     — (1 when the last call reached it)
``balancer_sync_seconds``           histogram — (one sync, connection included)
``balancer_syncs_total``            counter   ``outcome`` (ok, failed)
``balancer_events_total``           counter   ``kind`` (balancer_restarted, ...)
=================================== ========= ======================================

`record` runs once per tick, from the tick loop (the 5xx counter is incremented by
each tick's count, so a scrape never counts twice). Label children are made once
per container and cached; those of containers the balancer no longer reports are
removed, so a scraped dashboard shows no ghosts.
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from agent.core.traffic import ServerTraffic

__all__ = ["TrafficMetrics"]

_SYNC_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class TrafficMetrics:
    def __init__(self, registry: CollectorRegistry, namespace: str) -> None:
        kw: dict[str, Any] = {"namespace": namespace, "registry": registry}
        self.requests = Gauge("container_requests_per_second",
                              "Requests per second a container answered at the balancer.",
                              ["container"], **kw)
        self.in_flight = Gauge("container_in_flight",
                               "Requests sent to a container and not answered yet, or queued.",
                               ["container"], **kw)
        self.response = Gauge("container_response_seconds",
                              "Mean response time of a container's requests, last interval.",
                              ["container"], **kw)
        self.errors_5xx = Counter("container_responses_5xx",
                                  "5xx responses a container answered at the balancer.",
                                  ["container"], **kw)
        self.balancer_up = Gauge("balancer_up",
                                 "1 when the load balancer answered the agent's last call.", **kw)
        self.sync_seconds = Histogram("balancer_sync_seconds",
                                      "Duration of one balancer sync, connection included.",
                                      buckets=_SYNC_BUCKETS, **kw)
        self.syncs = Counter("balancer_syncs", "Balancer syncs, by outcome.", ["outcome"], **kw)
        self.events = Counter("balancer_events",
                              "Events of the balancer itself (restarted, unreachable, ...).",
                              ["kind"], **kw)
        self._children: dict[str, tuple[Any, Any, Any, Any]] = {}

    def record(self, traffic: Mapping[str, ServerTraffic]) -> None:
        """One tick's figures; containers absent from `traffic` are forgotten."""
        for name, seen in traffic.items():
            children = self._children.get(name)
            if children is None:
                children = (self.requests.labels(container=name),
                            self.in_flight.labels(container=name),
                            self.response.labels(container=name),
                            self.errors_5xx.labels(container=name))
                self._children[name] = children
            rate, flight, response, errors = children
            rate.set(seen.rate)
            flight.set(seen.in_flight)
            response.set(seen.response_time if math.isfinite(seen.response_time) else math.nan)
            if seen.responses_5xx:
                errors.inc(seen.responses_5xx)
        for name in [n for n in self._children if n not in traffic]:
            del self._children[name]
            for metric in (self.requests, self.in_flight, self.response, self.errors_5xx):
                try:
                    metric.remove(name)
                except KeyError:
                    pass

    def sync(self, seconds: float, ok: bool) -> None:
        self.sync_seconds.observe(seconds)
        self.syncs.labels(outcome="ok" if ok else "failed").inc()

    def event(self, kind: str) -> None:
        self.events.labels(kind=kind).inc()

    def up(self, reachable: bool) -> None:
        self.balancer_up.set(1.0 if reachable else 0.0)
