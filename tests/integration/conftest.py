"""Integration fixtures: close every Agent a test made (no leaked sockets)."""
from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from . import agent_harness


@pytest.fixture(autouse=True)
async def _close_agents() -> AsyncIterator[None]:
    yield
    while agent_harness.CREATED:
        await agent_harness.CREATED.pop().aclose()
