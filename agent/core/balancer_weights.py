"""Routing weights (floats) to a balancer's integer weights, by largest remainder.

HAProxy weights are integers 0–256 and only their ratios matter; 0 means "no new
traffic", which the agent expresses with drain instead, so a server taking traffic
gets 1–256. The conversion must not invent differences:

- **Full resolution.** The largest weight becomes 256 and the others keep their
  ratio to it, so at 100 servers a weight still has about 2.5 significant digits
  (scaling the sum to 256 would leave 2 or 3 per server, a ±20 % error).
- **Largest remainder.** Each quota ``256·w/max`` is floored, and the units the
  floors lost (the rounded sum of the quotas minus the sum of the floors) go to
  the largest fractional parts, so the integers sum to the quotas' total.
- **Equal in, equal out.** Quotas with the same fractional part share its fate:
  a unit goes to all of them or to none, so identical containers always get the
  same weight. The total may then exceed the target by less than the size of the
  last group served, which is harmless as only ratios count. Quotas are rounded
  to 1e-9 first, so float noise from the kernel does not split a group.
- **Monotone.** A larger weight never gets a smaller integer.
"""
from __future__ import annotations

import math
from collections.abc import Mapping

__all__ = ["MAX_WEIGHT", "MIN_WEIGHT", "integer_weights"]

MAX_WEIGHT = 256
MIN_WEIGHT = 1
_QUOTA_DIGITS = 9


def integer_weights(weights: Mapping[str, float], *, scale: int = MAX_WEIGHT) -> dict[str, int]:
    """Integer weights in MIN_WEIGHT..scale, in the order of `weights`.

    `weights` are non-negative and finite; they need not sum to 1 (only ratios
    count). All zero means no signal: everyone gets `scale`. A weight too small to
    reach 1 gets 1: the server takes traffic, so it keeps a share of it.
    """
    if not MIN_WEIGHT <= scale <= MAX_WEIGHT:
        raise ValueError(f"scale must be {MIN_WEIGHT}..{MAX_WEIGHT}, got {scale}")
    for name, w in weights.items():
        if not isinstance(w, (int, float)) or isinstance(w, bool) or not math.isfinite(w) or w < 0:
            raise ValueError(f"weight of {name} must be a finite number >= 0, got {w!r}")
    if not weights:
        return {}
    top = max(weights.values())
    if top <= 0:
        return {name: scale for name in weights}
    quotas = {name: round(scale * (w / top), _QUOTA_DIGITS) for name, w in weights.items()}
    floors = {name: math.floor(q) for name, q in quotas.items()}
    left = round(sum(quotas.values())) - sum(floors.values())
    result = dict(floors)
    remainders = sorted({q - floors[n] for n, q in quotas.items() if q > floors[n]}, reverse=True)
    for remainder in remainders:
        if left <= 0:
            break
        group = [n for n, q in quotas.items() if q - floors[n] == remainder]
        for name in group:
            result[name] += 1
        left -= len(group)
    return {name: min(scale, max(MIN_WEIGHT, value)) for name, value in result.items()}
