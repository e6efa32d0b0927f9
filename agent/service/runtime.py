"""The agent: one tick loop that samples, scores, decides, acts, persists, publishes.

`Agent` holds no state that cannot be rebuilt: after a crash at any point, the
engine's labels say which containers are ours and Redis says which are SUNDOWN, how
many we want and when we last scaled up. Decisions that change the desired count or
mark containers are written to Redis *before* they are acted on (write-ahead), so a
`kill -9` between the two is repaired by the next agent's reconcile step instead of
leaving duplicates.

Failures of the engine or of Redis never end the loop: the tick records them
(metrics, ledger, snapshot flags) and the next tick tries again. Redis is the
store's concern (it buffers events and backs off); a failed engine call skips the
actuation of that tick.
"""
from __future__ import annotations

import dataclasses
import logging
import math
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import trio

from agent.core.settings import Settings
from agent.adapters.docker_engine import Engine
from agent.core.jsonsafe import strict_json
from agent.core.errors import AgentError, ConfigError, ContainerNotFound, EngineError, StoreError
from agent.service.hub import Hub
from agent.service.metrics import Metrics
from agent.core.records import Category, ContainerInfo, ContainerScore, Sample, Snapshot
from agent.core.policy import (
    Decision,
    Observation,
    PolicyState,
    decide,
    drain_ready,
    manual_scale,
    plan_reconcile,
)
from agent.core.queue import build_queue
from agent.adapters.sampler import Sampler
from agent.scoring import Scorer
from agent.adapters.redis_store import Store, TickWrite, container_record

__all__ = ["Agent", "IDLE_NETWORK_BPS", "DEAD_STATES"]

log = logging.getLogger("deployment_agent.runtime")

# A SUNDOWN container whose last sample moved fewer bytes/s than this is drained.
# Not 0: the bridge network carries a little background chatter (ARP, IPv6 RS).
IDLE_NETWORK_BPS = 64.0
# Engine states of an owned container that will not serve again: it is removed and
# (through reconcile) replaced. "created" is a container whose start never came,
# e.g. an agent killed between create and start.
DEAD_STATES = frozenset({"exited", "dead", "created"})
HISTORY_POINTS = 3600


