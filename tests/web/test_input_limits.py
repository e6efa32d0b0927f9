"""Bodies a careful attacker sends (issue 10 §1, minor items and run-time limits):
duplicate keys, an empty update, a token holder trying to lift a limit."""
from __future__ import annotations

from typing import Any

from agent.interfaces.web import ServerInfo

from .http import request
from .test_api import assert_error

JSON = {"Content-Type": "application/json"}


async def test_a_key_given_twice_is_refused(server: ServerInfo, token: str, agent_under_test: Any) -> None:
    before = agent_under_test.settings.max_containers
    reply = await request(server.http_url + "/scale", "POST", token=token, headers=JSON,
                          body=b'{"count": 3, "count": 5}')
    body = assert_error(reply, 422, "invalid_body")
    assert "'count' is given twice" in body["detail"]
    reply = await request(server.http_url + "/config", "PUT", token=token, headers=JSON,
                          body=b'{"MAX_CONTAINERS": 3, "MAX_CONTAINERS": 5}')
    assert_error(reply, 422, "invalid_body")
    assert agent_under_test.settings.max_containers == before


async def test_an_empty_config_update_is_refused_and_records_nothing(
    server: ServerInfo, token: str, agent_under_test: Any
) -> None:
    events = len(await agent_under_test.events(limit=500))
    reply = await request(server.http_url + "/config", "PUT", json={}, token=token)
    body = assert_error(reply, 422, "invalid_body")
    assert "at least one setting" in body["detail"]
    assert len(await agent_under_test.events(limit=500)) == events


async def test_a_token_cannot_lift_the_ceiling(server: ServerInfo, token: str, agent_under_test: Any) -> None:
    limit = agent_under_test.settings.max_containers_limit
    reply = await request(server.http_url + "/config", "PUT", json={"MAX_CONTAINERS": 100_000_000},
                          token=token)
    body = assert_error(reply, 422, "invalid_value")
    assert body["variable"] == "MAX_CONTAINERS"
    assert f"1..{limit}" in body["detail"] and "MAX_CONTAINERS_LIMIT" in body["detail"]
    reply = await request(server.http_url + "/scale", "POST", json={"count": limit + 1}, token=token)
    assert_error(reply, 422)


async def test_out_of_range_numbers_are_refused_naming_the_range(server: ServerInfo, token: str) -> None:
    for name, value, expect in (("COOLDOWN_PERIOD", 1e9, "[0, 3600]"),
                                ("SCALE_CHECK_PERIOD", 1e-6, "[0.1, 3600]"),
                                ("PROBE_TIMEOUT", 86400, "[0.01, 60]")):
        reply = await request(server.http_url + "/config", "PUT", json={name: value}, token=token)
        body = assert_error(reply, 422, "invalid_value")
        assert body["variable"] == name and expect in body["detail"], body


async def test_the_document_states_the_run_time_ranges(server: ServerInfo, agent_under_test: Any) -> None:
    doc = (await request(server.http_url + "/openapi.json")).json()
    patch = doc["components"]["schemas"]["ConfigPatch"]
    assert patch["minProperties"] == 1
    ranges = patch["x-runtime-ranges"]
    assert ranges["COOLDOWN_PERIOD"] == {"minimum": 0, "maximum": 3600}
    assert ranges["MAX_CONTAINERS"] == {"minimum": 1, "maximum": agent_under_test.settings.max_containers_limit}
    assert ranges["EMA_ALPHA"] == {"minimum": 0, "exclusiveMinimum": True, "maximum": 1}
    assert "FLAP_GUARD" not in ranges
