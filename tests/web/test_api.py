"""Every endpoint of the HTTP API, with its errors, over a real socket."""
from __future__ import annotations

import json
import math
from typing import Any

import pytest
import trio
from trio_websocket import open_websocket_url

from agent.core.records import Category
from agent.interfaces.web import ServerInfo

from .double import FakeAgent, is_double, make_snapshot, names
from .http import request
from .util import eventually

COMPAT_STAT_KEYS = {
    "id", "name", "cpu_score", "memory_score", "network_score",
    "availability_score", "overall_score", "utilization_category",
}


def assert_error(reply: Any, status: int, error: str | None = None) -> dict[str, Any]:
    assert reply.status == status, (reply.status, reply.body)
    assert reply.headers["content-type"].startswith("application/json")
    body = reply.json()
    assert isinstance(body.get("error"), str) and isinstance(body.get("detail"), str), body
    if error is not None:
        assert body["error"] == error, body
    return body


# --------------------------------------------------------------------------- compat


async def test_stats_is_the_compat_array(server: ServerInfo, agent_under_test: Any) -> None:
    reply = await request(server.http_url + "/stats")
    assert reply.status == 200
    assert reply.headers["content-type"] == "application/json"
    stats = reply.json()
    assert isinstance(stats, list)
    snap = agent_under_test.snapshot
    assert [s["name"] for s in stats] == [s.name for s in snap.scores]
    for row, score in zip(stats, snap.scores):
        assert set(row) == COMPAT_STAT_KEYS
        assert row["utilization_category"] == str(score.category)
        assert row["overall_score"] == pytest.approx(score.overall_score)
        assert isinstance(row["id"], str) and row["id"]


async def test_stats_has_cors_for_any_origin(server: ServerInfo) -> None:
    reply = await request(server.http_url + "/stats", headers={"Origin": "https://lb.example"})
    assert reply.status == 200
    assert reply.headers["access-control-allow-origin"] == "*"


async def test_non_finite_scores_are_null_not_invalid_json(
    server: ServerInfo, agent_under_test: Any
) -> None:
    agent_under_test.hub.publish(
        make_snapshot([("fresh", math.nan, Category.INIT), ("old", 50.0)], tick=7)
    )
    stats = (await request(server.http_url + "/stats")).json()  # strict json.loads
    fresh = next(s for s in stats if s["name"] == "fresh")
    assert fresh["overall_score"] is None and fresh["utilization_category"] == "INIT"
    queue = (await request(server.http_url + "/queue")).json()["queue"]
    assert names(queue) == ["old", "fresh"]
    assert queue[1]["score"] is None


async def test_ws_sends_queue_on_connect_and_after_each_rebuild(
    server: ServerInfo, agent_under_test: Any
) -> None:
    for url in (server.ws_url, server.http_url.replace("http://", "ws://") + "/ws"):
        async with open_websocket_url(url) as ws:
            with trio.fail_after(5):
                first = json.loads(await ws.get_message())
            assert names(first) == [q.dns_name for q in agent_under_test.snapshot.queue]
            for item in first:
                # a consumer that knows only the compat fields keeps working
                assert isinstance(item["dns_name"], str)
                assert isinstance(item["score"], (int, float))
                assert item["utilization_category"] in {"INIT", "LU", "MU", "HU", "SUNDOWN"}
                assert 0.0 <= item["weight"] <= 1.0
            new = make_snapshot([("n1", 90.0), ("n2", 10.0)], tick=agent_under_test.snapshot.tick + 1)
            agent_under_test.hub.publish(new)
            with trio.fail_after(5):
                second = json.loads(await ws.get_message())
            assert second == [q.to_json() for q in new.queue]
            assert sum(q["weight"] for q in second) == pytest.approx(1.0)


async def test_ws_port_serves_the_feed_at_any_path_and_nothing_else(
    server: ServerInfo, agent_under_test: Any
) -> None:
    assert server.ws_port != server.http_port
    async with open_websocket_url(f"ws://127.0.0.1:{server.ws_port}/") as ws:
        with trio.fail_after(5):
            first = json.loads(await ws.get_message())
    assert names(first) == [q.dns_name for q in agent_under_test.snapshot.queue]
    reply = await request(f"http://127.0.0.1:{server.ws_port}/stats")
    assert_error(reply, 404, "not_found")


