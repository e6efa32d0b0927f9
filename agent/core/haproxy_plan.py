"""The sync plan: desired servers vs the backend's own state ⇒ the runtime-API commands.

Pure and idempotent: the same inputs give the same commands, and a backend that
already matches gives none. Only servers `ServerNaming` says are ours are ever
named in a command; a foreign server is left alone even when it is down, drained
or in maintenance.

Per server, in this order (servers sorted by name, adds first so capacity
arrives before anything leaves)::

    new, or vanished (HAProxy restarted) ⇒ add server b/s A:P weight W check ...
                                           enable health b/s
                                           set server b/s state ready   (or drain)
    address or port changed             ⇒ set server b/s addr A port P
    check configured but off            ⇒ enable health b/s
    weight differs (not draining)       ⇒ set weight b/s W
    in maint/drain, wanted in rotation  ⇒ set server b/s state ready
    wanted draining (SUNDOWN)           ⇒ set server b/s state drain
    ours, no longer wanted              ⇒ set server b/s state maint    (at once)
                                           del server b/s               (once idle)
    ... and its drain timed out (evict) ⇒ state maint, shutdown sessions server b/s,
                                           del server b/s

`del server` needs the server in maintenance with no connection left (HAProxy
refuses otherwise), so an unwanted server with sessions in flight is *pending*:
out of rotation, deleted by a later sync once `show stat` shows it idle. An
evicted one is deleted by the sync after its sessions were shut: HAProxy 2.6
closes them asynchronously, so the `del` in the same batch is still refused.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from agent.core.balancer import BackendSpec, DesiredServer, ServerNaming, ServerStats
from agent.core.haproxy_config import CheckParams
from agent.core.haproxy_text import AdminState, CheckState, Command, Expect, ServerState

__all__ = ["SyncPlan", "plan_sync", "server_address"]


@dataclass(frozen=True, slots=True)
class SyncPlan:
    """Commands to send, in order, and what they mean for the report."""

    commands: tuple[Command, ...] = ()
    added: tuple[str, ...] = ()  # servers created by this plan
    deleting: tuple[str, ...] = ()  # servers this plan deletes
    pending: tuple[str, ...] = ()  # unwanted servers of ours that still have sessions
    refused: tuple[tuple[str, str], ...] = ()  # desired servers not planned, and why

    @property
    def empty(self) -> bool:
        return not self.commands


def server_address(address: str, port: int) -> str:
    """``A:P`` as `add server` reads it (IPv6 in brackets)."""
    return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"


def plan_sync(
    spec: BackendSpec,
    actual: Sequence[ServerState],
    stats: Mapping[str, ServerStats],
    *,
    backend: str,
    naming: ServerNaming,
    check: CheckParams,
) -> SyncPlan:
    """The commands that turn `actual` (``show servers state``) into `spec`.

    `stats` (``show stat``) gives the session counts that decide whether an
    unwanted server may be deleted now; a server missing from it counts as busy.
    """
    present = {s.name: s for s in actual if s.backend == backend}
    adds: list[Command] = []
    updates: list[Command] = []
    added: list[str] = []
    refused: list[tuple[str, str]] = []
    for want in sorted(spec.servers, key=lambda s: s.name):
        if not naming.owns(want.name):
            refused.append((want.name, f"not named {naming.prefix}-<token>, so not ours"))
            continue
        have = present.get(want.name)
        if have is None:
            adds += _add(backend, want, check)
            added.append(want.name)
        else:
            updates += _update(backend, want, have)
    commands = adds + updates
    deleting: list[str] = []
    pending: list[str] = []
    wanted = {s.name for s in spec.servers}
    for name in sorted(present):
        if name in wanted or not naming.owns(name):
            continue
        have = present[name]
        ref = f"{backend}/{name}"
        if not have.admin & AdminState.FMAINT:
            commands.append(Command(f"set server {ref} state maint", server=name))
        evict = name in spec.evict
        seen = stats.get(name)
        if evict:
            commands.append(Command(f"shutdown sessions server {ref}", server=name))
        if evict or (seen is not None and seen.idle):
            commands.append(Command(f"del server {ref}", Expect.DELETED, server=name))
            deleting.append(name)
        else:
            pending.append(name)
    return SyncPlan(tuple(commands), tuple(added), tuple(deleting), tuple(pending),
                    tuple(refused))


def _add(backend: str, want: DesiredServer, check: CheckParams) -> list[Command]:
    ref = f"{backend}/{want.name}"
    state = "drain" if want.drain else "ready"
    return [
        Command(
            f"add server {ref} {server_address(want.address, want.port)} "
            f"weight {want.weight} {check.server_words()}",
            Expect.ADDED,
            server=want.name,
        ),
        Command(f"enable health {ref}", server=want.name),
        Command(f"set server {ref} state {state}", server=want.name),
    ]


def _update(backend: str, want: DesiredServer, have: ServerState) -> list[Command]:
    ref = f"{backend}/{want.name}"
    out: list[Command] = []
    if (have.address, have.port) != (want.address, want.port):
        out.append(Command(f"set server {ref} addr {want.address} port {want.port}",
                           Expect.ADDR, server=want.name))
    if have.check & CheckState.CONFIGURED and not have.check & CheckState.ENABLED:
        out.append(Command(f"enable health {ref}", server=want.name))
    if want.drain:
        if have.admin.maint or not have.admin & AdminState.FDRAIN:
            out.append(Command(f"set server {ref} state drain", server=want.name))
        return out
    if have.user_weight != want.weight:
        out.append(Command(f"set weight {ref} {want.weight}", server=want.name))
    if have.admin.maint or have.admin.drain:
        out.append(Command(f"set server {ref} state ready", server=want.name))
    return out
