"""The dashboard in headless Chromium: it renders the agent's containers and
follows the queue as it changes (polled with deadlines, no fixed sleeps)."""
from __future__ import annotations

import json
from typing import Any

import pytest

from agent.interfaces.web import ServerInfo

from . import browser
from .double import make_snapshot
from .util import eventually

pytestmark = [
    pytest.mark.browser,
]

READ_DOM = """(() => { try { return JSON.stringify({
  state: document.body.dataset.state || null,
  rows: [...document.querySelectorAll('#queue tbody tr')].map(r => ({
    name: r.dataset.name, category: r.dataset.category,
    score: r.querySelector('.score').textContent, weight: r.querySelector('.weight').textContent,
    spark: (r.querySelector('svg.spark polyline').getAttribute('points') || '').split(' ').filter(Boolean).length,
  })),
  tick: document.getElementById('tick').textContent,
  desired: document.getElementById('desired').textContent,
  running: document.getElementById('running').textContent,
  points: Number(document.getElementById('counts').dataset.points || 0),
  events: [...document.querySelectorAll('#events tbody tr')].map(r => [r.dataset.kind, r.querySelector('.reason').textContent]),
}); } catch (e) { return "null"; } })()"""


async def test_dashboard_renders_and_follows_the_queue(server: ServerInfo, agent_under_test: Any) -> None:
    async with browser.chromium_page(server.http_url + "/") as page:

        async def dom() -> dict[str, Any]:
            # before the page is parsed: no rows yet
            return json.loads(await page.evaluate(READ_DOM)) or {"rows": [], "points": 0, "events": []}

        def expected(snapshot: Any) -> list[tuple[str, str]]:
            return [(q.dns_name, str(q.utilization_category)) for q in snapshot.queue]

        # 1. the agent's containers, in queue order, with categories, counts, ledger
        snap = agent_under_test.snapshot

        async def shows_first() -> dict[str, Any] | None:
            d = await dom()
            ok = (
                [(r["name"], r["category"]) for r in d["rows"]] == expected(snap)
                and d.get("desired") == str(snap.desired)
                and d["points"] >= 1
                and d["events"]
            )
            return d if ok else None

        first = await eventually(shows_first, timeout=20, interval=0.05, message="dashboard shows the queue")
        top = snap.queue[0]
        assert first["rows"][0]["score"] == f"{top.score:.1f}"
        assert first["rows"][0]["weight"] == f"{top.weight * 100:.1f} %"

        # 2. a queue rebuild with new containers, a new order and a new desired count
        new = make_snapshot(
            [("web-1", 91.0), ("web-2", 45.0), ("web-3", 12.0)],
            tick=snap.tick + 1,
            desired=snap.desired + 2,
            running=snap.running + 1,
        )
        agent_under_test.hub.publish(new)

        async def shows_new() -> dict[str, Any] | None:
            d = await dom()
            ok = (
                [(r["name"], r["category"]) for r in d["rows"]] == expected(new)
                and d.get("desired") == str(new.desired)
                and d.get("running") == str(new.running)
                and d.get("tick") == str(new.tick)
            )
            return d if ok else None

        after = await eventually(shows_new, timeout=20, interval=0.05, message="dashboard follows the queue")
        assert [r["category"] for r in after["rows"]] == ["LU", "MU", "HU"]

        # 3. the same containers re-scored: order flips, sparklines grow
        again = make_snapshot(
            [("web-1", 30.0), ("web-2", 75.0), ("web-3", 50.0)],
            tick=new.tick + 1, desired=new.desired, running=new.running,
        )
        agent_under_test.hub.publish(again)

        async def shows_again() -> dict[str, Any] | None:
            d = await dom()
            names = [r["name"] for r in d["rows"]]
            return d if names == ["web-2", "web-3", "web-1"] and all(r["spark"] >= 2 for r in d["rows"]) else None

        await eventually(shows_again, timeout=20, interval=0.05, message="sparklines follow the scores")
        final = await dom()
        assert final["points"] >= 2, "desired/running chart did not grow"
        assert page.errors == [], page.errors


READ_TRAFFIC = """(() => { try { return JSON.stringify({
  application: document.getElementById('application').hidden ? null
    : document.getElementById('application-url').textContent,
  balancer: document.getElementById('balancer').textContent,
  rows: Object.fromEntries([...document.querySelectorAll('#queue tbody tr')].map(r => [r.dataset.name, {
    rate: r.querySelector('.rate').textContent, inflight: r.querySelector('.inflight').textContent,
    response: r.querySelector('.response').textContent, errors: r.querySelector('.errors').textContent,
    limits: r.querySelector('.limits').textContent,
  }])),
}); } catch (e) { return "null"; } })()"""


async def test_dashboard_shows_the_application_and_what_the_balancer_saw(
    server: ServerInfo, agent_under_test: Any
) -> None:
    from dataclasses import replace

    from agent.core.traffic import ServerTraffic

    from .double import is_double

    if not is_double(agent_under_test):
        return  # it sets the double's balancer state; the real one is tests/integration's
    agent_under_test.balancer = {
        "enabled": True, "kind": "haproxy", "mode": "embedded", "backend": "pool",
        "socket": "/tmp/x.sock", "frontend": "127.0.0.1:8080", "reachable": True,
        "application": "http://127.0.0.1:8080/", "servers": {}, "weights_sent": {},
        "last_sync": None, "last_error": None,
    }
    snap = make_snapshot([("web-1", 91.0), ("web-2", 45.0)], tick=7)
    containers = {n: replace(i, cpus=0.5, memory=256 * 1024**2) for n, i in snap.containers.items()}
    traffic = {
        "web-1": ServerTraffic(carried=True, requests=42, rate=42.0, in_flight=3,
                               response_time=0.0125, responses_5xx=0),
        "web-2": ServerTraffic(carried=True, requests=10, rate=10.0, in_flight=9,
                               response_time=0.480, responses_5xx=4),
    }
    agent_under_test.hub.publish(replace(snap, containers=containers, traffic=traffic))
    async with browser.chromium_page(server.http_url + "/") as page:

        async def shows() -> dict[str, Any] | None:
            d = json.loads(await page.evaluate(READ_TRAFFIC)) or {}
            rows = d.get("rows") or {}
            ready = d.get("application") and rows.get("web-2", {}).get("response") == "480 ms"
            return d if ready else None

        d = await eventually(shows, timeout=20, interval=0.05, message="balancer figures shown")
        assert d["application"] == "http://127.0.0.1:8080/"
        assert d["balancer"] == "haproxy embedded"
        assert d["rows"]["web-1"] == {"rate": "42.0", "inflight": "3", "response": "13 ms",
                                      "errors": "0", "limits": "0.5 CPU · 256 MiB"}
        assert (d["rows"]["web-2"]["inflight"], d["rows"]["web-2"]["errors"]) == ("9", "4")
        assert page.errors == [], page.errors
