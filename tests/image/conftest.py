"""The agent's own image, built once per session by ``scripts/build-image``.

A fresh machine (CI) has no image and no registry to pull one from: the script
makes the local Debian base (mmdebstrap, ~1 min), the wheels on the host (~45 s)
and the image (~15 s); when nothing changed it takes ~0.1 s. The time it took is
written to the terminal either way, so CI logs show it.
"""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import docker
import pytest

ROOT = Path(__file__).resolve().parents[2]
IMAGE_TAG = "deployment-agent:test"
_BUILD_TIMEOUT = 1200.0  # a cold build is ~2 min here; the margin is for a slow mirror


@pytest.fixture(scope="session")
def agent_image(request: pytest.FixtureRequest, docker_client: docker.DockerClient) -> str:
    """The ID of the agent's image, built from this checkout (by ID: another
    checkout's build may move the tag meanwhile)."""
    started = time.monotonic()
    try:
        proc = subprocess.run(
            [str(ROOT / "scripts" / "build-image"), IMAGE_TAG],
            env={**os.environ, "PYTHON": sys.executable},
            capture_output=True,
            text=True,
            timeout=_BUILD_TIMEOUT,
        )
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"scripts/build-image took over {exc.timeout:.0f} s", pytrace=False)
    elapsed = time.monotonic() - started
    if proc.returncode != 0:
        pytest.fail(
            f"scripts/build-image failed ({proc.returncode}):\n{proc.stderr[-4000:]}",
            pytrace=False,
        )
    image_id = (ROOT / "build" / "image.iid").read_text().strip()
    size = docker_client.images.get(image_id).attrs["Size"]
    steps = "; ".join(line.removeprefix("build-image: ") for line in proc.stderr.splitlines()
                      if line.startswith("build-"))
    _tell(request.config, f"agent image {IMAGE_TAG} ({size / 1e6:.0f} MB) ready in "
          f"{elapsed:.1f} s" + (f" ({steps})" if steps else ""))
    return image_id


def _tell(config: pytest.Config, line: str) -> None:
    """One line on the terminal, past pytest's output capture (for the CI log)."""
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    capture = config.pluginmanager.get_plugin("capturemanager")
    if reporter is None or capture is None:
        return
    with capture.global_and_fixture_disabled():
        reporter.write_line("")
        reporter.write_line(line)
