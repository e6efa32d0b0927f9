"""The HAProxy adapter behind the `Balancer` seam (`agent.core.balancer`).

Two modes, one class:

- **embedded** (``BALANCER=haproxy``): the agent's own haproxy in its data
  directory (`EmbeddedHAProxy`), listening on ``BALANCER_BIND:BALANCER_PORT``;
  started, adopted, restarted when it died (every sync checks), never stopped.
- **external** (``HAPROXY_SOCKET`` + ``HAPROXY_BACKEND``): an HAProxy the user
  runs. `start` checks that the backend exists and that its algorithm takes
  runtime weights; a restart of it is told by a new ``Pid`` in ``show info``.

A sync is one connection to the runtime API::

    prompt                                    (interactive mode, kept open)
    show info                                 (pid: was it restarted?)
    show servers state <backend>              (what the backend has)
    show stat <backend> 4 -1                  (sessions: may a server go?)
    ... the plan's commands (`plan_sync`), pipelined, answers checked ...
    show servers state <backend>              (read back, only if something changed)
    quit

`sync` and `observe` return values and never raise `BalancerError`: a balancer
that is away makes the report say so (and emits UNREACHABLE once, RECOVERED when
it answers again); the tick goes on.
"""
from __future__ import annotations

import dataclasses
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import trio

from agent.adapters.haproxy_cli import CliSession, RuntimeAPI
from agent.adapters.haproxy_process import EmbeddedHAProxy
from agent.core.balancer import (
    BackendSpec,
    BalancerEvent,
    BalancerStatus,
    EventKind,
    Observation,
    ServerNaming,
    ServerStats,
    SyncReport,
)
from agent.core.errors import BalancerError, ConfigError
from agent.core.haproxy_config import DYNAMIC_ALGORITHMS, CheckParams
from agent.core.haproxy_plan import SyncPlan, plan_sync
from agent.core.haproxy_text import (
    STAT_COLUMNS,
    Expect,
    Outcome,
    ServerState,
    backend_algorithm,
    classify_reply,
    parse_info,
    parse_servers_state,
    parse_stat_csv,
    server_stats,
)

__all__ = ["HAProxyBalancer"]

# What HAProxy 2.6's `show stat` prints as the `algo` of a `balance random` backend.
UNNAMED_ALGORITHM = "unknown"

# The cumulative counters of `ServerStats`, kept by the adapter across resets.
_COUNTERS = ("sessions_total", "requests_total", "responses_2xx", "responses_4xx",
             "responses_5xx", "response_errors", "connect_errors", "retries", "redispatches")


@dataclass(frozen=True, slots=True)
class _Seen:
    """One reading of the backend: its servers, their figures, the process id."""

    servers: list[ServerState]
    stats: dict[str, ServerStats]
    pid: int | None


