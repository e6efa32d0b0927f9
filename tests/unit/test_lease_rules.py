"""The pure lease rules beyond those tested with Redis (tests/integration/test_lease.py):
a refused fenced write and a clean release."""
from __future__ import annotations

import math

from agent.core.lease import Holder, LeaseView, after_attempt, after_refusal, after_release


def _leader() -> LeaseView:
    view, _ = after_attempt(LeaseView(me="me"), Holder("me", 4, "http://a:1"), sent_at=0.0, ttl=10.0)
    return view


def test_a_refused_write_steps_a_leader_down_at_once() -> None:
    view, note = after_refusal(_leader(), "the write-ahead was refused")
    assert view.role == "follower" and view.holder is None and not view.may_act(0.0)
    assert note is not None and note.kind == "lease_lost" and "write-ahead" in note.message


def test_a_refusal_means_nothing_new_to_a_follower() -> None:
    follower = LeaseView(me="me", holder=Holder("other", 5))
    view, note = after_refusal(follower, "refused")
    assert note is None and view.role == "follower"


def test_release_hands_over_and_is_said_once() -> None:
    view, note = after_release(_leader())
    assert view.role == "follower" and view.valid_until == -math.inf
    assert note is not None and note.kind == "lease_released" and "token 4" in note.message
    again, second = after_release(view)
    assert again == view and second is None
