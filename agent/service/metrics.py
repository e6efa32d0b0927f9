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

Series of containers that disappeared from the snapshot are removed, so a
scraped dashboard does not show ghosts. Non-finite scores (a container with no
sample yet) are exported as NaN, which the text format allows.
"""
from __future__ import annotations

import math
import threading

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

from agent.core.records import Category, Snapshot

__all__ = ["Metrics", "CONTENT_TYPE"]

CONTENT_TYPE = CONTENT_TYPE_LATEST

_SCORE_KINDS = ("cpu", "memory", "network", "availability", "overall")
_TICK_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class Metrics:
    """The agent's Prometheus series; cheap to update from the tick loop."""

    def __init__(self, namespace: str = "deployment_agent") -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.tick_duration = Histogram(
            "tick_duration_seconds", "Duration of one tick (sample, score, decide, act, publish).",
            namespace=namespace, registry=r, buckets=_TICK_BUCKETS,
        )
        self.container_score = Gauge(
            "container_score", "Score of a container, 0 (saturated) to 100 (idle).",
            ["container", "kind"], namespace=namespace, registry=r,
        )
        self.container_weight = Gauge(
            "container_weight", "Routing weight of a container in the queue (0 to 1).",
            ["container"], namespace=namespace, registry=r,
        )
        self.container_category = Gauge(
            "container_category", "Utilization category of a container (1 = current).",
            ["container", "category"], namespace=namespace, registry=r,
        )
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
        self.leader = Gauge(
            "leader", "1 while this agent holds the leader lease of the pool, 0 as a follower.",
            namespace=namespace, registry=r,
        )
        self.lease_transitions = Counter(
            "lease_transitions", "Changes of this agent's role, by kind.",
            ["kind"], namespace=namespace, registry=r,
        )
        self._known: set[str] = set()
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
        """Set the per-container and count gauges from `snapshot`.

        Idempotent: recording the same snapshot twice changes nothing.
        """
        with self._lock:
            present: set[str] = set()
            weights = {item.dns_name: item.weight for item in snapshot.queue}
            for score in snapshot.scores:
                name = score.name
                present.add(name)
                values = (
                    score.cpu_score,
                    score.memory_score,
                    score.network_score,
                    score.availability_score,
                    score.overall_score,
                )
                for kind, value in zip(_SCORE_KINDS, values):
                    self.container_score.labels(container=name, kind=kind).set(_num(value))
                self.container_weight.labels(container=name).set(
                    _num(weights.get(name, score.weight))
                )
                current = str(score.category)
                for category in Category:
                    self.container_category.labels(
                        container=name, category=str(category)
                    ).set(1.0 if str(category) == current else 0.0)
            for name in self._known - present:
                self._forget(name)
            self._known = present
            self.desired.set(snapshot.desired)
            self.running.set(snapshot.running)
            self.last_tick.set(snapshot.tick)

    def _forget(self, name: str) -> None:
        for kind in _SCORE_KINDS:
            _remove(self.container_score, name, kind)
        _remove(self.container_weight, name)
        for category in Category:
            _remove(self.container_category, name, str(category))

    def render(self) -> bytes:
        """The registry in the Prometheus text exposition format."""
        return generate_latest(self.registry)


def _num(value: float | None) -> float:
    if value is None:
        return math.nan
    return float(value)


def _remove(metric: Gauge, *labels: str) -> None:
    try:
        metric.remove(*labels)
    except KeyError:
        pass
