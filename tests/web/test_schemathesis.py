"""schemathesis against /openapi.json on a running server.

Every operation, positive and negative examples (bounded, derandomized), with
and without the token; checks: no 5xx, every status and content type
documented, every response matching its schema, every schema-violating request
rejected, auth not ignored. The server runs on a real socket in a background
thread (schemathesis' Python API is synchronous).

The agent comes from `live_agent_factory`; override it (an async context
manager factory, entered in the server's Trio loop) to run this against the
real runtime.
"""
from __future__ import annotations

import threading
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from functools import partial
from typing import Any

import pytest
import requests
import schemathesis
import trio
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    ignored_auth,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from agent.interfaces.web import ServerInfo, serve
from agent.interfaces.web.security import api_token

from .double import FakeAgent

EXAMPLES = 30
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    negative_data_rejection,
    ignored_auth,
]


@dataclass
class Live:
    info: ServerInfo
    token: str
    restore_config: dict[str, Any]


@pytest.fixture(scope="module")
def live_agent_factory() -> Callable[[], AbstractAsyncContextManager[Any]]:
    @asynccontextmanager
    async def make() -> AsyncIterator[Any]:
        yield FakeAgent()

    return make


@pytest.fixture(scope="module")
def live(live_agent_factory: Callable[[], AbstractAsyncContextManager[Any]]) -> Iterator[Live]:
    started = threading.Event()
    box: dict[str, Any] = {}

    async def main() -> None:
        async with live_agent_factory() as agent:
            async with trio.open_nursery() as nursery:
                box["info"] = await nursery.start(partial(serve, agent, http_port=0, ws_port=0))
                box["agent"] = agent
                box["cancel"] = nursery.cancel_scope.cancel
                box["trio_token"] = trio.lowlevel.current_trio_token()
                started.set()

    def run() -> None:
        try:
            trio.run(main)
        except BaseException as exc:  # surfaced by the fixture below
            box["error"] = exc
        finally:
            started.set()

    thread = threading.Thread(target=run, name="schemathesis-server", daemon=True)
    thread.start()
    assert started.wait(60), "server did not start"
    if "error" in box:
        raise box["error"]
    agent = box["agent"]
    try:
        yield Live(box["info"], api_token(agent.settings) or "", writable_config(agent))
    finally:
        trio.from_thread.run_sync(box["cancel"], trio_token=box["trio_token"])
        thread.join(30)
        assert not thread.is_alive(), "server thread did not stop"
        if "error" in box:
            raise box["error"]


@pytest.fixture(scope="module")
def api(live: Live) -> Any:
    return schemathesis.openapi.from_url(live.info.http_url + "/openapi.json")


def _operations(api: Any) -> list[Any]:
    return [result.ok() for result in api.get_all_operations()]


def test_schema_loads_and_lists_every_operation(api: Any) -> None:
    ops = {(op.method.upper(), op.path) for op in _operations(api)}
    # (schemathesis leaves out the document's own URL, /openapi.json)
    assert ops == {
        ("GET", "/stats"), ("GET", "/ws"), ("GET", "/queue"), ("GET", "/containers/{name}"),
        ("POST", "/containers/{name}/sundown"), ("GET", "/events"), ("GET", "/history"),
        ("GET", "/config"), ("PUT", "/config"), ("POST", "/scale"), ("GET", "/healthz"),
        ("GET", "/readyz"), ("GET", "/metrics"), ("GET", "/"),
    }


@pytest.mark.parametrize("authenticated", [True, False], ids=["token", "no-token"])
@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=["positive", "negative"])
def test_api_conforms_to_its_schema(api: Any, live: Live, mode: GenerationMode, authenticated: bool) -> None:
    failures = conformance_failures(api, live.info.http_url, live.token, live.restore_config, mode, authenticated)
    assert not failures, "\n\n".join(failures)


def conformance_failures(
    api: Any,
    base_url: str,
    token: str,
    restore_config: dict[str, Any],
    mode: GenerationMode,
    authenticated: bool,
    examples: int = EXAMPLES,
) -> list[str]:
    """Run every operation of `api` (a loaded schema) against `base_url`; the failures.

    Synchronous (schemathesis sends with requests): from a Trio test, call it
    through ``trio.to_thread.run_sync`` while the server runs in the test's loop.
    """
    session = requests.Session()
    headers = {"Authorization": f"Bearer {token}"} if authenticated else {}
    failures: list[str] = []

    for operation in [result.ok() for result in api.get_all_operations()]:
        if operation.path == "/ws":
            continue  # a WebSocket upgrade; covered by test_api/test_serving
        strategy = operation.as_strategy(generation_mode=mode)

        @given(case=strategy)
        @settings(
            max_examples=examples,
            deadline=None,
            derandomize=True,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def run(case: Any) -> None:
            try:
                case.call_and_validate(session=session, headers=dict(headers), checks=CHECKS, timeout=10)
            finally:
                if operation.path == "/config" and operation.method.upper() == "PUT":
                    # keep the bounds the document was loaded with
                    session.put(
                        base_url + "/config",
                        json=restore_config,
                        headers={"Authorization": f"Bearer {token}"},
                        timeout=10,
                    ).raise_for_status()

        try:
            run()
        except Unsatisfiable:
            # negative mode on an operation with no parameter and no body:
            # there is nothing to make invalid
            assert mode is GenerationMode.NEGATIVE, operation.path
        except (Exception, BaseExceptionGroup) as exc:  # collect every operation's failures
            failures.append(f"{operation.method.upper()} {operation.path}: {_describe(exc)}")
    session.close()
    return failures


def writable_config(agent: Any) -> dict[str, Any]:
    """The agent's current run-time settings, to PUT back after fuzzing PUT /config."""
    from agent.interfaces.web.inputs import writable_settings
    from agent.interfaces.web.views import config_json

    current = config_json(agent.settings)
    # An unset optional setting (null) cannot be PUT; it stays unset anyway.
    return {k: current[k] for k in writable_settings(current) if current[k] is not None}


def _describe(exc: BaseException) -> str:
    parts = [f"{type(exc).__name__}: {exc}"]
    for sub in getattr(exc, "exceptions", ()):
        parts.append("  " + _describe(sub).replace("\n", "\n  "))
    return "\n".join(parts)
