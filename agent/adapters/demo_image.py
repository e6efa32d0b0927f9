"""Build the demo worker image locally, from Python, with docker-py.

The demo worker (``agent/adapters/demo/``) is Debian's static busybox ``httpd`` in an image
built ``FROM scratch``: no registry is needed, only the ``busybox-static`` binary of
the machine. The build context is assembled in memory as a tar — the Dockerfile plus
a ``rootfs/`` tree (busybox, its applet symlinks, the page and the CGI scripts) — with
fixed owners and timestamps, so the same inputs always give the same bytes. Its
SHA-256 is stored as an image label; :func:`ensure_demo_image` skips the build when
the tagged image already carries that digest, which makes it idempotent and cheap to
call at every start.

`busybox_context` and `ensure_image` are the same machinery for any image of that
shape (a Dockerfile and files over the static busybox), e.g. the fault suite's
worker whose main process grows on request.

Blocking (docker-py is synchronous): call it from a thread in async code.
"""
from __future__ import annotations

import hashlib
import io
import tarfile
from collections.abc import Mapping
from importlib import resources
from pathlib import Path

import docker
import docker.errors
import requests.exceptions

from agent.adapters.docker_engine import open_api_client
from agent.core.errors import EngineError

__all__ = [
    "DEMO_IMAGE",
    "DEMO_PORT",
    "DIGEST_LABEL",
    "build_context",
    "busybox_context",
    "ensure_demo_image",
    "ensure_image",
]

DEMO_IMAGE = "deployment-agent-demo:latest"
DEMO_PORT = 8080  # the image's default listening port (its TARGET_PORT)
DIGEST_LABEL = "io.deployment-agent.demo-digest"

# Applets linked into /bin so the CGI scripts and `docker exec` find them; busybox
# itself answers for any other applet as `busybox NAME`.
_APPLETS = (
    "sh", "ash", "cat", "echo", "env", "expr", "false", "grep", "head", "httpd",
    "kill", "ls", "nc", "printf", "ps", "sed", "sleep", "tail", "test", "timeout",
    "top", "tr", "true", "uptime", "wget",
)  # fmt: skip
_TEXT_FILES = {  # package file -> path in the image (mode)
    "index.html": ("rootfs/www/index.html", 0o644),
    "health": ("rootfs/www/cgi-bin/health", 0o755),
    "burn": ("rootfs/www/cgi-bin/burn", 0o755),
    "work": ("rootfs/www/cgi-bin/work", 0o755),
}
_BUILD_TIMEOUT = 120.0


def build_context(busybox: str | Path = "/bin/busybox") -> tuple[bytes, str]:
    """The demo image's build context as an uncompressed tar, and its SHA-256 (hex).

    Raises `FileNotFoundError` naming the package to install when `busybox` is absent.
    """
    demo = resources.files("agent.adapters") / "demo"
    files = {target: ((demo / source).read_bytes(), mode)
             for source, (target, mode) in _TEXT_FILES.items()}
    return busybox_context((demo / "Dockerfile").read_bytes(), files, busybox=busybox)


