"""Integration fixtures: close every Agent a test made (no leaked sockets)."""
from __future__ import annotations

from collections.abc import Iterator

import pytest

from . import agent_harness


@pytest.fixture(autouse=True)
def _close_agents() -> Iterator[None]:
    # Synchronous, so that it also serves the tests that are not Trio tests.
    yield
    while agent_harness.CREATED:
        agent = agent_harness.CREATED.pop()
        agent.engine.close()
        agent.store.close()
        agent.sampler.close()
