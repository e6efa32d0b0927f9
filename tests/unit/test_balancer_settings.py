"""The balancer's settings: one row each, how they combine, and the exact errors."""
from __future__ import annotations

import pytest

from agent.adapters.config_sources import load_settings
from agent.core.errors import ConfigError
from agent.core.haproxy_config import DYNAMIC_ALGORITHMS
from agent.core.settings_table import BALANCER_ALGORITHMS, RUNTIME_MUTABLE

BASE = {"DOCKER_IMAGE": "worker:latest", "TARGET_PORT": "8080"}


def load(extra: dict[str, str]):
    return load_settings(environ={**BASE, **extra}, env_file=None)


@pytest.mark.parametrize("extra, mode, url", [
    ({}, "none", None),
    ({"BALANCER": "haproxy"}, "embedded", "http://127.0.0.1:8080/"),
    ({"BALANCER": "HAProxy", "BALANCER_BIND": "::1", "BALANCER_PORT": "9000"},
     "embedded", "http://[::1]:9000/"),
    ({"BALANCER": "haproxy", "HAPROXY_SOCKET": "/run/haproxy.sock", "HAPROXY_BACKEND": "web"},
     "external", None),
    ({"BALANCER": "haproxy", "HAPROXY_SOCKET": "127.0.0.1:9999", "HAPROXY_BACKEND": "web"},
     "external", None),
    # the agent's ports only clash with the embedded balancer's
    ({"BALANCER_PORT": "2550"}, "none", None),
    ({"BALANCER": "haproxy", "HAPROXY_SOCKET": "/s", "HAPROXY_BACKEND": "b",
      "BALANCER_PORT": "2550"}, "external", None),
])
def test_how_the_balancer_settings_combine(extra, mode, url) -> None:
    settings = load(extra)
    assert settings.balancer_mode == mode
    assert settings.application_url == url


@pytest.mark.parametrize("extra, variable, words", [
    ({"BALANCER": "nginx"}, "BALANCER", "must be one of none, haproxy, got 'nginx'"),
    ({"BALANCER_ALGORITHM": "source"}, "BALANCER_ALGORITHM",
     "must be one of roundrobin, leastconn, random, got 'source'"),
    ({"BALANCER_PORT": "0"}, "BALANCER_PORT", "must be an integer in 1..65535"),
    ({"BALANCER_BIND": "a b"}, "BALANCER_BIND", "must be a host name or IP address"),
    ({"HAPROXY_SOCKET": "localhost"}, "HAPROXY_SOCKET", "must be a unix socket path or host:port"),
    ({"HAPROXY_BACKEND": "a;b", "HAPROXY_SOCKET": "/s"}, "HAPROXY_BACKEND",
     "must be the name of an HAProxy backend"),
    ({"BALANCER": "haproxy", "HAPROXY_SOCKET": "/s"}, "HAPROXY_BACKEND",
     "is required with HAPROXY_SOCKET ('/s')"),
    ({"BALANCER": "haproxy", "HAPROXY_BACKEND": "web"}, "HAPROXY_SOCKET",
     "is required with HAPROXY_BACKEND ('web')"),
    ({"HAPROXY_SOCKET": "/s", "HAPROXY_BACKEND": "web"}, "HAPROXY_SOCKET",
     "but BALANCER is 'none': set BALANCER=haproxy"),
    ({"BALANCER": "haproxy", "BALANCER_PORT": "2550"}, "BALANCER_PORT",
     "must differ from HOST_PORT_HTTP_DEPLOYMENT_AGENT (2550)"),
    ({"BALANCER": "haproxy", "HOST_PORT_WS_DEPLOYMENT_AGENT": "8080"},
     "HOST_PORT_WS_DEPLOYMENT_AGENT", "must differ from BALANCER_PORT (8080)"),
])
def test_bad_balancer_settings_name_the_variable(extra, variable, words) -> None:
    with pytest.raises(ConfigError) as info:
        load(extra)
    assert info.value.variable == variable
    assert words in info.value.reason


def test_the_table_offers_exactly_the_algorithms_haproxy_weights_at_run_time() -> None:
    assert BALANCER_ALGORITHMS == DYNAMIC_ALGORITHMS


def test_no_balancer_setting_changes_at_run_time() -> None:
    names = {"BALANCER", "BALANCER_BIND", "BALANCER_PORT", "BALANCER_ALGORITHM",
             "HAPROXY_SOCKET", "HAPROXY_BACKEND"}
    assert not names & RUNTIME_MUTABLE
    with pytest.raises(ConfigError, match="cannot be changed at run time"):
        load({}).with_updates({"BALANCER_PORT": 9000})
