"""Failures that repeat, told once: lost, changed, recovered — never once per tick.

A tick meets the same failure again and again (the image is missing, so every
create fails; dockerd is stopping, so every removal fails; Redis refuses writes
because its disk is full). Reporting each one floods the ledger (capped: the real
decisions are pushed out within hours) and the log, and retrying each at once
hammers what is failing. A `Condition` is one such failure, tracked as a value:

* `observe(condition, failure, now=, clock=)` takes the previous value and this
  attempt's outcome (a `Failure`, or None for success) and returns the next value
  and the `Transition` to report, if any: ``lost`` (it starts failing),
  ``changed`` (it fails differently: another `Failure.key`), ``recovered`` (it
  works again, with the duration and the count). A repeat of the same failure
  only counts; nothing is reported. A success counts as recovery only once the
  last failure is `SETTLE` seconds old: a dockerd on its way down answers one
  call in two for a moment, and that is one outage, not several.
* `Condition.ready(clock)` says whether the action may be tried again: after the
  n-th consecutive failure it waits ``min(BACKOFF_MAX, BACKOFF_INITIAL·2^(n-1))``
  seconds (exponential, capped).
* `transition_event` is the transition as a ledger entry: one entry when the
  failure starts (``state: "open"``, count 1) and one when it changes or ends
  (``state: "ended"``, with the count and the duration), both of the same kind.

Two clocks, as elsewhere: `now` (wall, epoch seconds) dates what is reported;
`clock` (monotonic) times the backoff. Pure: no I/O, no clock reads.
"""
from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from typing import Any, Literal

from agent.core.plan import Event

__all__ = [
    "BACKOFF_INITIAL",
    "BACKOFF_MAX",
    "SETTLE",
    "Condition",
    "Failure",
    "Transition",
    "failure",
    "failure_key",
    "observe",
    "transition_event",
    "describe",
]

BACKOFF_INITIAL = 1.0  # seconds after the first failure
BACKOFF_MAX = 30.0  # seconds, at most, between two attempts
SETTLE = 2.0  # seconds without a failure before a success means "recovered"

# Identifiers and numbers that differ between two reports of the same failure
# (container ids and names, ports, attempt counts, timings).
_VARYING = re.compile(r"\b[0-9a-f]{12,64}\b|\d+(\.\d+)?")


def failure_key(message: str) -> str:
    """What makes two failures "the same": the message without ids and numbers."""
    return _VARYING.sub("#", message)


@dataclass(frozen=True, slots=True)
class Failure:
    """One failed attempt: what to show (`message`) and what identifies it (`key`)."""

    message: str
    key: str


def failure(message: str, key: str | None = None) -> Failure:
    """A `Failure` whose key is `key`, or the message without ids and numbers."""
    return Failure(message, failure_key(message) if key is None else key)


@dataclass(frozen=True, slots=True)
class Condition:
    """A failure that is going on: since when (wall), how often, the latest message,
    and when (monotonic) the next attempt is due."""

    what: str  # the ledger kind, e.g. "create_failed"
    key: str
    message: str
    since: float
    last: float
    count: int
    retry_at: float
    failed_at: float  # monotonic time of the last failure

    def ready(self, clock: float) -> bool:
        return clock >= self.retry_at


@dataclass(frozen=True, slots=True)
class Transition:
    """What to report: `kind` "lost", "changed" (the old one ended, `new` began) or
    "recovered"; `old` is the condition that ended (None when one starts)."""

    kind: Literal["lost", "changed", "recovered"]
    old: Condition | None
    new: Condition | None
    now: float


def _delay(count: int) -> float:
    return min(BACKOFF_MAX, BACKOFF_INITIAL * 2.0 ** (count - 1))


def observe(
    condition: Condition | None, outcome: Failure | None, *, what: str, now: float, clock: float
) -> tuple[Condition | None, Transition | None]:
    """The next condition after one attempt, and what to report (see the module
    docstring). `what` names the condition (the ledger kind)."""
    if outcome is None:
        if condition is None or clock - condition.failed_at < SETTLE:
            return condition, None
        return None, Transition("recovered", condition, None, now)
    if condition is not None and condition.key == outcome.key:
        count = condition.count + 1
        return dataclasses.replace(condition, message=outcome.message, last=now, count=count,
                                   retry_at=clock + _delay(count), failed_at=clock), None
    started = Condition(what, outcome.key, outcome.message, since=now, last=now, count=1,
                        retry_at=clock + _delay(1), failed_at=clock)
    return started, Transition("lost" if condition is None else "changed", condition, started, now)


def describe(condition: Condition, now: float) -> str:
    """One line for people: the message, how many times, for how long."""
    times = "once" if condition.count == 1 else f"{condition.count} times"
    return f"{condition.message} ({times} in {max(0.0, now - condition.since):.0f} s)"


def transition_event(transition: Transition, extra: dict[str, Any] | None = None) -> list[Event]:
    """The ledger entries of a transition: the end of the old condition (count,
    duration), then the start of the new one (with `extra` fields)."""
    out = []
    old, new = transition.old, transition.new
    if old is not None:
        out.append(Event(old.what, _ended(old, transition.now, changed=new is not None)))
    if new is not None:
        extra = dict(extra or {})
        said = extra.pop("message", new.message)
        out.append(Event(new.what, {
            **extra,
            "state": "open", "error": new.message, "count": 1, "since": new.since,
            "message": f"{said}; repeats are counted, not recorded, and retried with a "
            "growing delay",
        }))
    return out


def _ended(old: Condition, now: float, *, changed: bool) -> dict[str, Any]:
    duration = max(0.0, now - old.since)
    how = "now fails differently" if changed else "works again"
    return {
        "state": "ended", "error": old.message, "count": old.count, "since": old.since,
        "duration": duration,
        "message": f"{how} after {duration:.1f} s and {old.count} failure(s): {old.message}",
    }
