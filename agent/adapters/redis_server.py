"""The embedded Redis: a local `redis-server` the agent runs when none is configured.

With no `REDIS_URL`/`REDIS_HOST`, the agent still persists its state (SPEC §6): it
starts Debian's `redis-server` on a free loopback port, with an append-only file in
its data directory, and stops it on exit::

    async with EmbeddedRedis(data_dir) as url:
        store = RedisStore(url, settings.app_identifier)
        ...

Why the process is started the way it is:

- **Its own session** (`start_new_session=True`): Ctrl-C in a terminal signals the
  whole foreground process group. Redis must not exit before the agent's final,
  shielded state write, so it stays out of that group and the agent stops it last.
- **Dies with the agent** (Linux `PR_SET_PDEATHSIG`): after a `kill -9` of the
  agent, the server gets SIGTERM, flushes its append-only file and exits instead of
  lingering as an orphan. The signal is tied to the thread that forked, so the
  process is spawned from the Trio thread itself, not from a worker thread (which
  is what `trio.lowlevel.open_process` would use).
- **One server per data directory**: a lock file in the data directory is held by
  the running server (its descriptor is inherited). Two servers appending to the
  same file would corrupt it, so `start()` waits, up to its deadline, for a
  previous server that is still shutting down, then fails with a clear message.
- **Ready means ready**: `start()` returns only once the server answers PING (not
  while it is still loading its append-only file).
- **A password, never on a command line**: the agent reads its desired count and
  runtime config back from this server, so any local user who could write to it
  could make the agent act. A password is generated once (`PASSWORD_NAME`, mode
  0600 in the data directory, like the API token) and handed to the server in a
  mode-0600 config file, since a `--requirepass` argument would show in `ps`. The
  URL `start()` returns carries it; callers print `redact_url(url)`.

Everything that goes wrong becomes a `StoreError` (an `AgentError`) whose message
says what to do and includes the tail of the server's log.
"""
from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import os
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType

import trio

from agent.adapters.secret_file import read_or_create_secret
from agent.core.errors import StoreError

__all__ = [
    "EmbeddedRedis",
    "free_loopback_port",
    "redis_server_argv",
]

LOG_NAME = "redis-server.log"
PASSWORD_NAME = "redis-password"
CONFIG_NAME = "redis.conf"
PID_NAME = "redis-server.pid"
LOCK_NAME = ".embedded-redis.lock"
_LOG_TAIL_LINES = 15
_PORT_ATTEMPTS = 3  # a free port can be taken between choosing and binding it


