"""The embedded HAProxy: the agent's own `haproxy`, which outlives the agent.

The data plane must keep serving while the control plane is away, exactly like
the workers: through a crash of the agent, a `kill -9` of its whole process group,
an upgrade. So, unlike the embedded Redis, this process is *not* tied to the agent:

- **Its own session, reparented.** It is launched with ``haproxy -D`` (daemon
  mode) from a launcher in a new session (``start_new_session=True``): the
  launcher parses the configuration, binds the listeners and the admin socket,
  forks the daemon, writes the pidfile and exits 0 — so its exit status says
  whether the balancer came up, and the daemon belongs to no process group of
  the agent. No ``PR_SET_PDEATHSIG``: the agent dying must not stop it.
- **Adopted, not restarted.** Everything it needs lives in the data directory:
  ``haproxy.cfg`` (generated), ``haproxy.sock`` (admin socket, mode 0600),
  ``haproxy.pid``. The next agent reads the pidfile, checks that the pid is a
  live (not zombie) process whose command line runs *this* configuration file
  (so a recycled pid is never mistaken for it), and that the socket answers;
  then it adopts it and rebuilds the backend from the socket, never from memory.
- **Restarted when dead**, reported as an event for the ledger. Its run-time
  servers died with it; the next sync adds them again.
- **Reloaded when the configuration changed** (another ``BALANCER_PORT``, algorithm,
  health path): a new haproxy takes the listening sockets over from the old one
  (``-x <socket> -sf <pid>``, the reason for ``expose-fd listeners``), the old one
  finishes the requests it holds and exits.
- **Stays up on a clean stop of the agent.** Stop it by hand with
  ``kill -USR1 $(cat <data dir>/haproxy.pid)`` (graceful: it finishes the requests
  in flight, then exits) or ``kill $(cat <data dir>/haproxy.pid)`` (at once);
  `EmbeddedHAProxy.stop` does the same.

Errors become `BalancerError` with what to do and the tail of ``haproxy.log``
(the launcher's output: a port in use, a bad setting).
"""
from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
from pathlib import Path

import trio

from agent.adapters.haproxy_cli import RuntimeAPI
from agent.core.balancer import BalancerEvent, EventKind
from agent.core.errors import BalancerError
from agent.core.haproxy_config import CheckParams, EmbeddedConfig, render_config
from agent.core.haproxy_text import RuntimeAddress

__all__ = ["EmbeddedHAProxy", "process_runs_config"]

CONFIG_NAME = "haproxy.cfg"
SOCKET_NAME = "haproxy.sock"
PID_NAME = "haproxy.pid"
LOG_NAME = "haproxy.log"
_SUN_PATH_MAX = 107  # bytes of a unix socket path (sockaddr_un.sun_path, NUL excluded)
_LOG_TAIL_LINES = 12


def process_runs_config(pid: int, config_path: Path) -> bool:
    """True when `pid` is a live haproxy started with ``-f config_path``.

    Reads /proc: a zombie or a recycled pid running something else is False.
    """
    proc = Path("/proc") / str(pid)
    try:
        stat = (proc / "stat").read_text()
        argv = (proc / "cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    state = stat.rpartition(")")[2].split()[:1]
    if state in (["Z"], ["X"]):
        return False
    words = [a.decode(errors="replace") for a in argv if a]
    if not words or not os.path.basename(words[0]).startswith("haproxy"):
        return False
    target = str(config_path)
    return any(a == "-f" and b == target for a, b in zip(words, words[1:]))


