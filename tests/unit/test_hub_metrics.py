"""agent.service.metrics: a private Prometheus registry fed from snapshots."""
from __future__ import annotations

import math

from prometheus_client.parser import text_string_to_metric_families

from agent.service.metrics import Metrics
from agent.core.records import Category, ContainerScore, QueueItem, Snapshot


def snapshot(*rows: tuple[str, float, Category], desired: int = 3, running: int = 3) -> Snapshot:
    scores = tuple(
        ContainerScore(name, score, score, 100.0, score, score, cat) for name, score, cat in rows
    )
    queue = tuple(QueueItem(name, score, cat, 0.5) for name, score, cat in rows)
    return Snapshot(4, 1.0, scores, queue, {}, desired, running)


def samples(metrics: Metrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(metrics.render().decode()):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_record_snapshot_sets_scores_categories_and_counts() -> None:
    m = Metrics()
    m.record_snapshot(snapshot(("a", 80.0, Category.LU), ("b", 30.0, Category.HU), desired=4, running=2))
    s = samples(m)
    assert s[("deployment_agent_container_score", (("container", "a"), ("kind", "overall")))] == 80.0
    assert s[("deployment_agent_container_score", (("container", "b"), ("kind", "cpu")))] == 30.0
    assert s[("deployment_agent_container_category", (("category", "HU"), ("container", "b")))] == 1.0
    assert s[("deployment_agent_container_category", (("category", "LU"), ("container", "b")))] == 0.0
    assert s[("deployment_agent_container_weight", (("container", "a"),))] == 0.5
    assert s[("deployment_agent_containers_desired", ())] == 4.0
    assert s[("deployment_agent_containers_running", ())] == 2.0


def test_vanished_containers_lose_their_series() -> None:
    m = Metrics()
    m.record_snapshot(snapshot(("a", 80.0, Category.LU), ("b", 30.0, Category.HU)))
    m.record_snapshot(snapshot(("b", 35.0, Category.HU)))
    text = m.render().decode()
    assert 'container="a"' not in text
    assert 'container="b"' in text
    m.record_snapshot(snapshot(("b", 35.0, Category.HU)))  # idempotent


def test_nan_scores_are_exported_as_nan() -> None:
    m = Metrics()
    m.record_snapshot(snapshot(("new", math.nan, Category.INIT)))
    s = samples(m)
    assert math.isnan(s[("deployment_agent_container_score", (("container", "new"), ("kind", "overall")))])


def test_counters_and_histogram() -> None:
    m = Metrics()
    m.observe_tick(0.02)
    m.observe_tick(0.3)
    m.scale_event("scale_up", "avg_below_high")
    m.scale_event("scale_up", "avg_below_high")
    m.error("engine")
    s = samples(m)
    assert s[("deployment_agent_tick_duration_seconds_count", ())] == 2.0
    assert s[("deployment_agent_scale_events_total", (("action", "scale_up"), ("reason", "avg_below_high")))] == 2.0
    assert s[("deployment_agent_errors_total", (("kind", "engine"),))] == 1.0


def test_registries_are_private() -> None:
    a, b = Metrics(), Metrics()  # same names twice: only possible off the global registry
    a.error("x")
    assert b"errors_total{" not in b.render()
    assert a.registry is not b.registry


def test_tick_buckets_resolve_the_latency_targets() -> None:
    """The p99 targets (100 ms at N=100, 250 ms at N=300) fall on bucket bounds,
    with bounds close enough around them to read a percentile from."""
    m = Metrics()
    m.observe_tick(0.09)
    bounds = {le for (name, labels), _ in samples(m).items()
              if name == "deployment_agent_tick_duration_seconds_bucket"
              for key, le in labels if key == "le"}
    for ms in (10, 20, 30, 50, 75, 100, 150, 200, 250, 300, 500):
        assert str(ms / 1000) in bounds or f"{ms / 1000:.3f}".rstrip("0") in bounds, ms


def test_series_follow_the_newest_snapshot_only() -> None:
    m = Metrics()
    first = snapshot(("a", 80.0, Category.LU))
    m.record_snapshot(first)
    m.record_snapshot(snapshot(("a", 40.0, Category.MU), ("c", 90.0, Category.LU)))
    s = samples(m)
    assert s[("deployment_agent_container_score", (("container", "a"), ("kind", "overall")))] == 40.0
    assert s[("deployment_agent_container_category", (("category", "MU"), ("container", "a")))] == 1.0
    assert s[("deployment_agent_container_category", (("category", "LU"), ("container", "a")))] == 0.0
    assert s[("deployment_agent_container_weight", (("container", "c"),))] == 0.5
