"""agent.client and agent.interfaces.cli_client: the pure parts (parsing, backoff, pickers, tables)."""
from __future__ import annotations

import argparse
import collections
import json
import math

import pytest

from agent.interfaces.cli_client import add_client_commands, render_events, render_queue
from agent.client import Backoff, Picker, parse_queue, ws_url
from agent.core.records import Category, QueueItem


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("http://127.0.0.1:2550", "ws://127.0.0.1:2550/ws"),
        ("http://127.0.0.1:2550/", "ws://127.0.0.1:2550/ws"),
        ("https://agent.example/base", "wss://agent.example/base/ws"),
        ("ws://127.0.0.1:2547", "ws://127.0.0.1:2547/ws"),
        ("ws://127.0.0.1:2547/", "ws://127.0.0.1:2547/"),
        ("127.0.0.1:2550", "ws://127.0.0.1:2550/ws"),
    ],
)
def test_ws_url(given: str, expected: str) -> None:
    assert ws_url(given) == expected


def test_ws_url_rejects_other_schemes() -> None:
    with pytest.raises(ValueError):
        ws_url("ftp://x")


def test_parse_queue_full_items() -> None:
    item = QueueItem("a", 80.0, Category.LU, 0.6, "127.0.0.1", 32000, "abc")
    other = QueueItem("b", 40.0, Category.MU, 0.4, "127.0.0.1", 32001, "def")
    assert parse_queue(json.dumps([item.to_json(), other.to_json()])) == (item, other)


def test_parse_queue_compat_only_fields_derives_weights() -> None:
    message = json.dumps([
        {"dns_name": "a", "score": 75.0, "utilization_category": "LU"},
        {"dns_name": "b", "score": 25.0, "utilization_category": "HU"},
        {"dns_name": "c", "score": 90.0, "utilization_category": "SUNDOWN"},
        {"dns_name": "d", "score": None, "utilization_category": "INIT"},
    ])
    queue = parse_queue(message)
    assert [q.weight for q in queue] == [0.75, 0.25, 0.0, 0.0]
    assert math.isnan(queue[3].score)
    assert queue[0].address is None and queue[0].port is None


def test_parse_queue_keeps_unknown_categories_as_text() -> None:
    (item,) = parse_queue('[{"dns_name": "a", "score": 1, "utilization_category": "NEW", "weight": 1}]')
    assert item.utilization_category == "NEW"


@pytest.mark.parametrize("message", ["{}", "not json", '[{"score": 1}]', "[1]", '[{"dns_name": 3}]'])
def test_parse_queue_rejects_garbage(message: str) -> None:
    with pytest.raises(ValueError):
        parse_queue(message)


def test_backoff_grows_caps_and_resets() -> None:
    b = Backoff(initial=0.5, maximum=4.0, factor=2.0, jitter=0.0)
    assert [b.next() for _ in range(6)] == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    b.reset()
    assert b.next() == 0.5
    j = Backoff(initial=1.0, maximum=1.0, jitter=0.5)
    assert all(0.5 <= j.next() <= 1.0 for _ in range(100))
    with pytest.raises(ValueError):
        Backoff(initial=0)


def queue_of(*rows: tuple[str, float, Category]) -> tuple[QueueItem, ...]:
    return tuple(QueueItem(n, 50.0, c, w) for n, w, c in rows)


def test_swrr_picker_follows_weights_exactly_and_skips_sundown() -> None:
    q = queue_of(("a", 0.5, Category.LU), ("b", 0.3, Category.MU), ("c", 0.2, Category.MU),
                 ("gone", 0.9, Category.SUNDOWN), ("zero", 0.0, Category.HU))
    picker = Picker(q, strategy="swrr")
    counts = collections.Counter(picker.pick().dns_name for _ in range(100))
    assert counts == {"a": 50, "b": 30, "c": 20}


def test_swrr_state_survives_an_identical_rebroadcast() -> None:
    current = [queue_of(("a", 0.5, Category.LU), ("b", 0.5, Category.LU))]
    picker = Picker(lambda: current[0], strategy="swrr")
    first = picker.pick().dns_name
    current[0] = queue_of(("a", 0.5, Category.LU), ("b", 0.5, Category.LU))  # same weights, new objects
    assert picker.pick().dns_name != first  # alternates instead of restarting


