"""Weights worth following: equal for identical containers, moving on real differences."""
from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.core.balancer_weights import integer_weights
from agent.core.steady_weights import WeightLevels, steady_weights


def run(ticks: list[dict[str, float]]) -> list[dict[str, float]]:
    levels, out = WeightLevels(), []
    for raw in ticks:
        levels, weights = steady_weights(levels, raw)
        out.append(weights)
    return out


@pytest.mark.parametrize("n", [2, 5, 20, 100])
def test_identical_idle_containers_get_equal_weights_tick_after_tick(n):
    rng = random.Random(n)
    # the kernel's weights of idle workers: a few per cent of noise each tick
    ticks = [{f"w{i}": 1.0 + rng.uniform(-0.04, 0.04) for i in range(n)} for _ in range(200)]
    for weights in run(ticks):
        values = list(weights.values())
        assert max(values) == min(values)  # exactly equal: within ±5 % and more
        assert sum(values) == pytest.approx(1.0)
        ints = integer_weights(weights)
        assert len(set(ints.values())) == 1


def test_a_weight_moves_only_on_a_real_difference():
    ticks = [{"a": 1.0, "b": 1.0, "c": 1.0, "d": w} for w in
             (1.0, 0.97, 1.03, 0.95, 1.05, 0.96, 1.0)]  # noise: held
    for weights in run(ticks):
        assert len(set(weights.values())) == 1
    *_, last = run([{"a": 1.0, "b": 1.0, "c": 1.0, "d": 1.0},
                    {"a": 1.0, "b": 1.0, "c": 1.0, "d": 0.85}])  # a real 15 %
    assert last["d"] < last["a"]
    assert last["d"] / last["a"] == pytest.approx(1 / 1.1 ** 2, rel=1e-9)  # whole steps


def test_a_degraded_container_lands_near_its_real_share():
    (weights,) = run([{"a": 1.0, "b": 1.02, "c": 0.98, "slow": 0.2}])
    assert weights["a"] == weights["b"] == weights["c"]
    assert weights["slow"] / weights["a"] == pytest.approx(0.2, rel=0.05)


def test_holding_needs_more_than_a_grid_line_to_move():
    # a weight hovering at the line between two levels does not flip every tick
    ratios = [1.1 ** 0.5 * f for f in (1.0, 1.01, 0.99, 1.02, 0.98, 1.0)]
    levels_seen = {round(w["x"] / w["a"], 6) for w in run([{"a": 1.0, "b": 1.0, "x": r}
                                                          for r in ratios])}
    assert len(levels_seen) == 1


def test_zero_weights_stay_zero_and_all_zero_is_all_zero():
    (weights,) = run([{"a": 1.0, "b": 0.0, "c": 2.0}])
    assert weights["b"] == 0.0 and weights["a"] + weights["c"] == pytest.approx(1.0)
    (weights,) = run([{"a": 0.0, "b": float("nan")}])
    assert weights == {"a": 0.0, "b": 0.0}


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.sampled_from([f"c{i}" for i in range(12)]),
                       st.floats(0.0, 1e6, allow_nan=False), min_size=1))
def test_weights_are_a_distribution_and_keep_the_order(raw):
    levels, weights = steady_weights(WeightLevels(), raw)
    if any(w > 0 for w in raw.values()):
        assert sum(weights.values()) == pytest.approx(1.0)
    names = sorted(raw, key=raw.__getitem__)
    for low, high in zip(names, names[1:]):
        assert weights[low] <= weights[high] + 1e-12
    # fed its own output again nothing moves
    again = steady_weights(levels, raw)[1]
    assert again == weights
