"""Routing weights worth following: the kernel's weights, quantized and held.

The kernel's weights (`agent.scoring`: slow start × headroom² / latency) follow
every tick's noise: identical idle workers drift a few per cent apart, and a
balancer told to follow them reshuffles traffic for nothing. This step, between
the kernel and everything that routes (the queue on the WebSocket and the
balancer's backend), publishes a weight that moves only on a real difference.

Each container's weight is placed on a geometric grid of `STEP` (10 %) relative
to the pool's median weight, in log space::

    x = ln(weight / median)            level = round(x / ln(1 + STEP))

and the level is **held** while x stays within (½ + `HOLD`) of a step of it, so a
weight that wobbles across a grid line does not flip. The published weight is
(1 + STEP)^level × median, normalised to sum 1. Consequences, each tested:

- identical containers (within ±5 % of the median) sit on level 0 together and
  get *exactly* equal weights;
- a weight moves when it differs from its level by more than 0.75 of a step
  (≈ 7 %), and then by whole steps of 10 %; a degraded container at a fifth of the
  others lands within 5 % of a fifth;
- a weight of 0 (SUNDOWN, no answer) stays 0; the median is over the others.

Pure: the levels are a value (`WeightLevels`) passed in and returned.
"""
from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

__all__ = ["HOLD", "STEP", "WeightLevels", "first_weights", "steady_weights"]

#: The grid's step: published weights differ by whole factors of (1 + STEP).
STEP = 0.10
#: Hysteresis, in steps, beyond the half step that rounding allows.
HOLD = 0.25
#: Levels are clamped to ±MAX_LEVEL (a factor 9·10⁴ from the median): beyond, a
#: weight is as good as 0 to a balancer with integer weights up to 256.
MAX_LEVEL = 120
_LOG_STEP = math.log1p(STEP)


@dataclass(frozen=True, slots=True)
class WeightLevels:
    """Each container's grid level, as the last step left it."""

    levels: Mapping[str, int] = field(default_factory=dict)


def steady_weights(
    previous: WeightLevels, raw: Mapping[str, float]
) -> tuple[WeightLevels, dict[str, float]]:
    """Quantized, held weights for `raw` (non-negative; need not sum to 1).

    Returns the new levels and the weights, which sum to 1 over the containers
    with a positive raw weight (all 0 when none has one).
    """
    positive = {n: w for n, w in raw.items() if math.isfinite(w) and w > 0}
    if not positive:
        return WeightLevels(), {n: 0.0 for n in raw}
    log_median = math.log(statistics.median(positive.values()))
    levels: dict[str, int] = {}
    for name, w in positive.items():
        x = max(-MAX_LEVEL, min(MAX_LEVEL, (math.log(w) - log_median) / _LOG_STEP))
        held = previous.levels.get(name)
        if held is not None and abs(x - held) <= 0.5 + HOLD:
            levels[name] = held
        else:
            levels[name] = round(x)
    quantized = {n: math.exp(level * _LOG_STEP) for n, level in levels.items()}
    total = math.fsum(quantized.values())
    weights = {n: quantized.get(n, 0.0) / total for n in raw}
    return WeightLevels(levels), weights


def first_weights(
    weights: Mapping[str, float], running: Iterable[str], share: float
) -> dict[str, float]:
    """`weights` for every `running` container: one the kernel has not scored yet
    (created in this tick) gets `share` of the median weight — the slow start's
    first step — so that it takes traffic as soon as it is a server."""
    positive = [w for w in weights.values() if math.isfinite(w) and w > 0]
    start = share * (statistics.median(positive) if positive else 1.0)
    return {name: weights[name] if name in weights else start for name in running}
