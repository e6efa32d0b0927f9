"""Prometheus metrics of one agent, in a registry of its own.

Each :class:`Metrics` owns a private ``CollectorRegistry`` rather than the
process-global one, so several agents (or tests) can live in one process and
``GET /metrics`` shows exactly this agent's series.

Series (prefix ``deployment_agent_``):

=============================== ========= ==========================================
name                            type      labels
=============================== ========= ==========================================
``tick_duration_seconds``       histogram —
``container_score``             gauge     ``container``, ``kind`` (cpu, memory,
                                          network, availability, overall)
``container_weight``            gauge     ``container``
``container_category``          gauge     ``container``, ``category`` (1 for the
                                          current one, 0 for the others: a state set)
``containers_desired``          gauge     —
``containers_running``          gauge     —
``last_tick``                   gauge     — (tick number of the newest snapshot)
``scale_events_total``          counter   ``action``, ``reason``
``errors_total``                counter   ``kind``
``websocket_clients``           gauge     —
``leader``                      gauge     — (1 while this agent leads the pool, 0 as
                                          a follower)
``lease_transitions_total``     counter   ``kind`` (lease_acquired, lease_lost,
                                          lease_expired, lease_released)
=============================== ========= ==========================================

The per-container series are not gauges set every tick: a collector builds
them from the newest snapshot when ``/metrics`` is scraped (`_SnapshotSeries`).
A tick only keeps a reference to its snapshot, instead of looking up (and so
re-creating the label tuple of) eleven labelled children per container — a
millisecond a tick at 100 containers, for a scrape that comes every 15 s or
so. Containers that left the snapshot have no series, so a scraped dashboard
shows no ghosts. Non-finite scores (a container with no sample yet) are
exported as NaN, which the text format allows.

The tick histogram's buckets are fine around the targets (10 to 300 ms), so
that a p99 read from them (``benchmarks/bench_agent.py``) is measured, not
guessed from a 100-250 ms bucket.

The balancer's series (requests/s, in flight, response time and 5xx per
container; balancer up, syncs, events) are `agent.service.traffic_metrics`'s, in
the same registry (``metrics.traffic``); a tick sets them only with a balancer.
"""
from __future__ import annotations

import math
import threading
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

from agent.core.records import Category, Snapshot
from agent.service.traffic_metrics import TrafficMetrics

__all__ = ["Metrics", "CONTENT_TYPE"]

CONTENT_TYPE = CONTENT_TYPE_LATEST

_SCORE_KINDS = ("cpu", "memory", "network", "availability", "overall")
TICK_BUCKETS = (
    0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.2, 0.25, 0.3, 0.5, 0.75,
    1.0, 2.5, 5.0, 10.0, 30.0,
)
_CATEGORIES = tuple(str(c) for c in Category)


class _SnapshotSeries:
    """Collector of the per-container series, from the snapshot last recorded."""

    def __init__(self, namespace: str) -> None:
        self.namespace = namespace
        self.snapshot: Snapshot | None = None

    def _families(self) -> tuple[GaugeMetricFamily, GaugeMetricFamily, GaugeMetricFamily]:
        ns = self.namespace
        return (
            GaugeMetricFamily(f"{ns}_container_score",
                              "Score of a container, 0 (saturated) to 100 (idle).",
                              labels=["container", "kind"]),
            GaugeMetricFamily(f"{ns}_container_weight",
                              "Routing weight of a container in the queue (0 to 1).",
                              labels=["container"]),
            GaugeMetricFamily(f"{ns}_container_category",
                              "Utilization category of a container (1 = current).",
                              labels=["container", "category"]),
        )

    def describe(self) -> Iterator[GaugeMetricFamily]:
        yield from self._families()

    def collect(self) -> Iterator[GaugeMetricFamily]:
        score, weight, category = self._families()
        snapshot = self.snapshot
        if snapshot is not None:
            weights = {item.dns_name: item.weight for item in snapshot.queue}
            for s in snapshot.scores:
                values = (s.cpu_score, s.memory_score, s.network_score,
                          s.availability_score, s.overall_score)
                for kind, value in zip(_SCORE_KINDS, values):
                    score.add_metric([s.name, kind], _num(value))
                weight.add_metric([s.name], _num(weights.get(s.name, s.weight)))
                current = str(s.category)
                for name in _CATEGORIES:
                    category.add_metric([s.name, name], 1.0 if name == current else 0.0)
        yield score
        yield weight
        yield category


