"""This agent's part in the leader election: one lease attempt per tick, and what follows.

Any number of agents may share one Redis and one pool; the one holding the lease
(`agent.core.lease`, `agent.adapters.redis_lease`) plans and acts, the others
follow. `Leadership.step` is the tick's first step: one acquire-or-renew round
trip through the store (its outage handling and backoff included), then the pure
rules decide the role and until when this agent may act — the request's send
time + TTL × (1 − drift), on the local monotonic clock. A change of role is one
ledger event (``lease_acquired``, ``lease_lost``, ``lease_expired``,
``lease_released``), one log line and a metric; a tick that changes nothing says
nothing.

While Redis does not answer, a leader keeps acting until that deadline and then
stops (``lease_expired``): by then its lease has lapsed in Redis too, so no two
agents ever act at once. What it does meanwhile is spelled out in
`agent.service.runtime`.
"""
from __future__ import annotations

import logging
import math
import os
import secrets
import socket
import time
from collections.abc import Awaitable, Callable

import trio

from agent.core.errors import NotLeader, StoreError
from agent.core.lease import (
    Holder,
    LeaseView,
    Transition,
    after_attempt,
    after_failure,
    after_refusal,
    after_release,
    resumes,
)
from agent.core.plan import Event
from agent.core.ports import Store
from agent.service.metrics import Metrics

__all__ = ["Leadership", "new_agent_id"]

log = logging.getLogger("deployment_agent.leader")


def new_agent_id() -> str:
    """Unique among the agents of a pool, and readable: host, pid and a random part
    (so a restarted agent never mistakes a dead predecessor's lease for its own)."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


class Leadership:
    """This agent's lease as it last learned it, and the steps that change it."""

    def __init__(
        self,
        agent_id: str,
        ttl: float,
        *,
        pool: str,
        metrics: Metrics,
        emit: Callable[[Event], Awaitable[None]],
        clock: Callable[[], float] = trio.current_time,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.agent_id = agent_id
        self.ttl = ttl
        self.pool = pool
        self.url: str | None = None  # advertised in the lease record
        self.view = LeaseView(me=agent_id)
        self._metrics = metrics
        self._emit = emit
        self._clock = clock
        self._wall = wall_clock
        self._attempts = 0
        self._followed: Holder | None = None  # the leader last named in our log
        self._last_token: int | None = None  # of our latest tenure
        #: The latest acquisition resumed our own tenure, nobody else leading in
        #: between (`agent.core.lease.resumes`): our memory is the newest state.
        self.resumed = False
        metrics.record_role(self.view.role)

    # -- reading -----------------------------------------------------------------

    def may_act(self) -> bool:
        """Whether this agent may act now (leader, lease valid by the local clock)."""
        return self.view.may_act(self._clock())

    def remaining(self) -> float:
        """Seconds of lease validity left (≤ 0, or -inf, when not acting)."""
        return self.view.valid_until - self._clock()

    @property
    def fence(self) -> Holder | None:
        """Our holder record while we lead: what fenced writes carry."""
        return self.view.holder if self.view.role == "leader" else None

    def not_leader(self) -> NotLeader:
        """The refusal a follower (or a leader whose lease lapsed) answers changes with."""
        holder, error = self.view.holder, self.view.error
        if holder is not None and holder.agent_id != self.agent_id:
            where = holder.url or "an address it did not advertise"
            return NotLeader(
                f"this agent ({self.agent_id}) follows; the pool {self.pool} is led by "
                f"{holder.agent_id} at {where}: send changes there",
                leader_id=holder.agent_id, leader_url=holder.url,
            )
        why = f" ({error})" if error else ""
        return NotLeader(
            f"no agent may act on the pool {self.pool} right now: this agent's lease is not "
            f"valid{why}; retry once a leader is elected (within LEADER_LEASE_TTL "
            f"{self.ttl:g} s)",
        )

    def require(self) -> None:
        """Raise `NotLeader` unless this agent may act now."""
        if not self.may_act():
            raise self.not_leader()

    # -- steps -------------------------------------------------------------------

    async def step(self, store: Store) -> Transition | None:
        """One acquire-or-renew attempt; the change of role it brought, if any."""
        sent = self._clock()
        try:
            holder = await store.acquire_lease(self.agent_id, self.ttl, self.url)
        except StoreError as exc:
            view, note = after_failure(self.view, str(exc), now=self._clock())
        else:
            view, note = after_attempt(self.view, holder, sent_at=sent, ttl=self.ttl)
        self._attempts += 1
        await self._settle(view, note, self.view)
        if self._attempts == 1 or view.role == "follower":
            self._say_whom_we_follow()
        return note

    async def refused(self, reason: str) -> None:
        """Redis refused one of our fenced writes: step down at once."""
        view, note = after_refusal(self.view, reason)
        await self._settle(view, note, self.view)

    async def release(self, store: Store) -> None:
        """Clean stop: hand the lease over now rather than after the TTL."""
        holder = self.fence
        if holder is None:
            return
        try:
            released = await store.release_lease(holder)
        except StoreError as exc:
            log.warning("could not release the leader lease (it lapses within %g s): %s",
                        self.ttl, exc)
            return
        if released:
            view, note = after_release(self.view)
            await self._settle(view, note, self.view)

    # -- internals ---------------------------------------------------------------

    async def _settle(self, view: LeaseView, note: Transition | None, old: LeaseView) -> None:
        previous = old.holder
        self.view = view
        self._metrics.record_role(view.role)
        if view.role == "leader" and view.holder is not None:
            if note is not None and note.kind == "lease_acquired":
                self.resumed = resumes(self._last_token, view.holder)
            self._last_token = view.holder.token
        if note is None:
            return
        self._metrics.lease_transition(note.kind)
        holder = view.holder
        data: dict[str, object] = {
            "message": note.message,
            "leader": holder.agent_id if holder is not None else None,
            "token": holder.token if holder is not None else None,
            "url": holder.url if holder is not None else None,
        }
        if note.kind == "lease_acquired" and previous is not None \
                and previous.agent_id != self.agent_id:
            data["previous"] = previous.agent_id
        if note.kind == "lease_expired" and math.isfinite(old.valid_until):
            # When acting ended (the deadline, passed before this tick noticed it),
            # on the wall clock so that it compares with other agents' events.
            data["stopped_at"] = self._wall() - (self._clock() - old.valid_until)
        if note.kind in ("lease_lost", "lease_expired"):
            log.warning("%s: pool %s: %s", note.kind, self.pool, note.message)
        else:
            log.info("%s: pool %s: agent %s %s", note.kind, self.pool, self.agent_id,
                     note.message)
        await self._emit(Event(note.kind, data))

    def _say_whom_we_follow(self) -> None:
        """One line when this agent starts as a follower, or its leader changes."""
        view = self.view
        if view.role == "leader":
            return
        holder = view.holder
        if holder is None:
            if self._attempts == 1:
                log.warning("pool %s: no leader lease could be read (%s); this agent follows "
                            "and takes the lease once Redis answers", self.pool, view.error)
            return
        if holder.agent_id == self.agent_id or holder == self._followed:
            return
        self._followed = holder
        log.warning(
            "pool %s is led by agent %s at %s (fencing token %d): this agent (%s) follows — "
            "it serves the read API and the queue, answers changes with 409 naming the "
            "leader, and takes over if the leader stops",
            self.pool, holder.agent_id, holder.url or "(no URL advertised)", holder.token,
            self.agent_id,
        )
