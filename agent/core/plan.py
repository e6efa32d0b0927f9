"""A tick's decisions as one value: the plan the runtime writes ahead, then executes.

Like a Kubernetes controller, the runtime first computes the change as data and
only then applies it. Every function here is pure: it takes a `PoolState` (what
the engine listed, the latest samples and scores, the drained set, SUNDOWN marks,
the policy state, the last scale check) and returns a `Plan`::

    plan = plan_tick(pool, policy, now=wall, started=monotonic, check_period=10.0)
    plan.removals    # Removal(info, reason "dead" | "drained" | "drain_timeout", event)
    plan.marks       # names newly marked SUNDOWN (already in plan.state.sundown)
    plan.creations   # Creation(count, reason): the decision's, then reconcile's
    plan.decision    # the policy's Decision when a scale check was due, else None
    plan.events      # the decisions' ledger entries, recorded with the write-ahead
    plan.write_ahead # the plan changes desired / SUNDOWN / policy state: persist first
    plan.state       # the next PoolState, before any engine action

`plan_manual_scale` (POST /scale) and `plan_manual_drain` (POST
/containers/{name}/sundown) return plans of the same shape, with `reply` set.

The runtime executes a plan in one place: the write-ahead (events, then
`plan.state` persisted when `write_ahead`), then the engine actions in order
(removals, then creations). The outcome of an action is the engine's to tell: a
removal's `event` is recorded once the engine has removed the container, and
`created_event` / `create_failed_event` describe a creation. A failed action is
not retried within the tick; the next tick's plan sees the pool as it is.

Clocks (see `agent.core.pool`): `now` is the wall clock, epoch seconds (SUNDOWN
marks, policy state, drain timeout); `started` and `PoolState.last_check` are the
monotonic clock, used only for the scale-check period.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from agent.core.errors import ContainerNotFound
from agent.core.policy import (
    Decision,
    PolicyConfig,
    decide,
    drain_ready,
    manual_scale,
    pick_sundown,
    plan_reconcile,
)
from agent.core.pool import DEAD_STATES, PoolState
from agent.core.records import ContainerInfo

__all__ = [
    "Event",
    "Removal",
    "Creation",
    "Plan",
    "scale_check_due",
    "plan_tick",
    "plan_manual_scale",
    "plan_manual_drain",
    "created_event",
    "create_failed_event",
    "engine_down_event",
    "engine_back_event",
]

RemovalReason = Literal["dead", "drained", "drain_timeout"]


@dataclass(frozen=True, slots=True)
class Event:
    """One ledger entry: a kind (e.g. "scale_check") and its JSON-ready data."""

    kind: str
    data: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class Removal:
    """Remove `info` from the engine; record `event` once it is gone."""

    info: ContainerInfo
    reason: RemovalReason
    event: Event


@dataclass(frozen=True, slots=True)
class Creation:
    """Create `count` containers; `reason` is the decision's reason or "reconcile"."""

    count: int
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Plan:
    """What one tick (or one manual request) decided; see the module docstring."""

    state: PoolState
    removals: tuple[Removal, ...] = ()
    marks: tuple[str, ...] = ()
    creations: tuple[Creation, ...] = ()
    decision: Decision | None = None
    events: tuple[Event, ...] = ()
    write_ahead: bool = False
    reply: Mapping[str, Any] | None = None


def scale_check_due(last_check: float | None, started: float, period: float) -> bool:
    """A scale decision is due at the first tick, then every `period` seconds
    (monotonic clock: `started` is when this tick began)."""
    return last_check is None or started - last_check >= period


# --------------------------------------------------------------------------- the tick


def plan_tick(
    pool: PoolState, policy: PolicyConfig, *, now: float, started: float, check_period: float
) -> Plan:
    """Everything one tick decides, in the order the runtime executes it.

    Nothing is planned while the engine does not answer (actuation paused).
    Otherwise: remove dead containers and drained SUNDOWN ones; when a scale
    check is due, `decide` over the rest; reconcile the active count (including
    the containers about to be created) to the desired count, both ways.
    """
    if not pool.engine_ok:
        return Plan(state=pool)
    removals = (*_dead(pool), *_drained(pool, policy, now))
    left = pool.without(r.info.name for r in removals)
    intent, decision, events = pool, None, []
    marks: tuple[str, ...] = ()
    creations: list[Creation] = []
    if scale_check_due(pool.last_check, started, check_period):
        decision = decide(left.policy, left.observations(), policy, now)
        record = decision.to_event()
        events.append(Event("scale_check", record))
        marks = decision.sundown
        if decision.add:
            creations.append(Creation(decision.add, decision.reason))
        intent = _decided(pool, decision, record, now, last_check=started)
        left = _decided(left, decision, record, now, last_check=started)
    missing, victims, reconciled = _reconcile(left, sum(c.count for c in creations))
    if missing:
        creations.append(Creation(missing, "reconcile"))
    if reconciled is not None:
        events.append(reconciled)
    marks = (*marks, *victims)
    intent = intent.marked(victims, now)
    return Plan(
        state=intent, removals=removals, marks=marks, creations=tuple(creations),
        decision=decision, events=tuple(events),
        write_ahead=bool(marks) or intent.policy != pool.policy,
    )


