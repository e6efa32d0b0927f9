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
  containers ("avg_below_high" / "critical_container") and restart the cooldown.
  How many (`PolicyConfig.scale_up_sizing`, SCALE_UP_SIZING): "shortfall" (the
  default, SPEC §5 **better**) ``min(max(step, min(needed − current, up_limit)),
  max − current)`` with ``needed = ceil(serving × u / (100 − high))``, u the
  most-used capacity's utilization (see `Shortfall`): one check sizes the pool
  back to the threshold, as HPA does; "step" (compat) ``min(step, max − current)``.
* Predictive scale-up (off by default): otherwise, when the mean forecast of the
  counted containers is < high, the same scale-up, sized the same way
  ("predicted_high_load"). It can add capacity early; it never removes any.
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

Each rule is a function returning a `Verdict` or passing (None): first the
`GUARDS` (bounds, no_active, no_samples), then the rules of the strategy
(`STRATEGIES["threshold"]`: scale up, scale down, within band). Which containers
go SUNDOWN is one ordering everywhere (`pick_sundown`).

`drain_ready`, `plan_reconcile`, `pick_sundown` and `manual_scale` are the
pieces `agent.core.plan` builds a tick's plan from.
"""
from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from agent.core.errors import ConfigError
from agent.core.records import Category
from agent.core.settings_table import CONTAINER_RANGE, DEFAULTS, THRESHOLD_ORDER, spec

__all__ = [
    "REASONS",
    "RESOURCES",
    "Action",
    "PolicyConfig",
    "Observation",
    "PolicyState",
    "Decision",
    "Context",
    "Load",
    "Verdict",
    "GUARDS",
    "STRATEGIES",
    "DEFAULT_STRATEGY",
    "decide",
    "drain_ready",
    "pick_sundown",
    "plan_reconcile",
    "manual_scale",
    "scale_range",
    "scale_count_fault",
    "check_scale_count",
]

Action = Literal["scale_up", "scale_down", "none"]

#: The resources an overall score is made of (SPEC §3), as `Observation.resource_scores`
#: and `PolicyConfig.resource_weights` name them.
RESOURCES: tuple[str, ...] = ("cpu", "memory", "network", "availability")
#: Those that are a share of a capacity used (100 − score = % used): what the
#: shortfall sizing reads as utilization (`Shortfall`).
SIZED_RESOURCES: tuple[str, ...] = ("cpu", "memory", "network")

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
    "above_target": "scale up: the load is above its target by more than SCALE_TOLERANCE",
    "below_target": "scale down: the load is below its target by more than SCALE_TOLERANCE",
    "within_tolerance": "no action: the load is within SCALE_TOLERANCE of its target",
}

# A stabilization window holds one entry per evaluation; this caps it should the
# caller evaluate far more often than the window is long.
_MAX_RECOMMENDATIONS = 1000


@dataclass(frozen=True, slots=True, kw_only=True)
class PolicyConfig:
    """The knobs of the policy (built by `Settings.policy_config()`); defaults,
    ranges and relations are the settings table's (`agent.core.settings_table`).

    `stabilization_window` is in seconds; 0 disables it (the compat behaviour:
    scale down at the first check that sees low load). The default, 1.5 scale
    checks, needs two consecutive agreeing checks: once load is gone the first
    scale-down comes at the second check, within the "no later than three checks"
    budget, and the half-period margin keeps that exact under scheduling jitter
    (a window of exactly 2 periods would put the oldest entry on the boundary).
    """

    min_containers: int = DEFAULTS["DEFAULT_CONTAINER"]
    max_containers: int = DEFAULTS["MAX_CONTAINERS"]
    high_threshold: float = DEFAULTS["HIGH_LOAD_THRESHOLD"]
    low_threshold: float = DEFAULTS["LOW_LOAD_THRESHOLD"]
    critical_threshold: float = DEFAULTS["CRITICAL_LOAD_THRESHOLD"]
    cooldown: float = DEFAULTS["COOLDOWN_PERIOD"]
    scale_step: int = DEFAULTS["SCALE_STEP"]
    stabilization_window: float = DEFAULTS["SCALE_DOWN_STABILIZATION"]
    flap_guard: bool = DEFAULTS["FLAP_GUARD"]
    predictive: bool = DEFAULTS["PREDICTIVE_SCALE_UP"]
    drain_timeout: float = DEFAULTS["DRAIN_TIMEOUT"]
    strategy: str = DEFAULTS["SCALING_STRATEGY"]
    target_utilization: float = DEFAULTS["TARGET_UTILIZATION"]
    target_in_flight: float | None = DEFAULTS["TARGET_IN_FLIGHT"]
    tolerance: float = DEFAULTS["SCALE_TOLERANCE"]
    scale_up_limit: int = DEFAULTS["SCALE_UP_LIMIT"]
    scale_down_limit: int = DEFAULTS["SCALE_DOWN_LIMIT"]
    scale_up_sizing: str = DEFAULTS["SCALE_UP_SIZING"]
    resource_weights: tuple[tuple[str, float], ...] = tuple(
        (r, DEFAULTS[f"{r.upper()}_WEIGHT"]) for r in RESOURCES
    )

    def __post_init__(self) -> None:
        """The settings table's ranges and relations, on typed values."""
        self._in_range("min_containers", "DEFAULT_CONTAINER")
        if not (spec("MAX_CONTAINERS").admits(self.max_containers) and CONTAINER_RANGE.broken(
                {"DEFAULT_CONTAINER": self.min_containers, "MAX_CONTAINERS": self.max_containers}
        ) is None):
            raise ConfigError(
                "max_containers",
                f"must be an integer ≥ min_containers ({self.min_containers}), got {self.max_containers!r}",
            )
        self._in_range("scale_step", "SCALE_STEP")
        thresholds = {"CRITICAL_LOAD_THRESHOLD": self.critical_threshold,
                      "HIGH_LOAD_THRESHOLD": self.high_threshold,
                      "LOW_LOAD_THRESHOLD": self.low_threshold}
        if not (all(spec(n).admits(v) for n, v in thresholds.items())
                and THRESHOLD_ORDER.broken(thresholds) is None):
            raise ConfigError(
                "high_threshold",
                "thresholds must satisfy 0 ≤ critical < high < low ≤ 100, got "
                f"critical={self.critical_threshold!r}, high={self.high_threshold!r}, "
                f"low={self.low_threshold!r}",
            )
        self._in_range("cooldown", "COOLDOWN_PERIOD")
        self._in_range("stabilization_window", "SCALE_DOWN_STABILIZATION")
        self._in_range("drain_timeout", "DRAIN_TIMEOUT")
        if self.strategy not in STRATEGIES:
            raise ConfigError("strategy", f"must be one of {', '.join(STRATEGIES)}, got {self.strategy!r}")
        self._in_range("target_utilization", "TARGET_UTILIZATION")
        if self.target_in_flight is not None:
            self._in_range("target_in_flight", "TARGET_IN_FLIGHT")
        self._in_range("tolerance", "SCALE_TOLERANCE")
        self._in_range("scale_up_limit", "SCALE_UP_LIMIT")
        self._in_range("scale_down_limit", "SCALE_DOWN_LIMIT")
        if self.scale_up_sizing not in spec("SCALE_UP_SIZING").choices:
            raise ConfigError("scale_up_sizing", "must be one of "
                              f"{', '.join(spec('SCALE_UP_SIZING').choices)}, "
                              f"got {self.scale_up_sizing!r}")
        if not all(r in RESOURCES and math.isfinite(w) and w >= 0
                   for r, w in self.resource_weights):
            raise ConfigError("resource_weights", "must be (resource, weight ≥ 0) pairs of "
                              f"{', '.join(RESOURCES)}, got {self.resource_weights!r}")

    @property
    def sized_resources(self) -> frozenset[str]:
        """The resources the score weighs (weight > 0): those a shortfall is read from."""
        return frozenset(r for r, w in self.resource_weights if w > 0)

    def _in_range(self, name: str, setting: str) -> None:
        value = getattr(self, name)
        if not spec(setting).admits(value):
            raise ConfigError(name, f"must be {spec(setting).expect}, got {value!r}")


