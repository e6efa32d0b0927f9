"""Disk full under the embedded Redis (its data directory a small tmpfs, then filled):
the loop keeps running, says once why it cannot persist (stderr, /readyz), and once
space is back the state — changed meanwhile — is persisted in full."""
from __future__ import annotations

import contextlib
import errno
import os
import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from . import report
from .harness import Pool, losses, poll


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """DATA_DIR/redis on a 16 MiB tmpfs of its own (unmounted at teardown)."""
    data = tmp_path / "data"
    mount = data / "redis"
    mount.mkdir(parents=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m,mode=0700", "tmpfs", str(mount)],
                   check=True, capture_output=True)
    try:
        yield data
    finally:
        subprocess.run(["umount", "--lazy", str(mount)], check=False, capture_output=True)


def fill(directory: Path) -> Path:
    """Write a file until the file system is full; the file."""
    filler = directory / "filler"
    block = b"\0" * (1 << 16)
    with filler.open("wb") as f:
        try:
            while True:
                f.write(block)
                f.flush()
        except OSError as exc:
            assert exc.errno == errno.ENOSPC, exc
    with contextlib.suppress(OSError):  # the last partial blocks
        fd = os.open(filler, os.O_WRONLY | os.O_APPEND)
        try:
            while os.write(fd, b"\0" * 512):
                pass
        finally:
            os.close(fd)
    return filler


def test_disk_full_under_the_embedded_redis(small_disk, docker_app, docker_client, agents):
    agent = agents({**docker_app.env(), "DEFAULT_CONTAINER": "1", "MAX_CONTAINERS": "3"},
                   data_dir=small_disk)
    agent.start()
    agent.wait_ready()
    pool = Pool(docker_client, docker_app.app_identifier)
    poll(lambda: not losses(pool, agent, desired=1), timeout=60, message=f"settled\n{agent.tail()}")
    port = int(re.search(r"redis +redis://:\*\*\*@127\.0\.0\.1:(\d+)/0", agent.output())[1])
    password = (small_disk / "redis" / "redis-password").read_text().strip()
    store = redis.Redis(port=port, password=password, decode_responses=True, socket_timeout=5)
    rss_before = agent.rss()

    filler = fill(small_disk / "redis")
    full = time.monotonic()
    poll(lambda: agent.lines("cannot persist the state to Redis"), timeout=20,
         message=f"the reason logged\n{agent.tail()}")
    ready = agent.api("/readyz").json()
    assert ready["ready"] is False and "No space left on device" in ready["checks"]["redis"], ready
    # The loop goes on, and acts: scale to 2 and change a setting while nothing persists.
    tick = agent.queue()["tick"]
    assert agent.api("/scale", "POST", body={"count": 2}, token=agent.token).status == 200
    assert agent.api("/config", "PUT", body={"DRAIN_TIMEOUT": 9}, token=agent.token).status == 200
    poll(lambda: agent.queue()["tick"] >= tick + 10 and len(pool.read().running) == 2,
         timeout=30, message="ticks and the scale-up while the disk is full")
    assert agent.api("/healthz").status == 200
    assert len(agent.lines("cannot persist the state to Redis")) == 1, agent.tail()
    held = time.monotonic() - full

    filler.unlink()  # space again
    _, recovery = poll(lambda: not losses(pool, agent, desired=2, store=store,
                                          config={"DRAIN_TIMEOUT": 9}),
                       timeout=30, message=f"persisted again\n{agent.tail()}")
    poll(lambda: agent.lines("persisting the state again"), timeout=10, message="recovery logged")
    poll(lambda: agent.api("/readyz").status == 200, timeout=10, message="ready again")
    # the ended entry goes out with the next write, one tick later
    poll(lambda: [e["data"]["state"] for e in agent.events("persist_failed")] == ["ended", "open"],
         timeout=10, message="one open and one ended ledger entry")
    report.record(
        "disk full under the embedded Redis (16 MiB tmpfs, filled)",
        lost=losses(pool, agent, desired=2, store=store, config={"DRAIN_TIMEOUT": 9}),
        rss=(rss_before, agent.rss()),
        recovery=f"{recovery:.1f} s from space freed to the state persisted in full",
        detail=f"{held:.0f} s full: ticks went on, a scale-up and a config change were made and "
        "persisted afterwards; stderr and /readyz said 'cannot persist … No space left on "
        "device' once",
    )
    store.close()
