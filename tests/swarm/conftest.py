"""The swarm tests use the agent's own image (the collector runs from it)."""
from tests.image.conftest import agent_image  # noqa: F401  (the session fixture, shared)
