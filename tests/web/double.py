"""A test double of the Agent facade (docs/architecture.md), for the web tests.

`FakeAgent` implements exactly what the web layer may use — the
`agent.service.facade.AgentFacade` protocol, which mypy holds it to (this file
is in mypy's `files`; see the check at the bottom) — over the real `Settings`,
`Hub` and `Metrics`, with in-memory state instead of an engine and Redis. Manual
scale and drain are the core's plans (`agent.core.plan`) over the published
snapshot, as in the real runtime. Tests drive it through the same facade
(``agent.hub.publish(...)``) so they also run against the real runtime; the few
knobs only the double has (`alive`, `ready`, `fail_with`, `follow`) are used by
tests that check `is_double(agent)` first. It leads by default; after
``follow(...)`` it refuses the three changes with `NotLeader`, as a follower does.
"""
from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agent.core.errors import NotLeader
from agent.core.lease import Holder, LeaseView
from agent.core.settings import Settings
from agent.core.plan import Plan, plan_manual_drain, plan_manual_scale
from agent.core.policy import PolicyState
from agent.core.pool import PoolState
from agent.service.balancing import disabled_state
from agent.service.hub import Hub
from agent.service.metrics import Metrics
from agent.core.records import Category, ContainerInfo, ContainerScore, QueueItem, Snapshot

TOKEN = "test-token-0123456789"
AGENT_ID = "test-host:4242:abc123"


def make_settings(**overrides: Any) -> Settings:
    values: dict[str, Any] = dict(
        docker_image="worker:test",
        target_port=8080,
        default_container=2,
        max_containers=6,
        max_containers_limit=20,  # room for the tests that raise MAX_CONTAINERS at run time
        agent_api_token=TOKEN,
        bind_host="127.0.0.1",
        data_dir=Path("/nonexistent/deployment-agent-test"),
    )
    values.update(overrides)
    return Settings(**values)


def category_for(score: float) -> Category:
    if not math.isfinite(score):
        return Category.INIT
    if score >= 70:
        return Category.LU
    if score >= 40:
        return Category.MU
    return Category.HU


def make_snapshot(
    containers: Iterable[tuple[str, float] | tuple[str, float, Category]],
    *,
    tick: int = 1,
    desired: int | None = None,
    running: int | None = None,
    when: float | None = None,
) -> Snapshot:
    """A consistent snapshot: scores, categories, queue (SPEC §4 order) and weights."""
    scores: list[ContainerScore] = []
    infos: dict[str, ContainerInfo] = {}
    for i, entry in enumerate(containers):
        name, score = entry[0], float(entry[1])
        category = entry[2] if len(entry) > 2 else category_for(score)
        cid = f"{i:02d}" + "c0ffee" * 10
        scores.append(
            ContainerScore(
                name=name,
                cpu_score=score,
                memory_score=min(100.0, score + 5) if math.isfinite(score) else score,
                network_score=100.0,
                availability_score=score,
                overall_score=score,
                category=category,
                id=cid,
            )
        )
        infos[name] = ContainerInfo(
            name=name,
            id=cid,
            image="worker:test",
            status="running",
            created=1_700_000_000.0 + i,
            host_port=32000 + i,
        )
    active = [s for s in scores if s.category is not Category.SUNDOWN]
    active.sort(key=lambda s: -(s.overall_score if math.isfinite(s.overall_score) else -1))
    gone = [s for s in scores if s.category is Category.SUNDOWN]
    routable = [s for s in active if s.category is not Category.INIT and math.isfinite(s.overall_score)]
    total = sum(max(s.overall_score, 0.0) for s in routable)
    queue = []
    for s in active + gone:
        weight = 0.0
        if s in routable and total > 0:
            weight = max(s.overall_score, 0.0) / total
        queue.append(
            QueueItem(
                dns_name=s.name,
                score=s.overall_score,
                utilization_category=s.category,
                weight=weight,
                address="127.0.0.1",
                port=infos[s.name].host_port,
                id=s.id,
            )
        )
    scores = [replace(s, weight=next(q.weight for q in queue if q.dns_name == s.name)) for s in scores]
    n = len(active)
    return Snapshot(
        tick=tick,
        time=time.time() if when is None else when,
        scores=tuple(scores),
        queue=tuple(queue),
        containers=infos,
        desired=n if desired is None else desired,
        running=len(scores) if running is None else running,
    )


DEFAULT_CONTAINERS = (("worker-a", 82.0), ("worker-b", 55.5), ("worker-c", 31.0))


