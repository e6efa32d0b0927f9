"""The command line: effective settings, and bad values exit 2 naming the variable."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest


def _run(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if k not in ("DOCKER_IMAGE", "TARGET_PORT")}
    return subprocess.run(
        [sys.executable, "-m", "agent.interfaces.cli", *args, "--env-file", os.devnull],
        capture_output=True, text=True, env={**base, **env}, timeout=60,
    )


def test_check_config_shows_effective_values_and_their_sources():
    out = _run("check-config", "--json", "--max-containers", "9",
               DOCKER_IMAGE="app:1", TARGET_PORT="8080", COOLDOWN_PERIOD="7")
    assert out.returncode == 0, out.stderr
    rows = {r["name"]: r for r in json.loads(out.stdout)}
    assert rows["MAX_CONTAINERS"]["value"] == 9 and rows["MAX_CONTAINERS"]["source"] == "cli"
    assert rows["COOLDOWN_PERIOD"]["value"] == 7.0 and rows["COOLDOWN_PERIOD"]["source"] == "environment"
    assert rows["HIGH_LOAD_THRESHOLD"]["value"] == 55.0 and rows["HIGH_LOAD_THRESHOLD"]["source"] == "default"


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        pytest.param({"TARGET_PORT": "8080"}, "DOCKER_IMAGE", id="missing-image"),
        pytest.param({"DOCKER_IMAGE": "a", "TARGET_PORT": "70000"}, "TARGET_PORT", id="port-range"),
        pytest.param({"DOCKER_IMAGE": "a", "TARGET_PORT": "80", "MAX_CONTAINERS": "2"},
                     "MAX_CONTAINERS", id="max-below-default"),
        pytest.param({"DOCKER_IMAGE": "a", "TARGET_PORT": "80", "EMA_ALPHA": "1.5"},
                     "EMA_ALPHA", id="ema-alpha"),
        pytest.param({"DOCKER_IMAGE": "a", "TARGET_PORT": "80", "HIGH_LOAD_THRESHOLD": "90"},
                     "HIGH_LOAD_THRESHOLD", id="thresholds-order"),
    ],
)
@pytest.mark.parametrize("command", ["check-config", "run"])
def test_bad_config_exits_2_naming_the_variable(env, variable, command):
    out = _run(command, **env)
    assert out.returncode == 2
    assert variable in out.stderr
    assert "Traceback" not in out.stderr


@pytest.mark.parametrize(
    ("command", "env", "variable"),
    [
        pytest.param("collector", {}, "REDIS_URL", id="collector-without-redis"),
        pytest.param("collector", {"REDIS_URL": "redis://127.0.0.1:1/0",
                                   "SWARM_CONSTRAINTS": "node.role=worker"},
                     "SWARM_CONSTRAINTS", id="collector-bad-constraint"),
        pytest.param("run", {"DOCKER_IMAGE": "a", "TARGET_PORT": "80", "ENGINE": "swarm"},
                     "ENGINE", id="swarm-without-shared-redis"),
        pytest.param("run", {"DOCKER_IMAGE": "a", "TARGET_PORT": "80", "ENGINE": "k8s"},
                     "ENGINE", id="unknown-engine"),
    ],
)
def test_swarm_settings_exit_2_naming_the_variable(command, env, variable, tmp_path):
    """The collector needs neither DOCKER_IMAGE nor TARGET_PORT, but a shared Redis;
    so does the agent in swarm mode (its embedded Redis would be local)."""
    out = _run(command, DATA_DIR=str(tmp_path), **env)
    assert out.returncode == 2, out.stderr
    assert f"configuration error: {variable}" in out.stderr
    assert "Traceback" not in out.stderr