class Agent:
    """The tick loop and the facade the web layer and the CLI use."""

    def __init__(
        self,
        settings: Settings,
        *,
        engine: Engine,
        store: Store,
        sampler: Sampler,
        scorer: Scorer | None = None,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.engine = engine
        self.store = store
        self.sampler = sampler
        self.scorer = scorer if scorer is not None else Scorer(settings.scorer_config())
        self.hub = Hub()
        self.metrics = Metrics()
        self.history: deque[tuple[float, int, int]] = deque(maxlen=HISTORY_POINTS)
        self._wall = wall_clock
        self._policy = settings.policy_config()
        self._state = PolicyState(desired=settings.default_container)
        self._overrides: dict[str, object] = {}
        self._infos: dict[str, ContainerInfo] = {}
        self._scores: dict[str, ContainerScore] = {}
        self._samples: dict[str, Sample] = {}
        self._sundown: dict[str, float] = {}
        self._lock = trio.Lock()  # serialises actuation: ticks and API requests
        self._tick = 0
        self._last_check: float | None = None
        self._last_tick_end: float | None = None
        self._started = False
        self._engine_ok = True
        self._engine_error: str | None = None
        self._last_decision: dict[str, Any] | None = None

    # -- the facade ------------------------------------------------------------

    @property
    def snapshot(self) -> Snapshot:
        return self.hub.latest

    @property
    def desired(self) -> int:
        return self._state.desired

    def health(self) -> dict[str, Any]:
        """Liveness: the loop has ticked recently (three intervals of slack)."""
        now = trio.current_time()
        age = None if self._last_tick_end is None else now - self._last_tick_end
        budget = 3 * self.settings.tick_interval + self.settings.probe_timeout
        alive = self._started and (age is None or age <= budget)
        return {
            "alive": alive,
            "tick": self._tick,
            "last_tick_age": age,
            "engine": "ok" if self._engine_ok else self._engine_error,
            "redis": "ok" if self.store.available else self.store.last_error,
        }

    async def readiness(self) -> tuple[bool, dict[str, str]]:
        """Ready when the engine and Redis both answer now (checked concurrently)."""
        report: dict[str, str] = {}

        async def check(name: str, ping: Callable[[], Any]) -> None:
            report[name] = "timed out"
            with trio.move_on_after(3):
                try:
                    await ping()
                    report[name] = "ok"
                except AgentError as exc:
                    report[name] = str(exc)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(check, "engine", self.engine.ping)
            nursery.start_soon(check, "redis", self.store.ping)
        return all(v == "ok" for v in report.values()), dict(sorted(report.items()))

    async def events(
        self, limit: int = 50, before: str | None = None, kind: str | None = None
    ) -> list[dict[str, Any]]:
        return await self.store.events(limit=limit, before=before, kind=kind)

    async def update_config(self, partial: Mapping[str, object]) -> Settings:
        """Apply a partial runtime update (validated like start-up), persist it."""
        async with self._lock:
            new = self.settings.with_updates(partial)
            self._apply_settings(new)
            self._overrides.update(partial)
            await self._emit("config", {
                "changed": dict(partial),
                "message": "runtime configuration changed: "
                + ", ".join(f"{k}={v}" for k, v in partial.items()),
            })
            try:
                await self.store.save_config(self._overrides)
            except StoreError as exc:
                # Applied in memory; written back with the next successful write.
                log.warning("config not persisted yet: %s", exc)
                self.metrics.error("store")
            return self.settings

    async def request_scale(self, count: int) -> dict[str, Any]:
        """An operator's POST /scale: run exactly `count` containers."""
        async with self._lock:
            decision = manual_scale(
                self._state, count, self._policy, self._observations(active_only=True), self._wall()
            )
            await self._apply(decision)
            return decision.to_event()

    async def request_sundown(self, name: str) -> dict[str, Any]:
        """Drain one container: weight 0 now, removed once idle.

        Lowers the desired count by one while it stays at or above
        DEFAULT_CONTAINER; at the floor, reconcile starts a replacement.
        """
        async with self._lock:
            info = self._infos.get(name)
            if info is None or not info.running:
                raise ContainerNotFound(f"no running container named {name!r} in this pool")
            if name in self._sundown:
                return {"name": name, "action": "none", "reason": "already_sundown",
                        "desired": self._state.desired,
                        "message": f"{name} is already draining"}
            desired = self._state.desired
            replaced = desired - 1 < self._policy.min_containers
            if not replaced:
                desired -= 1
            self._state = dataclasses.replace(self._state, desired=desired)
            self._mark_sundown([name], self._wall())
            event = {
                "name": name,
                "action": "sundown",
                "reason": "manual_drain",
                "desired": desired,
                "replacement": replaced,
                "message": f"{name} drains on request"
                + ("; a replacement keeps the pool at its floor" if replaced else ""),
            }
            await self._emit("drain", event)
            await self._persist()
            return event

    async def aclose(self) -> None:
        """Close the engine and store clients (idempotent; shielded)."""
        with trio.CancelScope(shield=True):
            await self.engine.aclose()
            await self.store.aclose()

    # -- running ---------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Recover, then tick every TICK_INTERVAL until cancelled.

        On cancellation the last state is written under a shielded scope and
        subscribers are closed, so WebSocket clients see a prompt 1001.
        """
        await self.recover()
        self._started = True
        task_status.started()
        try:
            while True:
                start = trio.current_time()
                await self.tick()
                await trio.sleep_until(start + self.settings.tick_interval)
        finally:
            with trio.CancelScope(shield=True), trio.move_on_after(5):
                try:
                    await self._persist()
                except Exception:  # noqa: BLE001 - best effort on the way out
                    log.exception("final persist failed")
            self.hub.close()

    async def recover(self) -> None:
        """Resume from Redis: desired count, policy state, SUNDOWN marks, config."""
        try:
            stored = await self.store.load()
        except StoreError as exc:
            log.warning("starting without stored state: %s", exc)
            self.metrics.error("store")
            return
        if stored.config:
            try:
                self._apply_settings(self.settings.with_updates(stored.config))
                self._overrides.update(stored.config)
            except ConfigError as exc:
                log.warning("ignoring stored runtime config: %s", exc)
        state = self._state
        if stored.policy:
            try:
                state = PolicyState.from_json(stored.policy)
            except ValueError as exc:
                log.warning("ignoring stored policy state: %s", exc)
        if stored.desired is not None:
            state = dataclasses.replace(state, desired=stored.desired)
        self._state = dataclasses.replace(state, desired=self._clamp(state.desired))
        self._sundown = dict(stored.sundown)
        await self._emit("recovered", {
            "message": f"resumed from Redis: desired {self._state.desired}, "
            f"{len(stored.containers)} known container(s), {len(self._sundown)} draining",
            "desired": self._state.desired,
            "sundown": sorted(self._sundown),
            "known_containers": sorted(stored.containers),
        })

    async def tick(self) -> None:
        """One pass: sample → score → decide → act → persist → publish."""
        started = trio.current_time()
        try:
            async with self._lock:
                await self._tick_locked(started)
        except AgentError as exc:
            log.warning("tick %d: %s", self._tick, exc)
            self.metrics.error(type(exc).__name__)
        except Exception:  # a bug must not end the loop: report it, tick again
            log.exception("tick %d failed", self._tick)
            self.metrics.error("internal")
        finally:
            self._last_tick_end = trio.current_time()
            self.metrics.observe_tick(self._last_tick_end - started)

    async def _tick_locked(self, started: float) -> None:
        settings = self.settings
        self._tick += 1
        now = self._wall()
        listed = await self._list()
        if listed is not None:
            await self._remove_dead(listed)
        self._sync_scorer()

        running = [i for i in self._infos.values() if i.running]
        # Drained containers get no probe: our own probe traffic would keep them busy.
        to_sample = [
            dataclasses.replace(i, host_port=None) if i.name in self._sundown else i
            for i in running
        ]
        self._samples = await self.sampler.sample(
            to_sample,
            deadline=started + settings.tick_deadline,
            probe_timeout=settings.probe_timeout,
            health_path=settings.health_path,
        )
        scores = self.scorer.update(
            {n: s for n, s in self._samples.items() if n in self.scorer}, now
        )
        self._scores = {s.name: dataclasses.replace(s, id=self._infos[s.name].id)
                        for s in scores if s.name in self._infos}

        if self._engine_ok:
            await self._drain(now)
            if self._last_check is None or started - self._last_check >= settings.scale_check_period:
                self._last_check = started
                decision = decide(self._state, self._observations(), self._policy, now)
                await self._apply(decision)
            await self._reconcile(now)
        await self._persist()
        self._publish(now)

    # -- steps -----------------------------------------------------------------

    async def _list(self) -> list[ContainerInfo] | None:
        try:
            listed = await self.engine.list_owned()
        except EngineError as exc:
            if self._engine_ok:
                await self._emit("engine_error", {
                    "error": str(exc), "message": f"engine unreachable, actuation paused: {exc}"})
            self._engine_ok, self._engine_error = False, str(exc)
            self.metrics.error("engine")
            return None
        if not self._engine_ok:
            await self._emit("engine_recovered", {"message": "engine reachable again"})
        self._engine_ok, self._engine_error = True, None
        self._infos = {i.name: i for i in listed}
        # Marks of containers that no longer exist are dropped (no orphans in Redis).
        self._sundown = {n: t for n, t in self._sundown.items() if n in self._infos}
        return listed

    async def _remove_dead(self, listed: Iterable[ContainerInfo]) -> None:
        for info in listed:
            if info.status not in DEAD_STATES:
                continue
            was_sundown = info.name in self._sundown
            if not await self._remove(info, "dead"):
                continue
            await self._emit("removed" if was_sundown else "replaced", {
                "name": info.name, "status": info.status,
                "message": f"{info.name} was {info.status}; removed, reconcile replaces it",
            })

    async def _remove(self, info: ContainerInfo, why: str) -> bool:
        """Remove a container from the engine and forget it; False if the engine failed."""
        try:
            await self.engine.remove(info.id)
        except ContainerNotFound:
            pass  # already gone: the goal is reached
        except EngineError as exc:
            self.metrics.error("engine")
            log.warning("could not remove %s %s: %s", why, info.name, exc)
            return False
        self._infos.pop(info.name, None)
        self._scores.pop(info.name, None)
        self._sundown.pop(info.name, None)
        if info.name in self.scorer:
            self.scorer.remove(info.name)
        return True

    def _sync_scorer(self) -> None:
        running = {n for n, i in self._infos.items() if i.running}
        for name in self.scorer.names():
            if name not in running:
                self.scorer.remove(name)
        for name in running:
            if name not in self.scorer:
                self.scorer.add(name, now=self._infos[name].created)
            self.scorer.set_sundown(name, name in self._sundown)

    async def _drain(self, now: float) -> None:
        for name in drain_ready(self._observations(), self._policy, now):
            info = self._infos.get(name)
            if info is None:
                continue
            idle = self._is_idle(name)
            if not await self._remove(info, "drained"):
                continue
            await self._emit("removed", {
                "name": name,
                "reason": "drained" if idle else "drain_timeout",
                "message": f"{name} removed after draining"
                + ("" if idle else f" (DRAIN_TIMEOUT {self._policy.drain_timeout:g}s)"),
            })

    async def _apply(self, decision: Decision) -> None:
        """Record a decision, write it ahead, then act on it."""
        self._last_decision = decision.to_event()
        self.metrics.scale_event(decision.action, decision.reason)
        await self._emit("scale_check" if decision.reason != "manual" else "manual_scale",
                         self._last_decision)
        changed = decision.state != self._state or bool(decision.sundown)
        self._state = decision.state
        if decision.sundown:
            self._mark_sundown(decision.sundown, self._wall())
        if changed:
            await self._persist()
        if decision.add:
            await self._create(decision.add, reason=decision.reason)

    async def _reconcile(self, now: float) -> None:
        """Bring the active running count to the desired count, both ways."""
        active = self._active_names()
        missing = plan_reconcile(self._state.desired, len(active))
        if missing:
            await self._create(missing, reason="reconcile")
        excess = len(active) - self._state.desired
        if excess > 0:
            victims = self._pick_excess(active, excess)
            self._mark_sundown(victims, now)
            await self._emit("reconcile", {
                "sundown": list(victims),
                "message": f"{len(active)} active containers for a desired {self._state.desired}; "
                f"draining {', '.join(victims)}",
            })

    async def _create(self, count: int, *, reason: str) -> None:
        for _ in range(count):
            try:
                info = await self.engine.create()
            except EngineError as exc:
                self.metrics.error("engine")
                await self._emit("create_failed", {
                    "error": str(exc), "reason": reason, "message": f"could not create a worker: {exc}"})
                return
            self._infos[info.name] = info
            self.scorer.add(info.name, now=info.created)
            await self._emit("created", {
                "name": info.name, "reason": reason, "host_port": info.host_port,
                "message": f"created {info.name} on {info.address}:{info.host_port} ({reason})",
            })

    async def _persist(self) -> None:
        records = {}
        summaries = {}
        for name, info in self._infos.items():
            score = self._scores.get(name)
            category = Category.SUNDOWN if name in self._sundown else (
                score.category if score is not None else Category.INIT)
            records[name] = container_record(
                info, category=category, score=None if score is None else score.overall_score
            )
            if score is not None:
                summaries[name] = _summary(score)
        write = TickWrite(
            desired=self._state.desired,
            containers=records,
            sundown=dict(self._sundown),
            summaries=summaries,
            policy=self._state.to_json(),
        )
        try:
            await self.store.write_tick(write)
        except StoreError as exc:
            self.metrics.error("store")
            log.debug("state not persisted this tick: %s", exc)

    def _publish(self, now: float) -> None:
        scores = tuple(self._scores[n] for n in sorted(self._scores))
        queue = tuple(build_queue(scores, self._infos))
        running = sum(1 for i in self._infos.values() if i.running)
        self.history.append((now, self._state.desired, running))
        snapshot = Snapshot(
            tick=self._tick,
            time=now,
            scores=scores,
            queue=queue,
            containers=dict(self._infos),
            desired=self._state.desired,
            running=running,
            engine_ok=self._engine_ok,
            store_ok=self.store.available,
            last_decision=self._last_decision,
        )
        self.metrics.record_snapshot(snapshot)
        self.hub.publish(snapshot)

    # -- helpers ---------------------------------------------------------------

    def _observations(self, *, active_only: bool = False) -> list[Observation]:
        out = []
        for name, info in self._infos.items():
            if not info.running:
                continue
            sundown = name in self._sundown
            if active_only and sundown:
                continue
            score = self._scores.get(name)
            sample = self._samples.get(name)
            out.append(Observation(
                name=name,
                score=math.nan if score is None else score.overall_score,
                category=Category.SUNDOWN if sundown else (
                    Category.INIT if score is None else score.category),
                forecast=math.nan if score is None else score.forecast,
                network_idle=self._is_idle(name),
                sundown_since=self._sundown.get(name),
                stale=sample is None or sample.stale,
            ))
        return out

    def _is_idle(self, name: str) -> bool:
        sample = self._samples.get(name)
        return sample is not None and sample.network_bps < IDLE_NETWORK_BPS  # NaN ⇒ False

    def _active_names(self) -> list[str]:
        return [n for n, i in self._infos.items() if i.running and n not in self._sundown]

    def _pick_excess(self, active: list[str], excess: int) -> tuple[str, ...]:
        """Least-loaded first, INIT (unscored) last, newest first among those."""
        def key(name: str) -> tuple[bool, float, float]:
            score = self._scores.get(name)
            unscored = score is None or score.category is Category.INIT
            return (unscored, -(score.overall_score if score else 0.0), -self._infos[name].created)
        return tuple(sorted(active, key=key)[:excess])

    def _mark_sundown(self, names: Iterable[str], now: float) -> None:
        for name in names:
            self._sundown.setdefault(name, now)
            if name in self.scorer:
                self.scorer.set_sundown(name, True)

    def _clamp(self, desired: int) -> int:
        return max(self._policy.min_containers, min(self._policy.max_containers, desired))

    def _apply_settings(self, new: Settings) -> None:
        self._policy = new.policy_config()
        if new.scorer_config() != self.scorer.config:
            self.scorer.reconfigure(new.scorer_config())
        self.settings = new
        self._state = dataclasses.replace(self._state, desired=self._clamp(self._state.desired))

    async def _emit(self, kind: str, data: Mapping[str, object]) -> None:
        try:
            await self.store.append_event(kind, dict(data))
        except StoreError as exc:
            log.debug("event %s not stored: %s", kind, exc)


def _summary(score: ContainerScore) -> dict[str, object]:
    return strict_json({
        "cpu_score": score.cpu_score,
        "memory_score": score.memory_score,
        "network_score": score.network_score,
        "availability_score": score.availability_score,
        "overall_score": score.overall_score,
        "category": str(score.category),
        "weight": score.weight,
        "slope": score.slope,
        "forecast": score.forecast,
        "anomaly": score.anomaly,
    })