def busybox_context(
    dockerfile: bytes,
    files: Mapping[str, tuple[bytes, int]],
    *,
    busybox: str | Path = "/bin/busybox",
    applets: tuple[str, ...] = _APPLETS,
) -> tuple[bytes, str]:
    """A build context over the static busybox: `dockerfile`, ``rootfs/bin/busybox``
    with its `applets` linked, ``rootfs/tmp`` and `files` (path in the context ->
    bytes and mode; their directories are made), with fixed owners and times."""
    busybox = Path(busybox)
    try:
        busybox_bytes = busybox.read_bytes()
    except FileNotFoundError:
        raise FileNotFoundError(
            f"{busybox} not found: install Debian's busybox-static "
            "(apt-get install busybox-static) to build the demo image"
        ) from None
    dirs = {"rootfs": 0o755, "rootfs/bin": 0o755, "rootfs/tmp": 0o1777}
    for target in files:
        parts = target.split("/")[:-1]
        for i in range(1, len(parts) + 1):
            dirs.setdefault("/".join(parts[:i]), 0o755)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:

        def add_file(name: str, data: bytes, mode: int) -> None:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = mode
            tar.addfile(info, io.BytesIO(data))

        add_file("Dockerfile", dockerfile, 0o644)
        for name, mode in dirs.items():
            info = tarfile.TarInfo(name)
            info.type = tarfile.DIRTYPE
            info.mode = mode
            tar.addfile(info)
        add_file("rootfs/bin/busybox", busybox_bytes, 0o755)
        for applet in applets:
            link = tarfile.TarInfo(f"rootfs/bin/{applet}")
            link.type = tarfile.SYMTYPE
            link.linkname = "busybox"
            link.mode = 0o777
            tar.addfile(link)
        for target, (data, mode) in files.items():
            add_file(target, data, mode)
    data = buf.getvalue()
    return data, hashlib.sha256(data).hexdigest()


def ensure_demo_image(
    client_or_base_url: docker.DockerClient | docker.APIClient | str,
    tag: str = DEMO_IMAGE,
    *,
    busybox: str | Path = "/bin/busybox",
) -> str:
    """Build the demo image as `tag` unless an identical one exists; return `tag`.

    `client_or_base_url` is a docker-py client (left open) or an engine address
    such as ``unix:///var/run/docker.sock`` (a client is made and closed here).
    Raises `EngineError` when the engine fails, cannot be reached or the build
    fails, and `FileNotFoundError` when busybox is missing.
    """
    context, digest = build_context(busybox)
    return ensure_image(client_or_base_url, tag, context, digest)


def ensure_image(
    client_or_base_url: docker.DockerClient | docker.APIClient | str,
    tag: str,
    context: bytes,
    digest: str,
) -> str:
    """Build `context` as `tag` unless the tagged image already carries `digest`
    (its `DIGEST_LABEL`); return `tag`. Errors as `ensure_demo_image`'s."""
    if isinstance(client_or_base_url, str):
        try:
            api = open_api_client(client_or_base_url, timeout=_BUILD_TIMEOUT)
        except (docker.errors.DockerException, requests.exceptions.RequestException) as exc:
            raise EngineError(
                f"cannot reach the Docker engine at {client_or_base_url}: {exc}"
            ) from exc
        try:
            return _ensure(api, tag, context, digest)
        finally:
            api.close()
    if isinstance(client_or_base_url, docker.DockerClient):
        return _ensure(client_or_base_url.api, tag, context, digest)
    return _ensure(client_or_base_url, tag, context, digest)


def _ensure(api: docker.APIClient, tag: str, context: bytes, digest: str) -> str:
    try:
        try:
            existing = api.inspect_image(tag)
        except docker.errors.ImageNotFound:
            pass
        else:
            labels = (existing.get("Config") or {}).get("Labels") or {}
            if labels.get(DIGEST_LABEL) == digest:
                return tag
        log: list[str] = []
        for chunk in api.build(
            fileobj=io.BytesIO(context),
            custom_context=True,
            tag=tag,
            labels={DIGEST_LABEL: digest},
            pull=False,
            rm=True,
            forcerm=True,
            decode=True,
        ):
            if "stream" in chunk:
                log.append(str(chunk["stream"]))
            if "error" in chunk:
                raise EngineError(
                    f"building the demo image {tag} failed: {chunk['error']}\n{''.join(log)}"
                )
    except (docker.errors.DockerException, requests.exceptions.RequestException) as exc:
        raise EngineError(f"building the demo image {tag} failed: {exc}") from exc
    return tag


def main() -> None:
    """``python -m agent.demo_image [TAG]``: build the image on ``$DOCKER_HOST``."""
    import os
    import sys

    base_url = os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"
    tag = sys.argv[1] if len(sys.argv) > 1 else DEMO_IMAGE
    try:
        print(ensure_demo_image(base_url, tag))
    except (EngineError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(1) from None


if __name__ == "__main__":
    main()
