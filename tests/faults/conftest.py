"""The fault suite (issue 10 §2): every test here is marked `faults` and `slow`,
and adds a row to the report (`tests/faults/report.py`), printed at the end and
written to $FAULT_REPORT when set."""
from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import docker
import pytest

from tests.fixtures.redis import RedisTestServer
from tests.fixtures.swarm_lab import SwarmLab, SwarmLabError

from tests.integration.agent_harness import free_port

from . import report
from .harness import FAST, AgentRun
from .hog_image import hog_image  # noqa: F401 - a fixture

__all__ = ["hog_image"]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if Path(str(item.fspath)).is_relative_to(here):
            item.add_marker(pytest.mark.faults)
            item.add_marker(pytest.mark.slow)


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    if not report.ROWS:
        return
    terminalreporter.section("fault suite")
    for row in report.ROWS:
        terminalreporter.write_line(f"{row.fault}: lost {row.lost}; recovery {row.recovery}; "
                                    f"RSS {row.memory}")
    written = report.write_if_asked(Path(str(config.rootpath)))
    if written is not None:
        terminalreporter.write_line(f"report written to {written}")


@pytest.fixture
def agents(tmp_path: Path) -> Iterator[Callable[..., AgentRun]]:
    """``make(env, name="agent", netns=None, host="127.0.0.1", http_port=None,
    data_dir=None) -> AgentRun`` (not started; stopped at teardown), with free HTTP
    and WebSocket ports and ``tmp_path/name`` as DATA_DIR unless given."""
    made: list[AgentRun] = []

    def make(env: dict[str, str], name: str = "agent", *, netns: Path | None = None,
             host: str = "127.0.0.1", http_port: int | None = None,
             data_dir: Path | None = None) -> AgentRun:
        ports = {"HOST_PORT_WS_DEPLOYMENT_AGENT": str(free_port())}
        agent = AgentRun({**FAST, **ports, **env}, data_dir or tmp_path / name, host=host,
                         http_port=http_port or free_port(), netns=netns)
        made.append(agent)
        return agent

    try:
        yield make
    finally:
        for agent in made:
            agent.stop()


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[RedisTestServer]:
    """A redis-server of this test alone (it may be stopped, wiped, restarted)."""
    import shutil

    binary = shutil.which("redis-server")
    assert binary, "redis-server is not installed"
    data = tmp_path / "redis"
    data.mkdir()
    server = RedisTestServer(binary, data)
    server.start()
    try:
        yield server
    finally:
        server.stop(kill=True)


@pytest.fixture
def private_engine(docker_client: docker.DockerClient, demo_image: str) -> Iterator[SwarmLab]:
    """A dockerd of this test alone, in its own network namespace (the swarm lab
    with one node and no swarm): it may be stopped, killed and restarted, which
    the host's engine, shared with everyone, never is."""
    lab = SwarmLab(nodes=1, swarm=False, host=docker_client, image=demo_image)
    try:
        lab.start()
    except SwarmLabError as exc:
        pytest.fail(f"cannot start the private engine: {exc}", pytrace=False)
    try:
        yield lab
    finally:
        lab.close()
