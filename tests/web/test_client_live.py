"""agent.client and the CLI client commands against a real server."""
from __future__ import annotations

import argparse
import io
import json
import socket
import sys
from functools import partial
from typing import Any

import pytest
import trio

from agent.interfaces.cli_client import ClientError, _watch, add_client_commands
from agent.client import Backoff, Picker, QueueSubscriber
from agent.interfaces.web import ServerInfo, serve

from .double import FakeAgent, make_snapshot
from .util import eventually


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_client_commands(parser.add_subparsers(dest="command"))
    return parser.parse_args(list(argv))


async def run_cli(*argv: str) -> tuple[int, str]:
    """Run a (synchronous, urllib) client command in a thread; returns (code, stdout)."""
    args = parse(*argv)
    out = io.StringIO()

    code = await trio.to_thread.run_sync(_call, args, out)
    return code, out.getvalue()


def _call(args: argparse.Namespace, out: io.StringIO) -> int:
    # as the stored handler does, but with stdout captured in `out`
    try:
        return int(args.handler.command(args, out))
    except ClientError as exc:
        print(f"deployment-agent: {exc}", file=sys.stderr)
        return 1


# --------------------------------------------------------------------------- subscriber


async def test_subscriber_gets_queue_and_updates(server: ServerInfo, agent_under_test: Any) -> None:
    async with QueueSubscriber(server.http_url) as sub:
        queue = await eventually(lambda: sub.latest, message="first queue")
        assert [q.dns_name for q in queue] == [q.dns_name for q in agent_under_test.snapshot.queue]
        assert sub.connected
        new = make_snapshot([("x1", 90.0), ("x2", 30.0)], tick=agent_under_test.snapshot.tick + 1)
        agent_under_test.hub.publish(new)
        with trio.fail_after(5):
            async for items in sub:
                if [i.dns_name for i in items] == ["x1", "x2"]:
                    break
        assert items == new.queue
        picker = Picker(sub, strategy="swrr")
        assert {picker.pick().dns_name for _ in range(4)} == {"x1", "x2"}


async def test_subscriber_reconnects_with_backoff() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    agent = FakeAgent()
    sub = QueueSubscriber(f"ws://127.0.0.1:{port}/ws", backoff=Backoff(initial=0.05, maximum=0.2))
    async with trio.open_nursery() as nursery:
        await nursery.start(sub.run)
        # nothing listens yet: it keeps retrying, no exception escapes
        await eventually(lambda: sub.last_error is not None, message="a failed attempt")
        assert sub.latest is None and not sub.connected

        async with trio.open_nursery() as first:
            await first.start(partial(serve, agent, http_port=port, ws_port=port))
            await eventually(lambda: sub.connected and sub.latest is not None, message="connected")
            first.cancel_scope.cancel()  # server goes away: 1001, subscriber keeps going
        await eventually(lambda: not sub.connected, message="noticed the close")
        connects = sub.connects

        agent.hub.publish(make_snapshot([("after-restart", 70.0)], tick=99))
        async with trio.open_nursery() as second:
            await second.start(partial(serve, agent, http_port=port, ws_port=port))
            queue = await eventually(
                lambda: sub.latest if sub.latest and sub.latest[0].dns_name == "after-restart" else None,
                message="queue after the restart",
            )
            assert sub.connects == connects + 1 and queue[0].weight == 1.0
            second.cancel_scope.cancel()
        nursery.cancel_scope.cancel()


# --------------------------------------------------------------------------- CLI


async def test_cli_status(server: ServerInfo, agent_under_test: Any) -> None:
    code, out = await run_cli("status", "--url", server.http_url)
    assert code == 0
    snap = agent_under_test.snapshot
    assert out.splitlines()[0] == f"tick {snap.tick} · desired {snap.desired} · running {snap.running}"
    for item in snap.queue:
        assert item.dns_name in out
    code, out = await run_cli("status", "--json", "--url", server.http_url)
    assert code == 0 and '"queue"' in out