async def test_plain_get_on_ws_is_426(server: ServerInfo) -> None:
    reply = await request(server.http_url + "/ws")
    assert_error(reply, 426, "upgrade_required")


async def test_stalled_ws_subscriber_gets_only_the_newest(
    server: ServerInfo, agent_under_test: Any
) -> None:
    async with open_websocket_url(server.ws_url) as ws:
        with trio.fail_after(5):
            await ws.get_message()  # on-connect message
        base = agent_under_test.snapshot.tick
        # 50 rebuilds while this subscriber cannot run: it must skip to the last.
        for i in range(50):
            agent_under_test.hub.publish(make_snapshot([(f"gen{i}", 60.0)], tick=base + 1 + i))
        received = []
        with trio.fail_after(5):
            while True:
                message = json.loads(await ws.get_message())
                received.append(message)
                if names(message) == ["gen49"]:
                    break
        assert len(received) <= 2, [names(m) for m in received]


# --------------------------------------------------------------------------- read API


async def test_queue(server: ServerInfo, agent_under_test: Any) -> None:
    body = (await request(server.http_url + "/queue")).json()
    snap = agent_under_test.snapshot
    assert body["tick"] == snap.tick and body["desired"] == snap.desired
    assert body["running"] == snap.running
    assert body["queue"] == [q.to_json() for q in snap.queue]
    first = body["queue"][0]
    assert {"weight", "address", "port", "id"} <= set(first)


async def test_container_detail_and_404(server: ServerInfo, agent_under_test: Any) -> None:
    name = agent_under_test.snapshot.scores[0].name
    reply = await request(f"{server.http_url}/containers/{name}")
    assert reply.status == 200
    body = reply.json()
    assert body["name"] == name and body["queue_position"] is not None
    assert body["utilization_category"] in {"INIT", "LU", "MU", "HU", "SUNDOWN"}
    assert_error(await request(server.http_url + "/containers/no-such-container"), 404, "not_found")
    assert_error(await request(server.http_url + "/containers/%2E%2E"), 404)
    assert_error(await request(server.http_url + "/containers/a%20b"), 404)


async def test_events_newest_first_paginated_filtered(
    server: ServerInfo, agent_under_test: Any, token: str
) -> None:
    # make a few ledger entries through the facade
    lo = agent_under_test.settings.default_container
    for count in (lo + 1, lo, lo + 2):
        assert (await request(server.http_url + "/scale", "POST", json={"count": count}, token=token)).status == 200
    page = (await request(server.http_url + "/events?limit=2")).json()
    assert len(page["events"]) == 2 and page["next_before"] == page["events"][-1]["id"]
    newest = page["events"][0]
    assert set(newest) == {"id", "kind", "ts", "data"}
    assert newest["data"]["inputs"]["requested"] == lo + 2
    older = (await request(f"{server.http_url}/events?limit=2&before={page['next_before']}")).json()
    assert older["events"] and all(e["id"] not in {x["id"] for x in page["events"]} for e in older["events"])
    kind = newest["kind"]
    same_kind = (await request(f"{server.http_url}/events?kind={kind}&limit=500")).json()
    assert len(same_kind["events"]) >= 3 and all(e["kind"] == kind for e in same_kind["events"])
    none = (await request(server.http_url + "/events?kind=no-such-kind")).json()
    assert none == {"events": [], "next_before": None}


@pytest.mark.parametrize(
    "query",
    ["limit=abc", "limit=0", "limit=501", "limit=1.5", "limit=", "before=%21%21", "kind=" + "k" * 65,
     "limit=1&limit=2", "kind=a%20b", "before=abc", "before=1-2-3"],
)
async def test_events_bad_query_is_422(server: ServerInfo, query: str) -> None:
    assert_error(await request(f"{server.http_url}/events?{query}"), 422, "invalid_query")


async def test_history(server: ServerInfo, agent_under_test: Any) -> None:
    body = (await request(server.http_url + "/history")).json()
    assert body["points"], body
    last = body["points"][-1]
    assert set(last) == {"time", "desired", "running"}
    assert last["desired"] == agent_under_test.snapshot.desired


async def test_get_config_is_redacted(server: ServerInfo, agent_under_test: Any, token: str) -> None:
    body = (await request(server.http_url + "/config")).json()
    assert body["MAX_CONTAINERS"] == agent_under_test.settings.max_containers
    assert token not in json.dumps(body)
    assert body["AGENT_API_TOKEN"] == "***"


