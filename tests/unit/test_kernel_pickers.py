"""The compiled pickers (`swrr_fill`, `p2c_fill`), called directly."""
from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from _scoring import _kernel
from agent.reference.scoring import p2c_pick, swrr_sequence


def swrr(weights: list[float], k: int) -> list[int]:
    w = np.asarray(weights, np.float64)
    out = np.empty(k, np.int64)
    _kernel.swrr_fill(w, np.zeros_like(w), out)
    return out.tolist()


def test_swrr_is_nginx_sequence():
    assert "".join("abc"[i] for i in swrr([5, 1, 1], 7)) == "aabacaa"
    # the cycle repeats, and each backend gets exactly its weight per cycle
    picks = swrr([5, 1, 1], 70)
    assert picks[:7] * 10 == picks
    assert [picks.count(i) for i in range(3)] == [50, 10, 10]


def test_swrr_state_carries_between_calls():
    w = np.array([3.0, 2.0, 0.0, 1.0])
    cur = np.zeros_like(w)
    one = np.empty(1, np.int64)
    singles = []
    for _ in range(12):
        _kernel.swrr_fill(w, cur, one)
        singles.append(int(one[0]))
    assert singles == swrr([3.0, 2.0, 0.0, 1.0], 12)
    assert 2 not in singles  # weight 0 is never picked


def test_swrr_no_positive_weight():
    assert swrr([0.0, 0.0], 3) == [-1, -1, -1]
    assert swrr([], 2) == [-1, -1]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(0.0, 10.0, allow_subnormal=False), min_size=1, max_size=8),
       st.integers(1, 30))
def test_swrr_matches_reference(weights, k):
    assert swrr(weights, k) == swrr_sequence(weights, k)


def p2c(weights, us, load=None):
    w = np.asarray(weights, np.float64)
    out = np.empty(len(us) // 2, np.int64)
    ld = None if load is None else np.asarray(load, np.float64)
    _kernel.p2c_fill(w, np.cumsum(w), np.asarray(us, np.float64), ld, out)
    return out.tolist()


@settings(max_examples=100, deadline=None)
@given(
    weights=st.lists(st.one_of(st.just(0.0), st.floats(0.0, 10.0, allow_subnormal=False)),
                     min_size=1, max_size=8),
    u=st.lists(st.floats(0.0, 1.0, exclude_max=True), min_size=2, max_size=2),
    use_load=st.booleans(),
    seed=st.integers(0, 1000),
)
def test_p2c_matches_reference(weights, u, use_load, seed):
    load = np.random.default_rng(seed).integers(0, 3, len(weights)).astype(float) if use_load else None
    got = p2c(weights, u, load)[0]
    assert got == p2c_pick(weights, u[0], u[1], None if load is None else load.tolist())
    if sum(weights) > 0:
        assert weights[got] > 0
    else:
        assert got == -1


def test_p2c_without_load_follows_the_weights():
    w = [1.0, 2.0, 3.0, 4.0]
    n = 200_000
    picks = p2c(w, np.random.default_rng(7).random(2 * n))
    freq = np.bincount(picks, minlength=4) / n
    assert freq == pytest.approx([x / sum(w) for x in w], abs=0.005)


def test_p2c_with_equal_load_per_weight_follows_the_weights():
    # exact law with load: first a with w_a / T, then b != a with w_b / (T - w_a);
    # the lower load per unit of weight wins, ties keep a
    w = [1.0, 2.0, 3.0, 4.0]
    load = [1.0, 1.0, 6.0, 4.0]  # per weight: 1, 0.5, 2, 1
    total = sum(w)
    expected = [0.0] * 4
    for a, b in itertools.permutations(range(4), 2):
        p = w[a] / total * w[b] / (total - w[a])
        expected[b if load[b] * w[a] < load[a] * w[b] else a] += p
    n = 200_000
    picks = p2c(w, np.random.default_rng(7).random(2 * n), load=load)
    freq = np.bincount(picks, minlength=4) / n
    assert freq == pytest.approx(expected, abs=0.005)


def test_p2c_prefers_lower_load_and_handles_degenerate_weights():
    rng = np.random.default_rng(3)
    us = rng.random(2 * 1000)
    # with load, index 0 (lowest load) wins whenever it is one of the two drawn
    picks = p2c([1.0, 1.0, 1.0], us, load=[0.0, 5.0, 5.0])
    assert 0.6 < picks.count(0) / len(picks) < 0.73  # P(0 drawn) = 2/3
    assert set(p2c([0.0, 2.0, 0.0], us[:20])) == {1}  # single positive weight
    assert p2c([0.0, 0.0], [0.5, 0.5]) == [-1]
    assert p2c([], [0.5, 0.5]) == [-1]


def test_p2c_rejects_mismatched_arrays():
    w = np.ones(3)
    with pytest.raises(ValueError, match="two uniforms per pick"):
        _kernel.p2c_fill(w, np.cumsum(w), np.zeros(1), None, np.empty(1, np.int64))
    with pytest.raises(ValueError, match="load"):
        _kernel.p2c_fill(w, np.cumsum(w), np.zeros(2), np.zeros(2), np.empty(1, np.int64))
