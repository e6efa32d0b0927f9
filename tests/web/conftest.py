"""Fixtures of the web tests: an agent, a real server on port 0, polling.

`agent_under_test` is the single seam: by default it is the in-memory
`FakeAgent` (tests/web/double.py). To run the same tests against the real
runtime, override the fixture where the real agent can be built, e.g. a
``tests/integration/web/conftest.py`` that defines ``agent_under_test`` (yield
an `agent.service.runtime.Agent` running in the test's nursery) next to a module doing
``from tests.web.test_api import *``. Tests only use the facade
(``agent.hub.publish`` to change the queue); the few that need the double's
knobs check `is_double(agent)` and skip otherwise.
"""
from __future__ import annotations

from functools import partial
from typing import Any

import pytest
import trio

from agent.interfaces.web import ServerInfo, serve

from .double import FakeAgent


@pytest.fixture
def agent_under_test() -> Any:
    return FakeAgent()


@pytest.fixture
def token(agent_under_test: Any) -> str:
    from agent.interfaces.web.security import api_token

    value = api_token(agent_under_test.settings)
    assert value, "the agent under test has no API token"
    return value


@pytest.fixture
async def server(nursery: trio.Nursery, agent_under_test: Any) -> ServerInfo:
    """The agent's web app served on 127.0.0.1, both ports chosen by the OS."""
    return await nursery.start(
        partial(serve, agent_under_test, host="127.0.0.1", http_port=0, ws_port=0)
    )