# --------------------------------------------------------------------------- PUT /config


async def test_put_config_applies_and_returns_effective(
    server: ServerInfo, agent_under_test: Any, token: str
) -> None:
    reply = await request(
        server.http_url + "/config", "PUT", json={"MAX_CONTAINERS": 9, "HIGH_LOAD_THRESHOLD": 50}, token=token
    )
    assert reply.status == 200, reply.body
    body = reply.json()
    assert body["MAX_CONTAINERS"] == 9 and body["HIGH_LOAD_THRESHOLD"] == 50.0
    assert agent_under_test.settings.max_containers == 9
    assert (await request(server.http_url + "/config")).json()["MAX_CONTAINERS"] == 9


@pytest.mark.parametrize(
    ("payload", "error", "variable"),
    [
        ({"MAX_CONTAINERS": "nine"}, "invalid_value", "MAX_CONTAINERS"),
        ({"MAX_CONTAINERS": 9.5}, "invalid_value", "MAX_CONTAINERS"),
        ({"MAX_CONTAINERS": True}, "invalid_value", "MAX_CONTAINERS"),
        ({"MAX_CONTAINERS": None}, "invalid_value", "MAX_CONTAINERS"),
        ({"MAX_CONTAINERS": 1}, "invalid_value", "MAX_CONTAINERS"),  # < DEFAULT_CONTAINER
        ({"HIGH_LOAD_THRESHOLD": 90}, "invalid_value", "HIGH_LOAD_THRESHOLD"),  # > LOW
        ({"CPU_WEIGHT": -1}, "invalid_value", "CPU_WEIGHT"),
        ({"EMA_ALPHA": [1]}, "invalid_value", "EMA_ALPHA"),
        ({"NO_SUCH_SETTING": 1}, "unknown_setting", "NO_SUCH_SETTING"),
        ({"max_containers": 9}, "unknown_setting", "max_containers"),
        ({"DOCKER_IMAGE": "evil:latest"}, "read_only", "DOCKER_IMAGE"),
        ({"DOCKER_HOST": "tcp://evil:2375"}, "read_only", "DOCKER_HOST"),
        ({"AGENT_API_TOKEN": "mine"}, "read_only", "AGENT_API_TOKEN"),
        ({"HOST_PORT_HTTP_DEPLOYMENT_AGENT": 80}, "read_only", "HOST_PORT_HTTP_DEPLOYMENT_AGENT"),
    ],
)
async def test_put_config_rejects_invalid(
    server: ServerInfo, agent_under_test: Any, token: str, payload: dict[str, Any], error: str, variable: str
) -> None:
    before = agent_under_test.settings
    reply = await request(server.http_url + "/config", "PUT", json=payload, token=token)
    body = assert_error(reply, 422, error)
    assert body["variable"] == variable
    assert agent_under_test.settings == before
    assert agent_under_test.settings.docker_image == before.docker_image


async def test_put_config_body_errors(server: ServerInfo, token: str) -> None:
    url = server.http_url + "/config"
    json_type = {"Content-Type": "application/json"}
    assert_error(await request(url, "PUT", body=b"{not json", headers=json_type, token=token), 400, "bad_json")
    assert_error(await request(url, "PUT", body=b"", headers=json_type, token=token), 400, "bad_json")
    assert_error(await request(url, "PUT", body=b'{"EMA_ALPHA": NaN}', headers=json_type, token=token), 400)
    assert_error(await request(url, "PUT", body=b"[1, 2]", headers=json_type, token=token), 422, "invalid_body")
    assert_error(
        await request(url, "PUT", body=b'{"MAX_CONTAINERS": 9}', headers={"Content-Type": "text/plain"}, token=token),
        415,
    )
    big = json.dumps({"LOG_LEVEL": "x" * 70_000}).encode()
    reply = await request(url, "PUT", body=big, headers=json_type, token=token)
    assert_error(reply, 413)


