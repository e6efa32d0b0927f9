"""The leader lease and fenced writes against a real Redis."""
from __future__ import annotations

import math
import threading

import pytest
import redis

from agent.adapters.redis_lease import FencedOut, LeaseKeys, acquire_or_renew, fenced_pipeline, read_holder, release
from agent.core.lease import Holder, LeaseView, after_attempt, after_failure

pytestmark = pytest.mark.redis


@pytest.fixture
def keys(redis_app: str) -> LeaseKeys:
    return LeaseKeys(f"da:{redis_app}:")


def test_first_comes_leads_the_second_follows(redis_client: redis.Redis, keys: LeaseKeys) -> None:
    a = acquire_or_renew(redis_client, keys, "agent-a", 10, "http://127.0.0.1:2550")
    assert a == Holder("agent-a", 1, "http://127.0.0.1:2550")
    b = acquire_or_renew(redis_client, keys, "agent-b", 10, None)
    assert b == a  # b sees a's lease and does not take it
    assert acquire_or_renew(redis_client, keys, "agent-a", 10, None) == a  # renewal keeps the token
    assert 9000 < redis_client.pttl(keys.leader) <= 10000


def test_expired_lease_is_taken_under_a_new_token(redis_client: redis.Redis, keys: LeaseKeys) -> None:
    acquire_or_renew(redis_client, keys, "agent-a", 10, None)
    redis_client.delete(keys.leader)  # what the TTL does
    b = acquire_or_renew(redis_client, keys, "agent-b", 10, None)
    assert b is not None and b.agent_id == "agent-b" and b.token == 2
    # a, back, cannot renew b's lease
    assert acquire_or_renew(redis_client, keys, "agent-a", 10, None) == b
    assert read_holder(redis_client, keys) == b


def test_only_one_of_many_concurrent_candidates_wins(redis_url: str, keys: LeaseKeys) -> None:
    results: dict[str, Holder | None] = {}

    def candidate(name: str) -> None:
        with redis.Redis.from_url(redis_url) as client:
            results[name] = acquire_or_renew(client, keys, name, 10, None)

    threads = [threading.Thread(target=candidate, args=(f"agent-{i}",)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    holders = set(results.values())
    assert len(holders) == 1
    (winner,) = holders
    assert winner is not None and winner.token == 1


def test_fenced_write_applies_only_for_the_holder(redis_client: redis.Redis, keys: LeaseKeys) -> None:
    a = acquire_or_renew(redis_client, keys, "agent-a", 10, None)
    assert a is not None
    fenced_pipeline(redis_client, keys, a, lambda p: p.set("da:x:desired", "7"))
    assert redis_client.get("da:x:desired") == "7"
    redis_client.delete(keys.leader)
    b = acquire_or_renew(redis_client, keys, "agent-b", 10, None)
    assert b is not None
    with pytest.raises(FencedOut, match="token 1 is stale.*agent-b"):
        fenced_pipeline(redis_client, keys, a, lambda p: p.set("da:x:desired", "99"))
    assert redis_client.get("da:x:desired") == "7"


def test_fenced_write_aborts_when_the_lease_changes_during_it(redis_url: str, keys: LeaseKeys) -> None:
    with redis.Redis.from_url(redis_url, decode_responses=True) as client, \
            redis.Redis.from_url(redis_url) as other:
        a = acquire_or_renew(client, keys, "agent-a", 10, None)
        assert a is not None

        def build(pipe: object) -> None:
            # between WATCH and EXEC the lease expires and another agent takes it
            other.delete(keys.leader)
            acquire_or_renew(other, keys, "agent-b", 10, None)
            pipe.set("da:x:desired", "5")  # type: ignore[attr-defined]

        with pytest.raises(FencedOut, match="changed hands"):
            fenced_pipeline(client, keys, a, build)
        assert client.get("da:x:desired") is None


def test_release_only_our_own(redis_client: redis.Redis, keys: LeaseKeys) -> None:
    a = acquire_or_renew(redis_client, keys, "agent-a", 10, None)
    assert a is not None
    assert not release(redis_client, keys, Holder("agent-b", a.token))
    assert not release(redis_client, keys, Holder("agent-a", a.token + 1))
    assert release(redis_client, keys, a)
    assert read_holder(redis_client, keys) is None


def test_a_foreign_value_is_an_error_not_a_lease(redis_client: redis.Redis, keys: LeaseKeys) -> None:
    redis_client.set(keys.leader, "not json")
    with pytest.raises(ValueError):
        acquire_or_renew(redis_client, keys, "agent-a", 10, None)


@pytest.mark.parametrize(
    ("start_role", "holder", "expected_role", "transition"),
    [
        pytest.param("follower", Holder("me", 3), "leader", "lease_acquired", id="acquired"),
        pytest.param("leader", Holder("me", 3), "leader", None, id="renewed"),
        pytest.param("leader", Holder("other", 4), "follower", "lease_lost", id="taken-over"),
        pytest.param("follower", Holder("other", 4), "follower", None, id="still-follower"),
        pytest.param("leader", None, "follower", "lease_lost", id="lease-vanished"),
    ],
)
def test_view_after_an_answer(start_role: str, holder: Holder | None, expected_role: str,
                              transition: str | None) -> None:
    view = LeaseView(me="me", role=start_role, holder=Holder("me", 3), valid_until=5.0)  # type: ignore[arg-type]
    new, note = after_attempt(view, holder, sent_at=100.0, ttl=10.0)
    assert new.role == expected_role
    assert (note.kind if note else None) == transition
    if expected_role == "leader":
        assert new.valid_until == pytest.approx(100.0 + 10.0 * 0.95) and new.may_act(109.0)
        assert not new.may_act(109.6)
    else:
        assert new.valid_until == -math.inf and not new.may_act(100.0)


def test_without_answers_a_leader_stops_acting_when_its_lease_ends() -> None:
    view, _ = after_attempt(LeaseView(me="me"), Holder("me", 1), sent_at=0.0, ttl=10.0)
    view, note = after_failure(view, "connection refused", now=5.0)
    assert view.role == "leader" and note is None and view.may_act(5.0)
    view, note = after_failure(view, "connection refused", now=9.6)
    assert view.role == "follower" and note is not None and note.kind == "lease_expired"
    assert "connection refused" in note.message