@dataclass(frozen=True, slots=True, kw_only=True)
class Observation:
    """What the policy knows about one container at this evaluation.

    `forecast` is the scorer's forecast of the overall score (NaN when it has
    none). `drained` is the shell's word that the container carries no traffic
    now — computed from whichever source it has (`agent.core.pool.drained_names`:
    the balancer's current sessions when there is one, else the network bytes of
    the last sample); only SUNDOWN containers act on it. `sundown_since` is when
    the container was marked SUNDOWN (same clock as `now`); `stale` means the
    last sample missed its tick deadline; `created` (epoch seconds) breaks ties
    when choosing which containers to drain (`pick_sundown`). `in_flight` is the
    requests the balancer has in flight to it, queued ones included (HAProxy's
    ``scur`` + ``qcur``): a load signal that needs no model of the application
    (target tracking reads it, `TARGET_IN_FLIGHT`); NaN without a balancer, or
    before it knows the container. `resource_scores` are the per-resource scores
    the overall score is made of, as (resource, score) pairs of `RESOURCES`: the
    shortfall sizing reads the most-used one (empty when unknown: the overall
    score alone is read then).
    """

    name: str
    score: float
    category: Category
    forecast: float = math.nan
    drained: bool = False
    sundown_since: float | None = None
    stale: bool = False
    created: float = 0.0
    in_flight: float = math.nan
    resource_scores: tuple[tuple[str, float], ...] = ()


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