@pytest.mark.parametrize("method_path", [("PUT", "/config"), ("POST", "/scale"), ("POST", "/containers/worker-a/sundown")])
async def test_mutations_need_the_token(
    server: ServerInfo, agent_under_test: Any, method_path: tuple[str, str]
) -> None:
    method, path = method_path
    url = server.http_url + path
    payload = {"count": agent_under_test.settings.default_container} if path == "/scale" else {}
    reply = await request(url, method, json=payload)
    body = assert_error(reply, 401, "unauthorized")
    assert reply.headers["www-authenticate"].startswith("Bearer")
    assert "Bearer" in body["detail"]
    assert_error(await request(url, method, json=payload, headers={"Authorization": "Basic dTpw"}), 401)
    assert_error(await request(url, method, json=payload, headers={"Authorization": "Bearer"}), 401)
    assert_error(await request(url, method, json=payload, token="wrong-token"), 403, "forbidden")
    assert_error(await request(url, method, json=payload, token="ünïcode"), 403, "forbidden")
    if is_double(agent_under_test):
        assert not agent_under_test.scale_requests and not agent_under_test.sundown_requests
        assert not agent_under_test.config_updates


# --------------------------------------------------------------------------- POST /scale


async def test_scale(server: ServerInfo, agent_under_test: Any, token: str) -> None:
    count = agent_under_test.settings.max_containers
    reply = await request(server.http_url + "/scale", "POST", json={"count": count}, token=token)
    assert reply.status == 200, reply.body
    decision = reply.json()
    assert decision["reason"] == "manual" and decision["desired"] == count
    assert {"action", "message"} <= set(decision)
    await eventually(lambda: agent_under_test.snapshot.desired == count)


@pytest.mark.parametrize(
    "payload",
    [{"count": "4"}, {"count": 4.5}, {"count": True}, {"count": None}, {"count": -1}, {"count": 10**30},
     {"count": 1}, {"count": 7}, {}, {"count": 3, "image": "evil"}, {"count": [3]}],
)
async def test_scale_rejects_invalid(server: ServerInfo, agent_under_test: Any, token: str, payload: dict) -> None:
    reply = await request(server.http_url + "/scale", "POST", json=payload, token=token)
    assert_error(reply, 422)
    if is_double(agent_under_test):
        assert agent_under_test.scale_requests == []


async def test_scale_bad_json(server: ServerInfo, token: str) -> None:
    reply = await request(
        server.http_url + "/scale", "POST", body=b'{"count": ', headers={"Content-Type": "application/json"}, token=token
    )
    assert_error(reply, 400, "bad_json")
    reply = await request(server.http_url + "/scale", "POST", json=[3], token=token)
    assert_error(reply, 422, "invalid_body")


# --------------------------------------------------------------------------- sundown


async def test_sundown(server: ServerInfo, agent_under_test: Any, token: str) -> None:
    name = agent_under_test.snapshot.queue[0].dns_name
    async with open_websocket_url(server.ws_url) as ws:
        with trio.fail_after(5):
            await ws.get_message()
        reply = await request(f"{server.http_url}/containers/{name}/sundown", "POST", token=token)
        assert reply.status == 200, reply.body
        decision = reply.json()
        assert decision["action"] and decision["reason"]
        with trio.fail_after(10):
            while True:
                queue = json.loads(await ws.get_message())
                last = queue[-1]
                if last["dns_name"] == name and last["utilization_category"] == "SUNDOWN":
                    break
        assert last["weight"] == 0


async def test_sundown_unknown_is_404(server: ServerInfo, token: str) -> None:
    url = f"{server.http_url}/containers/no-such-container/sundown"
    assert_error(await request(url, "POST", token=token), 404, "not_found")
    url = f"{server.http_url}/containers/bad%20name/sundown"
    assert_error(await request(url, "POST", token=token), 404, "not_found")


# --------------------------------------------------------------------------- operations


async def test_healthz(server: ServerInfo, agent_under_test: Any) -> None:
    reply = await request(server.http_url + "/healthz")
    assert reply.status == 200 and reply.json()["alive"] is True
    if not is_double(agent_under_test):
        return
    agent_under_test.alive = False
    reply = await request(server.http_url + "/healthz")
    body = assert_error(reply, 503, "not_alive")
    assert body["alive"] is False