def test_p2c_picker_is_weighted_and_seeded() -> None:
    q = queue_of(("a", 0.7, Category.LU), ("b", 0.2, Category.MU), ("c", 0.1, Category.HU))
    a = [Picker(q, strategy="p2c", seed=7).pick().dns_name for _ in range(3)]
    b = [Picker(q, strategy="p2c", seed=7).pick().dns_name for _ in range(3)]
    assert a == b
    picker = Picker(q, strategy="p2c", seed=1)
    counts = collections.Counter(picker.pick().dns_name for _ in range(3000))
    # with no load in flight the picks follow the weights, the lightest included
    assert counts["a"] / 3000 == pytest.approx(0.7, abs=0.04)
    assert counts["b"] / 3000 == pytest.approx(0.2, abs=0.04)
    assert counts["c"] / 3000 == pytest.approx(0.1, abs=0.04)


def test_p2c_lease_prefers_idle_backends() -> None:
    q = queue_of(("a", 0.5, Category.LU), ("b", 0.5, Category.LU))
    picker = Picker(q, strategy="p2c", seed=3)
    with picker.lease() as first:
        assert picker.in_flight == {first.dns_name: 1}
        with picker.lease() as second:
            assert second.dns_name != first.dns_name  # the busy one loses the duel
    assert picker.in_flight == {}


def test_picker_with_nothing_routable() -> None:
    with pytest.raises(LookupError):
        Picker((), strategy="swrr").pick()
    with pytest.raises(LookupError):
        Picker(queue_of(("gone", 1.0, Category.SUNDOWN))).pick()
    with pytest.raises(ValueError):
        Picker((), strategy="random")  # type: ignore[arg-type]


def test_render_queue_and_events() -> None:
    q = [QueueItem("web-1", 81.25, Category.LU, 0.625, "127.0.0.1", 32000).to_json(),
         QueueItem("web-2", math.nan, Category.INIT, 0.0).to_json()]
    text = render_queue(q, desired=3, running=2, tick=9)
    lines = text.splitlines()
    assert lines[0] == "tick 9 · desired 3 · running 2"
    assert lines[1].split() == ["#", "CONTAINER", "CATEGORY", "SCORE", "WEIGHT", "ADDRESS"]
    assert lines[2].split() == ["1", "web-1", "LU", "81.2", "62.5%", "127.0.0.1:32000"]
    assert lines[3].split() == ["2", "web-2", "INIT", "–", "0.0%", "–"]
    assert "(no container" in render_queue([])
    events = render_events([{"id": "1-0", "kind": "scale", "ts": 0.0,
                             "data": {"action": "scale_up", "reason": "avg_below_high", "message": "avg 40 < 55"}}])
    assert "scale_up" in events and "avg_below_high" in events and "avg 40 < 55" in events
    assert render_events([]) == "(no event)"


def test_client_commands_register_and_validate(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AGENT_URL", "http://10.0.0.1:9")
    monkeypatch.setenv("AGENT_API_TOKEN", "tok")
    parser = argparse.ArgumentParser()
    add_client_commands(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["scale", "4"])
    assert args.count == 4 and args.url == "http://10.0.0.1:9" and args.token == "tok"
    assert callable(args.handler)
    args = parser.parse_args(["events", "--kind", "scale", "--limit", "5", "--url", "http://x:1"])
    assert (args.kind, args.limit, args.url) == ("scale", 5, "http://x:1")
    for bad in (["scale", "-1"], ["scale", "x"], ["events", "--limit", "0"], ["drain"]):
        with pytest.raises(SystemExit):
            parser.parse_args(bad)


def test_public_exports() -> None:
    import agent.client
    import agent.interfaces.cli_client
    import agent.service.hub
    import agent.service.metrics
    import agent.interfaces.web

    assert sorted(agent.interfaces.web.__all__) == ["ServerInfo", "create_app", "serve"]
    assert sorted(agent.client.__all__) == ["Backoff", "Picker", "QueueSubscriber", "parse_queue", "ws_url"]
    assert agent.service.hub.__all__ == ["Hub", "Subscription"]
    assert sorted(agent.service.metrics.__all__) == ["CONTENT_TYPE", "Metrics"]
    for module in (agent.interfaces.web, agent.client, agent.interfaces.cli_client, agent.service.hub, agent.service.metrics):
        for name in module.__all__:
            assert hasattr(module, name), (module.__name__, name)
    from agent.interfaces.web.app import create_app
    from agent.interfaces.web.server import serve

    assert serve is agent.interfaces.web.serve and create_app is agent.interfaces.web.create_app