class FakeAgent:
    """In-memory implementation of the Agent facade."""

    def __init__(self, settings: Settings | None = None, snapshot: Snapshot | None = None) -> None:
        self.settings = settings if settings is not None else make_settings()
        self.hub = Hub()
        self.metrics = Metrics()
        self.history: deque[tuple[float, int, int]] = deque(maxlen=720)
        self._events: list[dict[str, Any]] = []
        self._next_event = 1
        self.alive = True
        self.ready: tuple[bool, dict[str, str]] = (True, {"engine": "ok", "redis": "ok"})
        self.scale_requests: list[int] = []
        self.sundown_requests: list[str] = []
        self.config_updates: list[dict[str, Any]] = []
        self.balancer: dict[str, Any] = disabled_state()
        self.lease = LeaseView(me=AGENT_ID, role="leader", holder=Holder(AGENT_ID, 1, None),
                               valid_until=math.inf)
        self.publish(snapshot if snapshot is not None else make_snapshot(DEFAULT_CONTAINERS))
        self.record("scale_check", {"action": "none", "reason": "within_band", "message": "start-up"})

    # -- facade -------------------------------------------------------------

    @property
    def snapshot(self) -> Snapshot:
        return self.hub.latest

    async def update_config(self, partial: Mapping[str, object]) -> Settings:
        self._require_leader()
        self.settings = self.settings.with_updates(partial)
        self.config_updates.append(dict(partial))
        self.record("config", {"changed": dict(partial), "message": "configuration updated"})
        return self.settings

    async def request_scale(self, count: int) -> dict[str, Any]:
        self._require_leader()
        plan = plan_manual_scale(self._pool(), count, self.settings.policy_config(), time.time())
        self.scale_requests.append(count)
        return self._apply(plan)

    async def request_sundown(self, name: str) -> dict[str, Any]:
        self._require_leader()
        plan = plan_manual_drain(self._pool(), name, self.settings.policy_config(), time.time())
        self.sundown_requests.append(name)
        return self._apply(plan)

    def _pool(self) -> PoolState:
        """The pool the published snapshot describes, for the core's manual plans."""
        snap = self.snapshot
        return PoolState(
            policy=PolicyState(desired=snap.desired),
            containers=snap.containers,
            scores={s.name: s for s in snap.scores},
            sundown={s.name: snap.time for s in snap.scores if s.category is Category.SUNDOWN},
        )

    def _apply(self, plan: Plan) -> dict[str, Any]:
        """Publish the plan's state (no engine: nothing is created or removed)."""
        snap = self.snapshot
        if plan.marks:
            rows = [(s.name, s.overall_score,
                     Category.SUNDOWN if s.name in plan.state.sundown else s.category)
                    for s in snap.scores]
            self.publish(make_snapshot(rows, tick=snap.tick + 1, desired=plan.state.desired))
        elif plan.events:
            self.publish(replace(snap, tick=snap.tick + 1, desired=plan.state.desired))
        for event in plan.events:
            self.record(event.kind, dict(event.data))
        return dict(plan.reply or {})

    async def events(
        self, limit: int = 50, before: str | None = None, kind: str | None = None
    ) -> list[dict[str, Any]]:
        items = reversed(self._events)
        out = []
        for event in items:
            if before is not None and not _older(event["id"], before):
                continue
            if kind is not None and event["kind"] != kind:
                continue
            out.append(event)
            if len(out) >= limit:
                break
        return out

    def health(self) -> dict[str, Any]:
        age = max(0.0, time.time() - self.snapshot.time)
        return {"alive": self.alive, "last_tick_age": age, "tick": self.snapshot.tick}

    async def readiness(self) -> tuple[bool, dict[str, str]]:
        return self.ready

    def balancer_state(self) -> dict[str, Any]:
        return dict(self.balancer)

    async def aclose(self) -> None:
        """Nothing to release: no engine, no Redis."""

    def _require_leader(self) -> None:
        holder = self.lease.holder
        if self.lease.role == "leader":
            return
        if holder is None:
            raise NotLeader("no agent leads the pool right now")
        raise NotLeader(f"this agent follows; {holder.agent_id} at {holder.url} leads",
                        leader_id=holder.agent_id, leader_url=holder.url)

    # -- test helpers -------------------------------------------------------

    def follow(self, leader_id: str, url: str | None, token: int = 2) -> None:
        """Become a follower of `leader_id` (its API at `url`)."""
        self.lease = LeaseView(me=AGENT_ID, role="follower", holder=Holder(leader_id, token, url))

    def publish(self, snapshot: Snapshot) -> None:
        self.hub.publish(snapshot)
        self.history.append((snapshot.time, snapshot.desired, snapshot.running))

    def record(self, kind: str, data: dict[str, Any]) -> dict[str, Any]:
        event = {"id": f"{1_700_000_000_000 + self._next_event}-0", "kind": kind, "ts": time.time(), "data": data}
        self._next_event += 1
        self._events.append(event)
        return event


def _older(event_id: str, before: str) -> bool:
    def key(text: str) -> tuple[int, int]:
        ms, _, seq = text.partition("-")
        try:
            return int(ms), int(seq or 0)
        except ValueError:
            return (0, 0)

    return key(event_id) < key(before)


def is_double(agent: Any) -> bool:
    return isinstance(agent, FakeAgent)


def names(queue: Sequence[dict[str, Any]]) -> list[str]:
    return [item["dns_name"] for item in queue]


if TYPE_CHECKING:
    from agent.service.facade import AgentFacade

    _facade: AgentFacade = FakeAgent()  # mypy: the double offers the whole facade
