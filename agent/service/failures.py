"""The agent's ongoing failures, each logged once when it starts, changes and ends.

The shell side of `agent.core.conditions`: it holds the current `Condition` of
each kind of failure, writes one log line per transition (a warning when a
failure starts or changes, an info line with its duration and count when it
ends) and hands back the ledger entries to record. Kinds, by ledger name:

    engine_error     the engine does not list (actuation paused)
    store_outage     Redis unreachable (the store writes its own ledger entry)
    persist_failed   Redis reachable, but it refuses the state (e.g. disk full)
    create_failed    creating a worker fails (retried with backoff)
    remove_failed    removing a worker fails (retried with backoff)
    tick_failed      a tick raised (a bug, or an error a step did not absorb)
"""
from __future__ import annotations

import logging
from collections.abc import Iterable

from agent.core.conditions import Condition, Failure, describe, observe, transition_event
from agent.core.plan import Event

__all__ = ["Failures", "LABELS"]

#: kind -> (while failing, once it works again)
LABELS: dict[str, tuple[str, str]] = {
    "engine_error": ("engine unreachable, actuation paused", "engine reachable again"),
    "store_outage": ("Redis unreachable, state kept in memory", "Redis reachable again"),
    "persist_failed": ("cannot persist the state to Redis", "persisting the state again"),
    "create_failed": ("cannot create workers", "creating workers again"),
    "remove_failed": ("cannot remove workers", "removing workers again"),
    "tick_failed": ("the tick fails", "the tick works again"),
}

# Kinds whose ledger entries the caller does not want from here (it writes its own).
_OWN_EVENTS = frozenset({"engine_error", "store_outage"})


class Failures:
    """The current condition of each kind (see the module docstring)."""

    def __init__(self, log: logging.Logger) -> None:
        self._log = log
        self._now: dict[str, Condition] = {}

    def get(self, kind: str) -> Condition | None:
        return self._now.get(kind)

    def ready(self, kind: str, clock: float) -> bool:
        """Whether the action of `kind` may be tried now (its backoff is over)."""
        condition = self._now.get(kind)
        return condition is None or condition.ready(clock)

    def observe(
        self, kind: str, outcome: Failure | None, *, now: float, clock: float,
        extra: dict[str, object] | None = None, exc_info: BaseException | None = None,
    ) -> list[Event]:
        """Record one attempt's outcome; log a transition; its ledger entries."""
        condition, transition = observe(self._now.get(kind), outcome, what=kind, now=now,
                                        clock=clock)
        if condition is None:
            self._now.pop(kind, None)
        else:
            self._now[kind] = condition
        if transition is None:
            return []
        failing, back = LABELS[kind]
        if transition.kind == "recovered":
            old = transition.old
            assert old is not None
            self._log.info("%s after %.1f s (%d failure(s))", back, now - old.since, old.count)
        else:
            change = ", differently now" if transition.kind == "changed" else ""
            self._log.warning("%s%s: %s", failing, change, outcome.message if outcome else "",
                              exc_info=exc_info)
        return [] if kind in _OWN_EVENTS else transition_event(transition, extra)

    def reasons(self, kinds: Iterable[str], now: float) -> list[str]:
        """One line per kind that is failing now, for readiness."""
        return [f"{LABELS[k][0]}: {describe(c, now)}" for k in kinds if (c := self._now.get(k))]
