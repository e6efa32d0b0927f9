"""agent.core.jsonsafe: the one strict-JSON cleaning, shared by the web layer,
the store codec and the runtime's summaries."""
from __future__ import annotations

import json
import math

import pytest

from agent.core.jsonsafe import strict_json
from agent.core.records import Category
from agent.core.store_codec import encode_json
from agent.interfaces.web.views import dumps


@pytest.mark.parametrize(
    ("value", "cleaned"),
    [
        (math.nan, None),
        (math.inf, None),
        (-math.inf, None),
        (1.5, 1.5),
        (0, 0),
        (True, True),
        ("NaN", "NaN"),
        (None, None),
        ({"a": math.nan, "b": [1.0, math.inf, {"c": -math.inf}]}, {"a": None, "b": [1.0, None, {"c": None}]}),
        ((math.nan, 2), [None, 2]),
        ([], []),
    ],
    ids=["nan", "inf", "-inf", "finite", "int", "bool", "string", "none", "nested", "tuple", "empty"],
)
def test_non_finite_floats_become_null_at_any_depth(value: object, cleaned: object) -> None:
    assert strict_json(value) == cleaned
    json.dumps(strict_json(value), allow_nan=False)  # strict JSON, whatever the input


def test_other_values_are_left_to_the_encoder() -> None:
    marker = object()
    assert strict_json(marker) is marker
    assert strict_json({"k": marker})["k"] is marker
    assert strict_json(Category.LU) is Category.LU


def test_every_writer_writes_null_for_nan() -> None:
    value = {"score": math.nan, "category": Category.SUNDOWN, "items": (math.inf, 1)}
    expected = '{"score":null,"category":"SUNDOWN","items":[null,1]}'
    assert dumps(value) == expected
    assert encode_json(value) == expected