async def test_healthz_names_the_role_and_the_leader(server: ServerInfo, agent_under_test: Any) -> None:
    body = (await request(server.http_url + "/healthz")).json()
    lease = agent_under_test.lease
    assert body["role"] == lease.role and body["agent_id"] == lease.me
    assert body["leader"] == (None if lease.holder is None else {
        "id": lease.holder.agent_id, "url": lease.holder.url, "token": lease.holder.token})
    if not is_double(agent_under_test):
        return
    assert body["role"] == "leader"
    agent_under_test.follow("agent-2", "http://10.0.0.2:2550", token=5)
    body = (await request(server.http_url + "/healthz")).json()
    assert body["role"] == "follower" and body["alive"] is True
    assert body["leader"] == {"id": "agent-2", "url": "http://10.0.0.2:2550", "token": 5}


async def test_a_follower_answers_changes_with_409_naming_the_leader(
    server: ServerInfo, agent_under_test: Any, token: str
) -> None:
    if not is_double(agent_under_test):
        return
    agent_under_test.follow("agent-2", "http://10.0.0.2:2550")
    name = agent_under_test.snapshot.scores[0].name
    for method, path, payload in (("POST", "/scale", {"count": 3}),
                                  ("PUT", "/config", {"COOLDOWN_PERIOD": 9}),
                                  ("POST", f"/containers/{name}/sundown", None)):
        reply = await request(server.http_url + path, method, json=payload, token=token)
        body = assert_error(reply, 409, "not_leader")
        assert body["leader"] == "http://10.0.0.2:2550" and body["leader_id"] == "agent-2"
        assert "agent-2" in body["detail"]
        # The token is still checked first: a follower tells nobody anything more.
        assert_error(await request(server.http_url + path, method, json=payload), 401)
    assert not agent_under_test.scale_requests and not agent_under_test.sundown_requests
    assert not agent_under_test.config_updates
    assert agent_under_test.settings.cooldown_period != 9


async def test_readyz(server: ServerInfo, agent_under_test: Any) -> None:
    reply = await request(server.http_url + "/readyz")
    assert reply.status == 200, reply.body
    assert reply.json()["ready"] is True
    if not is_double(agent_under_test):
        return
    agent_under_test.ready = (False, {"engine": "ok", "redis": "connection refused"})
    reply = await request(server.http_url + "/readyz")
    body = assert_error(reply, 503, "not_ready")
    assert body["checks"] == {"engine": "ok", "redis": "connection refused"}
    assert "redis: connection refused" in body["detail"]


async def test_metrics(server: ServerInfo, agent_under_test: Any) -> None:
    reply = await request(server.http_url + "/metrics")
    assert reply.status == 200
    assert reply.headers["content-type"].startswith("text/plain")
    text = reply.text
    first = agent_under_test.snapshot.scores[0]
    assert f'deployment_agent_container_score{{container="{first.name}",kind="overall"}}' in text
    assert f"deployment_agent_containers_desired {float(agent_under_test.snapshot.desired)}" in text
    assert "deployment_agent_tick_duration_seconds_bucket" in text
    role = 1.0 if agent_under_test.lease.role == "leader" else 0.0
    assert f"deployment_agent_leader {role}" in text
    agent_under_test.hub.publish(make_snapshot([("only-one", 70.0)], tick=agent_under_test.snapshot.tick + 1))
    text = (await request(server.http_url + "/metrics")).text
    assert f'container="{first.name}"' not in text
    assert 'deployment_agent_container_category{category="LU",container="only-one"} 1.0' in text
    if is_double(agent_under_test):
        agent_under_test.follow("agent-2", None)
        text = (await request(server.http_url + "/metrics")).text
        assert "deployment_agent_leader 0.0" in text


async def test_dashboard_and_static(server: ServerInfo) -> None:
    reply = await request(server.http_url + "/")
    assert reply.status == 200 and reply.headers["content-type"].startswith("text/html")
    assert "default-src 'self'" in reply.headers["content-security-policy"]
    assert "app.js" in reply.text
    for path, kind in (("/static/app.js", "javascript"), ("/static/style.css", "text/css")):
        reply = await request(server.http_url + path)
        assert reply.status == 200 and kind in reply.headers["content-type"], path


async def test_unknown_path_and_method(server: ServerInfo) -> None:
    assert_error(await request(server.http_url + "/nope"), 404, "not_found")
    reply = await request(server.http_url + "/config", "DELETE")
    assert_error(reply, 405)
    assert "PUT" in reply.headers["allow"]


# --------------------------------------------------------------------------- CORS


