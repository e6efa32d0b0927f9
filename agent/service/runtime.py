"""The agent: one tick loop as a pipeline over values, and the facade around it.

One tick::

    list → sample → score → plan → write ahead → execute → persist → publish

With a load balancer (`agent.service.balancing`, through the `Balancer` seam) the
sample step also reads the balancer (one command), whose figures become the
containers' traffic, their availability input and the drained truth; and the
execute step syncs the backend after the creations (a new container is a server
within its tick) and before containers whose drain timed out are removed (their
servers go first).

Each step takes the pool (`agent.core.pool.PoolState`, one immutable value) and
returns the next one; `Agent._pool` only holds the value the last step
committed. Every decision — what is dead, drained, due, in excess, how many to
create — is `agent.core.plan.plan_tick`'s, a pure function; manual scale and
manual drain are plans too (`plan_manual_scale`, `plan_manual_drain`). This
module does the I/O around them, in two places only: `_write_ahead` records a
plan's events and persists its intent, `_execute` carries it out against the
engine.

`Agent` holds no state that cannot be rebuilt: after a crash at any point, the
engine's labels say which containers are ours and Redis says which are SUNDOWN,
how many we want and when we last scaled up. Plans that change the desired
count, the policy state or the SUNDOWN marks are written to Redis *before* they
are acted on (write-ahead), so a `kill -9` between the two is repaired by the
next agent's reconcile step instead of leaving duplicates.

Persisting is cheap when little changes: each write sends only the fields that
changed since the store last wrote them (`agent.core.store_delta`), the scores
are written every SCORES_PERSIST_PERIOD rather than every tick, and the whole
state every FULL_WRITE_PERIOD and at shutdown; the store itself writes
everything again whenever it cannot trust what it knows of Redis (first write,
after a failure, a new connection, a lease taken over). The write-ahead is one of these writes, so
what it records is in Redis before the engine is touched.

Failures of the engine or of Redis never end the loop: the tick records them
(metrics, ledger, snapshot flags) and the next tick tries again. Redis is the
store's concern (it buffers events and backs off); while the engine does not
list, nothing is planned; a failed engine action is left to the next tick's
plan. A failure that repeats (the engine down, Redis down or refusing writes, a
create or a removal failing, a tick raising) is logged and recorded once when it
starts and once when it ends, with its duration and count
(`agent.service.failures`); creations and removals that keep failing are retried
with an exponential, capped backoff, and `readiness` says why. Ticks and API
requests are serialised by one lock.

Several agents, one pool (SPEC §9). Every tick starts with one lease attempt
(`agent.service.leadership`). Only the leader lists, samples, plans and acts;
a follower reads the leader's tick views and feeds their samples to its own
scorer (`agent.core.tick_view`), publishes the pool from them, and answers
changes with `NotLeader` (409, naming the leader). Taking the lease over reloads
the state from Redis (`recover`) before the first plan. What is fenced — refused
by Redis unless this agent still holds exactly the lease record it believes in:

* the write-ahead of every plan that acts (removals, creations, SUNDOWN marks,
  a new desired count or policy state), together with the plan's decision
  events: refused ⇒ this agent steps down and the plan is not executed, and no
  decision it did not carry out reaches the ledger;
* the tick's persist (state, summaries, the followers' tick view): a deposed
  leader must not overwrite its successor's state nor feed the followers;
* ``save_config`` (``PUT /config``): the runtime config steers every agent.

Not fenced: ledger events outside a write-ahead (each records what this agent
saw or did — a deposed leader's ``lease_lost`` is a true fact) and a follower's
reads. On top of Redis's refusal, every engine action is preceded by a check
of the lease's validity on the local monotonic clock, since the engine knows no
fencing token: a leader paused past its TTL never starts an action on waking.

Redis unreachable for the leader: it may keep acting until its lease validity
(send time of its last renewal + TTL × 0.95) ends, and no longer — by then the
lease has lapsed in Redis and a follower may take it; engine actions start only
in the first half of that validity (below). Meanwhile it does what a lone agent
did during an outage: its write-aheads fail (the plan is executed
all the same, the lease guaranteeing that nobody else acts), it replaces dead
workers, removes drained ones and follows its scaling rules, its events wait in
the store's buffer. Once the deadline passes it stops (``lease_expired``):
nothing is planned or executed, and a plan in progress stops before its next
engine action. No engine action starts in the second half of the validity
(`ACTION_SHARE`), so one that started ends before another agent can take over
— unless it lasts longer than that half (an engine answering very slowly), or
the process is paused between the check and the call: the window left, since
the engine itself knows no fencing token.
"""
from __future__ import annotations

