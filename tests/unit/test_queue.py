"""The queue pushed to load balancers (SPEC §4)."""
from __future__ import annotations

import json
import math

import pytest

from agent.core.records import Category, ContainerInfo, ContainerScore, QueueItem
from agent.core.queue import build_queue, traffic_weights


def score(name: str, overall: float, category: Category = Category.LU, weight: float = 0.0,
          id: str = "") -> ContainerScore:
    return ContainerScore(
        name=name, cpu_score=overall, memory_score=overall, network_score=overall,
        availability_score=overall, overall_score=overall, category=category,
        weight=weight, id=id,
    )


def info(name: str, port: int | None = None, id: str | None = None) -> ContainerInfo:
    return ContainerInfo(name=name, id=id or f"id-{name}", image="img", status="running",
                         created=0.0, host_port=port)


ROWS = [
    ("best_first", [score("a", 50, Category.MU), score("b", 90), score("c", 70)],
     ["b", "c", "a"]),
    ("ties_by_name", [score("b", 80), score("c", 80), score("a", 80)], ["a", "b", "c"]),
    ("sundown_last_even_if_best",
     [score("z", 99, Category.SUNDOWN), score("a", 10, Category.HU), score("y", 98,
                                                                           Category.SUNDOWN)],
     ["a", "y", "z"]),
    ("init_takes_its_place", [score("a", 60, Category.MU), score("n", 100, Category.INIT)],
     ["n", "a"]),
    ("nan_score_after_measured", [score("n", math.nan, Category.INIT), score("a", 5,
                                                                           Category.HU)],
     ["a", "n"]),
    ("empty", [], []),
]


@pytest.mark.parametrize(("scores", "order"), [r[1:] for r in ROWS], ids=[r[0] for r in ROWS])
def test_order(scores: list[ContainerScore], order: list[str]) -> None:
    items = build_queue(scores, {})
    assert [i.dns_name for i in items] == order
    taking = [i for i in items if i.utilization_category is not Category.SUNDOWN]
    if taking:
        assert math.fsum(i.weight for i in taking) == pytest.approx(1.0)
    for i in items:
        assert i.weight >= 0
        if i.utilization_category is Category.SUNDOWN:
            assert i.weight == 0.0
    json.dumps([i.to_json() for i in items], allow_nan=False)


WEIGHT_ROWS = [
    ("scorer_weights_normalised", [score("a", 90, weight=3.0), score("b", 60, weight=1.0)],
     {"a": 0.75, "b": 0.25}),
    ("scorer_weights_kept", [score("a", 90, weight=0.6), score("b", 60, weight=0.4)],
     {"a": 0.6, "b": 0.4}),
    ("slow_start_zero_kept", [score("a", 90, weight=1.0), score("n", 100, Category.INIT)],
     {"a": 1.0, "n": 0.0}),
    ("fallback_to_score", [score("a", 75), score("b", 25, Category.HU)],
     {"a": 0.75, "b": 0.25}),
    ("fallback_uniform", [score("a", 0, Category.HU), score("b", 0, Category.HU)],
     {"a": 0.5, "b": 0.5}),
    ("nan_weight_ignored", [score("a", 80, weight=math.nan), score("b", 80, weight=1.0)],
     {"a": 0.0, "b": 1.0}),
    ("sundown_weight_dropped", [score("a", 80, weight=0.5),
                                score("s", 90, Category.SUNDOWN, weight=0.5)],
     {"a": 1.0, "s": 0.0}),
]


@pytest.mark.parametrize(("scores", "weights"), [r[1:] for r in WEIGHT_ROWS],
                         ids=[r[0] for r in WEIGHT_ROWS])
def test_weights(scores: list[ContainerScore], weights: dict[str, float]) -> None:
    got = {i.dns_name: i.weight for i in build_queue(scores, {})}
    assert got == pytest.approx(weights)


FALLBACK_ROWS = [
    ("weights_normalised", [3.0, 1.0], [10.0, 90.0], [0.75, 0.25]),
    ("no_weights_by_score", None, [75.0, 25.0], [0.75, 0.25]),
    ("zero_weights_by_score", [0.0, 0.0], [60.0, 20.0], [0.75, 0.25]),
    ("non_finite_weights_by_score", [math.nan, math.inf], [1.0, 3.0], [0.25, 0.75]),
    ("negative_counts_as_zero", [-1.0, 2.0], [50.0, 50.0], [0.0, 1.0]),
    ("no_information_equal", [0.0, math.nan], [0.0, math.nan], [0.5, 0.5]),
    ("empty", None, [], []),
]


@pytest.mark.parametrize(("weights", "scores", "shares"), [r[1:] for r in FALLBACK_ROWS],
                         ids=[r[0] for r in FALLBACK_ROWS])
def test_traffic_weights_fallback(weights: list[float] | None, scores: list[float],
                                  shares: list[float]) -> None:
    """The one fallback rule, shared by the queue and the client's compat parsing."""
    assert traffic_weights(weights, scores) == pytest.approx(shares)


def test_address_port_and_id_from_infos() -> None:
    items = build_queue(
        [score("a", 90, id="short-a"), score("b", 80, id="short-b"),
         score("s", 70, Category.SUNDOWN)],
        {"a": info("a", 32768), "s": info("s", 32770)},
    )
    assert items[0] == QueueItem(dns_name="a", score=90, utilization_category=Category.LU,
                                 weight=pytest.approx(90 / 170), address="127.0.0.1",
                                 port=32768, id="id-a")
    assert (items[1].address, items[1].port, items[1].id) == (None, None, "short-b")
    assert (items[2].port, items[2].weight) == (32770, 0.0)


def test_compat_fields_on_the_wire() -> None:
    (item,) = build_queue([score("a", 42.5, Category.MU)], {"a": info("a", 1234)})
    wire = item.to_json()
    assert (wire["dns_name"], wire["score"], wire["utilization_category"]) == ("a", 42.5, "MU")


def test_nan_score_published_as_zero() -> None:
    (item,) = build_queue([score("n", math.nan, Category.INIT)], {})
    assert item.score == 0.0
    assert item.weight == 1.0


def test_accepts_any_iterable() -> None:
    items = build_queue((s for s in [score("a", 1, Category.HU)]), {})
    assert [i.dns_name for i in items] == ["a"]
