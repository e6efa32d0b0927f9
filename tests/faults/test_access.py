"""Token, CORS and ownership on every mutating endpoint of the real agent (the list
comes from its own OpenAPI document, so an endpoint added later is covered): no
refused request changes anything, and no container without our labels is touched."""
from __future__ import annotations

from typing import Any

from agent.adapters.docker_engine import APP_LABEL, OWNER_LABEL, OWNER_VALUE

from . import report
from .harness import Pool, losses, poll

ALLOWED = "https://ops.example"
EVIL = "https://evil.example"
MUTATING = ("PUT", "POST", "PATCH", "DELETE")


def mutations(agent) -> list[tuple[str, str]]:
    doc = agent.api("/openapi.json").json()
    return sorted((method.upper(), path) for path, item in doc["paths"].items()
                  for method in item if method.upper() in MUTATING)


def sample(path: str, name: str, desired: int) -> tuple[str, Any]:
    """A request the endpoint would accept with the token (the path filled in)."""
    bodies = {"/config": {"SCALE_STEP": 1}, "/scale": {"count": desired}}
    return path.replace("{name}", name), bodies.get(path, {})


def state(agent, pool: Pool) -> tuple[Any, ...]:
    config = agent.api("/config").json()
    return agent.queue()["desired"], config["SCALE_STEP"], tuple(sorted(pool.read().states.items()))


def test_token_cors_and_ownership_on_every_mutating_endpoint(docker_app, docker_client, redis_url,
                                                             agents):
    agent = agents({**docker_app.env(), "REDIS_URL": redis_url, "DEFAULT_CONTAINER": "2",
                    "MAX_CONTAINERS": "3", "CORS_ALLOW_WRITE_ORIGINS": ALLOWED})
    agent.start()
    agent.wait_ready()
    pool = Pool(docker_client, docker_app.app_identifier)
    poll(lambda: not losses(pool, agent, desired=2), timeout=60, message=f"settled\n{agent.tail()}")
    foreign = [docker_app.run_foreign(),  # same image, no labels
               docker_app.run_foreign(labels={OWNER_LABEL: OWNER_VALUE, APP_LABEL: "another-app"}),
               docker_app.run_foreign(labels={APP_LABEL: docker_app.app_identifier})]
    foreign_names = [docker_client.api.inspect_container(c)["Name"].lstrip("/") for c in foreign]
    owned = sorted(pool.read().running)[0]
    before = state(agent, pool)
    endpoints = mutations(agent)
    assert ("POST", "/scale") in endpoints and ("PUT", "/config") in endpoints
    checked = 0
    for method, template in endpoints:
        path, body = sample(template, owned, 2)
        refusals = {
            "no token": ({}, 401),
            "wrong token": ({"Authorization": "Bearer not-the-token"}, 403),
            "not Bearer": ({"Authorization": f"Basic {agent.token}"}, 401),
            "token in the query": ({}, 401),
            "foreign origin": ({"Authorization": f"Bearer {agent.token}", "Origin": EVIL}, 403),
        }
        for what, (headers, status) in refusals.items():
            target = path + (f"?token={agent.token}" if what == "token in the query" else "")
            reply = agent.api(target, method, body=body, headers=headers)
            assert reply.status == status, (method, path, what, reply.status, reply.text)
            assert set(reply.json()) >= {"error", "detail"}
            checked += 1
        preflight = {"Origin": EVIL, "Access-Control-Request-Method": method}
        reply = agent.api(path, "OPTIONS", headers=preflight)
        assert reply.status == 403 and "access-control-allow-origin" not in reply.headers
        reply = agent.api(path, "OPTIONS", headers={**preflight, "Origin": ALLOWED})
        assert reply.status == 204 and reply.headers["access-control-allow-origin"] == ALLOWED
        checked += 2
    assert state(agent, pool) == before, "a refused request changed something"

    # Ownership: with the token, nothing without both labels can be drained or read.
    for name in (*foreign_names, "../" + owned, owned + "/../x"):
        for method, path in (("POST", f"/containers/{name}/sundown"), ("GET", f"/containers/{name}")):
            reply = agent.api(path, method, token=agent.token)
            assert reply.status == 404, (method, path, reply.status, reply.text)
            checked += 1
    assert state(agent, pool) == before
    for cid in foreign:
        assert docker_client.api.inspect_container(cid)["State"]["Status"] == "running"
    names_in_queue = {i["dns_name"] for i in agent.queue()["queue"]}
    assert not names_in_queue & set(foreign_names)
    report.record(
        f"token, CORS and ownership on every mutating endpoint ({len(endpoints)})",
        lost=losses(pool, agent, desired=2), recovery="— (nothing to recover from)",
        detail=f"{checked} refused requests (no/wrong/Basic/query token, foreign Origin, "
        "preflights, 3 foreign containers incl. same image and half-labelled): each 401/403/404 "
        "as JSON, state and foreign containers unchanged",
    )