import dataclasses
import logging
import math
import time
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any

import trio

from agent.core.settings import Settings
from agent.core.jsonsafe import strict_json
from agent.core.errors import (
    AgentError,
    ContainerNotFound,
    CorruptStateError,
    EngineError,
    EngineUnreachable,
    FencedOut,
    StoreError,
)
from agent.core.lease import LeaseView
from agent.core.recovery import vet, vet_config
from agent.core.settings_table import canonical
from agent.core.conditions import Failure, failure
from agent.service.failures import Failures
from agent.service.hub import Hub
from agent.service.metrics import Metrics
from agent.core.records import Category, ContainerInfo, ContainerScore, Sample, Snapshot
from agent.core.plan import (
    Event,
    Plan,
    Removal,
    create_failed_event,
    created_event,
    engine_back_event,
    engine_down_event,
    plan_manual_drain,
    plan_manual_scale,
    plan_tick,
)
from agent.core.policy import PolicyConfig, PolicyState
from agent.core.balancer import Balancer, Observation
from agent.core.pool import Feedback, PoolState, clamp_desired, drain_sessions, drained_names
from agent.core.steady_weights import steady_weights
from agent.core.traffic import ServerTraffic, freshened
from agent.service.balancing import Balancing, disabled_state
from agent.core.queue import build_queue
from agent.core.store_codec import SharedState
from agent.core.tick_view import TickView, pool_from_view, view_of
from agent.scoring import Scorer
from agent.adapters.redis_store import TickWrite, container_record
from agent.core.ports import Engine, SampleSource, Store
from agent.service.leadership import Leadership, new_agent_id

__all__ = ["Agent"]

log = logging.getLogger("deployment_agent.runtime")

HISTORY_POINTS = 3600
MAX_LISTED = 100  # names listed in one ledger event at most

#: No engine action starts in this last share of the lease's validity, so that an
#: action started before it ends before the lease can lapse in Redis and another
#: agent take over: with the default TTL an engine call has over 5 s (a create
#: takes well under one here, a few under heavy load).
ACTION_SHARE = 1 / 2
# Seconds between two complete writes of the state to Redis (every tick writes
# what changed; a complete write repairs anything changed behind our back).
FULL_WRITE_PERIOD = 60.0
# Seconds between two writes of the scores (records' `score`, the summaries).
SCORES_PERSIST_PERIOD = 5.0


