"""Build the demo worker image locally, from Python, with docker-py.

The demo worker (``agent/demo/``) is Debian's static busybox ``httpd`` in an image
built ``FROM scratch``: no registry is needed, only the ``busybox-static`` binary of
the machine. The build context is assembled in memory as a tar — the Dockerfile plus
a ``rootfs/`` tree (busybox, its applet symlinks, the page and the CGI scripts) — with
fixed owners and timestamps, so the same inputs always give the same bytes. Its
SHA-256 is stored as an image label; :func:`ensure_demo_image` skips the build when
the tagged image already carries that digest, which makes it idempotent and cheap to
call at every start.

Blocking (docker-py is synchronous): call it from a thread in async code.
"""
from __future__ import annotations

import hashlib
import io
import tarfile
from importlib import resources
from pathlib import Path

import docker
import docker.errors
import requests.exceptions

from agent.errors import EngineError

__all__ = [
    "DEMO_IMAGE",
    "DEMO_PORT",
    "DIGEST_LABEL",
    "build_context",
    "ensure_demo_image",
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
}
_BUILD_TIMEOUT = 120.0


def build_context(busybox: str | Path = "/bin/busybox") -> tuple[bytes, str]:
    """The build context as an uncompressed tar, and its SHA-256 (hex).

    Raises `FileNotFoundError` naming the package to install when `busybox` is absent.
    """
    busybox = Path(busybox)
    try:
        busybox_bytes = busybox.read_bytes()
    except FileNotFoundError:
        raise FileNotFoundError(
            f"{busybox} not found: install Debian's busybox-static "
            "(apt-get install busybox-static) to build the demo image"
        ) from None
    demo = resources.files("agent") / "demo"
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:

        def add_dir(name: str, mode: int = 0o755) -> None:
            info = tarfile.TarInfo(name)
            info.type = tarfile.DIRTYPE
            info.mode = mode
            tar.addfile(info)

        def add_file(name: str, data: bytes, mode: int) -> None:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = mode
            tar.addfile(info, io.BytesIO(data))

        add_file("Dockerfile", (demo / "Dockerfile").read_bytes(), 0o644)
        for name, mode in (("rootfs", 0o755), ("rootfs/bin", 0o755),
                           ("rootfs/tmp", 0o1777), ("rootfs/www", 0o755),
                           ("rootfs/www/cgi-bin", 0o755)):  # fmt: skip
            add_dir(name, mode)
        add_file("rootfs/bin/busybox", busybox_bytes, 0o755)
        for applet in _APPLETS:
            link = tarfile.TarInfo(f"rootfs/bin/{applet}")
            link.type = tarfile.SYMTYPE
            link.linkname = "busybox"
            link.mode = 0o777
            tar.addfile(link)
        for source, (target, mode) in _TEXT_FILES.items():
            add_file(target, (demo / source).read_bytes(), mode)
    data = buf.getvalue()
    return data, hashlib.sha256(data).hexdigest()


def ensure_demo_image(
    client_or_base_url: docker.DockerClient | str,
    tag: str = DEMO_IMAGE,
    *,
    busybox: str | Path = "/bin/busybox",
) -> str:
    """Build the demo image as `tag` unless an identical one exists; return `tag`.

    `client_or_base_url` is a `docker.DockerClient` (left open) or an engine address
    such as ``unix:///var/run/docker.sock`` (a client is made and closed here).
    Raises `EngineError` when the engine fails or cannot be reached, and
    `FileNotFoundError` when busybox is missing.
    """
    context, digest = build_context(busybox)
    if isinstance(client_or_base_url, str):
        try:
            client = docker.DockerClient(
                base_url=client_or_base_url, version="auto", timeout=_BUILD_TIMEOUT
            )
        except docker.errors.DockerException as exc:
            raise EngineError(
                f"cannot reach the Docker engine at {client_or_base_url}: {exc}"
            ) from exc
        try:
            return _ensure(client, tag, context, digest)
        finally:
            client.close()
    return _ensure(client_or_base_url, tag, context, digest)


def _ensure(client: docker.DockerClient, tag: str, context: bytes, digest: str) -> str:
    try:
        try:
            existing = client.images.get(tag)
        except docker.errors.ImageNotFound:
            pass
        else:
            if (existing.labels or {}).get(DIGEST_LABEL) == digest:
                return tag
        client.images.build(
            fileobj=io.BytesIO(context),
            custom_context=True,
            tag=tag,
            labels={DIGEST_LABEL: digest},
            pull=False,
            rm=True,
            forcerm=True,
        )
    except docker.errors.BuildError as exc:
        log = "".join(str(line.get("stream", "")) for line in exc.build_log)
        raise EngineError(f"building the demo image {tag} failed: {exc}\n{log}") from exc
    except (docker.errors.DockerException, requests.exceptions.RequestException) as exc:
        raise EngineError(f"building the demo image {tag} failed: {exc}") from exc
    return tag
