"""`OwnedView`: the engine adapter's cache of owned containers, without an engine."""
from __future__ import annotations

from collections.abc import Mapping

from agent.adapters.engine_view import OwnedView
from agent.core.records import ContainerInfo

OURS = {"owner": "me"}


def _owns(labels: Mapping[str, str] | None) -> bool:
    return (labels or {}).get("owner") == "me"


def _info(cid: str, status: str = "running", *, created: float = 1.0, labels: dict[str, str] | None = None,
          name: str | None = None) -> ContainerInfo:
    return ContainerInfo(name=name or f"w-{cid}", id=cid, image="img", status=status, created=created,
                         labels=dict(OURS if labels is None else labels))


def test_an_older_ticket_never_overwrites_a_newer_one() -> None:
    view = OwnedView(_owns)
    slow = view.ticket()  # an inspect that started first...
    fast = view.ticket()
    assert view.put(_info("a", "running"), fast)
    assert not view.put(_info("a", "created"), slow)  # ...and landed last
    assert view.get("a") == _info("a", "running")
    assert view.put(_info("a", "exited"), view.ticket())
    assert view.get("a") == _info("a", "exited")


def test_a_removal_is_final() -> None:
    view = OwnedView(_owns)
    view.put(_info("a"), view.ticket())
    view.drop("a")
    assert view.removed("a") and view.get("a") is None
    assert not view.put(_info("a"), view.ticket())  # a late inspect cannot bring it back
    assert view.listing() == []


def test_tombstones_are_bounded() -> None:
    view = OwnedView(_owns, tombstones=3)
    for cid in "abcd":
        view.drop(cid)
    assert not view.removed("a") and all(view.removed(c) for c in "bcd")


def test_foreign_containers_are_never_stored() -> None:
    view = OwnedView(_owns)
    assert not view.put(_info("x", labels={}), view.ticket())
    assert not view.put(_info("y", labels={"owner": "someone-else"}), view.ticket())
    assert len(view) == 0


def test_drop_unlisted_keeps_what_was_written_during_the_listing() -> None:
    view = OwnedView(_owns)
    view.put(_info("old"), view.ticket())
    view.put(_info("listed"), view.ticket())
    since = view.ticket()  # the listing starts
    view.put(_info("new"), view.ticket())  # created meanwhile, not in the listing
    assert view.drop_unlisted(["listed"], since) == ["old"]
    assert {i.id for i in view.listing()} == {"listed", "new"}
    assert not view.removed("old")  # forgotten, not tombstoned


def test_listing_is_ordered_like_the_engine_adapters() -> None:
    view = OwnedView(_owns)
    view.put(_info("b", created=2.0, name="w-b"), view.ticket())
    view.put(_info("a", created=2.0, name="w-a"), view.ticket())
    view.put(_info("c", created=1.0, name="w-c"), view.ticket())
    listed = view.listing()
    assert [i.id for i in listed] == ["c", "a", "b"]
    listed.clear()  # a copy: the caller's to keep
    assert len(view.listing()) == 3
