"""The pool as one immutable value, and the signals the shell reads into it.

`PoolState` is everything a tick's decisions depend on — what the engine listed,
the latest samples and scores, which containers are drained, the SUNDOWN marks
with their times, the policy state, when the last scale check ran — and nothing
else. The runtime replaces it each tick (list → sample → score → plan → execute);
`agent.core.plan` turns it into a plan. Every method returns a new value.

Two clocks, never mixed:

* **wall** (epoch seconds, `time.time()` in the runtime): SUNDOWN marks, the
  policy state, the drain timeout and `now` of every plan — they are persisted
  and must mean the same thing to a restarted agent;
* **monotonic** (`trio.current_time()`): `last_check` and the scale-check period
  only, which nothing persists and which a wall-clock jump must not shorten.

What "dead" and "drained" mean is decided here, once: `DEAD_STATES` and
`drained_names` (the balancer's current sessions when there is one, else the
network heuristic `IDLE_NETWORK_BPS`).
"""
from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from agent.core.balancer import ServerStats
from agent.core.policy import Observation, PolicyConfig, PolicyState
from agent.core.records import Category, ContainerInfo, ContainerScore, Sample
from agent.core.steady_weights import WeightLevels
from agent.core.traffic import ServerTraffic, TrafficState

__all__ = [
    "DEAD_STATES",
    "Feedback",
    "IDLE_NETWORK_BPS",
    "PoolState",
    "is_drained",
    "drained_names",
    "drain_sessions",
    "clamp_desired",
]

# Engine states of an owned container that will not serve again: it is removed and
# (through reconcile) replaced. "created" is a container whose start never came,
# e.g. an agent killed between create and start; "lost" a Swarm worker whose node
# is Down (`agent.core.swarm`).
DEAD_STATES = frozenset({"exited", "dead", "created", "lost"})

# A container whose last sample moved fewer bytes/s than this carries no traffic.
# Not 0: the bridge network carries a little background chatter (ARP, IPv6 RS).
IDLE_NETWORK_BPS = 64.0


def is_drained(sample: Sample | None, sessions: int | None = None) -> bool:
    """No traffic now: by the balancer's count when it has one, else by the network.

    `sessions` is the balancer's "current sessions" of the container's server
    (None: no balancer, or it does not know this server). Without it, the last
    sample must have moved fewer than IDLE_NETWORK_BPS bytes/s (no sample or a
    NaN rate ⇒ not drained: unknown is not idle).
    """
    if sessions is not None:
        return sessions <= 0
    return sample is not None and sample.network_bps < IDLE_NETWORK_BPS  # NaN ⇒ False


def drained_names(
    samples: Mapping[str, Sample], sessions: Mapping[str, int] | None = None
) -> frozenset[str]:
    """The sampled containers that carry no traffic (see `is_drained`)."""
    sessions = sessions or {}
    return frozenset(n for n, s in samples.items() if is_drained(s, sessions.get(n)))


@dataclass(frozen=True, slots=True)
class Feedback:
    """What the observe step carries from one tick to the next, besides the scorer:
    the balancer readings the next per-tick figures start from (`TrafficState`) and
    the published weights' grid levels (`WeightLevels`). Not persisted: a restarted
    agent starts them over."""

    traffic: TrafficState = field(default_factory=TrafficState)
    weights: WeightLevels = field(default_factory=WeightLevels)


def drain_sessions(
    read: bool, stats: Mapping[str, ServerStats], names: Iterable[str]
) -> dict[str, int]:
    """The balancer's word on each of `names` (SUNDOWN containers), for
    `drained_names`: the requests its server may still hold or be sent.

    0 only when the balancer was `read` and the server is out of rotation (draining,
    in maintenance, down) with no request in flight or queued, or is not in the
    backend at all. A server still in rotation counts 1 at least — it may be sent a
    request any moment (its drain was not applied yet) — and so does every name
    when the balancer could not be read: unknown is never drained.
    """
    out = {}
    for name in names:
        s = stats.get(name)
        if not read:
            out[name] = 1
        elif s is None:
            out[name] = 0
        else:
            pending = s.sessions + s.queued
            out[name] = max(1, pending) if s.up else pending
    return out


def clamp_desired(desired: int, policy: PolicyConfig) -> int:
    """`desired` inside [min_containers, max_containers] (bounds may change at run time)."""
    return max(policy.min_containers, min(policy.max_containers, desired))