async def test_cors_default_any_origin_reads_none_writes(server: ServerInfo, token: str) -> None:
    origin = {"Origin": "https://elsewhere.example"}
    reply = await request(server.http_url + "/queue", headers=origin)
    assert reply.headers["access-control-allow-origin"] == "*"
    pre = await request(
        server.http_url + "/queue", "OPTIONS", headers={**origin, "Access-Control-Request-Method": "GET"}
    )
    assert pre.status == 204 and pre.headers["access-control-allow-origin"] == "*"
    for method, path in (("PUT", "/config"), ("POST", "/scale")):
        pre = await request(
            server.http_url + path, "OPTIONS",
            headers={**origin, "Access-Control-Request-Method": method,
                     "Access-Control-Request-Headers": "authorization, content-type"},
        )
        assert pre.status == 403 and "access-control-allow-origin" not in pre.headers
    # a write carrying a foreign Origin is refused even with the token
    reply = await request(server.http_url + "/scale", "POST", json={"count": 3}, token=token, headers=origin)
    assert_error(reply, 403, "forbidden")
    assert "access-control-allow-origin" not in reply.headers
    # the same origin (the dashboard's) is not "cross-origin"
    own = {"Origin": server.http_url}
    reply = await request(server.http_url + "/scale", "POST", json={"count": 3}, token=token, headers=own)
    assert reply.status == 200, reply.body


async def test_cors_configured_origins(nursery: trio.Nursery) -> None:
    from functools import partial

    from agent.interfaces.web import serve

    from .double import make_settings

    agent = FakeAgent(make_settings(cors_allow_origins=("https://ok.example",)))
    info = await nursery.start(partial(serve, agent, http_port=0, ws_port=0))
    ok = await request(info.http_url + "/stats", headers={"Origin": "https://ok.example"})
    assert ok.headers["access-control-allow-origin"] == "https://ok.example"
    assert "Origin" in ok.headers["vary"]
    other = await request(info.http_url + "/stats", headers={"Origin": "https://no.example"})
    assert other.status == 200 and "access-control-allow-origin" not in other.headers


# --------------------------------------------------------------------------- balancer


async def test_balancer_state_is_read_only(server: ServerInfo, agent_under_test: Any,
                                           token: str) -> None:
    reply = await request(server.http_url + "/balancer")
    assert reply.status == 200
    body = reply.json()
    assert body == agent_under_test.balancer_state()  # BALANCER=none: enabled false
    assert body["enabled"] is False and body["kind"] == "none"
    for method in ("POST", "PUT", "DELETE"):  # no route changes it, token or not
        assert (await request(server.http_url + "/balancer", method, json={},
                              token=token)).status == 405


async def test_queue_and_container_carry_traffic_and_limits(
    server: ServerInfo, agent_under_test: Any
) -> None:
    from dataclasses import replace

    from agent.core.traffic import ServerTraffic

    snap = make_snapshot([("web-1", 91.0), ("web-2", 45.0)], tick=3)
    containers = {"web-1": replace(snap.containers["web-1"], cpus=0.25, memory=64 * 1024**2),
                  "web-2": snap.containers["web-2"]}
    seen = ServerTraffic(carried=True, requests=12, rate=12.0, in_flight=2,
                         response_time=0.020, responses_5xx=1, errors=1, status="UP")
    agent_under_test.hub.publish(replace(snap, containers=containers, traffic={"web-1": seen}))
    body = (await request(server.http_url + "/queue")).json()
    assert set(body["traffic"]) == {"web-1"}
    t = body["traffic"]["web-1"]
    assert (t["in_flight"], t["rate"], t["response_time"], t["status"]) == (2, 12.0, 0.020, "UP")
    assert t["average_response_time"] is None  # NaN: never measured, written as null
    assert body["limits"] == {"web-1": {"cpus": 0.25, "memory": 64 * 1024**2},
                              "web-2": {"cpus": None, "memory": None}}
    one = (await request(server.http_url + "/containers/web-1")).json()
    assert (one["cpus"], one["memory"]) == (0.25, 64 * 1024**2)
    assert one["traffic"]["responses_5xx"] == 1 and one["traffic"]["rate"] == 12.0
    other = (await request(server.http_url + "/containers/web-2")).json()
    assert (other["cpus"], other["memory"], other["traffic"]) == (None, None, None)
