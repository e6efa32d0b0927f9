"""Routing weights to HAProxy integers: table of named scenarios, then properties."""
from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.core.balancer_weights import MAX_WEIGHT, integer_weights

ROWS = [
    ("empty", {}, {}),
    ("single_server_gets_the_maximum", {"a": 1.0}, {"a": 256}),
    ("five_equal", {n: 0.2 for n in "abcde"}, {n: 256 for n in "abcde"}),
    ("equal_with_float_noise", {"a": 1 / 3, "b": 1 / 3, "c": 1 - 2 / 3},
     {"a": 256, "b": 256, "c": 256}),
    ("two_to_one", {"a": 2 / 3, "b": 1 / 3}, {"a": 256, "b": 128}),
    ("largest_remainder_takes_the_unit", {"a": 0.5, "b": 0.3, "c": 0.2},
     {"a": 256, "b": 154, "c": 102}),
    # quotas 256, 85.33 ×4: one unit is left over, and the four tied quotas share it
    ("ties_share_the_unit", {"a": 3 / 7, "b": 1 / 7, "c": 1 / 7, "d": 1 / 7, "e": 1 / 7},
     {"a": 256, "b": 86, "c": 86, "d": 86, "e": 86}),
    ("exact_quotas_need_no_unit", {"a": 0.4, "b": 0.2, "c": 0.2, "d": 0.2},
     {"a": 256, "b": 128, "c": 128, "d": 128}),
    ("tiny_weight_still_takes_traffic", {"a": 0.999, "b": 0.001}, {"a": 256, "b": 1}),
    ("zero_weight_gets_the_minimum", {"a": 1.0, "b": 0.0}, {"a": 256, "b": 1}),
    ("all_zero_means_equal", {"a": 0.0, "b": 0.0}, {"a": 256, "b": 256}),
    ("not_normalised_is_fine", {"a": 30.0, "b": 10.0}, {"a": 256, "b": 85}),
    ("hundred_equal", {f"w{i}": 0.01 for i in range(100)}, {f"w{i}": 256 for i in range(100)}),
]


@pytest.mark.parametrize("weights, expected", [r[1:] for r in ROWS], ids=[r[0] for r in ROWS])
def test_integer_weights(weights, expected):
    assert integer_weights(weights) == expected
    assert list(integer_weights(weights)) == list(weights)  # input order kept


def test_scale_caps_the_largest():
    assert integer_weights({"a": 0.75, "b": 0.25}, scale=100) == {"a": 100, "b": 33}


@pytest.mark.parametrize("bad", [-0.1, math.nan, math.inf, "1", True])
def test_refuses_weights_that_are_not_finite_non_negative_numbers(bad):
    with pytest.raises(ValueError, match="weight of b must be a finite number >= 0"):
        integer_weights({"a": 1.0, "b": bad})


@pytest.mark.parametrize("scale", [0, 257])
def test_refuses_a_scale_outside_haproxy_range(scale):
    with pytest.raises(ValueError, match="scale must be 1..256"):
        integer_weights({"a": 1.0}, scale=scale)


weights_maps = st.dictionaries(
    st.text("abcdefghij", min_size=1, max_size=3),
    st.floats(min_value=0, max_value=1, allow_nan=False, allow_infinity=False),
    min_size=1,
    max_size=40,
)


@settings(max_examples=300, deadline=None)
@given(weights_maps)
def test_properties(weights):
    out = integer_weights(weights)
    assert out == integer_weights(dict(weights))  # deterministic
    assert all(1 <= v <= MAX_WEIGHT for v in out.values())
    names = list(weights)
    for a in names:
        for b in names:
            if weights[a] == weights[b]:
                assert out[a] == out[b], "equal weights must give equal integers"
            if weights[a] > weights[b]:
                assert out[a] >= out[b], "a larger weight never gets a smaller integer"
    top = max(weights.values())
    if top > 0:
        assert out[max(weights, key=lambda n: weights[n])] == MAX_WEIGHT
        for name, w in weights.items():
            # each integer is its quota rounded down or up (or lifted to the minimum 1)
            quota = MAX_WEIGHT * w / top
            assert math.floor(quota) - 1e-6 <= out[name] <= max(1, math.ceil(quota - 1e-9)) + 1e-6
