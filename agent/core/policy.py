"""The scaling policy: pure decisions over plain records.

Shaped like Kubernetes' HPA (`replica_calculator.go`) and a Nomad Autoscaler
strategy: the maths lives here, the loop that samples, acts and records lives in
`agent.service.runtime`. Nothing in this module imports trio, docker or redis, and nothing
reads a clock: `now` is passed in (seconds; any clock, as long as the caller uses
the same one for every call and for `Observation.sundown_since`).

One evaluation::

    decision = decide(state, observations, policy, now)
    # decision.action  "scale_up" | "scale_down" | "none"
    # decision.reason  a stable code from REASONS, e.g. "cooldown"
    # decision.message a sentence with the numbers, for people
    # decision.inputs  every number the decision used, for the ledger
    # decision.desired / .add / .sundown: what the actuator must do
    # decision.state   the PolicyState to pass to the next call

Rules, in the order they are applied (SPEC §5 compat rules first):

* Bounds. The *current* size is ``max(active, desired)`` — the containers we have,
  or are about to have once reconcile has created the pending ones. Below
  ``min_containers`` ⇒ grow to it ("below_min"); above ``max_containers`` ⇒ shrink
  to it ("above_max"). Both happen at once (bounds changed at run time).
* No active container ⇒ nothing to judge ("no_active"); reconcile recreates.
* Warm-up: INIT containers, stale samples and non-finite scores do not count in
  the average; if nothing counts ⇒ "no_samples".
* avg = mean score of the counted containers; critical = counted containers
  below ``critical_threshold``.
* Scale up (compat rules 1–2) when avg < high or a container is critical:
  refused at the ceiling ("at_max") or inside the cooldown ("cooldown"), else add
  ``min(step, max − current)`` ("avg_below_high" / "critical_container") and
  restart the cooldown.
* Predictive scale-up (off by default): otherwise, when the mean forecast of the
  counted containers is < high, the same scale-up ("predicted_high_load"). It can
  add capacity early; it never removes any.
* Scale down (compat rule 3) when avg > low and active > min: recommend removing
  ``min(step, active − min)`` containers, then

  - anticipated-flap guard: the load of the removed containers is spread over
    the rest — projected load = (100 − avg)·active/(active − n), projected score
    = 100 − projected load; a projection below ``high_threshold`` would trigger a
    scale-up right after, so it is refused ("flap_guard");
  - stabilization window (HPA's scale-down behaviour): every evaluation records
    its recommendation; the highest one over the last ``stabilization_window``
    seconds wins, so a scale-down happens only once every recommendation in the
    window agrees ("stabilizing" otherwise). See `PolicyConfig`;
  - the containers with the highest score are marked SUNDOWN, never INIT ones
    ("avg_above_low"); at the floor ⇒ "at_min".
* Otherwise "within_band".

`drain_ready`, `plan_reconcile` and `manual_scale` complete the actuator's plan.
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from agent.core.errors import ConfigError
from agent.core.records import Category

__all__ = [
    "REASONS",
    "Action",
    "PolicyConfig",
    "Observation",
    "PolicyState",
    "Decision",
    "decide",
    "drain_ready",
    "plan_reconcile",
    "manual_scale",
    "scale_range",
    "scale_count_fault",
    "check_scale_count",
]

Action = Literal["scale_up", "scale_down", "none"]

#: Every reason code `decide` / `manual_scale` can return, with its meaning.
REASONS: Mapping[str, str] = {
    "avg_below_high": "scale up: the average score is below HIGH_LOAD_THRESHOLD",
    "critical_container": "scale up: a container's score is below CRITICAL_LOAD_THRESHOLD",
    "predicted_high_load": "scale up early: the forecast average is below HIGH_LOAD_THRESHOLD",
    "cooldown": "scale up wanted, but the cooldown since the last scale-up has not passed",
    "at_max": "scale up wanted, but the pool is at MAX_CONTAINERS",
    "avg_above_low": "scale down: the average score is above LOW_LOAD_THRESHOLD",
    "at_min": "scale down wanted, but the pool is at DEFAULT_CONTAINER",
    "stabilizing": "scale down held: a higher recommendation is still inside the stabilization window",
    "flap_guard": "scale down refused: the projected average would fall below HIGH_LOAD_THRESHOLD",
    "within_band": "no action: the average is between the thresholds",
    "no_active": "no action: no active container to judge",
    "no_samples": "no action: no active container has a usable sample yet",
    "below_min": "scale up to the floor: the pool is below DEFAULT_CONTAINER",
    "above_max": "scale down to the ceiling: the pool is above MAX_CONTAINERS",
    "manual": "scale to a count requested by an operator",
}

# A stabilization window holds one entry per evaluation; this caps it should the
# caller evaluate far more often than the window is long.
_MAX_RECOMMENDATIONS = 1000


@dataclass(frozen=True, slots=True, kw_only=True)
class PolicyConfig:
    """The knobs of the policy (built by `Settings.policy_config()`).

    `stabilization_window` is in seconds; 0 disables it (the compat behaviour:
    scale down at the first check that sees low load). The default, 1.5 scale
    checks, needs two consecutive agreeing checks: once load is gone the first
    scale-down comes at the second check, within the "no later than three checks"
    budget, and the half-period margin keeps that exact under scheduling jitter
    (a window of exactly 2 periods would put the oldest entry on the boundary).
    """

    min_containers: int = 5
    max_containers: int = 15
    high_threshold: float = 55.0
    low_threshold: float = 80.0
    critical_threshold: float = 20.0
    cooldown: float = 5.0
    scale_step: int = 1
    stabilization_window: float = 15.0
    flap_guard: bool = True
    predictive: bool = False
    drain_timeout: float = 30.0

    def __post_init__(self) -> None:
        if not (_is_int(self.min_containers) and self.min_containers >= 1):
            raise ConfigError("min_containers", f"must be an integer ≥ 1, got {self.min_containers!r}")
        if not (_is_int(self.max_containers) and self.max_containers >= self.min_containers):
            raise ConfigError(
                "max_containers",
                f"must be an integer ≥ min_containers ({self.min_containers}), got {self.max_containers!r}",
            )
        if not (_is_int(self.scale_step) and self.scale_step >= 1):
            raise ConfigError("scale_step", f"must be an integer ≥ 1, got {self.scale_step!r}")
        if not (0.0 <= self.critical_threshold < self.high_threshold < self.low_threshold <= 100.0):
            raise ConfigError(
                "high_threshold",
                "thresholds must satisfy 0 ≤ critical < high < low ≤ 100, got "
                f"critical={self.critical_threshold!r}, high={self.high_threshold!r}, "
                f"low={self.low_threshold!r}",
            )
        for name in ("cooldown", "stabilization_window", "drain_timeout"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
                raise ConfigError(name, f"must be a number ≥ 0, got {value!r}")


@dataclass(frozen=True, slots=True, kw_only=True)
class Observation:
    """What the policy knows about one container at this evaluation.

    `forecast` is the scorer's forecast of the overall score (NaN when it has
    none); `network_idle` means no traffic in the last sample; `sundown_since` is
    when the container was marked SUNDOWN (same clock as `now`); `stale` means the
    last sample missed its tick deadline.
    """

    name: str
    score: float
    category: Category
    forecast: float = math.nan
    network_idle: bool = False
    sundown_since: float | None = None
    stale: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class PolicyState:
    """What the policy carries from one evaluation to the next.

    `last_scale_up` is None until the first scale-up. `recommendations` are the
    (time, desired) pairs inside the stabilization window, oldest first.
    """

    desired: int
    last_scale_up: float | None = None
    recommendations: tuple[tuple[float, int], ...] = ()

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready form, for the store."""
        return {
            "desired": self.desired,
            "last_scale_up": self.last_scale_up,
            "recommendations": [[t, d] for t, d in self.recommendations],
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> PolicyState:
        """Inverse of `to_json`; raises ValueError on a malformed record."""
        try:
            last = data.get("last_scale_up")
            recs = tuple((float(t), int(d)) for t, d in data.get("recommendations") or ())
            return cls(
                desired=int(data["desired"]),
                last_scale_up=None if last is None else float(last),
                recommendations=recs,
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"malformed policy state: {exc}") from None


@dataclass(frozen=True, slots=True, kw_only=True)
class Decision:
    """The outcome of one evaluation, "no action" included.

    `desired` is the new desired count; `add` how many containers this decision
    adds on top of the current size; `sundown` the names to mark SUNDOWN now;
    `state` the PolicyState for the next call.
    """

    action: Action
    reason: str
    message: str
    inputs: dict[str, Any]
    desired: int
    add: int
    sundown: tuple[str, ...]
    state: PolicyState

    def to_event(self) -> dict[str, Any]:
        """A JSON-ready record for the decision ledger."""
        return {
            "action": self.action,
            "reason": self.reason,
            "message": self.message,
            "desired": self.desired,
            "add": self.add,
            "sundown": list(self.sundown),
            "inputs": dict(self.inputs),
        }


def decide(
    state: PolicyState,
    observations: Iterable[Observation],
    policy: PolicyConfig,
    now: float,
) -> Decision:
    """Evaluate the scaling rules once (see the module docstring)."""
    obs = tuple(observations)
    active = [o for o in obs if o.category is not Category.SUNDOWN]
    n_active = len(active)
    current = max(n_active, state.desired)
    counted = [
        o for o in active
        if o.category is not Category.INIT and not o.stale and math.isfinite(o.score)
    ]
    inputs: dict[str, Any] = {
        "active": n_active,
        "counted": len(counted),
        "sundown_count": len(obs) - n_active,
        "desired_before": state.desired,
        "current": current,
        "min_containers": policy.min_containers,
        "max_containers": policy.max_containers,
        "high_threshold": policy.high_threshold,
        "low_threshold": policy.low_threshold,
        "critical_threshold": policy.critical_threshold,
        "scale_step": policy.scale_step,
    }
    recs = _window(state, policy, now)

    def finish(
        action: Action,
        reason: str,
        message: str,
        desired: int,
        *,
        add: int = 0,
        sundown: Sequence[str] = (),
        recommendation: int | None = None,
        restart_cooldown: bool = False,
    ) -> Decision:
        rec = desired if recommendation is None else recommendation
        new_recs = (*recs, (now, rec))[-_MAX_RECOMMENDATIONS:]
        new_state = PolicyState(
            desired=desired,
            last_scale_up=now if restart_cooldown else state.last_scale_up,
            recommendations=new_recs,
        )
        return Decision(
            action=action, reason=reason, message=message, inputs=inputs,
            desired=desired, add=add, sundown=tuple(sundown), state=new_state,
        )

    # Bounds first: they may have changed at run time.
    if current < policy.min_containers:
        add = policy.min_containers - current
        return finish(
            "scale_up", "below_min",
            f"pool of {current} is below the floor of {policy.min_containers}: adding {add}",
            policy.min_containers, add=add,
        )
    if current > policy.max_containers:
        excess = n_active - policy.max_containers
        names = _pick_sundown(active, excess, allow_init=True) if excess > 0 else []
        inputs["sundown_names"] = list(names)
        return finish(
            "scale_down", "above_max",
            f"pool of {current} is above the ceiling of {policy.max_containers}: "
            f"desired lowered to {policy.max_containers}, {len(names)} marked SUNDOWN",
            policy.max_containers, sundown=names,
        )

    if n_active == 0:
        return finish(
            "none", "no_active",
            f"no active container; desired stays {current}", current,
        )
    if not counted:
        return finish(
            "none", "no_samples",
            f"none of the {n_active} active containers has a usable sample yet "
            "(warming up or stale); no action",
            current,
        )

    avg = math.fsum(o.score for o in counted) / len(counted)
    critical = sorted(o.name for o in counted if o.score < policy.critical_threshold)
    forecasts = [o.forecast for o in counted if math.isfinite(o.forecast)]
    forecast_avg = math.fsum(forecasts) / len(forecasts) if forecasts else None
    inputs["avg"] = avg
    inputs["critical"] = critical
    inputs["forecast_avg"] = forecast_avg
    inputs["predictive"] = policy.predictive
    cooldown_remaining = _cooldown_remaining(state, policy, now)
    inputs["cooldown_remaining"] = cooldown_remaining

    predicted = (
        policy.predictive and forecast_avg is not None
        and forecast_avg < policy.high_threshold
    )
    if avg < policy.high_threshold or critical or predicted:
        if avg < policy.high_threshold:
            reason = "avg_below_high"
            why = f"average score {avg:.1f} < {policy.high_threshold:g}"
        elif critical:
            reason = "critical_container"
            why = (f"{len(critical)} container(s) below {policy.critical_threshold:g} "
                   f"({', '.join(critical)})")
        else:
            reason = "predicted_high_load"
            why = (f"forecast average score {forecast_avg:.1f} < {policy.high_threshold:g} "
                   f"(now {avg:.1f})")
        if current >= policy.max_containers:
            return finish(
                "none", "at_max",
                f"{why}, but the pool is at its ceiling of {policy.max_containers}",
                current,
            )
        if cooldown_remaining > 0:
            return finish(
                "none", "cooldown",
                f"{why}, but the cooldown has {cooldown_remaining:.1f} s left",
                current, recommendation=current,
            )
        add = min(policy.scale_step, policy.max_containers - current)
        return finish(
            "scale_up", reason,
            f"{why}: adding {add} (desired {current} → {current + add})",
            current + add, add=add, restart_cooldown=True,
        )

    if avg > policy.low_threshold:
        if n_active <= policy.min_containers:
            return finish(
                "none", "at_min",
                f"average score {avg:.1f} > {policy.low_threshold:g}, but the pool of "
                f"{n_active} is at its floor of {policy.min_containers}",
                current,
            )
        n = min(policy.scale_step, n_active - policy.min_containers)
        projected_load = (100.0 - avg) * n_active / (n_active - n)
        projected = 100.0 - projected_load
        inputs["projected_avg"] = projected
        inputs["flap_guard"] = policy.flap_guard
        if policy.flap_guard and projected < policy.high_threshold:
            return finish(
                "none", "flap_guard",
                f"average score {avg:.1f} > {policy.low_threshold:g}, but removing {n} of "
                f"{n_active} would bring it to {projected:.1f}, below {policy.high_threshold:g}",
                current,
            )
        recommendation = current - n
        stabilized = max([recommendation, *(d for _, d in recs)])
        inputs["recommendation"] = recommendation
        inputs["stabilized_desired"] = stabilized
        inputs["stabilization_window"] = policy.stabilization_window
        if stabilized >= current:
            return finish(
                "none", "stabilizing",
                f"average score {avg:.1f} > {policy.low_threshold:g}, but a recommendation of "
                f"{stabilized} is inside the {policy.stabilization_window:g} s stabilization "
                f"window; holding {current}",
                current, recommendation=recommendation,
            )
        # Counted containers are non-INIT, so there is always a candidate.
        names = _pick_sundown(active, current - stabilized, allow_init=False)
        desired = current - len(names)
        inputs["sundown_names"] = list(names)
        return finish(
            "scale_down", "avg_above_low",
            f"average score {avg:.1f} > {policy.low_threshold:g}: marking "
            f"{', '.join(names)} SUNDOWN (desired {current} → {desired}, "
            f"projected average {projected:.1f})",
            desired, sundown=names, recommendation=recommendation,
        )

    return finish(
        "none", "within_band",
        f"average score {avg:.1f} is within [{policy.high_threshold:g}, "
        f"{policy.low_threshold:g}] and no container is critical; desired stays {current}",
        current,
    )


def drain_ready(
    observations: Iterable[Observation], policy: PolicyConfig, now: float
) -> list[str]:
    """SUNDOWN containers that may be removed now (SPEC §5 rule 4).

    Ready when its last sample saw no network traffic, or when it was marked
    at least `drain_timeout` seconds ago.
    """
    ready = []
    for o in observations:
        if o.category is not Category.SUNDOWN:
            continue
        timed_out = o.sundown_since is not None and now - o.sundown_since >= policy.drain_timeout
        if o.network_idle or timed_out:
            ready.append(o.name)
    return ready


def plan_reconcile(desired: int, running_active: int) -> int:
    """How many containers to create so that `running_active` reaches `desired`."""
    return max(0, desired - running_active)


def scale_range(policy: PolicyConfig) -> tuple[int, int]:
    """The counts an operator may ask for (POST /scale): DEFAULT_CONTAINER to
    MAX_CONTAINERS, both included."""
    return policy.min_containers, policy.max_containers


def scale_count_fault(count: object, policy: PolicyConfig) -> Literal["type", "range"] | None:
    """What is wrong with `count` as the target of a manual scale: "type" (not an
    integer), "range" (outside `scale_range`), or None when it may be asked for.

    The one check of a manual scale's count: `check_scale_count` (and so
    `manual_scale`) applies it; the web layer asks it before calling the agent,
    to answer in its own words, and documents `scale_range` as the bounds.
    """
    if isinstance(count, bool) or not isinstance(count, int):
        return "type"
    lo, hi = scale_range(policy)
    return None if lo <= count <= hi else "range"


def check_scale_count(count: object, policy: PolicyConfig) -> int:
    """`count` when `scale_count_fault` finds nothing wrong; else `ConfigError("count", ...)`."""
    if scale_count_fault(count, policy) is not None:
        lo, hi = scale_range(policy)
        raise ConfigError(
            "count",
            f"must be an integer between DEFAULT_CONTAINER ({lo}) and "
            f"MAX_CONTAINERS ({hi}), got {count!r}",
        )
    assert isinstance(count, int)  # (scale_count_fault's "type" rules out anything else)
    return count


def manual_scale(
    state: PolicyState,
    count: int,
    policy: PolicyConfig,
    active_observations: Iterable[Observation],
    now: float,
) -> Decision:
    """An operator's request to run exactly `count` containers (POST /scale).

    Raises `ConfigError("count", ...)` unless min ≤ count ≤ max. When shrinking,
    the highest-score non-INIT containers go SUNDOWN (INIT ones only when there
    are not enough others). The stabilization window restarts from `count`, so
    the autoscaler does not undo the request before the window has passed.
    """
    check_scale_count(count, policy)
    active = [o for o in active_observations if o.category is not Category.SUNDOWN]
    n_active = len(active)
    current = max(n_active, state.desired)
    names = _pick_sundown(active, n_active - count, allow_init=True) if n_active > count else []
    add = max(0, count - current)
    if count > current:
        action: Action = "scale_up"
        message = f"manual scale from {current} to {count}: adding {add}"
    elif count < current:
        action = "scale_down"
        message = f"manual scale from {current} to {count}"
        if names:
            message += f": marking {', '.join(names)} SUNDOWN"
    else:
        action = "none"
        message = f"manual scale: already at {count}"
    inputs: dict[str, Any] = {
        "requested": count,
        "active": n_active,
        "desired_before": state.desired,
        "current": current,
        "min_containers": policy.min_containers,
        "max_containers": policy.max_containers,
        "sundown_names": list(names),
    }
    new_state = PolicyState(
        desired=count, last_scale_up=state.last_scale_up, recommendations=((now, count),)
    )
    return Decision(
        action=action, reason="manual", message=message, inputs=inputs,
        desired=count, add=add, sundown=tuple(names), state=new_state,
    )


# ---------------------------------------------------------------------------


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _window(state: PolicyState, policy: PolicyConfig, now: float) -> tuple[tuple[float, int], ...]:
    """Recommendations still inside the window (entries from the future dropped)."""
    start = now - policy.stabilization_window
    return tuple((t, d) for t, d in state.recommendations if start < t <= now)


def _cooldown_remaining(state: PolicyState, policy: PolicyConfig, now: float) -> float:
    if state.last_scale_up is None:
        return 0.0
    remaining = state.last_scale_up + policy.cooldown - now
    # A last_scale_up in the future (another clock) never blocks longer than one cooldown.
    return max(0.0, min(policy.cooldown, remaining))


def _pick_sundown(active: Sequence[Observation], n: int, *, allow_init: bool) -> list[str]:
    """The `n` least loaded containers: highest score first, fresh before stale."""
    if n <= 0:
        return []

    def key(o: Observation) -> tuple[bool, float, str]:
        score = o.score if math.isfinite(o.score) else -math.inf
        return (o.stale, -score, o.name)

    chosen = sorted((o for o in active if o.category is not Category.INIT), key=key)
    if allow_init:
        chosen += sorted((o for o in active if o.category is Category.INIT), key=key)
    return [o.name for o in chosen[:n]]