class EmbeddedHAProxy:
    """Launch, adopt, check and restart the agent's own haproxy in `data_dir`."""

    def __init__(
        self,
        data_dir: Path,
        *,
        bind: str = "127.0.0.1",
        port: int = 8080,
        algorithm: str = "roundrobin",
        backend: str = "pool",
        health_path: str | None = None,
        check: CheckParams | None = None,
        binary: str = "haproxy",
        start_timeout: float = 10.0,
    ) -> None:
        self.data_dir = Path(data_dir).absolute()
        self.binary = binary
        self.start_timeout = start_timeout
        self.config = EmbeddedConfig(
            socket_path=str(self.data_dir / SOCKET_NAME),
            pid_path=str(self.data_dir / PID_NAME),
            bind=bind,
            port=port,
            algorithm=algorithm,
            backend=backend,
            health_path=health_path,
            check=check or CheckParams(),
        )
        if len(self.config.socket_path.encode()) > _SUN_PATH_MAX:
            raise BalancerError(
                f"the embedded haproxy's socket path {self.config.socket_path} is longer "
                f"than the {_SUN_PATH_MAX} bytes a unix socket allows; use a shorter "
                "data directory (DATA_DIR)"
            )
        self.api = RuntimeAPI(RuntimeAddress(path=self.config.socket_path), timeout=2.0)
        self._pid: int | None = None

    # -- paths and state ---------------------------------------------------------

    @property
    def config_path(self) -> Path:
        return self.data_dir / CONFIG_NAME

    @property
    def socket_path(self) -> Path:
        return Path(self.config.socket_path)

    @property
    def pid_path(self) -> Path:
        return Path(self.config.pid_path)

    @property
    def log_path(self) -> Path:
        return self.data_dir / LOG_NAME

    @property
    def pid(self) -> int | None:
        """The pid of the haproxy this object started or adopted (None before)."""
        return self._pid

    def alive(self) -> bool:
        return self._pid is not None and process_runs_config(self._pid, self.config_path)

    def recorded_pid(self) -> int | None:
        """The pid in the pidfile when it is a live haproxy of this data directory."""
        try:
            pid = int(self.pid_path.read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None
        return pid if process_runs_config(pid, self.config_path) else None

    # -- lifecycle ---------------------------------------------------------------

    async def ensure(self) -> BalancerEvent | None:
        """Make sure our haproxy runs: adopt it, start it, or restart it.

        Returns the event to record (STARTED, ADOPTED, RESTARTED), or None when
        the haproxy already known is still alive. Raises `BalancerError` when it
        cannot be started.
        """
        if self._pid is not None and self.alive():
            return None
        lost = self._pid
        running = self.recorded_pid()
        if running is not None and await self._answers():
            self._pid = running
            if self._config_text() != self._config_on_disk():
                old = running
                await self._launch(reload_from=old)
                return BalancerEvent(
                    EventKind.RESTARTED,
                    f"embedded haproxy reloaded with a new configuration (pid {old} → "
                    f"{self._pid}); listening on {self.config.frontend_address}",
                )
            if lost is None:
                return BalancerEvent(
                    EventKind.ADOPTED,
                    f"adopted the running embedded haproxy (pid {running}) serving "
                    f"{self.config.frontend_address}",
                )
            return None  # pidfile changed under us (a reload by hand): same balancer
        if running is not None:
            raise BalancerError(
                f"the embedded haproxy (pid {running}) runs but its admin socket "
                f"{self.socket_path} does not answer; stop it (kill {running}) or give "
                "the agent another data directory"
            )
        had_pidfile = self.pid_path.exists()
        await self._launch()
        if lost is not None or had_pidfile:
            why = f"pid {lost} died" if lost is not None else "found not running"
            return BalancerEvent(
                EventKind.RESTARTED,
                f"embedded haproxy restarted ({why}); pid {self._pid} serving "
                f"{self.config.frontend_address}",
            )
        return BalancerEvent(
            EventKind.STARTED,
            f"embedded haproxy started (pid {self._pid}) serving {self.config.frontend_address}",
        )

    async def stop(self, *, graceful: bool = True, timeout: float = 10.0) -> bool:
        """Stop our haproxy (SIGUSR1 = finish requests first, else SIGTERM); wait.

        Not called by the agent on exit: the balancer outlives it. For tests and
        a future CLI command. True when a process was stopped.
        """
        pid = self._pid if self.alive() else self.recorded_pid()
        if pid is None:
            return False
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGUSR1 if graceful else signal.SIGTERM)
        deadline = trio.current_time() + timeout
        while process_runs_config(pid, self.config_path):
            if trio.current_time() >= deadline:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
                break
            await trio.sleep(0.02)
        self._pid = None
        return True

    # -- internals ---------------------------------------------------------------

    def _config_text(self) -> str:
        return render_config(self.config)

    def _config_on_disk(self) -> str | None:
        try:
            return self.config_path.read_text()
        except OSError:
            return None

    async def _answers(self) -> bool:
        try:
            await self.api.run(["show info"])
        except BalancerError:
            return False
        return True

    async def _launch(self, *, reload_from: int | None = None) -> None:
        binary = shutil.which(self.binary)
        if binary is None:
            raise BalancerError(
                f"cannot start the embedded haproxy: {self.binary!r} was not found on PATH. "
                "Install it (Debian: apt-get install haproxy), point the agent at your own "
                "HAProxy with HAPROXY_SOCKET, or set BALANCER=none."
            )
        try:
            self.data_dir.mkdir(parents=True, exist_ok=True)
            tmp = self.config_path.with_suffix(".cfg.tmp")
            tmp.write_text(self._config_text())
            os.replace(tmp, self.config_path)
        except OSError as exc:
            raise BalancerError(
                f"cannot start the embedded haproxy: data directory {self.data_dir} is "
                f"unusable: {exc.strerror or exc}"
            ) from exc
        argv = [binary, "-D", "-f", str(self.config_path)]
        if reload_from is not None:
            argv += ["-x", str(self.socket_path), "-sf", str(reload_from)]
        code = await self._run_launcher(argv)
        if code != 0:
            raise BalancerError(
                f"the embedded haproxy ({binary}, listening on "
                f"{self.config.frontend_address}) failed to start (exit {code}). Last "
                f"lines of {self.log_path}:\n{_log_tail(self.log_path)}"
            )
        await self._wait_ready()

    async def _run_launcher(self, argv: list[str]) -> int:
        with open(self.log_path, "wb") as log:
            with trio.move_on_after(self.start_timeout) as scope:
                done = await trio.run_process(
                    argv,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    cwd=self.data_dir,
                    start_new_session=True,
                    check=False,
                )
        if scope.cancelled_caught:
            raise BalancerError(
                f"the embedded haproxy launcher did not finish within "
                f"{self.start_timeout:g} s; see {self.log_path}"
            )
        return done.returncode

    async def _wait_ready(self) -> None:
        """Poll (with a deadline) for the pidfile's process and the socket."""
        deadline = trio.current_time() + self.start_timeout
        delay = 0.005
        while True:
            pid = self.recorded_pid()
            if pid is not None and await self._answers():
                self._pid = pid
                return
            if trio.current_time() >= deadline:
                raise BalancerError(
                    f"the embedded haproxy started but did not answer on {self.socket_path} "
                    f"within {self.start_timeout:g} s. Last lines of {self.log_path}:\n"
                    f"{_log_tail(self.log_path)}"
                )
            await trio.sleep(delay)
            delay = min(delay * 2, 0.1)


def _log_tail(path: Path, lines: int = _LOG_TAIL_LINES) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "(no log)"
    tail = text.strip().splitlines()[-lines:]
    return "\n".join(tail) if tail else "(empty log)"
