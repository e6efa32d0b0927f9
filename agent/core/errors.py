"""The project's exception hierarchy.

Library errors (docker-py, redis-py, OS errors) are translated into these once, at
the adapter boundary, so the runtime only ever handles our own types::

    AgentError
    ├── ConfigError          bad setting; names the variable (exit code 2)
    ├── EngineError          the container engine failed or is unreachable
    │   ├── EngineUnreachable  no answer at all (connection refused, reset, timed out)
    │   └── ContainerNotFound
    ├── StoreError           Redis failed or is unreachable
    │   ├── FencedOut        Redis refused a write that acts: the lease is another's
    │   └── CorruptStateError  some stored values do not decode (the rest is kept)
    ├── NotLeader            refused: another agent leads the pool (HTTP 409)
    ├── BalancerError        the load balancer failed, is unreachable or refused
    └── NotOwnedError        refused: the container lacks the agent's labels
"""
from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from agent.core.store_codec import StoredState

__all__ = [
    "AgentError",
    "ConfigError",
    "EngineError",
    "EngineUnreachable",
    "ContainerNotFound",
    "StoreError",
    "FencedOut",
    "NotLeader",
    "CorruptStateError",
    "BalancerError",
    "NotOwnedError",
]


class AgentError(Exception):
    """Base of every error the agent raises on purpose."""


class ConfigError(AgentError, ValueError):
    """A setting is invalid. `variable` is the name the user wrote it under."""

    def __init__(self, variable: str, reason: str) -> None:
        super().__init__(f"{variable}: {reason}")
        self.variable = variable
        self.reason = reason


class EngineError(AgentError):
    """The container engine failed or could not be reached."""


class EngineUnreachable(EngineError):
    """The engine did not answer at all: whatever was asked of it (list, create,
    remove) failed for that one reason, which is one outage, not many failures."""


class ContainerNotFound(EngineError):
    """The named container does not exist (any more)."""


class StoreError(AgentError):
    """The state store (Redis) failed or could not be reached."""


class FencedOut(StoreError):
    """A write that acts was refused by Redis: this agent's fencing token is stale
    (another agent holds the leader lease, or nobody does). Nothing of it applied."""


class NotLeader(AgentError):
    """This agent does not lead the pool, so it does not act: ask the leader.

    `leader_id` and `leader_url` name the leader as this agent last saw it (None
    when no agent holds the lease, e.g. while Redis is unreachable).
    """

    def __init__(self, message: str, *, leader_id: str | None = None,
                 leader_url: str | None = None) -> None:
        super().__init__(message)
        self.leader_id = leader_id
        self.leader_url = leader_url


class CorruptStateError(StoreError):
    """Some values stored in Redis do not decode.

    `partial` is everything that did (a `StoredState` whose `problems` name what
    was left out): a caller that must not act on a corrupt store raises on; the
    agent's recovery keeps the rest, as one bad key must not cost the whole state.
    """

    def __init__(self, message: str, partial: StoredState) -> None:
        super().__init__(message)
        self.partial = partial


class BalancerError(AgentError):
    """The load balancer (HAProxy) failed, could not be reached, or refused a command.

    The balancer adapters return it inside their reports rather than raising it
    into the tick loop: the data plane being away must not stop the control plane.
    """


class NotOwnedError(AgentError):
    """The container does not carry this agent's owner and app labels."""
