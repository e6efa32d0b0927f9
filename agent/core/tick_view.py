"""What the leader shares with its followers each tick: the pool it saw and the raw samples.

Followers neither list the engine, sample nor probe: the leader's tick pipeline
appends one `TickView` to a short capped stream (``da:<app>:views``, under the
leader's fencing token, so a deposed leader cannot feed them), and each follower
reads the views it has not seen and feeds their samples to its *own* scorer, in
order, with the leader's wall time. Its windows (response-time history, EMAs,
trends) are then warm when it takes over, and its read API and WebSocket queue
show the pool as the leader sees it, scored by the same formulas from the same
inputs.

The encoding is compact JSON, one object per tick: containers as arrays, samples
as ``[cpu, memory, network, response_time, stale]`` (NaN as null). What is read
back is untrusted: `decode_view` checks every field and raises ValueError.

Pure: nothing here reads a clock or does I/O.
"""
from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from agent.core.jsonsafe import strict_json
from agent.core.pool import PoolState
from agent.core.records import ContainerInfo, Sample

__all__ = ["TickView", "VIEW_VERSION", "view_of", "encode_view", "decode_view", "pool_from_view"]

VIEW_VERSION = 1


@dataclass(frozen=True, slots=True)
class TickView:
    """One leader tick as followers need it (the engine's listing after the tick's
    actions, the tick's samples, the SUNDOWN marks, the desired count)."""

    leader: str  # agent id
    tick: int
    time: float  # wall clock of the tick: the scorer's `now`
    desired: int
    containers: tuple[ContainerInfo, ...] = ()
    samples: Mapping[str, Sample] = field(default_factory=dict)
    sundown: Mapping[str, float] = field(default_factory=dict)
    engine_ok: bool = True
    last_decision: Mapping[str, Any] | None = None


def view_of(pool: PoolState, *, leader: str, tick: int, time: float) -> TickView:
    """The view of the pool a leader's tick ends with."""
    return TickView(
        leader=leader, tick=tick, time=time, desired=pool.desired,
        containers=tuple(pool.containers.values()),
        samples={n: s for n, s in pool.samples.items() if n in pool.containers},
        sundown=dict(pool.sundown), engine_ok=pool.engine_ok,
        last_decision=pool.last_decision,
    )


def encode_view(view: TickView) -> str:
    containers = [
        [i.name, i.id, i.image, i.status, i.created, i.host_port, i.address]
        for i in view.containers
    ]
    samples = {
        name: [s.cpu_percent, s.memory_percent, s.network_bps, s.response_time, int(s.stale)]
        for name, s in view.samples.items()
    }
    body = {
        "v": VIEW_VERSION, "by": view.leader, "tick": view.tick, "t": view.time,
        "d": view.desired, "ok": view.engine_ok, "c": containers, "s": samples,
        "sd": dict(view.sundown), "ld": view.last_decision,
    }
    return json.dumps(strict_json(body), separators=(",", ":"), allow_nan=False)


def decode_view(text: str) -> TickView:
    """Inverse of `encode_view`; ValueError for anything else."""
    try:
        data = json.loads(text)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"tick view is not JSON: {text!r:.80}") from exc
    if not isinstance(data, dict) or data.get("v") != VIEW_VERSION:
        raise ValueError(f"tick view of an unknown version: {text!r:.80}")
    try:
        containers = tuple(_container(row) for row in _typed(data["c"], list))
        samples = {_name(n): _sample(row) for n, row in _typed(data["s"], dict).items()}
        sundown = {_name(n): _number(t) for n, t in _typed(data["sd"], dict).items()}
        decision = data["ld"]
        if decision is not None and not isinstance(decision, dict):
            raise ValueError("last decision is not an object")
        return TickView(
            leader=_name(data["by"]), tick=_count(data["tick"]), time=_number(data["t"]),
            desired=_count(data["d"]), containers=containers, samples=samples,
            sundown=sundown, engine_ok=_typed(data["ok"], bool), last_decision=decision,
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"bad tick view ({exc}): {text!r:.80}") from None


def pool_from_view(pool: PoolState, view: TickView) -> PoolState:
    """A follower's pool after `view`: the leader's listing, marks and desired count.

    SUNDOWN is sticky (a mark goes only with its container), so the marks are the
    union of those known and the view's, for the containers listed: a mark the
    follower read from Redis (a drain written ahead after the view) is kept.
    Scores are the follower's to compute (`PoolState.observed`); the policy state
    other than the desired count is read from Redis at takeover.
    """
    containers = {i.name: i for i in view.containers}
    marks = {**view.sundown, **pool.sundown}
    return dataclasses.replace(
        pool.with_desired(view.desired), containers=containers,
        sundown={n: t for n, t in marks.items() if n in containers},
        engine_error=None if view.engine_ok else "the leader reports the engine unreachable",
        last_decision=view.last_decision if view.last_decision is not None else pool.last_decision,
    )


# --------------------------------------------------------------------------- checks


def _typed(value: Any, kind: type) -> Any:
    if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
        raise TypeError(f"expected {kind.__name__}, got {value!r:.40}")
    return value


def _name(value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError(f"expected a name, got {value!r:.40}")
    return value


def _number(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"expected a finite number, got {value!r:.40}")
    return float(value)


def _maybe(value: Any) -> float:
    """A measured value, or NaN where it was not measured (stored as null)."""
    return math.nan if value is None else _number(value)


def _count(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"expected an integer ≥ 0, got {value!r:.40}")
    return value


def _container(row: Any) -> ContainerInfo:
    name, cid, image, status, created, port, address = _typed(row, list)
    if port is not None and (_count(port) == 0 or port > 65535):
        raise ValueError(f"bad port {port!r}")
    return ContainerInfo(
        name=_name(name), id=_name(cid), image=_typed(image, str), status=_name(status),
        created=_number(created), host_port=port, address=_name(address),
    )


def _sample(row: Any) -> Sample:
    cpu, mem, net, rt, stale = _typed(row, list)
    return Sample(cpu_percent=_maybe(cpu), memory_percent=_maybe(mem), network_bps=_maybe(net),
                  response_time=_maybe(rt), stale=bool(_count(stale)))