class HAProxyBalancer:
    """`Balancer` over one HAProxy backend, embedded or external.

    `prefix` is the container name prefix (``container_name_prefix(APP_IDENTIFIER)``):
    servers named ``<prefix>-<token>`` are the agent's, every other one is left alone.
    Build it with `embedded` or `external`.
    """

    def __init__(
        self,
        api: RuntimeAPI,
        *,
        backend: str,
        prefix: str,
        check: CheckParams | None = None,
        process: EmbeddedHAProxy | None = None,
        frontend: str | None = None,
        interval_counters: bool = False,
    ) -> None:
        self.api = api
        self.backend = backend
        self.naming = ServerNaming(prefix)
        self.check = check or CheckParams()
        self.process = process
        self.frontend = frontend
        self._reachable: bool | None = None
        self._verified = False
        self._pid: int | None = None
        self._last_sync: float | None = None
        self._last_error: str | None = None
        self._weights: dict[str, int] = {}
        self._states: dict[str, str] = {}
        # With `interval_counters`, each `observe` resets HAProxy's counters after
        # reading them (so its time averages are the interval's exact means); the
        # counts read before the last reset are carried here, per server.
        self.interval_counters = interval_counters
        self._carried: dict[str, dict[str, int]] = {}

    @classmethod
    def embedded(
        cls,
        data_dir: Path,
        *,
        prefix: str,
        bind: str = "127.0.0.1",
        port: int = 8080,
        algorithm: str = "roundrobin",
        health_path: str | None = None,
        check: CheckParams | None = None,
        binary: str = "haproxy",
        backend: str = "pool",
    ) -> HAProxyBalancer:
        """The agent's own haproxy in `data_dir` (ConfigError for a bad algorithm/port)."""
        check = check or CheckParams()
        process = EmbeddedHAProxy(
            data_dir, bind=bind, port=port, algorithm=algorithm, backend=backend,
            health_path=health_path, check=check, binary=binary,
        )
        return cls(process.api, backend=backend, prefix=prefix, check=check,
                   process=process, frontend=process.config.frontend_address,
                   interval_counters=True)

    @classmethod
    def external(
        cls,
        socket: str,
        backend: str,
        *,
        prefix: str,
        check: CheckParams | None = None,
        timeout: float = 5.0,
    ) -> HAProxyBalancer:
        """A backend of an HAProxy the user runs (ConfigError for a bad socket)."""
        try:
            api = RuntimeAPI(socket, timeout=timeout)
        except ValueError as exc:
            raise ConfigError("HAPROXY_SOCKET", str(exc)) from None
        if not backend or any(c.isspace() or c in ";/#" for c in backend):
            raise ConfigError("HAPROXY_BACKEND", f"must be a backend name, got {backend!r}")
        return cls(api, backend=backend, prefix=prefix, check=check)

    @property
    def mode(self) -> str:
        return "embedded" if self.process is not None else "external"

    # -- the seam ------------------------------------------------------------------

    async def start(self) -> tuple[BalancerEvent, ...]:
        events: list[BalancerEvent] = []
        if self.process is not None:
            event = await self.process.ensure()  # BalancerError: cannot start at all
            if event is not None:
                events.append(event)
            self._pid = self.process.pid
        try:
            async with self.api.session() as cli:
                await self._verify_backend(cli)
                self._pid = await self._read_pid(cli)
        except BalancerError as exc:
            events += self._unreachable(str(exc))
        else:
            events += self._recovered()
        return tuple(events)

    async def sync(self, desired: BackendSpec) -> SyncReport:
        started = trio.current_time()
        events: list[BalancerEvent] = []
        try:
            if self.process is not None:
                event = await self.process.ensure()
                if event is not None:
                    events.append(event)
                    self._pid = self.process.pid
            async with self.api.session() as cli:
                if not self._verified:
                    await self._verify_backend(cli)
                seen = await self._read(cli)
                events += self._recovered()
                events += self._restart_seen(seen.pid, events)
                plan = plan_sync(desired, seen.servers, seen.stats, backend=self.backend,
                                 naming=self.naming, check=self.check)
                answers = await cli.run([c.text for c in plan.commands])
                servers = seen.servers
                if plan.commands:
                    servers = parse_servers_state(
                        (await cli.run([f"show servers state {self.backend}"]))[0])
        except BalancerError as exc:
            events += self._unreachable(str(exc))
            return self._failed(str(exc), events, started)
        except ValueError as exc:  # ConfigError (backend gone, static) or unreadable output
            self._last_error = str(exc)
            return self._failed(str(exc), events, started)
        report = self._report(plan, answers, seen, events, trio.current_time() - started)
        self._remember(servers, seen.stats, report)
        return report

    async def observe(self) -> Observation:
        """One ``show stat``; embedded, followed by ``clear counters all`` (its own
        haproxy only: an external HAProxy's statistics are never reset)."""
        commands = [f"show stat {self.backend} 4 -1"]
        if self.interval_counters:
            commands.append("clear counters all")
        try:
            async with self.api.session() as cli:
                answers = await cli.run(commands)
            stats = self._cumulative(server_stats(parse_stat_csv(answers[0], STAT_COLUMNS),
                                                  self.backend))
        except (BalancerError, ValueError) as exc:
            return Observation(ok=False, error=str(exc), events=tuple(self._unreachable(str(exc))))
        if self.interval_counters and not answers[1].strip():
            self._carried = {n: {f: getattr(s, f) for f in _COUNTERS} for n, s in stats.items()}
        return Observation(ok=True, stats=self._ours(stats), events=tuple(self._recovered()),
                           interval_times=self.interval_counters)

    def _cumulative(self, stats: Mapping[str, ServerStats]) -> dict[str, ServerStats]:
        """Counters as if never reset: the counts carried from before the last reset
        added to those HAProxy shows now."""
        out = {}
        for name, s in stats.items():
            base = self._carried.get(name)
            out[name] = s if base is None else dataclasses.replace(
                s, **{f: getattr(s, f) + base[f] for f in _COUNTERS})
        return out

    def status(self) -> BalancerStatus:
        return BalancerStatus(
            kind="haproxy",
            mode=self.mode,
            backend=self.backend,
            socket=str(self.api),
            frontend=self.frontend,
            pid=self._pid,
            reachable=bool(self._reachable),
            last_sync=self._last_sync,
            last_error=self._last_error,
            weights=dict(self._weights),
            states=dict(self._states),
        )

    async def aclose(self) -> None:
        """Nothing to release: each call opens and closes its own connection, and
        the embedded haproxy is meant to outlive the agent."""

    # -- internals -----------------------------------------------------------------

    async def _verify_backend(self, cli: CliSession) -> None:
        """ConfigError unless the backend exists and takes runtime weights."""
        answer = (await cli.run([f"show stat {self.backend} 2 -1"]))[0]
        variable = "HAPROXY_BACKEND" if self.process is None else "BALANCER_ALGORITHM"
        if answer.strip() == "No such proxy.":
            raise ConfigError(variable, f"HAProxy at {self.api} has no backend {self.backend!r}")
        algorithm = backend_algorithm(parse_stat_csv(answer), self.backend)
        if algorithm is None:
            raise ConfigError(variable, f"{self.backend!r} is not a backend of HAProxy at "
                                        f"{self.api}")
        # HAProxy 2.6 names `random` "unknown" in show stat: an unknown algorithm
        # passes here, and `add server` says so if it is a static one
        if algorithm not in (*DYNAMIC_ALGORITHMS, UNNAMED_ALGORITHM):
            raise ConfigError(
                variable,
                f"backend {self.backend} of HAProxy at {self.api} balances with "
                f"{algorithm!r}, which takes no runtime weights or servers; use "
                f"{', '.join(DYNAMIC_ALGORITHMS)}",
            )
        self._verified = True

    async def _read_pid(self, cli: CliSession) -> int | None:
        info = parse_info((await cli.run(["show info"]))[0])
        return int(info["Pid"]) if info.get("Pid", "").isdigit() else None

    async def _read(self, cli: CliSession) -> _Seen:
        info, state, stat = await cli.run([
            "show info",
            f"show servers state {self.backend}",
            f"show stat {self.backend} 4 -1",
        ])
        pid = parse_info(info).get("Pid", "")
        return _Seen(
            servers=parse_servers_state(state),
            stats=self._cumulative(server_stats(parse_stat_csv(stat, STAT_COLUMNS),
                                                self.backend)),
            pid=int(pid) if pid.isdigit() else None,
        )

    def _restart_seen(self, pid: int | None, events: Sequence[BalancerEvent]) -> list[BalancerEvent]:
        """A RESTARTED event when the process answering is not the one seen before."""
        previous, self._pid = self._pid, pid
        if previous is None or pid is None or pid == previous:
            return []
        if any(e.kind in (EventKind.STARTED, EventKind.RESTARTED) for e in events):
            return []  # the embedded process said so already
        return [BalancerEvent(
            EventKind.RESTARTED,
            f"HAProxy at {self.api} restarted (pid {previous} → {pid}); its run-time "
            "servers are added again",
        )]

    def _failed(self, error: str, events: Sequence[BalancerEvent], started: float) -> SyncReport:
        return SyncReport(ok=False, error=error, events=tuple(events),
                          duration=trio.current_time() - started)

    def _unreachable(self, error: str) -> list[BalancerEvent]:
        self._last_error = error
        was, self._reachable = self._reachable, False
        if was is False:
            return []
        return [BalancerEvent(EventKind.UNREACHABLE, f"HAProxy at {self.api}: {error}")]

    def _recovered(self) -> list[BalancerEvent]:
        was, self._reachable = self._reachable, True
        if was is False:
            return [BalancerEvent(EventKind.RECOVERED, f"HAProxy at {self.api} answers again")]
        return []

    def _ours(self, stats: Mapping[str, ServerStats]) -> dict[str, ServerStats]:
        return {name: s for name, s in stats.items() if self.naming.owns(name)}

    def _report(
        self,
        plan: SyncPlan,
        answers: Sequence[str],
        seen: _Seen,
        events: Sequence[BalancerEvent],
        duration: float,
    ) -> SyncReport:
        failures: list[tuple[str, str]] = []
        pending = list(plan.pending)
        added: list[str] = []
        removed: list[str] = []
        for command, answer in zip(plan.commands, answers):
            outcome = classify_reply(command, answer)
            if outcome is Outcome.FAILED:
                failures.append((command.text, answer.strip()))
            elif outcome is Outcome.PENDING:
                pending.append(command.server)
            elif command.expect is Expect.ADDED:
                added.append(command.server)
            elif command.expect is Expect.DELETED:
                removed.append(command.server)
        failures += [(f"(server {name})", why) for name, why in plan.refused]
        error = None
        if failures:
            first, reply = failures[0]
            error = f"{len(failures)} command(s) failed; first: {first!r} → {reply!r}"
        self._last_error = error
        return SyncReport(
            ok=not failures,
            error=error,
            events=tuple(events),
            commands=tuple(c.text for c in plan.commands),
            failures=tuple(failures),
            added=tuple(added),
            removed=tuple(removed),
            pending=tuple(sorted(set(pending))),
            stats=self._ours(seen.stats),
            duration=duration,
        )

    def _remember(self, servers: Sequence[ServerState], stats: Mapping[str, ServerStats],
                  report: SyncReport) -> None:
        ours = [s for s in servers if s.backend == self.backend and self.naming.owns(s.name)]
        self._weights = {s.name: s.user_weight for s in ours}
        self._states = {
            s.name: ("maint" if s.admin.maint else "drain" if s.admin.drain else "ready")
            for s in ours
        }
        self._last_sync = time.time()
