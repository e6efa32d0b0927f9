"""The one check of a manual scale's count (agent.core.policy), and who asks it."""
from __future__ import annotations

from typing import Any

import pytest

from agent.core.errors import ConfigError
from agent.core.policy import PolicyConfig, check_scale_count, scale_count_fault, scale_range

POLICY = PolicyConfig(min_containers=3, max_containers=9)


@pytest.mark.parametrize(
    ("count", "fault"),
    [
        (3, None),
        (9, None),
        (5, None),
        (2, "range"),
        (10, "range"),
        (-1, "range"),
        (10**30, "range"),
        (True, "type"),
        (4.0, "type"),
        ("4", "type"),
        (None, "type"),
        ([4], "type"),
    ],
    ids=["floor", "ceiling", "inside", "below", "above", "negative", "huge",
         "bool", "float", "string", "null", "array"],
)
def test_scale_count_fault(count: Any, fault: str | None) -> None:
    assert scale_count_fault(count, POLICY) == fault
    if fault is None:
        assert check_scale_count(count, POLICY) == count
    else:
        with pytest.raises(ConfigError) as exc:
            check_scale_count(count, POLICY)
        assert exc.value.variable == "count"


def test_scale_range_is_the_policy_bounds() -> None:
    assert scale_range(POLICY) == (3, 9)
