"""agent.interfaces.web.openapi: the document describes exactly the app's routes.

It is built from the app itself (each route's declaration), for the settings given.
"""
from __future__ import annotations

from typing import Any

import pytest
import schemathesis

from agent.core.settings import Settings
from agent.interfaces.web import create_app
from agent.interfaces.web.inputs import config_value_ok
from agent.interfaces.web.openapi import build as build_from_app
from agent.interfaces.web.views import config_value_schema
from tests.web.double import TOKEN, FakeAgent, make_settings


def build(settings: Settings) -> dict[str, Any]:
    """The document an agent with `settings` serves at /openapi.json."""
    return build_from_app(create_app(FakeAgent(settings)), settings)

HTTP_METHODS = {"GET", "PUT", "POST", "DELETE", "PATCH"}


@pytest.fixture
def agent() -> FakeAgent:
    return FakeAgent()


@pytest.fixture
def doc(agent: FakeAgent) -> dict[str, Any]:
    return build(agent.settings)


def routes(agent: FakeAgent) -> set[tuple[str, str]]:
    app = create_app(agent)
    out = set()
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static":
            continue
        path = rule.rule.replace("<name>", "{name}")
        for method in (rule.methods or set()) & HTTP_METHODS:
            out.add((method, path))
    return out


def test_every_route_is_documented_and_nothing_else(agent: FakeAgent, doc: dict[str, Any]) -> None:
    documented = {(m.upper(), p) for p, item in doc["paths"].items() for m in item}
    assert documented == routes(agent)


def test_document_loads_in_schemathesis(doc: dict[str, Any]) -> None:
    schema = schemathesis.openapi.from_dict(doc)
    ops = [r.ok() for r in schema.get_all_operations()]
    assert len(ops) == sum(len(item) for item in doc["paths"].values())


def test_every_ref_resolves(doc: dict[str, Any]) -> None:
    schemas = doc["components"]["schemas"]

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if ref is not None:
                assert ref.startswith("#/components/schemas/") and ref.rsplit("/", 1)[1] in schemas, ref
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(doc)


def test_mutations_declare_the_bearer_token(doc: dict[str, Any]) -> None:
    for path, item in doc["paths"].items():
        for method, op in item.items():
            if method in ("put", "post"):
                assert op["security"] == [{"bearerAuth": []}], path
                assert {"401", "403"} <= set(op["responses"]), path
            else:
                assert "security" not in op, path


def test_a_route_without_a_declaration_is_an_error(agent: FakeAgent) -> None:
    app = create_app(agent)

    @app.get("/undocumented")
    async def undocumented() -> str:
        return "?"

    with pytest.raises(LookupError, match="/undocumented"):
        build_from_app(app, agent.settings)


async def test_the_served_document_follows_the_running_settings(agent: FakeAgent) -> None:
    app = create_app(agent)
    client = app.test_client()
    auth = {"Authorization": f"Bearer {TOKEN}"}
    reply = await client.put("/config", json={"MAX_CONTAINERS": 9}, headers=auth)
    assert reply.status_code == 200
    doc = await (await client.get("/openapi.json")).get_json()
    count = doc["components"]["schemas"]["ScaleRequest"]["properties"]["count"]
    assert (count["minimum"], count["maximum"]) == (agent.settings.default_container, 9)
    assert (await client.post("/scale", json={"count": 9}, headers=auth)).status_code == 200
    assert (await client.post("/scale", json={"count": 10}, headers=auth)).status_code == 422


def test_scale_bounds_follow_the_settings() -> None:
    doc = build(make_settings(default_container=3, max_containers=9))
    count = doc["components"]["schemas"]["ScaleRequest"]["properties"]["count"]
    assert (count["minimum"], count["maximum"]) == (3, 9)


def test_config_patch_lists_only_runtime_settings(doc: dict[str, Any]) -> None:
    from agent.core.settings import RUNTIME_MUTABLE

    patch = doc["components"]["schemas"]["ConfigPatch"]
    assert patch["additionalProperties"] is False
    assert set(patch["properties"]) == set(RUNTIME_MUTABLE)
    for never in ("DOCKER_IMAGE", "DOCKER_HOST", "AGENT_API_TOKEN", "TARGET_PORT", "APP_IDENTIFIER"):
        assert never not in patch["properties"]
    assert patch["properties"]["MAX_CONTAINERS"] == {"type": "integer"}
    assert patch["properties"]["HIGH_LOAD_THRESHOLD"] == {"type": "number"}
    assert patch["properties"]["FLAP_GUARD"] == {"type": "boolean"}


def test_no_request_can_name_an_image_or_a_command(doc: dict[str, Any]) -> None:
    forbidden = {"image", "docker_image", "command", "cmd", "entrypoint", "args", "container_id"}
    schemas = doc["components"]["schemas"]
    for item in doc["paths"].values():
        for op in item.values():
            body = op.get("requestBody")
            if body is None:
                continue
            ref = body["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[1]
            props = {p.lower() for p in schemas[ref].get("properties", {})}
            assert not props & forbidden, (ref, props & forbidden)
            assert schemas[ref].get("additionalProperties") is False, ref


@pytest.mark.parametrize(
    ("current", "good", "bad"),
    [
        (5, [0, 7, -1], [5.0, "5", True, None, [5]]),
        (0.5, [1, 0.25, -3.5], ["0.5", True, None, float("nan"), float("inf")]),
        (True, [False], [0, "true", None]),
        ("INFO", ["DEBUG"], [1, None, ["x"]]),
        (None, ["x", 1, 2.5, False, None], [[1], {"a": 1}, float("nan")]),
    ],
)
def test_config_value_typing(current: Any, good: list[Any], bad: list[Any]) -> None:
    assert config_value_schema(current)
    for value in good:
        assert config_value_ok(value, current), value
    for value in bad:
        assert not config_value_ok(value, current), value
