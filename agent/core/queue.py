"""The queue pushed to load balancers (SPEC §4), built from one tick's scores.

Pure: plain records in, plain records out. Order: containers that take traffic
(every category but SUNDOWN) by overall score, best first, ties broken by name so
that equal scores do not reshuffle the queue between ticks; then the SUNDOWN
containers, by name, with weight 0 (a draining container gets no new traffic).

Weights over the containers that take traffic always sum to 1: the scorer's
weights are normalised; if they carry no information (all zero or non-finite) the
queue falls back to weights proportional to the score, and to equal weights when
every score is 0. A non-finite score (a container never measured) is published
as 0.0 — a balancer must never receive NaN — and sorts after the measured ones.
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence

from agent.core.records import Category, ContainerInfo, ContainerScore, QueueItem

__all__ = ["build_queue", "traffic_weights"]


def build_queue(
    scores: Iterable[ContainerScore], infos: Mapping[str, ContainerInfo]
) -> list[QueueItem]:
    """The ordered queue; `infos` supplies address, published port and id by name."""
    taking: list[ContainerScore] = []
    draining: list[ContainerScore] = []
    for s in scores:
        (draining if s.category is Category.SUNDOWN else taking).append(s)

    def order(s: ContainerScore) -> tuple[bool, float, str]:
        finite = math.isfinite(s.overall_score)
        return (not finite, -s.overall_score if finite else 0.0, s.name)

    taking.sort(key=order)
    draining.sort(key=lambda s: s.name)
    weights = traffic_weights([s.weight for s in taking], [s.overall_score for s in taking])
    items = [_item(s, w, infos.get(s.name)) for s, w in zip(taking, weights)]
    items += [_item(s, 0.0, infos.get(s.name)) for s in draining]
    return items


def traffic_weights(weights: Sequence[float] | None, scores: Sequence[float]) -> list[float]:
    """Shares of traffic that sum to 1 over these containers (the one fallback rule).

    `weights` normalised; when they carry no information (None — a compat agent
    sends none —, or all zero or non-finite) shares proportional to `scores`; when
    every score is 0 or non-finite too, equal shares. A non-finite or negative
    weight or score counts as 0.
    """
    if not scores:
        return []
    for raw in (weights, scores):
        if raw is None:
            continue
        clean = [w if math.isfinite(w) and w > 0 else 0.0 for w in raw]
        total = math.fsum(clean)
        if total > 0:
            return [w / total for w in clean]
    return [1.0 / len(scores)] * len(scores)


def _item(s: ContainerScore, weight: float, info: ContainerInfo | None) -> QueueItem:
    score = s.overall_score if math.isfinite(s.overall_score) else 0.0
    if info is None:
        return QueueItem(
            dns_name=s.name, score=score, utilization_category=s.category,
            weight=weight, id=s.id or None,
        )
    return QueueItem(
        dns_name=s.name, score=score, utilization_category=s.category, weight=weight,
        address=info.address, port=info.host_port, id=info.id or s.id or None,
    )
