"""The leader lease: which of several agents sharing one Redis may act, and until when.

Any number of agents may watch one pool; exactly one acts. The one that holds
``da:<app>:leader`` (set with NX and a TTL, renewed every tick) is the leader;
the others are followers. Each acquisition takes a new *fencing token* from a
counter that only grows (``da:<app>:fence``), and every write that acts carries
the holder record it believes in: Redis refuses the write when the record there
is another (`agent.adapters.redis_lease`), so a paused old leader that wakes up
after a new one took over can never scale.

Redis decides who holds the lease; this module decides, from what Redis
answered and when, what *this* agent may do. The rule is conservative: a lease
renewed by a request sent at local time ``t`` is held until ``t + ttl`` at the
latest (Redis started the TTL after receiving the request), so the agent treats
itself as leader only until ``t + ttl × (1 − drift) − margin``. Without an
answer (Redis unreachable) it keeps that deadline, and stops acting when it
passes — within the TTL, as promised. Times are local monotonic seconds, passed
in; nothing here reads a clock.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, replace
from typing import Literal

__all__ = [
    "DRIFT",
    "Holder",
    "LeaseView",
    "Role",
    "Transition",
    "after_attempt",
    "after_failure",
    "after_refusal",
    "after_release",
    "resumes",
]

Role = Literal["leader", "follower"]

#: Share of the TTL given up to clock-rate differences between us and Redis.
DRIFT = 0.05


@dataclass(frozen=True, slots=True)
class Holder:
    """The lease's value in Redis: who holds it, under which fencing token."""

    agent_id: str
    token: int
    url: str | None = None  # where its API answers, for followers' 409s

    def encode(self) -> str:
        return json.dumps({"id": self.agent_id, "token": self.token, "url": self.url},
                          separators=(",", ":"), sort_keys=True)

    @classmethod
    def decode(cls, text: str) -> Holder:
        """Inverse of `encode`; ValueError for anything else (stored data is untrusted)."""
        try:
            data = json.loads(text)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"leader record is not JSON: {text!r:.80}") from exc
        if not isinstance(data, dict):
            raise ValueError(f"leader record must be an object: {text!r:.80}")
        agent_id, token, url = data.get("id"), data.get("token"), data.get("url")
        if not isinstance(agent_id, str) or not agent_id:
            raise ValueError(f"leader record has no agent id: {text!r:.80}")
        if isinstance(token, bool) or not isinstance(token, int) or token < 1:
            raise ValueError(f"leader record has no valid fencing token: {text!r:.80}")
        if url is not None and not isinstance(url, str):
            raise ValueError(f"leader record has a bad url: {text!r:.80}")
        return cls(agent_id, token, url)


@dataclass(frozen=True, slots=True)
class LeaseView:
    """What this agent knows of the lease after its latest attempt."""

    me: str
    role: Role = "follower"
    holder: Holder | None = None  # the leader as last seen (us, another, or none)
    valid_until: float = -math.inf  # local monotonic; we may act strictly before it
    error: str | None = None  # why the last attempt got no answer

    @property
    def token(self) -> int | None:
        """Our fencing token while we lead."""
        return self.holder.token if self.role == "leader" and self.holder else None

    def may_act(self, now: float) -> bool:
        return self.role == "leader" and now < self.valid_until

    @property
    def leader_url(self) -> str | None:
        return self.holder.url if self.holder is not None else None


@dataclass(frozen=True, slots=True)
class Transition:
    """A change of role worth one ledger event and one log line."""

    kind: Literal["lease_acquired", "lease_lost", "lease_expired", "lease_released"]
    message: str


def _deadline(sent_at: float, ttl: float, margin: float) -> float:
    return sent_at + ttl * (1.0 - DRIFT) - margin


def after_attempt(
    view: LeaseView, holder: Holder | None, *, sent_at: float, ttl: float, margin: float = 0.0
) -> tuple[LeaseView, Transition | None]:
    """The view after Redis answered an acquire-or-renew sent at `sent_at`.

    `holder` is the lease's value after the script ran (None: nobody holds it,
    which only happens when the answer was lost). We lead exactly when it is us.
    """
    ours = holder is not None and holder.agent_id == view.me
    if ours:
        assert holder is not None
        new = replace(view, role="leader", holder=holder,
                      valid_until=_deadline(sent_at, ttl, margin), error=None)
        changed = view.role != "leader" or view.token != holder.token
        note = None
        if changed:
            note = Transition("lease_acquired",
                              f"leading pool actions with fencing token {holder.token}")
        return new, note
    new = replace(view, role="follower", holder=holder, valid_until=-math.inf, error=None)
    if view.role == "leader":
        who = f"{holder.agent_id} (token {holder.token})" if holder else "nobody"
        return new, Transition("lease_lost", f"stepped down: the lease is held by {who}")
    return new, None


def after_failure(view: LeaseView, error: str, *, now: float) -> tuple[LeaseView, Transition | None]:
    """No answer from Redis: keep leading until the deadline we already had."""
    if view.role == "leader" and now >= view.valid_until:
        # Our lease has lapsed in Redis by now: who holds it is unknown.
        new = replace(view, role="follower", holder=None, valid_until=-math.inf, error=error)
        return new, Transition(
            "lease_expired",
            f"stopped acting: the lease could not be renewed before it expired ({error})",
        )
    return replace(view, error=error), None


def after_refusal(view: LeaseView, reason: str) -> tuple[LeaseView, Transition | None]:
    """Redis refused a fenced write (`FencedOut`): whatever we believed, we do not lead.

    The holder is unknown until the next attempt reads it.
    """
    new = replace(view, role="follower", holder=None, valid_until=-math.inf)
    if view.role != "leader":
        return new, None
    return new, Transition("lease_lost", f"stepped down: {reason}")


def after_release(view: LeaseView) -> tuple[LeaseView, Transition | None]:
    """We gave the lease up (clean stop): a follower may take it at its next tick."""
    if view.role != "leader" or view.holder is None:
        return view, None
    new = replace(view, role="follower", holder=None, valid_until=-math.inf)
    return new, Transition(
        "lease_released",
        f"released the lease (fencing token {view.holder.token}) on a clean stop",
    )


def resumes(previous_token: int | None, holder: Holder) -> bool:
    """Whether our taking the lease under `holder` resumes our own last tenure,
    which had `previous_token`, with no other agent leading in between.

    Every acquisition takes the next value of a counter that only grows, so the
    same token (our record was still there) or the very next one means nobody
    else took the lease meanwhile: nothing in Redis is newer than what we hold
    (our writes may have failed, a full disk, an outage). Any larger token means
    another agent led, and what it wrote is the state. (A Redis that came back
    empty restarts the counter: also not a resumption.)"""
    return previous_token is not None and previous_token <= holder.token <= previous_token + 1