# --------------------------------------------------------------------------- decide
#
# `decide` runs two sequences of rules, each rule returning a `Verdict` or None
# (pass). The guards judge the pool's size alone; the strategy's rules judge its
# load. The first verdict wins. A second strategy (e.g. target tracking) is one
# more tuple in `STRATEGIES`, evaluated after the same guards.


@dataclass(frozen=True, slots=True)
class Context:
    """What every rule sees: the pool at this evaluation, split as the rules need."""

    state: PolicyState
    policy: PolicyConfig
    now: float
    observations: tuple[Observation, ...]
    active: tuple[Observation, ...]
    counted: tuple[Observation, ...]  # active, non-INIT, fresh, finite score
    current: int  # max(active, desired): the pool we have or are about to have
    window: tuple[tuple[float, int], ...]  # recommendations inside the window

    @classmethod
    def build(
        cls, state: PolicyState, observations: Iterable[Observation], policy: PolicyConfig,
        now: float,
    ) -> Context:
        obs = tuple(observations)
        active = tuple(o for o in obs if o.category is not Category.SUNDOWN)
        counted = tuple(
            o for o in active
            if o.category is not Category.INIT and not o.stale and math.isfinite(o.score)
        )
        return cls(
            state=state, policy=policy, now=now, observations=obs, active=active,
            counted=counted, current=max(len(active), state.desired),
            window=_window(state, policy, now),
        )

    def inputs(self) -> dict[str, Any]:
        """The numbers every decision records."""
        p = self.policy
        return {
            "active": len(self.active),
            "counted": len(self.counted),
            "sundown_count": len(self.observations) - len(self.active),
            "desired_before": self.state.desired,
            "current": self.current,
            "min_containers": p.min_containers,
            "max_containers": p.max_containers,
            "high_threshold": p.high_threshold,
            "low_threshold": p.low_threshold,
            "critical_threshold": p.critical_threshold,
            "scale_step": p.scale_step,
        }


