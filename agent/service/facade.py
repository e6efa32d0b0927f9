"""What the web layer and the CLI may use of the agent, as a `typing.Protocol`.

The interfaces never reach into the tick loop: they read the latest snapshot,
the settings, the history and the lease (this agent's role), subscribe to the
hub, render the metrics, and ask for changes through three requests that the
agent validates and records — and refuses with `NotLeader` while it follows. Typing
them against this protocol (not `Any`, not the concrete `Agent`) lets mypy check
that the real `agent.service.runtime.Agent` and the web tests' double
(`tests/web/double.py`) offer exactly this, with the same signatures.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from agent.core.lease import LeaseView
from agent.core.records import Snapshot
from agent.core.settings import Settings
from agent.service.hub import Hub
from agent.service.metrics import Metrics

__all__ = ["AgentFacade"]


class AgentFacade(Protocol):
    """The agent as its interfaces see it."""

    @property
    def settings(self) -> Settings:
        """The effective settings (replaced, never mutated, by `update_config`)."""

    @property
    def hub(self) -> Hub:
        """Where every tick's snapshot is published (the WebSocket feed subscribes)."""

    @property
    def snapshot(self) -> Snapshot:
        """The newest snapshot."""

    @property
    def metrics(self) -> Metrics:
        """The Prometheus registry the agent records into."""

    @property
    def history(self) -> Sequence[tuple[float, int, int]]:
        """(time, desired, running) points, oldest first, bounded."""

    @property
    def lease(self) -> LeaseView:
        """This agent's role and the leader (id, URL, fencing token) as it last saw it."""

    async def update_config(self, partial: Mapping[str, object]) -> Settings:
        """Apply run-time settings; ConfigError naming the key if one is invalid;
        NotLeader (naming the leader) on a follower."""

    async def request_scale(self, count: int) -> dict[str, Any]:
        """Run exactly `count` containers; the decision as the ledger records it;
        NotLeader on a follower."""

    async def request_sundown(self, name: str) -> dict[str, Any]:
        """Drain one owned container; ContainerNotFound if there is none of that name;
        NotLeader on a follower."""

    async def events(
        self, limit: int = 50, before: str | None = None, kind: str | None = None
    ) -> list[dict[str, Any]]:
        """The decision ledger, newest first."""

    def health(self) -> dict[str, Any]:
        """Liveness: ``{"alive": bool, "last_tick_age": seconds | None, ...}``."""

    async def readiness(self) -> tuple[bool, dict[str, str]]:
        """Whether the engine and the store answer now (and the balancer did at its
        last call), with a reason per component."""

    def balancer_state(self) -> dict[str, Any]:
        """The load balancer's state: servers, weights sent, last sync, errors
        (``{"enabled": false, ...}`` without one). No I/O."""

    async def aclose(self) -> None:
        """Release the agent's clients."""
