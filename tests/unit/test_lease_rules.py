"""The pure lease rules beyond those tested with Redis (tests/integration/test_lease.py):
a refused fenced write and a clean release."""
from __future__ import annotations

import math

from agent.core.lease import Holder, LeaseView, after_attempt, after_refusal, after_release, resumes


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


def test_only_the_same_or_the_next_token_resumes_our_own_tenure() -> None:
    # token 4 was ours; the counter only grows, one step per acquisition
    assert resumes(4, Holder("me", 4))        # our record outlived our local deadline
    assert resumes(4, Holder("me", 5))        # nobody took the lease in between
    assert not resumes(4, Holder("me", 6))    # another agent led under token 5
    assert not resumes(4, Holder("me", 1))    # Redis came back empty: counter restarted
    assert not resumes(None, Holder("me", 1))  # never led before
