"""The project's exception hierarchy.

Library errors (docker-py, redis-py, OS errors) are translated into these once, at
the adapter boundary, so the runtime only ever handles our own types::

    AgentError
    ├── ConfigError          bad setting; names the variable (exit code 2)
    ├── EngineError          the container engine failed or is unreachable
    │   └── ContainerNotFound
    ├── StoreError           Redis failed or is unreachable
    ├── BalancerError        the load balancer failed, is unreachable or refused
    └── NotOwnedError        refused: the container lacks the agent's labels
"""
from __future__ import annotations

__all__ = [
    "AgentError",
    "ConfigError",
    "EngineError",
    "ContainerNotFound",
    "StoreError",
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


class ContainerNotFound(EngineError):
    """The named container does not exist (any more)."""


class StoreError(AgentError):
    """The state store (Redis) failed or could not be reached."""


class BalancerError(AgentError):
    """The load balancer (HAProxy) failed, could not be reached, or refused a command.

    The balancer adapters return it inside their reports rather than raising it
    into the tick loop: the data plane being away must not stop the control plane.
    """


class NotOwnedError(AgentError):
    """The container does not carry this agent's owner and app labels."""
