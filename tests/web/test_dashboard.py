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