def _dead(pool: PoolState) -> list[Removal]:
    """Owned containers in a state that will not serve again (`DEAD_STATES`)."""
    out = []
    for info in pool.containers.values():
        if info.status not in DEAD_STATES:
            continue
        kind = "removed" if info.name in pool.sundown else "replaced"
        out.append(Removal(info, "dead", Event(kind, {
            "name": info.name, "status": info.status,
            "message": f"{info.name} was {info.status}; removed, reconcile replaces it",
        })))
    return out


def _drained(pool: PoolState, policy: PolicyConfig, now: float) -> list[Removal]:
    """SUNDOWN containers that are drained, or were marked DRAIN_TIMEOUT ago."""
    observed = {o.name: o for o in pool.observations()}
    out = []
    for name in drain_ready(observed.values(), policy, now):
        drained = observed[name].drained
        reason: RemovalReason = "drained" if drained else "drain_timeout"
        out.append(Removal(pool.containers[name], reason, Event("removed", {
            "name": name, "reason": reason,
            "message": f"{name} removed after draining"
            + ("" if drained else f" (DRAIN_TIMEOUT {policy.drain_timeout:g}s)"),
        })))
    return out


def _decided(
    pool: PoolState, decision: Decision, record: Mapping[str, Any], now: float,
    *, last_check: float | None = None,
) -> PoolState:
    """`pool` with a decision's policy state and SUNDOWN marks applied."""
    state = pool.with_policy(decision.state).marked(decision.sundown, now)
    return dataclasses.replace(
        state, last_decision=record,
        last_check=state.last_check if last_check is None else last_check,
    )


def _reconcile(pool: PoolState, pending: int) -> tuple[int, tuple[str, ...], Event | None]:
    """SPEC §5 rule 5, both ways: (to create, to mark SUNDOWN, the event).

    `pending` containers are about to be created by this plan: they count as
    active, so a scale-up is not doubled by reconcile.
    """
    have = len(pool.active_names()) + pending
    missing = plan_reconcile(pool.desired, have)
    excess = have - pool.desired
    if missing or excess <= 0:
        return missing, (), None
    victims = tuple(pick_sundown(pool.observations(active_only=True), excess, allow_init=True))
    return 0, victims, Event("reconcile", {
        "sundown": list(victims),
        "message": f"{have} active containers for a desired {pool.desired}; "
        f"draining {', '.join(victims)}",
    })


# --------------------------------------------------------------------------- requests


def plan_manual_scale(pool: PoolState, count: int, policy: PolicyConfig, now: float) -> Plan:
    """An operator's POST /scale: run exactly `count` containers.

    Raises `ConfigError("count", ...)` out of range (see `policy.manual_scale`).
    The reply is the decision's ledger record. Reconcile is left to the next tick.
    """
    decision = manual_scale(pool.policy, count, policy, pool.observations(active_only=True), now)
    record = decision.to_event()
    creations = (Creation(decision.add, decision.reason),) if decision.add else ()
    return Plan(
        state=_decided(pool, decision, record, now), marks=decision.sundown,
        creations=creations, decision=decision, events=(Event("manual_scale", record),),
        write_ahead=decision.state != pool.policy or bool(decision.sundown), reply=record,
    )


def plan_manual_drain(pool: PoolState, name: str, policy: PolicyConfig, now: float) -> Plan:
    """An operator's drain of one container: weight 0 now, removed once drained.

    Raises `ContainerNotFound` unless `name` is a running container of the pool.
    Lowers the desired count by one while it stays at or above the floor
    (`min_containers`); at the floor the count stays, so reconcile starts a
    replacement. A container already draining is left as it is.
    """
    info = pool.containers.get(name)
    if info is None or not info.running:
        raise ContainerNotFound(f"no running container named {name!r} in this pool")
    if name in pool.sundown:
        return Plan(state=pool, reply={
            "name": name, "action": "none", "reason": "already_sundown",
            "desired": pool.desired, "message": f"{name} is already draining",
        })
    replaced = pool.desired - 1 < policy.min_containers
    desired = pool.desired if replaced else pool.desired - 1
    record = {
        "name": name,
        "action": "sundown",
        "reason": "manual_drain",
        "desired": desired,
        "replacement": replaced,
        "message": f"{name} drains on request"
        + ("; a replacement keeps the pool at its floor" if replaced else ""),
    }
    return Plan(
        state=pool.with_desired(desired).marked([name], now), marks=(name,),
        events=(Event("drain", record),), write_ahead=True, reply=record,
    )


# --------------------------------------------------------------------------- outcomes


def created_event(info: ContainerInfo, reason: str) -> Event:
    """The ledger entry of a container the engine has created."""
    return Event("created", {
        "name": info.name, "reason": reason, "host_port": info.host_port,
        "message": f"created {info.name} on {info.address}:{info.host_port} ({reason})",
    })


def create_failed_event(error: str, reason: str) -> Event:
    return Event("create_failed", {
        "error": error, "reason": reason, "message": f"could not create a worker: {error}",
    })


def engine_down_event(error: str) -> Event:
    return Event("engine_error", {
        "error": error, "message": f"engine unreachable, actuation paused: {error}",
    })


def engine_back_event(duration: float | None = None) -> Event:
    """The engine answers again; `duration` is how long it did not (when known)."""
    if duration is None:
        return Event("engine_recovered", {"message": "engine reachable again"})
    return Event("engine_recovered", {
        "duration": duration, "message": f"engine reachable again after {duration:.1f} s",
    })
