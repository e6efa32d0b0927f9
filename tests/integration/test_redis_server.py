"""EmbeddedRedis: the agent's own redis-server, started and stopped for real."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import redis
import trio

from agent.core.errors import AgentError, StoreError
from agent.adapters.redis_server import LOCK_NAME, EmbeddedRedis, free_loopback_port, redis_server_argv

pytestmark = pytest.mark.redis

REDIS_SERVER = shutil.which("redis-server")


@pytest.fixture(autouse=True)
def _need_binary() -> None:
    if REDIS_SERVER is None:
        pytest.fail("redis-server is not installed (Debian package redis-server)", pytrace=False)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie still "exists": check its state
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][0]
    except (OSError, IndexError):
        return False
    return state != "Z"


async def _sync(fn, *args):  # type: ignore[no-untyped-def]
    return await trio.to_thread.run_sync(fn, *args)


def _set_get(url: str, key: str, value: str | None = None) -> str | None:
    with redis.Redis.from_url(url, decode_responses=True, socket_timeout=5) as client:
        if value is not None:
            client.set(key, value)
        result: str | None = client.get(key)
        return result


async def test_start_answers_and_stop_ends_the_process(tmp_path: Path) -> None:
    server = EmbeddedRedis(tmp_path / "data")
    url = await server.start()
    try:
        password = (tmp_path / "data" / "redis-password").read_text().strip()
        assert url.startswith(f"redis://:{password}@127.0.0.1:")
        assert server.url == url and server.running
        assert url.endswith(f":{server.port}/0")
        assert await _sync(_set_get, url, "k", "v") == "v"
        pid = server.pid
        assert pid is not None
    finally:
        await server.stop()
    assert not server.running and server.url is None and server.pid is None
    assert not _pid_alive(pid)
    await server.stop()  # idempotent


async def test_data_persists_across_restarts(tmp_path: Path) -> None:
    data = tmp_path / "data"
    async with EmbeddedRedis(data) as url:
        await _sync(_set_get, url, "da:app:desired", "7")
    assert (data / "appendonlydir").is_dir()
    async with EmbeddedRedis(data) as url2:
        assert await _sync(_set_get, url2, "da:app:desired") == "7"


async def test_binds_loopback_with_appendonly_and_no_rdb(tmp_path: Path) -> None:
    async with EmbeddedRedis(tmp_path) as url:

        def config(url: str) -> dict[str, str]:
            with redis.Redis.from_url(url, decode_responses=True) as client:
                got: dict[str, str] = {}
                for name in ("bind", "appendonly", "save", "protected-mode", "dir", "daemonize"):
                    got.update(client.config_get(name))
                return got

        got = await _sync(config, url)
    assert got["bind"] == "127.0.0.1"
    assert got["appendonly"] == "yes"
    assert got["save"] == ""
    assert got["protected-mode"] == "yes"
    assert got["daemonize"] == "no"
    assert Path(got["dir"]) == tmp_path.absolute()


async def test_missing_binary_is_a_clear_error(tmp_path: Path) -> None:
    server = EmbeddedRedis(tmp_path, binary="no-such-redis-server-binary")
    with pytest.raises(AgentError) as info:
        await server.start()
    assert isinstance(info.value, StoreError)
    message = str(info.value)
    assert "'no-such-redis-server-binary' was not found" in message
    assert "REDIS_URL" in message and "redis-server package" in message
    assert not server.running


async def test_failed_start_reports_the_log_tail(tmp_path: Path) -> None:
    # a "binary" that prints a complaint and exits: start() must say so, with the log
    fake = tmp_path / "fake-redis-server"
    fake.write_text("#!/bin/sh\necho 'FATAL: cannot do the thing' >&2\nexit 3\n")
    fake.chmod(0o755)
    server = EmbeddedRedis(tmp_path / "data", binary=str(fake))
    with pytest.raises(StoreError) as info:
        await server.start()
    message = str(info.value)
    assert "exited with code 3" in message
    assert "FATAL: cannot do the thing" in message
    assert not server.running


async def test_no_pong_within_deadline_is_an_error(tmp_path: Path) -> None:
    # a process that lives but never listens: start() gives up at its deadline
    fake = tmp_path / "silent-redis-server"
    fake.write_text("#!/bin/sh\necho started\nexec sleep 60\n")
    fake.chmod(0o755)
    server = EmbeddedRedis(tmp_path / "data", binary=str(fake), start_timeout=0.5, stop_timeout=5)
    with trio.fail_after(10):
        with pytest.raises(StoreError, match="did not answer PING within 0.5 s"):
            await server.start()
    assert not server.running


async def test_second_server_on_the_same_data_dir_is_refused(tmp_path: Path) -> None:
    async with EmbeddedRedis(tmp_path) as url:
        other = EmbeddedRedis(tmp_path, start_timeout=0.3)
        with pytest.raises(StoreError, match="in use by another redis-server \\(pid \\d+\\)"):
            await other.start()
        # the first one is untouched
        assert await _sync(_set_get, url, "still", "here") == "here"
    # and once it has stopped, the directory is free again
    async with EmbeddedRedis(tmp_path) as url:
        assert await _sync(_set_get, url, "still") == "here"


async def test_lock_is_held_by_the_server_not_only_by_the_agent(tmp_path: Path) -> None:
    # After the agent's handle is gone, the server process still holds the lock,
    # so a restarted agent cannot start a second server on the same files.
    import fcntl

    server = EmbeddedRedis(tmp_path)
    await server.start()
    try:
        server._release_lock()  # as if the agent process had died
        fd = os.open(tmp_path / LOCK_NAME, os.O_RDWR)
        try:
            with pytest.raises(BlockingIOError):
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        finally:
            os.close(fd)
    finally:
        await server.stop()


async def test_cancelled_start_leaves_no_server(tmp_path: Path) -> None:
    fake = tmp_path / "silent-redis-server"
    fake.write_text("#!/bin/sh\nexec sleep 60\n")
    fake.chmod(0o755)
    server = EmbeddedRedis(tmp_path / "data", binary=str(fake), start_timeout=30)
    started = []
    with trio.move_on_after(0.3):
        started.append(await server.start())
    assert not started and not server.running and server.pid is None
    # the lock was released: a real server can use the directory now
    async with EmbeddedRedis(tmp_path / "data") as url:
        assert await _sync(_set_get, url, "k", "v") == "v"


async def test_password_required_and_kept_out_of_the_command_line(tmp_path: Path) -> None:
    data = tmp_path / "data"
    async with EmbeddedRedis(data) as url:
        password = (data / "redis-password").read_text().strip()
        assert len(password) >= 32
        for name in ("redis-password", "redis.conf"):
            assert (data / name).stat().st_mode & 0o777 == 0o600, name
        assert data.stat().st_mode & 0o777 == 0o700
        port = int(url.rsplit(":", 1)[1].split("/")[0])

        def anonymous() -> None:
            with redis.Redis(host="127.0.0.1", port=port, socket_timeout=5) as client:
                client.get("da:app:desired")

        with pytest.raises(redis.exceptions.AuthenticationError):
            await _sync(anonymous)
        pid = int((data / "redis-server.pid").read_text())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        assert password.encode() not in cmdline
    # the same password on the next start: the CLI and restarts agree on it
    async with EmbeddedRedis(data) as url2:
        assert f":{password}@" in url2


def test_argv_is_loopback_foreground_aof_only(tmp_path: Path) -> None:
    argv = redis_server_argv("redis-server", port=1234, data_dir=tmp_path)
    pairs = dict(zip(argv[1::2], argv[2::2], strict=True))
    assert pairs == {
        "--bind": "127.0.0.1",
        "--port": "1234",
        "--dir": str(tmp_path),
        "--appendonly": "yes",
        "--save": "",
        "--daemonize": "no",
        "--protected-mode": "yes",
        "--logfile": "",
    }


def test_free_loopback_port_is_bindable() -> None:
    import socket

    port = free_loopback_port()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))


async def test_server_dies_with_a_killed_agent_and_data_survives(tmp_path: Path) -> None:
    # kill -9 of the agent: the server must not linger as an orphan (it gets
    # SIGTERM from the kernel and flushes its append-only file), so a restarted
    # agent can start its own server on the same data directory.
    import signal
    import subprocess
    import sys

    script = (
        "import sys, trio, redis\n"
        "from pathlib import Path\n"
        "from agent.adapters.redis_server import EmbeddedRedis\n"
        "async def main():\n"
        "    server = EmbeddedRedis(Path(sys.argv[1]))\n"
        "    url = await server.start()\n"
        "    with redis.Redis.from_url(url) as c:\n"
        "        c.set('da:app:desired', '9')\n"
        "    print(server.pid, flush=True)\n"
        "    await trio.sleep_forever()\n"
        "trio.run(main)\n"
    )
    agent = subprocess.Popen(
        [sys.executable, "-c", script, str(tmp_path)],
        stdout=subprocess.PIPE,
        cwd=Path(__file__).resolve().parents[2],
    )
    try:
        assert agent.stdout is not None
        line = await trio.to_thread.run_sync(agent.stdout.readline)
        redis_pid = int(line)
        assert _pid_alive(redis_pid)
        agent.send_signal(signal.SIGKILL)
        await trio.to_thread.run_sync(agent.wait)
    finally:
        if agent.poll() is None:
            agent.kill()
            agent.wait()
        if agent.stdout is not None:
            agent.stdout.close()
    with trio.fail_after(10):
        while _pid_alive(redis_pid):
            await trio.sleep(0.01)
    async with EmbeddedRedis(tmp_path) as url:
        assert await _sync(_set_get, url, "da:app:desired") == "9"


async def test_start_again_after_the_server_died(tmp_path: Path) -> None:
    import signal

    server = EmbeddedRedis(tmp_path)
    url = await server.start()
    try:
        await _sync(_set_get, url, "k", "v")
        with pytest.raises(RuntimeError, match="already started"):
            await server.start()
        assert server.pid is not None
        os.kill(server.pid, signal.SIGKILL)
        with trio.fail_after(10):
            while server.running:
                await trio.sleep(0.01)
        url = await server.start()
        assert await _sync(_set_get, url, "k") == "v"  # in the AOF before the reply
    finally:
        await server.stop()
