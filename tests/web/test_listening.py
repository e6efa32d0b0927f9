"""How the servers listen (issue 10 §1): a backlog sized for the WebSocket cap, an
open-file limit that holds it, and a same-port configuration said at start."""
from __future__ import annotations

import logging
import resource
import socket
import subprocess
from functools import partial
from pathlib import Path

import pytest
import trio

from agent.interfaces.web import serve
from agent.interfaces.web.server import HEADROOM, ensure_file_limit, listen_backlog

from .double import FakeAgent, make_settings


def listen_queue(port: int) -> int:
    """The backlog the kernel holds for a listening socket (``ss``: Send-Q)."""
    out = subprocess.run(["ss", "-ltnH", f"sport = :{port}"], capture_output=True, text=True,
                         check=True).stdout.split()
    return int(out[2])


async def test_the_backlog_is_sized_for_the_cap(nursery: trio.Nursery) -> None:
    agent = FakeAgent(make_settings(ws_max_connections=2000))
    info = await nursery.start(partial(serve, agent, http_port=0, ws_port=0))
    assert listen_queue(info.http_port) == 2000 + HEADROOM
    assert listen_queue(info.ws_port) == 2000 + HEADROOM


def test_listen_backlog_never_below_1024_and_says_when_the_kernel_caps_it(tmp_path: Path) -> None:
    assert listen_backlog(10, str(tmp_path / "absent")) == (1024, None)
    somaxconn = tmp_path / "somaxconn"
    somaxconn.write_text("4096\n")
    assert listen_backlog(3000, str(somaxconn)) == (3256, None)
    somaxconn.write_text("512\n")
    wanted, warning = listen_backlog(3000, str(somaxconn))
    assert wanted == 3256 and warning is not None
    assert "net.core.somaxconn = 512" in warning and "WS_MAX_CONNECTIONS (3000)" in warning


def test_the_file_limit_is_raised_to_hold_the_cap() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard))
        assert ensure_file_limit(1000) is None
        assert resource.getrlimit(resource.RLIMIT_NOFILE)[0] == 1000
        if hard != resource.RLIM_INFINITY:
            warning = ensure_file_limit(hard + 1)
            assert warning is not None and "open-file limit" in warning
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


async def test_the_same_port_for_both_is_said_at_start(
    nursery: trio.Nursery, caplog: pytest.LogCaptureFixture
) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    caplog.set_level(logging.WARNING, logger="agent.interfaces.web.server")
    await nursery.start(partial(serve, FakeAgent(), http_port=port, ws_port=port))
    said = [r.getMessage() for r in caplog.records]
    assert any(f"HOST_PORT_WS_DEPLOYMENT_AGENT is HOST_PORT_HTTP_DEPLOYMENT_AGENT ({port})" in m
               for m in said), said