@dataclass(frozen=True, slots=True, kw_only=True)
class PoolState:
    """The pool between two steps of a tick (see the module docstring for clocks).

    `containers` is the last listing (plus containers created since); `samples`,
    `scores` and `drained` are this tick's observations; `sundown` maps a name to
    the wall time it was marked; `engine_error` is None while the engine answers;
    `last_decision` is the ledger record of the last scale decision (published);
    `traffic` is what the balancer saw of each container this tick (empty without
    one) and `feedback` what the observe step keeps for the next tick.
    Mappings are never mutated: every change builds a new value.
    """

    policy: PolicyState
    containers: Mapping[str, ContainerInfo] = field(default_factory=dict)
    samples: Mapping[str, Sample] = field(default_factory=dict)
    scores: Mapping[str, ContainerScore] = field(default_factory=dict)
    drained: frozenset[str] = frozenset()
    sundown: Mapping[str, float] = field(default_factory=dict)
    last_check: float | None = None  # monotonic clock
    engine_error: str | None = None
    last_decision: Mapping[str, Any] | None = None
    traffic: Mapping[str, ServerTraffic] = field(default_factory=dict)
    feedback: Feedback = field(default_factory=Feedback)

    # -- reading -----------------------------------------------------------------

    @property
    def desired(self) -> int:
        return self.policy.desired

    @property
    def engine_ok(self) -> bool:
        return self.engine_error is None

    def running(self) -> list[ContainerInfo]:
        return [i for i in self.containers.values() if i.running]

    def active_names(self) -> list[str]:
        """Running containers not marked SUNDOWN: the ones that take traffic."""
        return [i.name for i in self.running() if i.name not in self.sundown]

    def category(self, name: str) -> Category:
        """SUNDOWN when marked, else the score's category (INIT until scored)."""
        if name in self.sundown:
            return Category.SUNDOWN
        score = self.scores.get(name)
        return Category.INIT if score is None else score.category

    def observations(self, *, active_only: bool = False) -> tuple[Observation, ...]:
        """What the policy sees: one `Observation` per running container."""
        out = []
        for info in self.running():
            name = info.name
            if active_only and name in self.sundown:
                continue
            score, sample = self.scores.get(name), self.samples.get(name)
            seen = self.traffic.get(name)
            out.append(Observation(
                name=name,
                score=math.nan if score is None else score.overall_score,
                category=self.category(name),
                forecast=math.nan if score is None else score.forecast,
                drained=name in self.drained,
                sundown_since=self.sundown.get(name),
                stale=sample is None or sample.stale,
                created=info.created,
                in_flight=math.nan if seen is None else float(seen.in_flight),
                resource_scores=() if score is None else (
                    ("cpu", score.cpu_score), ("memory", score.memory_score),
                    ("network", score.network_score),
                    ("availability", score.availability_score)),
            ))
        return tuple(out)

    def probe_targets(self) -> list[ContainerInfo]:
        """The running containers to sample; SUNDOWN ones without a probe port,
        since our own probe traffic would keep them from ever looking drained."""
        return [
            dataclasses.replace(i, host_port=None) if i.name in self.sundown else i
            for i in self.running()
        ]

    # -- new values ----------------------------------------------------------------

    def listed(self, infos: Iterable[ContainerInfo]) -> PoolState:
        """The engine answered: its listing replaces ours; marks of containers that
        no longer exist are dropped (no orphans in Redis)."""
        containers = {i.name: i for i in infos}
        sundown = {n: t for n, t in self.sundown.items() if n in containers}
        return dataclasses.replace(
            self, containers=containers, sundown=sundown, engine_error=None)

    def unlisted(self, error: str) -> PoolState:
        """The engine did not answer: keep the last listing, pause actuation."""
        return dataclasses.replace(self, engine_error=error)

    def observed(
        self, samples: Mapping[str, Sample], scores: Iterable[ContainerScore],
        drained: frozenset[str], *, traffic: Mapping[str, ServerTraffic] | None = None,
        feedback: Feedback | None = None,
    ) -> PoolState:
        """This tick's samples, scores, drained set and balancer figures; scores of
        containers we do not list are dropped, the others carry the engine's id."""
        return dataclasses.replace(
            self, samples=dict(samples), drained=drained,
            scores={s.name: dataclasses.replace(s, id=self.containers[s.name].id)
                    for s in scores if s.name in self.containers},
            traffic=dict(traffic or {}),
            feedback=self.feedback if feedback is None else feedback,
        )

    def marked(self, names: Iterable[str], now: float) -> PoolState:
        """`names` marked SUNDOWN at `now` (an existing mark keeps its time)."""
        sundown = dict(self.sundown)
        for name in names:
            sundown.setdefault(name, now)
        return dataclasses.replace(self, sundown=sundown)

    def with_policy(self, policy: PolicyState) -> PoolState:
        return dataclasses.replace(self, policy=policy)

    def with_desired(self, desired: int) -> PoolState:
        return dataclasses.replace(self, policy=dataclasses.replace(self.policy, desired=desired))

    def without(self, names: Iterable[str]) -> PoolState:
        """`names` removed from the engine: forgotten with their scores and marks."""
        gone = set(names)
        if not gone:
            return self
        return dataclasses.replace(
            self,
            containers={n: i for n, i in self.containers.items() if n not in gone},
            samples={n: s for n, s in self.samples.items() if n not in gone},
            scores={n: s for n, s in self.scores.items() if n not in gone},
            traffic={n: t for n, t in self.traffic.items() if n not in gone},
            drained=self.drained - gone,
            sundown={n: t for n, t in self.sundown.items() if n not in gone},
        )

    def with_created(self, info: ContainerInfo) -> PoolState:
        """A container the engine has just created (INIT until it is scored)."""
        return dataclasses.replace(self, containers={**self.containers, info.name: info})