class Metrics:
    """The agent's Prometheus series; cheap to update from the tick loop."""

    def __init__(self, namespace: str = "deployment_agent") -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.tick_duration = Histogram(
            "tick_duration_seconds", "Duration of one tick (sample, score, decide, act, publish).",
            namespace=namespace, registry=r, buckets=TICK_BUCKETS,
        )
        self._series = _SnapshotSeries(namespace)
        r.register(self._series)
        self.desired = Gauge(
            "containers_desired", "Desired number of containers.",
            namespace=namespace, registry=r,
        )
        self.running = Gauge(
            "containers_running", "Number of owned containers running.",
            namespace=namespace, registry=r,
        )
        self.last_tick = Gauge(
            "last_tick", "Tick number of the newest snapshot.",
            namespace=namespace, registry=r,
        )
        self.scale_events = Counter(
            "scale_events", "Scaling actions taken, by action and reason.",
            ["action", "reason"], namespace=namespace, registry=r,
        )
        self.errors = Counter(
            "errors", "Errors the loop survived, by kind.",
            ["kind"], namespace=namespace, registry=r,
        )
        self.websocket_clients = Gauge(
            "websocket_clients", "WebSocket clients currently subscribed to the queue.",
            namespace=namespace, registry=r,
        )
        # the balancer's series (agent.service.traffic_metrics), in this registry
        self.traffic = TrafficMetrics(r, namespace)
        self.leader = Gauge(
            "leader", "1 while this agent holds the leader lease of the pool, 0 as a follower.",
            namespace=namespace, registry=r,
        )
        self.lease_transitions = Counter(
            "lease_transitions", "Changes of this agent's role, by kind.",
            ["kind"], namespace=namespace, registry=r,
        )
        # record_snapshot may run from the tick task and from a /metrics scrape;
        # both are on the Trio thread today, the lock keeps it safe if not.
        self._lock = threading.Lock()

    def observe_tick(self, seconds: float) -> None:
        """Record the duration of one tick."""
        self.tick_duration.observe(seconds)

    def scale_event(self, action: str, reason: str) -> None:
        """Count one scaling action (``up``, ``down``, ``remove``...) with its reason code."""
        self.scale_events.labels(action=action, reason=reason).inc()

    def record_role(self, role: str) -> None:
        """Set the leader gauge from the role (``leader`` or ``follower``)."""
        self.leader.set(1.0 if role == "leader" else 0.0)

    def lease_transition(self, kind: str) -> None:
        self.lease_transitions.labels(kind=kind).inc()

    def error(self, kind: str) -> None:
        """Count one survived error of `kind` (``engine``, ``store``, ``probe``...)."""
        self.errors.labels(kind=kind).inc()

    def record_snapshot(self, snapshot: Snapshot) -> None:
        """Make `snapshot` the source of the per-container series; set the counts.

        Idempotent: recording the same snapshot twice changes nothing.
        """
        with self._lock:
            self._series.snapshot = snapshot
            self.desired.set(snapshot.desired)
            self.running.set(snapshot.running)
            self.last_tick.set(snapshot.tick)

    def render(self) -> bytes:
        """The registry in the Prometheus text exposition format."""
        return generate_latest(self.registry)


def _num(value: float | None) -> float:
    if value is None:
        return math.nan
    return float(value)


