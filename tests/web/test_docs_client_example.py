"""The client example of docs/api.md runs against a real server."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import trio

from agent.interfaces.web import ServerInfo

from .double import make_snapshot

DOC = Path(__file__).resolve().parents[2] / "docs" / "api.md"


async def test_client_example_runs(server: ServerInfo, agent_under_test: Any) -> None:
    section = DOC.read_text().split("## Client library", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)  # type: ignore[union-attr]
    env = {**os.environ, "AGENT_URL": server.http_url, "PYTHONPATH": str(DOC.parents[1])}
    proc = await trio.lowlevel.open_process(
        [sys.executable, "-c", code], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    output = b""
    errors = b""
    try:
        with trio.fail_after(30):
            async with trio.open_nursery() as nursery:

                async def read_stderr() -> None:
                    nonlocal errors
                    assert proc.stderr is not None
                    while chunk := await proc.stderr.receive_some(65536):
                        errors += chunk

                nursery.start_soon(read_stderr)
                assert proc.stdout is not None
                answered = 0
                while chunk := await proc.stdout.receive_some(65536):
                    output += chunk
                    # each queue it has printed is answered with a new one (it stops after three)
                    while answered < output.count(b"route to"):
                        answered += 1
                        tick = agent_under_test.snapshot.tick + 1
                        agent_under_test.hub.publish(make_snapshot([(f"doc-{tick}", 75.0), ("other", 40.0)], tick=tick))
        await proc.wait()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode == 0, errors.decode()
    lines = output.decode().splitlines()
    assert sum(line.startswith("queue: ") for line in lines) == 3
    assert sum(line.startswith("route to ") for line in lines) == 3
