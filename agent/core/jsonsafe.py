"""Strict JSON: the one place that decides how a value that JSON cannot carry is
written.

Python's `json` writes NaN and ±Infinity as bare words that no strict parser
(browsers' `JSON.parse`, serde, Go) accepts. Scores are NaN until a container
has been measured, so every JSON the agent writes — HTTP bodies, the WebSocket
feed, what it stores in Redis — goes through `strict_json` first and carries
``null`` there instead, as serde does for non-finite floats.
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, overload

__all__ = ["strict_json"]


@overload
def strict_json(value: float) -> float | None: ...
@overload
def strict_json(value: Mapping[str, Any]) -> dict[str, Any]: ...
@overload
def strict_json(value: list[Any] | tuple[Any, ...]) -> list[Any]: ...
@overload
def strict_json(value: object) -> object: ...


def strict_json(value: object) -> object:
    """`value` with every non-finite float replaced by None, at any depth.

    Mappings become dicts and tuples become lists (what JSON makes of them);
    anything else is returned as it is, for the encoder to write or refuse.
    """
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {k: strict_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [strict_json(v) for v in value]
    return value