async def test_cli_scale_and_drain(server: ServerInfo, agent_under_test: Any, token: str,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    count = agent_under_test.settings.max_containers
    code, out = await run_cli("scale", str(count), "--url", server.http_url, "--token", token)
    assert code == 0 and "manual" in out
    await eventually(lambda: agent_under_test.snapshot.desired == count)

    code, _ = await run_cli("scale", str(count + 100), "--url", server.http_url, "--token", token)
    assert code == 1
    assert "422 invalid_value: count: must be between" in capsys.readouterr().err

    code, _ = await run_cli("scale", "3", "--url", server.http_url, "--token", "wrong")
    assert code == 1 and "403 forbidden: invalid API token" in capsys.readouterr().err

    code, _ = await run_cli("scale", "3", "--url", server.http_url, "--token", "")
    assert code == 1 and "needs the API token" in capsys.readouterr().err

    name = agent_under_test.snapshot.queue[0].dns_name
    code, out = await run_cli("drain", name, "--url", server.http_url, "--token", token)
    assert code == 0 and name in out
    code, _ = await run_cli("drain", "no/such container", "--url", server.http_url, "--token", token)
    assert code == 1 and "404 not_found" in capsys.readouterr().err


async def test_cli_events(server: ServerInfo, agent_under_test: Any, token: str) -> None:
    lo = agent_under_test.settings.default_container
    assert (await run_cli("scale", str(lo + 1), "--url", server.http_url, "--token", token))[0] == 0
    code, out = await run_cli("events", "--json", "--limit", "1", "--url", server.http_url)
    assert code == 0
    kind = json.loads(out)["events"][0]["kind"]
    code, out = await run_cli("events", "--kind", kind, "--limit", "1", "--url", server.http_url)
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split()[:4] == ["TIME", "KIND", "ACTION", "REASON"]
    assert kind in lines[1] and "manual" in lines[1]
    assert lines[-1].startswith("(older: --before ")


async def test_cli_unreachable_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    code, out = await run_cli("status", "--url", f"http://127.0.0.1:{port}")
    err = capsys.readouterr().err
    assert code == 1 and out == ""
    assert err.count("\n") == 1 and "cannot reach the agent" in err and "refused" in err


async def test_cli_watch_redraws_on_updates(server: ServerInfo, agent_under_test: Any) -> None:
    args = parse("watch", "--url", server.http_url, "--updates", "2")
    out = io.StringIO()  # not a TTY: a table per update, no screen clearing
    async with trio.open_nursery() as nursery:
        done = trio.Event()

        async def watch() -> None:
            assert await _watch(args, out) == 0
            done.set()

        nursery.start_soon(watch)
        await eventually(lambda: out.getvalue().count("CONTAINER") >= 1, message="first table")
        agent_under_test.hub.publish(make_snapshot([("watched", 64.0)], tick=agent_under_test.snapshot.tick + 1))
        with trio.fail_after(10):
            await done.wait()
    text = out.getvalue()
    assert text.count("CONTAINER") == 2 and "watched" in text and "\x1b[" not in text


async def test_cli_watch_exits_cleanly_on_ctrl_c(server: ServerInfo) -> None:
    import os
    import signal
    import subprocess
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    proc = await trio.lowlevel.open_process(
        [sys.executable, "-m", "agent.interfaces.cli_client", "watch", "--url", server.http_url],
        cwd=str(root), env={**os.environ, "PYTHONPATH": str(root)},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        # A suite started in the background (``cmd &`` in a script) inherits SIGINT
        # ignored, and so would the child: Ctrl-C is what this test is about.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    out = err = b""
    try:
        assert proc.stdout is not None and proc.stderr is not None
        # a deadline for a hang, not a timing: a Python start-up on a loaded 2-core
        # host took over 20 s in CI once
        with trio.fail_after(60):
            while b"CONTAINER" not in out:
                chunk = await proc.stdout.receive_some(65536)
                assert chunk, "watch exited early"
                out += chunk
            proc.send_signal(signal.SIGINT)
            while chunk := await proc.stdout.receive_some(65536):
                out += chunk
            while chunk := await proc.stderr.receive_some(65536):
                err += chunk
            await proc.wait()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode == 0, err.decode()
    assert b"Traceback" not in err
