"""The hog worker image: built like the demo image (`busybox_context`, FROM scratch,
tagged by content), its main process a busybox shell that grows itself on GET /grow
(`tests/faults/hog/`), so an OOM kill hits the worker's own main process."""
from __future__ import annotations

from pathlib import Path

import docker
import pytest

from agent.adapters.demo_image import busybox_context, ensure_image

HERE = Path(__file__).with_name("hog")
PORT = 8080


@pytest.fixture(scope="session")
def hog_image(docker_client: docker.DockerClient) -> str:
    context, digest = busybox_context(
        (HERE / "Dockerfile").read_bytes(),
        {"rootfs/serve": ((HERE / "serve").read_bytes(), 0o755)},
        applets=("sh", "nc", "head", "printf", "cat"),
    )
    return ensure_image(docker_client, f"deployment-agent-hog:test-{digest[:12]}", context, digest)