@dataclass(frozen=True, slots=True)
class Load:
    """The load figures the strategy's rules judge (only when something counts)."""

    avg: float
    critical: tuple[str, ...]  # names below the critical threshold, sorted
    forecast_avg: float | None
    cooldown_remaining: float

    @classmethod
    def of(cls, ctx: Context) -> Load:
        """The figures of the counted containers (there must be at least one)."""
        counted, policy = ctx.counted, ctx.policy
        forecasts = [o.forecast for o in counted if math.isfinite(o.forecast)]
        return cls(
            avg=math.fsum(o.score for o in counted) / len(counted),
            critical=tuple(sorted(o.name for o in counted if o.score < policy.critical_threshold)),
            forecast_avg=math.fsum(forecasts) / len(forecasts) if forecasts else None,
            cooldown_remaining=_cooldown_remaining(ctx.state, policy, ctx.now),
        )

    def inputs(self, policy: PolicyConfig) -> dict[str, Any]:
        return {
            "avg": self.avg,
            "critical": list(self.critical),
            "forecast_avg": self.forecast_avg,
            "predictive": policy.predictive,
            "cooldown_remaining": self.cooldown_remaining,
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class Verdict:
    """A rule's outcome; `decide` turns it into a `Decision` and the next state.

    `recommendation` is what enters the stabilization window (default: `desired`);
    `inputs` are the numbers this rule adds to the ledger entry.
    """

    action: Action
    reason: str
    message: str
    desired: int
    add: int = 0
    sundown: tuple[str, ...] = ()
    recommendation: int | None = None
    restart_cooldown: bool = False
    inputs: Mapping[str, Any] = field(default_factory=dict)


#: A rule on the pool's size: a verdict, or None to pass to the next rule.
Guard = Callable[[Context], Verdict | None]
#: A rule of a strategy, judging the load: a verdict, or None to pass.
LoadRule = Callable[[Context, Load], Verdict | None]


def decide(
    state: PolicyState,
    observations: Iterable[Observation],
    policy: PolicyConfig,
    now: float,
) -> Decision:
    """Evaluate the scaling rules once (see the module docstring)."""
    ctx = Context.build(state, observations, policy, now)
    for guard in GUARDS:
        verdict = guard(ctx)
        if verdict is not None:
            return _finish(ctx, verdict, ctx.inputs())
    load = Load.of(ctx)
    for rule in STRATEGIES[policy.strategy]:
        verdict = rule(ctx, load)
        if verdict is not None:
            return _finish(ctx, verdict, {**ctx.inputs(), **load.inputs(policy)})
    raise AssertionError("the last rule of a strategy always decides")


def _finish(ctx: Context, verdict: Verdict, inputs: dict[str, Any]) -> Decision:
    rec = verdict.desired if verdict.recommendation is None else verdict.recommendation
    state = PolicyState(
        desired=verdict.desired,
        last_scale_up=ctx.now if verdict.restart_cooldown else ctx.state.last_scale_up,
        recommendations=(*ctx.window, (ctx.now, rec))[-_MAX_RECOMMENDATIONS:],
    )
    return Decision(
        action=verdict.action, reason=verdict.reason, message=verdict.message,
        inputs={**inputs, **verdict.inputs}, desired=verdict.desired, add=verdict.add,
        sundown=verdict.sundown, state=state,
    )


# -- guards: the pool's size, before any load figure ---------------------------------


def _below_floor(ctx: Context) -> Verdict | None:
    floor = ctx.policy.min_containers
    if ctx.current >= floor:
        return None
    add = floor - ctx.current
    return Verdict(
        action="scale_up", reason="below_min",
        message=f"pool of {ctx.current} is below the floor of {floor}: adding {add}",
        desired=floor, add=add,
    )


def _above_ceiling(ctx: Context) -> Verdict | None:
    ceiling = ctx.policy.max_containers
    if ctx.current <= ceiling:
        return None
    names = pick_sundown(ctx.active, len(ctx.active) - ceiling, allow_init=True)
    return Verdict(
        action="scale_down", reason="above_max",
        message=f"pool of {ctx.current} is above the ceiling of {ceiling}: "
        f"desired lowered to {ceiling}, {len(names)} marked SUNDOWN",
        desired=ceiling, sundown=tuple(names), inputs={"sundown_names": list(names)},
    )


def _no_active(ctx: Context) -> Verdict | None:
    if ctx.active:
        return None
    return Verdict(
        action="none", reason="no_active",
        message=f"no active container; desired stays {ctx.current}", desired=ctx.current,
    )


def _no_samples(ctx: Context) -> Verdict | None:
    if ctx.counted:
        return None
    return Verdict(
        action="none", reason="no_samples",
        message=f"none of the {len(ctx.active)} active containers has a usable sample yet "
        "(warming up or stale); no action",
        desired=ctx.current,
    )


# -- the threshold strategy (SPEC §5 compat rules, with the safety rules) -------------


def _scale_up(ctx: Context, load: Load) -> Verdict | None:
    """Compat rules 1–2, and the predictive scale-up."""
    policy, current = ctx.policy, ctx.current
    why, reason = _scale_up_cause(policy, load)
    if why is None:
        return None
    refused = _scale_up_refused(ctx, load, why)
    if refused is not None:
        return refused
    if policy.scale_up_sizing == "step":
        add = min(policy.scale_step, policy.max_containers - current)
        return Verdict(
            action="scale_up", reason=reason,
            message=f"{why}: adding {add} (desired {current} → {current + add})",
            desired=current + add, add=add, restart_cooldown=True,
            inputs={"scale_up_sizing": "step"},
        )
    short = Shortfall.of(ctx, load)
    add = min(max(policy.scale_step, min(short.needed - current, policy.scale_up_limit)),
              policy.max_containers - current)
    limited = (f", limited by SCALE_UP_LIMIT {policy.scale_up_limit}"
               if add == policy.scale_up_limit < short.needed - current else "")
    return Verdict(
        action="scale_up", reason=reason,
        message=f"{why}: {short.formula}; adding {add} (desired {current} → "
        f"{current + add}{limited})",
        desired=current + add, add=add, restart_cooldown=True, inputs=short.inputs(),
    )


@dataclass(frozen=True, slots=True)
class Shortfall:
    """How many containers the load needs, as the threshold rules read it (better).

    The compat rule adds SCALE_STEP per check, so a step load that needs twice
    the pool waits several checks for it. The shortfall sizing answers in one:
    ``needed = ceil(serving × u / u_max)``, where u is the pool's utilization and
    u_max = 100 − HIGH_LOAD_THRESHOLD, the utilization the threshold allows — so
    the pool is sized back to the threshold, as HPA's ``ceil(n × current /
    target)``.

    u is the most-used capacity: for each of CPU, memory and network that the
    score weighs (weight > 0), the mean of 100 − its score over the counted
    containers (each is a share of a capacity used, SPEC §3); or 100 − the
    average score when that is higher (or when no resource score is known). Why
    not the overall score alone: under the default weights a container whose CPU
    is at its limit still scores about 40 (memory, network and availability
    fine), so it could never call for more than ×1.5; HPA, given several
    metrics, likewise takes the largest of their proposals. Availability is not
    read as a utilization: it is a latency ratio that neither scales as 1/n nor
    recovers promptly (a mean of HISTORY_SIZE samples), so it would keep sizing
    up after the load is answered; it still triggers through the average.

    `serving` = active containers that are not INIT: a stale sample says nothing
    against its container carrying the mean load, while an INIT container counts
    as idle — HPA's rule for pods not yet ready, which keeps the sizing from
    overshooting while new containers warm up.
    """

    utilization: float
    resource: str  # the deciding resource, or "overall"
    u_max: float
    needed: int
    serving: int

    @classmethod
    def of(cls, ctx: Context, load: Load) -> Shortfall:
        policy = ctx.policy
        candidates = {"overall": 100.0 - load.avg}
        sized = policy.sized_resources
        for resource in SIZED_RESOURCES:
            if resource not in sized:
                continue
            used = [100.0 - score for o in ctx.counted for r, score in o.resource_scores
                    if r == resource and math.isfinite(score)]
            if used:
                candidates[resource] = math.fsum(used) / len(used)
        resource = max(candidates, key=lambda k: candidates[k])
        u = min(100.0, max(0.0, candidates[resource]))
        u_max = 100.0 - policy.high_threshold
        # u_max > 0: HIGH < LOW ≤ 100 (THRESHOLD_ORDER).
        serving = sum(1 for o in ctx.active if o.category is not Category.INIT)
        needed = math.ceil(serving * u / u_max - 1e-9)
        return cls(utilization=u, resource=resource, u_max=u_max, needed=needed,
                   serving=serving)

    @property
    def formula(self) -> str:
        return (f"needed = ceil(serving × u / u_max) = ceil({self.serving} × "
                f"{self.utilization:.1f} / {self.u_max:g}) = {self.needed} "
                f"(u = {self.resource} utilization)")

    def inputs(self) -> dict[str, Any]:
        return {
            "scale_up_sizing": "shortfall",
            "utilization": self.utilization,
            "utilization_resource": self.resource,
            "utilization_max": self.u_max,
            "needed": self.needed,
            "formula": self.formula,
        }


def _scale_up_refused(ctx: Context, load: Load, why: str) -> Verdict | None:
    """The ceiling and the cooldown, which hold back every strategy's scale-up."""
    policy, current = ctx.policy, ctx.current
    if current >= policy.max_containers:
        return Verdict(
            action="none", reason="at_max",
            message=f"{why}, but the pool is at its ceiling of {policy.max_containers}",
            desired=current,
        )
    if load.cooldown_remaining > 0:
        return Verdict(
            action="none", reason="cooldown",
            message=f"{why}, but the cooldown has {load.cooldown_remaining:.1f} s left",
            desired=current, recommendation=current,
        )
    return None


def _scale_up_cause(policy: PolicyConfig, load: Load) -> tuple[str | None, str]:
    """Why the pool should grow (a sentence and a reason code), or (None, "")."""
    avg, high = load.avg, policy.high_threshold
    if avg < high:
        return f"average score {avg:.1f} < {high:g}", "avg_below_high"
    if load.critical:
        return (f"{len(load.critical)} container(s) below {policy.critical_threshold:g} "
                f"({', '.join(load.critical)})", "critical_container")
    if policy.predictive and load.forecast_avg is not None and load.forecast_avg < high:
        return (f"forecast average score {load.forecast_avg:.1f} < {high:g} (now {avg:.1f})",
                "predicted_high_load")
    return None, ""


def _scale_down(ctx: Context, load: Load) -> Verdict | None:
    """Compat rule 3, behind the floor, the flap guard and the stabilization window."""
    policy, n_active = ctx.policy, len(ctx.active)
    if load.avg <= policy.low_threshold:
        return None
    above = f"average score {load.avg:.1f} > {policy.low_threshold:g}"
    if n_active <= policy.min_containers:
        return Verdict(
            action="none", reason="at_min",
            message=f"{above}, but the pool of {n_active} is at its floor of "
            f"{policy.min_containers}",
            desired=ctx.current,
        )
    n = min(policy.scale_step, n_active - policy.min_containers)
    projected = 100.0 - (100.0 - load.avg) * n_active / (n_active - n)
    guard_inputs = {"projected_avg": projected, "flap_guard": policy.flap_guard}
    if policy.flap_guard and projected < policy.high_threshold:
        return Verdict(
            action="none", reason="flap_guard",
            message=f"{above}, but removing {n} of {n_active} would bring it to "
            f"{projected:.1f}, below {policy.high_threshold:g}",
            desired=ctx.current, inputs=guard_inputs,
        )
    return _stabilized_scale_down(ctx, above, ctx.current - n, projected, guard_inputs)


def _stabilized_scale_down(
    ctx: Context, above: str, recommendation: int, projected: float,
    inputs: Mapping[str, Any], *, reason: str = "avg_above_low",
    projection: str = "projected average {:.1f}",
) -> Verdict:
    """HPA's scale-down behaviour: the highest recommendation in the window wins."""
    policy, current = ctx.policy, ctx.current
    stabilized = max([recommendation, *(d for _, d in ctx.window)])
    inputs = {**inputs, "recommendation": recommendation, "stabilized_desired": stabilized,
              "stabilization_window": policy.stabilization_window}
    if stabilized >= current:
        return Verdict(
            action="none", reason="stabilizing",
            message=f"{above}, but a recommendation of {stabilized} is inside the "
            f"{policy.stabilization_window:g} s stabilization window; holding {current}",
            desired=current, recommendation=recommendation, inputs=inputs,
        )
    # Counted containers are non-INIT, so there is always a candidate.
    names = pick_sundown(ctx.active, current - stabilized, allow_init=False)
    desired = current - len(names)
    return Verdict(
        action="scale_down", reason=reason,
        message=f"{above}: marking {', '.join(names)} SUNDOWN (desired {current} → "
        f"{desired}, {projection.format(projected)})",
        desired=desired, sundown=tuple(names), recommendation=recommendation,
        inputs={**inputs, "sundown_names": list(names)},
    )


def _within_band(ctx: Context, load: Load) -> Verdict:
    policy = ctx.policy
    return Verdict(
        action="none", reason="within_band",
        message=f"average score {load.avg:.1f} is within [{policy.high_threshold:g}, "
        f"{policy.low_threshold:g}] and no container is critical; desired stays {ctx.current}",
        desired=ctx.current,
    )


# -- the target-tracking strategy (Kubernetes HPA, Nomad's target-value) ---------------
#
# desired = ceil(active × load / target) for each load signal, and the larger of
# the two when both exist (HPA's rule for several metrics): the utilization
# (100 − score, the score's headroom turned into use) against TARGET_UTILIZATION,
# and, when the balancer reports them and TARGET_IN_FLIGHT is set, the requests
# in flight per container against it. Inside 1 ± SCALE_TOLERANCE nothing moves.
# One decision adds at most SCALE_UP_LIMIT and drains at most SCALE_DOWN_LIMIT;
# the ceiling, the cooldown, a critical container, the predictive scale-up and
# the stabilization window apply as for the threshold rules; the flap guard is
# implied by the formula (see `_target_scale_down`).


@dataclass(frozen=True, slots=True)
class Target:
    """The pool's load against its target, as target tracking judges it."""

    utilization: float  # mean of 100 − score over the counted containers
    in_flight: float | None  # mean requests in flight over those that report it
    ratio: float  # load / target of the deciding signal (the larger one)
    signal: str  # "utilization" or "in_flight"
    raw_desired: int  # ceil(active × ratio), before limits and bounds
    forecast_ratio: float | None  # the utilization ratio of the forecast scores

    @classmethod
    def of(cls, ctx: Context, load: Load) -> Target:
        policy, n = ctx.policy, len(ctx.active)
        utilization = 100.0 - load.avg
        ratios = {"utilization": utilization / policy.target_utilization}
        flights = [o.in_flight for o in ctx.counted if math.isfinite(o.in_flight)]
        in_flight = math.fsum(flights) / len(flights) if flights else None
        if in_flight is not None and policy.target_in_flight is not None:
            ratios["in_flight"] = in_flight / policy.target_in_flight
        signal = max(ratios, key=lambda k: ratios[k])
        forecast = None
        if load.forecast_avg is not None:
            forecast = (100.0 - load.forecast_avg) / policy.target_utilization
        return cls(utilization=utilization, in_flight=in_flight, ratio=ratios[signal],
                   signal=signal, raw_desired=math.ceil(n * ratios[signal] - 1e-9),
                   forecast_ratio=forecast)

    def formula(self, ctx: Context) -> str:
        """The arithmetic of the decision, for people reading the ledger."""
        policy = ctx.policy
        if self.signal == "in_flight":
            load, target = self.in_flight, policy.target_in_flight
        else:
            load, target = self.utilization, policy.target_utilization
        return (f"desired = ceil(active × {self.signal} / target) = "
                f"ceil({len(ctx.active)} × {load:.2f} / {target:g}) = {self.raw_desired}")

    def inputs(self, ctx: Context) -> dict[str, Any]:
        policy = ctx.policy
        return {
            "strategy": "target",
            "utilization": self.utilization,
            "target_utilization": policy.target_utilization,
            "in_flight_avg": self.in_flight,
            "target_in_flight": policy.target_in_flight,
            "signal": self.signal,
            "ratio": self.ratio,
            "tolerance": policy.tolerance,
            "raw_desired": self.raw_desired,
            "forecast_ratio": self.forecast_ratio,
            "formula": self.formula(ctx),
        }


def _target_signal(target: Target) -> str:
    if target.signal == "in_flight":
        assert target.in_flight is not None
        return f"{target.in_flight:.2f} requests in flight per container"
    return f"utilization {target.utilization:.1f} %"


def _target_scale_up(ctx: Context, load: Load) -> Verdict | None:
    policy, current = ctx.policy, ctx.current
    target = Target.of(ctx, load)
    inputs = target.inputs(ctx)
    high = 1.0 + policy.tolerance
    if target.ratio > high:
        reason = "above_target"
        why = (f"{_target_signal(target)} is {target.ratio:.2f}× its target "
               f"(> {high:.2f}); {target.formula(ctx)}")
    elif load.critical:
        reason = "critical_container"
        why = (f"{len(load.critical)} container(s) below {policy.critical_threshold:g} "
               f"({', '.join(load.critical)})")
    elif policy.predictive and target.forecast_ratio is not None and target.forecast_ratio > high:
        reason = "predicted_high_load"
        why = f"the forecast utilization is {target.forecast_ratio:.2f}× its target (> {high:.2f})"
    else:
        return None
    refused = _scale_up_refused(ctx, load, why)
    if refused is not None:
        return dataclasses.replace(refused, inputs=inputs)
    wanted = max(target.raw_desired - current, 1)
    add = min(wanted, policy.scale_up_limit, policy.max_containers - current)
    return Verdict(
        action="scale_up", reason=reason,
        message=f"{why}: adding {add} (desired {current} → {current + add}"
        + (f", limited by SCALE_UP_LIMIT {policy.scale_up_limit}" if add < wanted
           and add == policy.scale_up_limit else "") + ")",
        desired=current + add, add=add, restart_cooldown=True, inputs=inputs,
    )


def _target_scale_down(ctx: Context, load: Load) -> Verdict | None:
    policy, current, n_active = ctx.policy, ctx.current, len(ctx.active)
    target = Target.of(ctx, load)
    low = 1.0 - policy.tolerance
    if target.ratio >= low or target.raw_desired >= current:
        return None
    inputs = target.inputs(ctx)
    below = (f"{_target_signal(target)} is {target.ratio:.2f}× its target (< {low:.2f}); "
             f"{target.formula(ctx)}")
    if n_active <= policy.min_containers:
        return Verdict(
            action="none", reason="at_min",
            message=f"{below}, but the pool of {n_active} is at its floor of "
            f"{policy.min_containers}",
            desired=current, inputs=inputs,
        )
    n = min(current - target.raw_desired, policy.scale_down_limit, n_active - policy.min_containers)
    # No flap guard needed here: n ≤ active − ceil(active × ratio), so the load of
    # the n spread over the rest gives a ratio ≤ 1, never one that calls for a
    # scale-up right after (the threshold rules have no such formula, hence theirs).
    projected = target.ratio * n_active / (n_active - n)
    inputs = {**inputs, "projected_ratio": projected}
    return _stabilized_scale_down(ctx, below, current - n, projected, inputs,
                                  reason="below_target", projection="projected ratio {:.2f}")


def _target_within(ctx: Context, load: Load) -> Verdict:
    target = Target.of(ctx, load)
    return Verdict(
        action="none", reason="within_tolerance",
        message=f"{_target_signal(target)} is {target.ratio:.2f}× its target, within "
        f"1 ± {ctx.policy.tolerance:g} (or no container to spare); desired stays {ctx.current}",
        desired=ctx.current, inputs=target.inputs(ctx),
    )


#: Rules on the pool's size, evaluated first by every strategy.
GUARDS: tuple[Guard, ...] = (_below_floor, _above_ceiling, _no_active, _no_samples)
#: The strategies' rules, in order; the last one of each always decides.
STRATEGIES: Mapping[str, tuple[LoadRule, ...]] = {
    "threshold": (_scale_up, _scale_down, _within_band),
    "target": (_target_scale_up, _target_scale_down, _target_within),
}
#: The compat strategy; `PolicyConfig.strategy` (SCALING_STRATEGY) picks from STRATEGIES.
DEFAULT_STRATEGY = "threshold"


def drain_ready(
    observations: Iterable[Observation], policy: PolicyConfig, now: float
) -> list[str]:
    """SUNDOWN containers that may be removed now (SPEC §5 rule 4).

    Ready when it is drained (`Observation.drained`: no traffic by the shell's
    best source), or when it was marked at least `drain_timeout` seconds ago.
    """
    ready = []
    for o in observations:
        if o.category is not Category.SUNDOWN:
            continue
        timed_out = o.sundown_since is not None and now - o.sundown_since >= policy.drain_timeout
        if o.drained or timed_out:
            ready.append(o.name)
    return ready


def pick_sundown(active: Sequence[Observation], n: int, *, allow_init: bool) -> list[str]:
    """The `n` containers to drain when there are too many: the one ordering.

    Used by the scale-down rules, the ceiling rule, a manual scale-down and the
    reconcile step alike. Ranked by, in order:

    1. INIT last (and only when `allow_init`): a container that has not been
       judged yet may be the one about to take load;
    2. fresh before stale: a stale sample says nothing about the load now;
    3. highest score first (least loaded: its traffic is cheapest to move; a
       non-finite score ranks last);
    4. newest first (higher `created`), as Kubernetes' ReplicaSet does: the older
       container keeps its warm response-time history;
    5. name, so the choice is deterministic.

    SUNDOWN observations are never chosen (they are draining already).
    """
    if n <= 0:
        return []

    def key(o: Observation) -> tuple[bool, float, float, str]:
        score = o.score if math.isfinite(o.score) else -math.inf
        return (o.stale, -score, -o.created, o.name)

    live = [o for o in active if o.category is not Category.SUNDOWN]
    chosen = sorted((o for o in live if o.category is not Category.INIT), key=key)
    if allow_init:
        chosen += sorted((o for o in live if o.category is Category.INIT), key=key)
    return [o.name for o in chosen[:n]]


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
    names = pick_sundown(active, n_active - count, allow_init=True)
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