def free_loopback_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free on `host` right now (the kernel picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def redis_server_argv(
    binary: str,
    *,
    port: int,
    data_dir: Path,
    bind: str = "127.0.0.1",
    appendonly: bool = True,
    pidfile: Path | None = None,
    config_file: Path | None = None,
    extra: Sequence[str] = (),
) -> list[str]:
    """The command line of a local, loopback-only `redis-server` in the foreground.

    Shared by `EmbeddedRedis` and the test fixtures so both run the same server.
    Persistence is the append-only file only (`--save ""` turns RDB snapshots off);
    the log goes to stdout, which the caller redirects to a file. `config_file`
    (read first, so the flags win) carries what must not be on a command line.
    """
    argv = [binary] + ([str(config_file)] if config_file is not None else []) + [
        "--bind", bind,
        "--port", str(port),
        "--dir", str(data_dir),
        "--appendonly", "yes" if appendonly else "no",
        "--save", "",
        "--daemonize", "no",
        "--protected-mode", "yes",
        "--logfile", "",
    ]
    if pidfile is not None:
        argv += ["--pidfile", str(pidfile)]
    argv += list(extra)
    return argv


def _pdeathsig_preexec() -> Callable[[], None] | None:
    """A `preexec_fn` asking Linux to SIGTERM the child when its parent dies.

    The libc function is looked up here, before the fork, so the child only makes
    one foreign call between fork and exec.
    """
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    pr_set_pdeathsig = 1
    sigterm = int(signal.SIGTERM)

    def preexec() -> None:
        prctl(pr_set_pdeathsig, sigterm)

    return preexec


def _log_tail(path: Path, lines: int = _LOG_TAIL_LINES) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "(no log)"
    tail = text.strip().splitlines()[-lines:]
    return "\n".join(tail) if tail else "(empty log)"


async def _answers_ping(host: str, port: int, timeout: float, password: str | None = None) -> bool:
    """True when a Redis server on host:port answers PING with PONG.

    Plain RESP over a Trio socket: no client library, no retries of its own. A
    server still loading its append-only file answers `-LOADING`, which is False.
    With `password`, AUTH goes first and must answer +OK.
    """
    request = b"PING\r\n"
    expected = b"+PONG"
    if password is not None:
        request = _resp_command("AUTH", password) + request
        expected = b"+OK\r\n+PONG"
    with trio.move_on_after(timeout):
        try:
            stream = await trio.open_tcp_stream(host, port)
        except OSError:
            return False
        async with stream:
            try:
                await stream.send_all(request)
                reply = b""
                while reply.count(b"\r\n") < expected.count(b"\r\n") + 1:
                    chunk = await stream.receive_some(64)
                    if not chunk:
                        return False
                    reply += chunk
            except (OSError, trio.BrokenResourceError):
                return False
            return reply.startswith(expected)
    return False


def _resp_command(*parts: str) -> bytes:
    """One command as a RESP array of bulk strings (safe for any password)."""
    out = [b"*%d\r\n" % len(parts)]
    for part in parts:
        data = part.encode()
        out.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(out)


class EmbeddedRedis:
    """A `redis-server` child process serving the agent on a free loopback port.

    `start()` returns its URL once it answers PING; `stop()` sends SIGTERM (Redis
    then flushes its append-only file) and waits, escalating to SIGKILL after
    `stop_timeout`. Data lives in `data_dir` and survives restarts.
    """

    def __init__(
        self,
        data_dir: Path,
        *,
        binary: str = "redis-server",
        host: str = "127.0.0.1",
        start_timeout: float = 15.0,
        stop_timeout: float = 10.0,
    ) -> None:
        self.data_dir = Path(data_dir).absolute()
        self.binary = binary
        self.host = host
        self.start_timeout = start_timeout
        self.stop_timeout = stop_timeout
        self._proc: subprocess.Popen[bytes] | None = None
        self._lock_fd: int | None = None
        self._port: int | None = None
        self._password: str | None = None

    # -- public state -----------------------------------------------------------

    @property
    def log_path(self) -> Path:
        return self.data_dir / LOG_NAME

    @property
    def port(self) -> int | None:
        return self._port if self._proc is not None else None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def password_path(self) -> Path:
        return self.data_dir / PASSWORD_NAME

    @property
    def url(self) -> str | None:
        """``redis://:<password>@host:port/0``; print it through `redact_url`."""
        if self._proc is None or self._port is None or self._password is None:
            return None
        return _url(self.host, self._port, self._password)

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    # -- lifecycle --------------------------------------------------------------

    async def start(self) -> str:
        """Start the server and return its URL once it answers PING.

        Raises `StoreError` when the binary is missing, the data directory is
        unusable or locked by another server, or the server does not come up.
        """
        if self._proc is not None:
            if self.running:
                raise RuntimeError("EmbeddedRedis is already started")
            await self.stop()  # it died on its own: clean up, then start afresh
        binary = shutil.which(self.binary)
        if binary is None:
            raise StoreError(
                f"cannot start the embedded Redis: {self.binary!r} was not found on "
                "PATH. Install the redis-server package (Debian: apt-get install "
                "redis-server) or point the agent at a Redis with REDIS_URL or "
                "REDIS_HOST."
            )
        try:
            self.data_dir.mkdir(parents=True, exist_ok=True)
            os.chmod(self.data_dir, 0o700)  # the AOF holds the agent's state
            self._password = read_or_create_secret(self.password_path)
            self._write_config(self._password)
        except OSError as exc:
            raise StoreError(
                f"cannot start the embedded Redis: data directory {self.data_dir} "
                f"is unusable: {exc.strerror or exc}"
            ) from exc

        deadline = trio.current_time() + self.start_timeout
        self._lock_fd = await self._acquire_lock(deadline)
        try:
            for attempt in range(1, _PORT_ATTEMPTS + 1):
                port = free_loopback_port(self.host)
                proc = self._spawn(binary, port)
                try:
                    failure = await self._wait_ready(proc, port, deadline)
                except BaseException:  # cancelled while waiting: leave no server
                    with trio.CancelScope(shield=True):
                        await self._reap(proc)
                    raise
                if failure is None:
                    self._proc, self._port = proc, port
                    return _url(self.host, port, self._password)
                await self._reap(proc)
                log = _log_tail(self.log_path)
                if "Address already in use" in log and attempt < _PORT_ATTEMPTS:
                    continue  # lost the port race; pick another one
                raise StoreError(
                    f"the embedded redis-server ({binary}, port {port}, data "
                    f"directory {self.data_dir}) {failure}. Last lines of "
                    f"{self.log_path}:\n{log}"
                )
            raise AssertionError("unreachable")  # pragma: no cover
        except BaseException:
            self._release_lock()
            raise

    async def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL after `stop_timeout`) and wait.

        Idempotent, and shielded from cancellation so a cancelled agent still
        leaves no server behind.
        """
        proc = self._proc
        if proc is None:
            return
        with trio.CancelScope(shield=True):
            try:
                await self._reap(proc)
            finally:
                self._proc = None
                self._release_lock()

    async def __aenter__(self) -> str:
        return await self.start()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    # -- internals --------------------------------------------------------------

    async def _acquire_lock(self, deadline: float) -> int:
        """Lock the data directory, waiting for a server still shutting down."""
        path = self.data_dir / LOCK_NAME
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            raise StoreError(
                f"cannot start the embedded Redis: cannot open {path}: "
                f"{exc.strerror or exc}"
            ) from exc
        delay = 0.01
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return fd
            except OSError as exc:
                if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                    os.close(fd)
                    raise StoreError(
                        f"cannot start the embedded Redis: cannot lock {path}: "
                        f"{exc.strerror or exc}"
                    ) from exc
            if trio.current_time() >= deadline:
                os.close(fd)
                holder = ""
                with contextlib.suppress(OSError, ValueError):
                    pid = int((self.data_dir / PID_NAME).read_text().strip())
                    holder = f" (pid {pid})"
                raise StoreError(
                    f"cannot start the embedded Redis: data directory {self.data_dir} "
                    f"is in use by another redis-server{holder}. Stop it, or give "
                    "this agent its own data directory."
                )
            await trio.sleep(delay)
            delay = min(delay * 2, 0.2)

    def _write_config(self, password: str) -> None:
        """The config file with what must not be on a command line (mode 0600)."""
        path = self.data_dir / CONFIG_NAME
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(f'requirepass "{password}"\n')
        os.chmod(path, 0o600)

    def _spawn(self, binary: str, port: int) -> subprocess.Popen[bytes]:
        # Spawned from the Trio thread on purpose: see the module docstring.
        argv = redis_server_argv(
            binary,
            port=port,
            data_dir=self.data_dir,
            bind=self.host,
            appendonly=True,
            pidfile=self.data_dir / PID_NAME,
            config_file=self.data_dir / CONFIG_NAME,
        )
        assert self._lock_fd is not None
        try:
            with open(self.log_path, "wb") as log:
                return subprocess.Popen(
                    argv,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    cwd=self.data_dir,
                    start_new_session=True,
                    pass_fds=(self._lock_fd,),
                    preexec_fn=_pdeathsig_preexec(),
                )
        except OSError as exc:
            raise StoreError(
                f"cannot start the embedded Redis: running {binary} failed: "
                f"{exc.strerror or exc}"
            ) from exc

    async def _wait_ready(
        self, proc: subprocess.Popen[bytes], port: int, deadline: float
    ) -> str | None:
        """None once the server answers PING, else why it is not coming up."""
        delay = 0.005
        while True:
            code = proc.poll()
            if code is not None:
                return f"exited with code {code} while starting"
            if await _answers_ping(self.host, port, timeout=1.0, password=self._password):
                return None
            if trio.current_time() >= deadline:
                return f"did not answer PING within {self.start_timeout:g} s"
            await trio.sleep(delay)
            delay = min(delay * 2, 0.1)

    async def _reap(self, proc: subprocess.Popen[bytes]) -> None:
        """SIGTERM, wait up to `stop_timeout`, then SIGKILL and wait."""
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.terminate()
            if not await _wait_exit(proc, self.stop_timeout):
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await _wait_exit(proc, 10.0)

    def _release_lock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None


def _url(host: str, port: int, password: str | None) -> str:
    auth = f":{password}@" if password else ""
    return f"redis://{auth}{host}:{port}/0"


async def _wait_exit(proc: subprocess.Popen[bytes], timeout: float) -> bool:
    """Poll (with a deadline) until the process has exited; True when it has."""
    deadline = trio.current_time() + timeout
    delay = 0.002
    while proc.poll() is None:
        if trio.current_time() >= deadline:
            return False
        await trio.sleep(delay)
        delay = min(delay * 2, 0.05)
    return True
