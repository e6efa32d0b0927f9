"""Repeated failures told once (`agent.core.conditions`): one scenario a test."""
from __future__ import annotations

import pytest

from agent.core.conditions import (
    BACKOFF_INITIAL,
    BACKOFF_MAX,
    failure,
    failure_key,
    observe,
    transition_event,
)

KIND = "create_failed"


def run(outcomes: list[str | None], *, step: float = 1.0) -> tuple[object, list[object]]:
    """Feed one outcome a second; the final condition and the transitions."""
    condition, transitions = None, []
    for i, message in enumerate(outcomes):
        condition, t = observe(condition, None if message is None else failure(message),
                               what=KIND, now=1000.0 + i * step, clock=i * step)
        if t is not None:
            transitions.append(t)
    return condition, transitions


def test_a_repeated_failure_is_one_transition_with_a_count() -> None:
    condition, transitions = run(["no such image"] * 500)
    assert [t.kind for t in transitions] == ["lost"]
    assert condition.count == 500 and condition.since == 1000.0  # type: ignore[attr-defined]


def test_ids_and_numbers_do_not_make_a_failure_new() -> None:
    messages = [f"removing w-{i:08x}0000 on port {30000 + i}: refused" for i in range(5)]
    _, transitions = run(messages)
    assert len(transitions) == 1
    assert failure_key("a 1234 b 0123456789abcdef") == "a # b #"


def test_a_different_failure_ends_the_first_and_starts_another() -> None:
    condition, transitions = run(["no such image", "no such image", "engine refused"])
    assert [t.kind for t in transitions] == ["lost", "changed"]
    ended, opened = transition_event(transitions[1])
    assert (ended.data["state"], ended.data["count"], ended.data["duration"]) == ("ended", 2, 2.0)
    assert (opened.data["state"], opened.data["error"]) == ("open", "engine refused")


def test_recovery_reports_duration_and_count() -> None:
    condition, transitions = run(["boom", "boom", "boom", None, None])
    assert condition is None
    assert [t.kind for t in transitions] == ["lost", "recovered"]
    (ended,) = transition_event(transitions[-1])
    assert ended.kind == KIND
    # the last failure at 2 s, the success at 3 s is too soon (SETTLE), the one at 4 s counts
    assert (ended.data["count"], ended.data["duration"]) == (3, 4.0)
    assert "works again after 4.0 s and 3 failure(s)" in ended.data["message"]


def test_a_success_between_failures_is_not_a_recovery() -> None:
    """A dockerd going down answers one call in two for a moment: one outage."""
    condition, transitions = run(["down", None, "down", None, "down", None, None, None, None],
                                 step=0.5)
    assert [t.kind for t in transitions] == ["lost", "recovered"]
    assert transitions[-1].old.count == 3  # type: ignore[union-attr]


def test_success_without_failure_reports_nothing() -> None:
    assert run([None, None]) == (None, [])


@pytest.mark.parametrize("failures", [1, 2, 3, 6, 20])
def test_backoff_doubles_and_is_capped(failures: int) -> None:
    condition = None
    for i in range(failures):
        condition, _ = observe(condition, failure("x"), what=KIND, now=0.0, clock=100.0)
    expected = min(BACKOFF_MAX, BACKOFF_INITIAL * 2 ** (failures - 1))
    assert condition is not None
    assert condition.retry_at == pytest.approx(100.0 + expected)
    assert not condition.ready(100.0 + expected - 0.01) and condition.ready(100.0 + expected)


def test_the_open_entry_keeps_the_callers_fields_and_message() -> None:
    _, (lost,) = run(["no such image"])
    (opened,) = transition_event(lost, {"reason": "reconcile", "message": "could not create a worker"})
    assert opened.data["reason"] == "reconcile" and opened.data["count"] == 1
    assert opened.data["message"].startswith("could not create a worker; repeats are counted")
