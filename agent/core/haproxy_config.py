"""The embedded HAProxy's configuration, generated as text (pure; the adapter writes it).

One frontend on ``BALANCER_BIND:BALANCER_PORT``, one backend without servers (the
agent adds them at run time through the admin socket), and the settings that make
a drained or removed worker never fail a request:

- ``option redispatch 1`` + ``retries 3``: a failed connection is retried on
  another server, at every retry.
- ``retry-on conn-failure empty-response``: Docker's userland proxy accepts a
  connection on the published port even when nothing listens in the container,
  then closes it; HAProxy sees an *empty response*, not a connection failure, and
  without this turns it into a 502. Only safe methods are retried after the
  request was sent (``http-request disable-l7-retry unless METH_GET ...``): a POST
  that reached a worker which then died is never sent twice.
- a layer-7 health check (``option httpchk``): a TCP check always passes through
  the userland proxy. With `health_path` unset it asks for ``/`` and any answer
  below 500 counts as alive.

`CheckParams` is the one source of the health-check timings: the same words go to
``default-server`` here and to every ``add server`` (HAProxy 2.6 does not apply
``default-server`` to servers added at run time).
"""
from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field

from agent.core.errors import ConfigError

__all__ = [
    "DYNAMIC_ALGORITHMS",
    "CheckParams",
    "EmbeddedConfig",
    "check_algorithm",
    "render_config",
]

# Algorithms whose weights can change at run time and that accept `add server`.
# (`first` is dynamic too, but ignores weights; hash algorithms are static.)
DYNAMIC_ALGORITHMS = ("roundrobin", "leastconn", "random")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
_PATH = re.compile(r"/[A-Za-z0-9._~!$&'()*+,=:@%/?-]*")


def check_algorithm(algorithm: str, variable: str = "BALANCER_ALGORITHM") -> str:
    """`algorithm` if runtime weights work with it, else a `ConfigError` saying why."""
    if algorithm not in DYNAMIC_ALGORITHMS:
        raise ConfigError(
            variable,
            f"balancing algorithm {algorithm!r} does not accept runtime weights or "
            f"servers; use one of {', '.join(DYNAMIC_ALGORITHMS)}",
        )
    return algorithm


@dataclass(frozen=True, slots=True, kw_only=True)
class CheckParams:
    """Health-check timings of every server (milliseconds and counts).

    A server HAProxy 2.6 adds at run time is UP as soon as it is set ready, before
    any check ran; checks then take it out after `fall` failures. `downinter`
    paces the checks of a down server, so a recovered worker returns quickly.
    `timeout_ms` is how long a check may take (``timeout check``; `inter_ms` when
    None).

    The defaults are lenient on purpose: a worker that is merely saturated answers
    its check late, and taking it out of rotation would pile its load on the
    others (when all are saturated, every request would get a 503). The agent
    drains and removes workers itself; checks are for those that died: three
    failed checks two seconds apart, each allowed three seconds.
    """

    inter_ms: int = 2000
    fastinter_ms: int = 1000
    downinter_ms: int = 1000
    rise: int = 2
    fall: int = 3
    timeout_ms: int | None = 3000

    def __post_init__(self) -> None:
        for name in ("inter_ms", "fastinter_ms", "downinter_ms", "rise", "fall", "timeout_ms"):
            value = getattr(self, name)
            if name == "timeout_ms" and value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")

    def server_words(self) -> str:
        return (
            f"check inter {self.inter_ms} fastinter {self.fastinter_ms} "
            f"downinter {self.downinter_ms} rise {self.rise} fall {self.fall}"
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class EmbeddedConfig:
    """Everything the generated file depends on. Two equal values give equal text."""

    socket_path: str
    pid_path: str
    bind: str = "127.0.0.1"
    port: int = 8080
    algorithm: str = "roundrobin"
    backend: str = "pool"
    frontend: str = "app"
    health_path: str | None = None
    check: CheckParams = field(default_factory=CheckParams)
    connect_timeout_ms: int = 2000
    client_timeout_ms: int = 60_000
    server_timeout_ms: int = 60_000
    queue_timeout_ms: int = 10_000
    retries: int = 3
    maxconn: int = 4096

    def __post_init__(self) -> None:
        check_algorithm(self.algorithm)
        if isinstance(self.port, bool) or not isinstance(self.port, int) or not 1 <= self.port <= 65535:
            raise ConfigError("BALANCER_PORT", f"must be a port 1..65535, got {self.port!r}")
        if not re.fullmatch(r"[A-Za-z0-9_.:-]+", self.bind):
            raise ConfigError("BALANCER_BIND", f"must be an address, got {self.bind!r}")
        for name in ("backend", "frontend"):
            if not _NAME.fullmatch(getattr(self, name)):
                raise ValueError(f"{name} name {getattr(self, name)!r} is not a valid HAProxy name")
        if self.health_path is not None and not _PATH.fullmatch(self.health_path):
            raise ConfigError("HEALTH_PATH", f"must be a URL path starting with '/', got "
                              f"{self.health_path!r}")
        for name in ("socket_path", "pid_path"):
            value = getattr(self, name)
            if not value.startswith("/") or any(c.isspace() or c in "#\"'\\" for c in value):
                raise ValueError(f"{name} must be an absolute path without spaces or quotes, "
                                 f"got {value!r}")

    @property
    def frontend_address(self) -> str:
        host = f"[{self.bind}]" if ":" in self.bind else self.bind
        return f"{host}:{self.port}"


def render_config(config: EmbeddedConfig) -> str:
    """The haproxy.cfg text of the embedded balancer."""
    c = config
    if c.health_path is None:
        check = ("    option httpchk GET /\n"
                 "    http-check expect rstatus ^[1-4]\n")
    else:
        check = (f"    option httpchk GET {c.health_path}\n"
                 "    http-check expect status 200-399\n")
    return (
        "# Generated by deployment-agent for its embedded load balancer: rewritten each\n"
        "# time the agent starts haproxy. Servers are added at run time through the\n"
        "# admin socket; stop it with: kill $(cat " + c.pid_path + ")\n"
        "global\n"
        f"    stats socket {c.socket_path} mode 600 level admin expose-fd listeners\n"
        "    stats timeout 30s\n"
        f"    pidfile {c.pid_path}\n"
        f"    maxconn {c.maxconn}\n"
        "\n"
        "defaults\n"
        "    mode http\n"
        f"    timeout connect {c.connect_timeout_ms}ms\n"
        f"    timeout client {c.client_timeout_ms}ms\n"
        f"    timeout server {c.server_timeout_ms}ms\n"
        f"    timeout queue {c.queue_timeout_ms}ms\n"
        "    timeout http-request 10s\n"
        "    timeout http-keep-alive 10s\n"
        f"    timeout check {c.check.timeout_ms or c.check.inter_ms}ms\n"
        f"    retries {c.retries}\n"
        "    option redispatch 1\n"
        "    retry-on conn-failure empty-response\n"
        "\n"
        f"frontend {c.frontend}\n"
        f"    bind {_bind_address(c.bind)}:{c.port}\n"
        f"    default_backend {c.backend}\n"
        "\n"
        f"backend {c.backend}\n"
        f"    balance {c.algorithm}\n"
        + check +
        "    http-request disable-l7-retry unless METH_GET || METH_OPTIONS\n"
        f"    default-server {c.check.server_words()}\n"
    )


def _bind_address(bind: str) -> str:
    try:
        if ipaddress.ip_address(bind).version == 6:
            return f"[{bind}]"
    except ValueError:
        pass
    return bind