class Agent:
    """The tick loop and the facade the web layer and the CLI use."""

    def __init__(
        self,
        settings: Settings,
        *,
        engine: Engine,
        store: Store,
        sampler: SampleSource,
        scorer: Scorer | None = None,
        balancer: Balancer | None = None,
        wall_clock: Callable[[], float] = time.time,
        agent_id: str | None = None,
    ) -> None:
        self.settings = settings
        self.engine = engine
        self.store = store
        self.sampler = sampler
        self.scorer = scorer if scorer is not None else Scorer(settings.scorer_config())
        self.hub = Hub()
        self.metrics = Metrics()
        self.balancing = None if balancer is None else Balancing(
            balancer, self.metrics, algorithm=settings.balancer_algorithm
            if settings.balancer_mode == "embedded" else None,
            application=settings.application_url,
            first_share=self.scorer.config.slow_start_min_fraction,
        )
        self.history: deque[tuple[float, int, int]] = deque(maxlen=HISTORY_POINTS)
        self._wall = wall_clock  # the `now` of every plan: epoch seconds
        self._pool = PoolState(policy=PolicyState(desired=settings.default_container))
        self._overrides: dict[str, object] = {}
        self._lock = trio.Lock()  # serialises actuation: ticks and API requests
        self._failures = Failures(log)
        self._tick = 0
        self._last_tick_end: float | None = None
        self._started = False
        self.leadership = Leadership(
            agent_id or new_agent_id(), settings.leader_lease_ttl,
            pool=settings.app_identifier, metrics=self.metrics, emit=self._emit,
        )
        self._views: str | None = None  # a follower's place in the leader's tick views
        self._takeover = False  # the lease was (re)acquired: recover before planning
        self._seen_config: dict[str, object] | None = None  # as a follower last read it
        # What `_persist` last wrote of the scores (overall, summary) and the
        # records built from them; when the last full and score writes were.
        self._persisted: dict[str, tuple[float, dict[str, object]]] = {}
        self._records: dict[str, tuple[ContainerInfo, Category, float | None, dict[str, object]]] = {}
        self._full_written_at: float | None = None
        self._scores_written_at: float | None = None

    # -- the facade ------------------------------------------------------------

    @property
    def snapshot(self) -> Snapshot:
        return self.hub.latest

    @property
    def pool(self) -> PoolState:
        """The pool as the last step left it (read-only; for tests and embedding)."""
        return self._pool

    @property
    def desired(self) -> int:
        return self._pool.desired

    @property
    def agent_id(self) -> str:
        return self.leadership.agent_id

    @property
    def lease(self) -> LeaseView:
        """Who leads the pool, as this agent last learned it."""
        return self.leadership.view

    def advertise(self, url: str) -> None:
        """The URL of this agent's API, written into its lease record while it leads
        (followers name it in their 409 answers)."""
        self.leadership.url = url

    def health(self) -> dict[str, Any]:
        """Liveness: the loop has ticked recently (three intervals of slack)."""
        now = trio.current_time()
        age = None if self._last_tick_end is None else now - self._last_tick_end
        budget = 3 * self.settings.tick_interval + self.settings.probe_timeout
        alive = self._started and (age is None or age <= budget)
        report = {
            "alive": alive,
            "tick": self._tick,
            "last_tick_age": age,
            "engine": "ok" if self._pool.engine_ok else self._pool.engine_error,
            "redis": "ok" if self.store.available else self.store.last_error,
        }
        if self.balancing is not None:
            report["balancer"] = self.balancing.readiness()
        return report

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
        # Answering is not working: a pool that cannot create its workers, or a
        # Redis that refuses the state, is not ready either.
        now = self._wall()
        for name, kinds in (("engine", ("create_failed", "remove_failed")),
                            ("redis", ("persist_failed",))):
            reasons = self._failures.reasons(kinds, now)
            if report[name] == "ok" and reasons:
                report[name] = "answers, but " + "; ".join(reasons)
        if self.balancing is not None:  # the tick loop calls it every second: its word
            report["balancer"] = self.balancing.readiness()
        return all(v == "ok" for v in report.values()), dict(sorted(report.items()))

    def balancer_state(self) -> dict[str, Any]:
        """``GET /balancer``: the adapter's state, the weights sent, the last sync."""
        return disabled_state() if self.balancing is None else self.balancing.state()

    async def events(
        self, limit: int = 50, before: str | None = None, kind: str | None = None
    ) -> list[dict[str, Any]]:
        return await self.store.events(limit=limit, before=before, kind=kind)

    async def update_config(self, partial: Mapping[str, object]) -> Settings:
        """Apply a partial runtime update (validated like start-up), persist it.

        An empty update changes nothing and records nothing."""
        if not partial:
            return self.settings
        async with self._lock:
            self.leadership.require()
            new = self.settings.with_updates(partial)
            # by canonical name, so two spellings of one setting are one override
            overrides = {**self._overrides,
                         **{canonical(str(k)) or str(k): v for k, v in partial.items()}}
            if not await self._save_config(overrides):
                raise self.leadership.not_leader()
            self._apply_settings(new)
            self._overrides = overrides
            await self._emit(Event("config", {
                "changed": dict(partial),
                "message": "runtime configuration changed: "
                + ", ".join(f"{k}={v}" for k, v in partial.items()),
            }))
            return self.settings

    async def _save_config(self, overrides: Mapping[str, object] | None = None) -> bool:
        """The runtime config overrides to Redis, fenced: the config steers every
        agent. A follower writes none (its leader does). False when Redis refused
        the write (another agent leads; we step down); an outage is not a refusal:
        the overrides are written back with the next successful tick write."""
        fence = self.leadership.fence
        if fence is None:
            return True
        try:
            await self.store.save_config(
                self._overrides if overrides is None else overrides, fence=fence)
        except FencedOut as exc:
            await self.leadership.refused(f"the runtime config was refused ({exc})")
            return False
        except StoreError as exc:
            # Applied in memory; written back with the next successful write.
            log.warning("config not persisted yet: %s", exc)
            self.metrics.error("store")
        return True

    async def request_scale(self, count: int) -> dict[str, Any]:
        """An operator's POST /scale: run exactly `count` containers."""
        async with self._lock:
            self.leadership.require()
            plan = plan_manual_scale(self._pool, count, self._policy, self._wall())
            if not await self._carry_out(plan):
                raise self.leadership.not_leader()
            return dict(plan.reply or {})

    async def request_sundown(self, name: str) -> dict[str, Any]:
        """Drain one container: weight 0 now, removed once drained.

        Lowers the desired count by one while it stays at or above
        DEFAULT_CONTAINER; at the floor, reconcile starts a replacement
        (`agent.core.plan.plan_manual_drain`). Raises `ContainerNotFound`.
        """
        async with self._lock:
            self.leadership.require()
            plan = plan_manual_drain(self._pool, name, self._policy, self._wall())
            if not await self._carry_out(plan):
                raise self.leadership.not_leader()
            return dict(plan.reply or {})

    async def aclose(self) -> None:
        """Close the engine and store clients and the sampler's files (idempotent; shielded)."""
        with trio.CancelScope(shield=True):
            await self.engine.aclose()
            await self.store.aclose()
            close = getattr(self.sampler, "close", None)  # the local Sampler's open files
            if close is not None:
                close()

    # -- running ---------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Try the lease, recover, then tick every TICK_INTERVAL until cancelled.

        Started means the role is known (`lease`): leader, or follower naming the
        leader. On cancellation a leader writes its last state and releases the
        lease (so a follower takes over at its next tick, not after the TTL),
        under a shielded scope; subscribers are closed, so WebSocket clients see
        a prompt 1001.
        """
        await self.start_balancer()
        await self.leadership.step(self.store)
        await self.recover()
        try:
            async with trio.open_nursery() as nursery:
                # The engine's change notifications keep `list_owned` current
                # (no listing per tick); ready once the pool has been read.
                await nursery.start(self.engine.watch)
                self._started = True
                task_status.started()
                while True:
                    start = trio.current_time()
                    await self.tick()
                    await trio.sleep_until(start + self.settings.tick_interval)
        finally:
            with trio.CancelScope(shield=True), trio.move_on_after(5):
                try:
                    await self._stop()
                except Exception:  # noqa: BLE001 - best effort on the way out
                    log.exception("final persist failed")
            self.hub.close()

    async def start_balancer(self) -> None:
        """Launch or adopt the embedded balancer, or check the external one; its
        events go to the ledger. `ConfigError`/`BalancerError` end the start-up."""
        if self.balancing is not None:
            for event in await self.balancing.start():
                await self._emit(event)

    async def _stop(self) -> None:
        """A leader's last state, then the lease handed over; a follower's events."""
        if self.leadership.may_act():
            await self._persist(self._pool, full=True)
            await self.leadership.release(self.store)
        try:
            await self.store.flush_events()
        except StoreError as exc:
            log.debug("last events not stored: %s", exc)

    async def recover(self) -> None:
        """Resume from Redis: desired count, policy state, SUNDOWN marks, config.

        What Redis holds is judged before it is used (`agent.core.recovery.vet`):
        a value that does not decode or does not make sense is left out with a
        warning, and the rest is kept.
        """
        try:
            stored = await self.store.load()
        except CorruptStateError as exc:
            stored = exc.partial  # its `problems` become warnings below
        except StoreError as exc:
            log.warning("starting without stored state: %s", exc)
            self.metrics.error("store")
            return
        if stored.empty and self._started:
            # Taking over from a Redis that lost everything: what this agent saw
            # is the best state there is; the first persist restores it, and the
            # runtime config goes back now (the load told the store there is none).
            log.warning("taking over with no state in Redis: keeping the pool as last seen")
            if self._overrides:
                await self._save_config()
            return
        vetted = vet(stored, self.settings, self._pool.policy, self._wall())
        for warning in vetted.warnings:
            log.warning("stored state: %s", warning)
        self._apply_settings(vetted.settings)
        self._overrides = dict(vetted.overrides)
        if vetted.config_changed:
            await self._save_config()
        pool = dataclasses.replace(self._pool, sundown=vetted.sundown, policy=vetted.policy)
        self._pool = pool
        await self._emit(Event("recovered", {
            "message": f"resumed from Redis: desired {pool.desired}, "
            f"{len(vetted.known)} known container(s), {len(pool.sundown)} draining"
            + (f"; {len(vetted.warnings)} stored value(s) left out or corrected"
               if vetted.warnings else ""),
            "desired": pool.desired,
            "sundown": sorted(pool.sundown)[:MAX_LISTED],
            "known_containers": list(vetted.known[:MAX_LISTED]),
            "warnings": list(vetted.warnings[:MAX_LISTED]),
        }))

    async def tick(self) -> None:
        """One pass of the pipeline (see the module docstring)."""
        started = trio.current_time()
        outcome, error = None, None
        try:
            async with self._lock:
                await self._tick_locked(started)
        except AgentError as exc:
            outcome = failure(f"{type(exc).__name__}: {exc}")
            self.metrics.error(type(exc).__name__)
        except Exception as exc:  # a bug must not end the loop: report it, tick again
            outcome, error = failure(f"internal error: {type(exc).__name__}: {exc}"), exc
            self.metrics.error("internal")
        finally:
            self._last_tick_end = trio.current_time()
            self.metrics.observe_tick(self._last_tick_end - started)
        # logged (with the traceback of a bug) when it starts or changes only
        await self._note("tick_failed", outcome, started, exc_info=error)

    async def _tick_locked(self, started: float) -> None:
        """Each step returns the next pool; it is committed before the next step,
        so a step that fails leaves the pool as the previous one made it."""
        self._tick += 1
        now = self._wall()
        if not await self._lead():
            await self._follow()
            return
        self._pool = pool = await self._list(self._pool)
        self._sync_scorer(pool)
        self._pool = pool = await self._observe(pool, started, now)
        plan = plan_tick(pool, self._policy, now=now, started=started,
                         check_period=self.settings.scale_check_period)
        if await self._carry_out(plan):
            await self._persist(self._pool, view=view_of(
                self._pool, leader=self.agent_id, tick=self._tick, time=now))
        self._publish(self._pool, now)

    # -- leading and following ---------------------------------------------------

    async def _lead(self) -> bool:
        """The lease step; on taking over, the state from Redis. True: act this tick."""
        await self._renew()
        if self._takeover:
            self._takeover = False
            if self.leadership.resumed:
                # Nobody led since our own lease lapsed: Redis holds nothing newer
                # than our memory (our writes may have failed meanwhile, e.g. a full
                # disk); reloading would undo what we did. This tick writes it all.
                log.info("leading again with no other leader in between: keeping the "
                         "state in memory, written back in full")
                self._full_written_at = None
            else:
                await self.recover()
        return self.leadership.may_act()

    async def _renew(self) -> bool:
        """One lease attempt; False when it changed this agent's role or token.

        It is every agent's first Redis call of a tick, so it also tells when
        Redis is lost and back (logged once each, `agent.service.failures`)."""
        note = await self.leadership.step(self.store)
        if note is not None and note.kind == "lease_acquired":
            self._takeover = True  # the state is read again before the next plan
        clock = trio.current_time()
        if self.leadership.view.error is None:
            await self._note("store_outage", None, clock)
        elif not self.store.available:
            await self._note("store_outage", failure(f"{self.store.last_error}", "unreachable"),
                             clock)
        return note is None

    async def _follow(self) -> None:
        """A follower's tick: the leader's new views into our scorer, then publish.

        Only while another agent is known to lead: when our own lease lapsed and
        nobody has taken it yet, what Redis holds is ours or older than our
        memory (the config we could not save, say), and is not read."""
        holder = self.lease.holder
        if holder is not None and holder.agent_id != self.agent_id:
            await self._read_leader()
        self._publish(self._pool, self._wall())  # every tick, as a leader does
        try:
            await self.store.flush_events()
        except StoreError as exc:
            log.debug("tick %d: events not stored: %s", self._tick, exc)

    async def _read_leader(self) -> None:
        """The leader's views since our cursor and its runtime config."""
        try:
            shared = await self.store.read_shared(self._views)
        except StoreError as exc:
            self.metrics.error("store")
            log.debug("tick %d: shared state not read: %s", self._tick, exc)
            return
        self._views = shared.cursor
        self._follow_config(shared)
        # Our own views (written while we led) hold samples our scorer has seen.
        for view in shared.views:
            if view.leader != self.agent_id:
                self._ingest(view)

    def _ingest(self, view: TickView) -> None:
        """One leader tick: its listing and marks, its samples through our scorer."""
        pool = pool_from_view(self._pool, view)
        self._sync_scorer(pool)
        samples = {n: s for n, s in view.samples.items() if n in self.scorer}
        scores = self.scorer.update(samples, view.time)
        self._pool = pool.observed(samples, scores, drained_names(samples))

    def _follow_config(self, shared: SharedState) -> None:
        """The pool's runtime config, as the leader last saved it."""
        if shared.skipped:
            log.warning("skipped %d unreadable tick view(s)", shared.skipped)
        if shared.config == self._seen_config:
            return
        self._seen_config = dict(shared.config)
        # untrusted like any stored value: a bad key is dropped, the rest applies
        settings, overrides, warnings = vet_config(self.settings, shared.config)
        for warning in warnings:
            log.warning("stored runtime config: %s", warning)
        self._apply_settings(settings)
        self._overrides = overrides

    # -- steps -----------------------------------------------------------------

    async def _list(self, pool: PoolState) -> PoolState:
        clock = trio.current_time()
        try:
            listed = await self.engine.list_owned()
        except EngineError as exc:
            if pool.engine_ok:
                await self._emit(engine_down_event(str(exc)))
            self.metrics.error("engine")
            await self._note("engine_error", failure(str(exc), "unreachable"), clock)
            return pool.unlisted(str(exc))
        down = self._failures.get("engine_error")
        if not pool.engine_ok:
            await self._emit(engine_back_event(
                None if down is None else self._wall() - down.since))
        await self._note("engine_error", None, clock)
        return pool.listed(listed)

    def _sync_scorer(self, pool: PoolState) -> None:
        """The scorer's slots follow the running containers and their SUNDOWN marks."""
        running = {i.name: i for i in pool.running()}
        for name in self.scorer.names():
            if name not in running:
                self.scorer.remove(name)
        for name, info in running.items():
            if name not in self.scorer:
                self.scorer.add(name, now=info.created)
            self.scorer.set_sundown(name, name in pool.sundown)

    async def _observe(self, pool: PoolState, started: float, now: float) -> PoolState:
        """Sample the running containers (and read the balancer) by the tick
        deadline, score them in one call, publish steady weights."""
        samples, seen = await self._sample(pool, started + self.settings.tick_deadline)
        fed, feedback = samples, pool.feedback
        traffic: dict[str, ServerTraffic] = {}
        sessions = None
        if self.balancing is not None and seen is not None:
            state, traffic, fed = self.balancing.feed(pool, samples, seen, trio.current_time())
            feedback = Feedback(traffic=state, weights=feedback.weights)
            sessions = drain_sessions(seen.ok, seen.stats, pool.sundown)
        scores = self.scorer.update({n: s for n, s in fed.items() if n in self.scorer}, now)
        levels, weights = steady_weights(feedback.weights, {s.name: s.weight for s in scores})
        scores = [dataclasses.replace(s, weight=weights[s.name]) for s in scores]
        return pool.observed(freshened(samples, fed), scores, drained_names(samples, sessions),
                             traffic=traffic,
                             feedback=Feedback(traffic=feedback.traffic, weights=levels))

    async def _sample(
        self, pool: PoolState, deadline: float
    ) -> tuple[dict[str, Sample], Observation | None]:
        """The sampler's samples and, at the same time, the balancer's figures."""
        settings = self.settings
        seen: list[Observation] = []

        async def observe() -> None:
            assert self.balancing is not None
            observation, events = await self.balancing.observe(deadline)
            seen.append(observation)
            for event in events:
                await self._emit(event)

        async with trio.open_nursery() as nursery:
            if self.balancing is not None:
                nursery.start_soon(observe)
            samples = await self.sampler.sample(
                pool.probe_targets(), deadline=deadline,
                probe_timeout=settings.probe_timeout, health_path=settings.health_path,
            )
        return samples, (seen[0] if seen else None)

    async def _carry_out(self, plan: Plan) -> bool:
        """Write a plan ahead, then execute it; the pool is committed after each.
        False when the write-ahead was refused: the plan is not executed."""
        if not await self._write_ahead(plan):
            return False
        self._pool = plan.state
        self._pool = await self._execute(plan)
        return True

    async def _write_ahead(self, plan: Plan) -> bool:
        """The one place a plan's intent is recorded before the engine is touched:
        its decisions' ledger entries and, when it acts or changes desired,
        SUNDOWN or the policy state, the state it leads to — one fenced write.

        False (do not execute) when this agent may not act, or Redis refused the
        write (`FencedOut`: another agent leads; we step down). Redis unreachable
        is no refusal: within the lease the plan goes ahead (module docstring).
        """
        if not self.leadership.may_act():
            return False  # not even its decisions are recorded: they are not ours
        acts = bool(plan.removals or plan.creations or plan.marks)
        if acts or plan.write_ahead:
            try:
                await self._persist(plan.state, events=plan.events, strict=True)
            except FencedOut as exc:
                await self.leadership.refused(f"the write-ahead of a plan was refused ({exc})")
                return False
            except StoreError as exc:
                log.debug("plan written ahead only in memory: %s", exc)
        else:
            for event in plan.events:
                await self._emit(event)
        if plan.decision is not None:
            self.metrics.scale_event(plan.decision.action, plan.decision.reason)
        return True

    async def _execute(self, plan: Plan) -> PoolState:
        """The one place a plan acts on the engine (and the balancer): removals,
        then creations; with a balancer, then the sync, and only then the removal
        of the containers whose drain timed out (their servers are cut first).

        Returns the pool as the engine left it. A failed removal keeps the
        container; a failed creation ends its batch (the next tick replans).
        """
        pool = plan.state
        late = [r for r in plan.removals
                if r.reason == "drain_timeout" and self.balancing is not None]
        pool = await self._remove_all(pool, [r for r in plan.removals if r not in late])
        pool = await self._create_all(pool, plan)
        if self.balancing is not None:
            for event in await self.balancing.sync(pool, evict={r.info.name for r in late}):
                await self._emit(event)
        return await self._remove_all(pool, late)

    async def _remove_all(self, pool: PoolState, removals: list[Removal]) -> PoolState:
        for removal in removals:
            if not await self._may_act("remove " + removal.info.name):
                return pool
            if not self._failures.ready("remove_failed", trio.current_time()):
                break  # backing off: the next plans ask again
            if await self._remove(removal):
                pool = pool.without([removal.info.name])
                await self._emit(removal.event)
        return pool

    async def _create_all(self, pool: PoolState, plan: Plan) -> PoolState:
        for creation in plan.creations:
            for _ in range(creation.count):
                if not await self._may_act("create a worker"):
                    return pool
                clock = trio.current_time()
                if not self._failures.ready("create_failed", clock):
                    return pool  # backing off: reconcile asks again
                try:
                    info = await self.engine.create()
                except EngineUnreachable as exc:  # the engine's outage, not a create's
                    self.metrics.error("engine")
                    await self._note("engine_error", failure(str(exc), "unreachable"), clock)
                    break
                except EngineError as exc:
                    self.metrics.error("engine")
                    opened = create_failed_event(str(exc), creation.reason)
                    await self._note("create_failed", failure(str(exc)), clock,
                                     extra=dict(opened.data))
                    break
                await self._note("create_failed", None, clock)
                pool = pool.with_created(info)
                await self._emit(created_event(info, creation.reason))
        return pool

    async def _may_act(self, action: str) -> bool:
        """The lease's validity on the local clock, checked before each engine
        action (the engine knows no fencing token).

        A long execution (many creations) renews the lease once half of it is
        used, so it never lapses under a working leader; a renewal that changes
        anything ends the plan. No action starts in the last `ACTION_SHARE` of
        the lease: one started earlier ends before another agent can take over.
        """
        leadership = self.leadership
        if leadership.may_act() and leadership.remaining() < leadership.ttl / 2:
            if not await self._renew():
                log.warning("not acting (%s): the lease changed during the plan", action)
                return False
        if leadership.may_act() and leadership.remaining() >= leadership.ttl * ACTION_SHARE:
            return True
        log.info("not acting (%s): the lease could not be renewed and is about to end", action)
        return False

    async def _remove(self, removal: Removal) -> bool:
        """Remove a container from the engine; False if the engine failed."""
        info = removal.info
        clock = trio.current_time()
        try:
            await self.engine.remove(info.id)
        except ContainerNotFound:
            pass  # already gone: the goal is reached
        except EngineUnreachable as exc:  # the engine's outage, not a removal's
            self.metrics.error("engine")
            await self._note("engine_error", failure(str(exc), "unreachable"), clock)
            return False
        except EngineError as exc:
            self.metrics.error("engine")
            # one condition for every worker: a stopping engine fails them all
            await self._note("remove_failed", failure(
                f"could not remove {removal.reason} {info.name}: {exc}", "remove"), clock)
            return False
        await self._note("remove_failed", None, clock)
        if info.name in self.scorer:
            self.scorer.remove(info.name)
        return True

    async def _persist(
        self, pool: PoolState, *, view: TickView | None = None,
        events: tuple[Event, ...] = (), strict: bool = False, full: bool = False,
    ) -> None:
        """The pool's state, fenced by our lease, with `events` in the same write:
        what changed since the last write, every tick (and as the write-ahead);
        everything every FULL_WRITE_PERIOD, and when `full` (the store writes
        it in full too when the lease tenure changed). The scores in the
        records and the summaries are refreshed every SCORES_PERSIST_PERIOD:
        they move a little every tick, and a restarted agent needs the marks,
        counts and identities, not this second's score.

        Not strict (the tick's persist): an outage is absorbed (the state is
        complete again after the next write), a refusal steps us down. Strict
        (the write-ahead): either is raised to the caller.
        """
        fence = self.leadership.fence
        if fence is None:
            return  # not ours to write: the leader writes the state
        now = trio.current_time()
        full = full or _due(self._full_written_at, FULL_WRITE_PERIOD, now)
        if full or _due(self._scores_written_at, SCORES_PERSIST_PERIOD, now):
            self._scores_written_at = now
            self._persisted = {name: (s.overall_score, _summary(s)) for name, s in pool.scores.items()}
            self._records = {n: r for n, r in self._records.items() if n in pool.containers}
        records = {name: self._record(info, pool.category(name))
                   for name, info in pool.containers.items()}
        write = TickWrite(
            desired=pool.desired,
            containers=records,
            sundown=dict(pool.sundown),
            summaries={n: p[1] for n, p in self._persisted.items() if n in pool.containers},
            policy=pool.policy.to_json(),
            view=view,
        )
        items = [(e.kind, self._tagged(e)) for e in events]
        clock = trio.current_time()
        try:
            await self.store.write_tick(write, fence=fence, events=items, only_changes=not full)
            if full:
                self._full_written_at = now
        except FencedOut as exc:
            self.metrics.error("store")
            if strict:
                raise
            await self.leadership.refused(f"the tick's state was refused ({exc})")
        except StoreError as exc:
            self.metrics.error("store")
            if strict:
                raise
            log.debug("state not persisted this tick: %s", exc)
            if not self.store.available:
                await self._note("store_outage", failure(
                    f"{self.store.last_error}", "unreachable"), clock)
            else:  # it answers, and refuses: full disk, MISCONF, wrong type
                await self._note("persist_failed", failure(str(exc)), clock)
            return
        await self._note("store_outage", None, clock)
        await self._note("persist_failed", None, clock)

    def _record(self, info: ContainerInfo, category: Category) -> dict[str, object]:
        """A container's stored record, the same object while nothing in it changed."""
        persisted = self._persisted.get(info.name)
        score = None if persisted is None else persisted[0]
        cached = self._records.get(info.name)
        if cached is not None and (cached[0] is info or cached[0] == info) \
                and cached[1] == category and cached[2] is score:
            return cached[3]
        record = container_record(info, category=category, score=score)
        self._records[info.name] = (info, category, score, record)
        return record

    def _publish(self, pool: PoolState, now: float) -> None:
        scores = tuple(pool.scores[n] for n in sorted(pool.scores))
        queue = tuple(build_queue(scores, pool.containers))
        running = len(pool.running())
        self.history.append((now, pool.desired, running))
        snapshot = Snapshot(
            tick=self._tick,
            time=now,
            scores=scores,
            queue=queue,
            containers=dict(pool.containers),
            desired=pool.desired,
            running=running,
            engine_ok=pool.engine_ok,
            store_ok=self.store.available,
            last_decision=None if pool.last_decision is None else dict(pool.last_decision),
            traffic=dict(pool.traffic),
        )
        self.metrics.record_snapshot(snapshot)
        self.hub.publish(snapshot)

    # -- helpers ---------------------------------------------------------------

    @property
    def _policy(self) -> PolicyConfig:
        return self.settings.policy_config()

    def _apply_settings(self, new: Settings) -> None:
        if new.scorer_config() != self.scorer.config:
            self.scorer.reconfigure(new.scorer_config())
        self.settings = new
        self._pool = self._pool.with_desired(clamp_desired(self._pool.desired, self._policy))

    def _tagged(self, event: Event) -> dict[str, object]:
        """An event's data with the agent that recorded it (several share a ledger)."""
        return {**event.data, "agent": self.agent_id}

    async def _note(
        self, kind: str, outcome: Failure | None, clock: float, *,
        extra: dict[str, object] | None = None, exc_info: BaseException | None = None,
    ) -> None:
        """One attempt's outcome (a `Failure` or None) for the failures of `kind`:
        logged and recorded once per transition (`agent.service.failures`)."""
        events = self._failures.observe(kind, outcome, now=self._wall(), clock=clock,
                                        extra=extra, exc_info=exc_info)
        for event in events:
            await self._emit(event)

    async def _emit(self, event: Event) -> None:
        try:
            await self.store.append_event(event.kind, self._tagged(event))
        except StoreError as exc:
            log.debug("event %s not stored: %s", event.kind, exc)


def _due(last: float | None, period: float, now: float) -> bool:
    return last is None or now - last >= period


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
