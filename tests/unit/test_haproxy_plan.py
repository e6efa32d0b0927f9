"""The sync plan, table-driven: one named scenario a row, literal commands expected."""
from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from agent.core.balancer import (
    BackendSpec,
    DesiredServer,
    ServerNaming,
    ServerStats,
    SyncReport,
    backend_spec,
)
from agent.core.haproxy_config import CheckParams
from agent.core.haproxy_plan import plan_sync
from agent.core.haproxy_text import AdminState, CheckState, ServerState, parse_servers_state
from agent.core.records import ContainerInfo

from .haproxy_captures import SERVERS_STATE

NAMING = ServerNaming("app")
CHECK = CheckParams(inter_ms=1000, fastinter_ms=500, downinter_ms=500, rise=2, fall=2)
CHECK_WORDS = "check inter 1000 fastinter 500 downinter 500 rise 2 fall 2"
ON = CheckState.CONFIGURED | CheckState.ENABLED


def have(name: str, port: int = 1000, weight: int = 10, admin: AdminState = AdminState(0),
         check: CheckState = ON, address: str = "127.0.0.1", backend: str = "pool") -> ServerState:
    return ServerState(backend=backend, name=name, id=1, address=address, port=port,
                       op_state=2, admin=admin, user_weight=weight, initial_weight=weight,
                       check=check)


def want(name: str, port: int = 1000, weight: int = 10, drain: bool = False,
         address: str = "127.0.0.1") -> DesiredServer:
    return DesiredServer(name, address, port, weight, drain)


def busy(name: str, sessions: int = 0, queued: int = 0) -> ServerStats:
    return ServerStats(name=name, status="UP", sessions=sessions, queued=queued)


@dataclass
class Row:
    id: str
    desired: list[DesiredServer]
    actual: list[ServerState]
    commands: list[str]
    stats: list[ServerStats] = field(default_factory=list)
    evict: frozenset[str] = frozenset()
    added: tuple[str, ...] = ()
    deleting: tuple[str, ...] = ()
    pending: tuple[str, ...] = ()
    refused: tuple[str, ...] = ()


A, B, C = "app-0000000a", "app-0000000b", "app-0000000c"

ROWS = [
    Row("nothing_changed_no_command", [want(A), want(B, 1001, 20)],
        [have(A), have(B, 1001, 20)], []),
    Row("new_container_added_checked_then_ready", [want(A, 1000, 7)], [],
        [f"add server pool/{A} 127.0.0.1:1000 weight 7 {CHECK_WORDS}",
         f"enable health pool/{A}", f"set server pool/{A} state ready"], added=(A,)),
    Row("ipv6_address_in_brackets", [want(A, address="::1")], [],
        [f"add server pool/{A} [::1]:1000 weight 10 {CHECK_WORDS}",
         f"enable health pool/{A}", f"set server pool/{A} state ready"], added=(A,)),
    Row("vanished_after_haproxy_restart_all_readded_in_name_order", [want(B), want(A)], [],
        [f"add server pool/{A} 127.0.0.1:1000 weight 10 {CHECK_WORDS}",
         f"enable health pool/{A}", f"set server pool/{A} state ready",
         f"add server pool/{B} 127.0.0.1:1000 weight 10 {CHECK_WORDS}",
         f"enable health pool/{B}", f"set server pool/{B} state ready"], added=(A, B)),
    Row("vanished_draining_server_readded_draining", [want(A, drain=True)], [],
        [f"add server pool/{A} 127.0.0.1:1000 weight 10 {CHECK_WORDS}",
         f"enable health pool/{A}", f"set server pool/{A} state drain"], added=(A,)),
    Row("weight_changed", [want(A, weight=200)], [have(A, weight=10)],
        [f"set weight pool/{A} 200"]),
    Row("sundown_drains_at_once", [want(A, drain=True)], [have(A)],
        [f"set server pool/{A} state drain"]),
    Row("already_draining_no_command", [want(A, drain=True)],
        [have(A, admin=AdminState.FDRAIN)], []),
    Row("draining_weight_left_alone", [want(A, weight=99, drain=True)],
        [have(A, weight=10, admin=AdminState.FDRAIN)], []),
    Row("maint_to_drain", [want(A, drain=True)], [have(A, admin=AdminState.FMAINT)],
        [f"set server pool/{A} state drain"]),
    Row("reactivated_weight_before_ready", [want(A, weight=50)],
        [have(A, weight=10, admin=AdminState.FDRAIN)],
        [f"set weight pool/{A} 50", f"set server pool/{A} state ready"]),
    Row("left_in_maint_made_ready", [want(A)], [have(A, admin=AdminState.FMAINT)],
        [f"set server pool/{A} state ready"]),
    Row("address_changed", [want(A, port=2000)], [have(A, port=1000)],
        [f"set server pool/{A} addr 127.0.0.1 port 2000"]),
    Row("health_turned_off_turned_on", [want(A)], [have(A, check=CheckState.CONFIGURED)],
        [f"enable health pool/{A}"]),
    Row("no_check_configured_left_alone", [want(A)], [have(A, check=CheckState(0))], []),
    Row("removed_idle_maint_then_del", [], [have(A)],
        [f"set server pool/{A} state maint", f"del server pool/{A}"],
        stats=[busy(A)], deleting=(A,)),
    Row("removed_with_sessions_maint_only", [], [have(A)],
        [f"set server pool/{A} state maint"], stats=[busy(A, sessions=2)], pending=(A,)),
    Row("removed_with_queue_maint_only", [], [have(A)],
        [f"set server pool/{A} state maint"], stats=[busy(A, queued=1)], pending=(A,)),
    Row("removed_busy_already_maint_nothing", [], [have(A, admin=AdminState.FMAINT)], [],
        stats=[busy(A, sessions=1)], pending=(A,)),
    Row("removed_idle_already_maint_del_only", [], [have(A, admin=AdminState.FMAINT)],
        [f"del server pool/{A}"], stats=[busy(A)], deleting=(A,)),
    Row("removed_without_stats_counts_as_busy", [], [have(A)],
        [f"set server pool/{A} state maint"], pending=(A,)),
    Row("drain_timed_out_sessions_shut_then_del", [], [have(A, admin=AdminState.FDRAIN)],
        [f"set server pool/{A} state maint", f"shutdown sessions server pool/{A}",
         f"del server pool/{A}"], stats=[busy(A, sessions=3)], evict=frozenset({A}),
        deleting=(A,)),
    Row("evicted_but_already_gone_nothing", [], [], [], evict=frozenset({A})),
    Row("foreign_servers_never_touched", [],
        [have("legacy"), have("web1", admin=AdminState.FMAINT), have("app"),
         have("app-eu-0000000a"), have("app-"), have("other-0000000a")], [],
        stats=[busy("legacy")]),
    Row("desired_name_not_ours_refused", [want("legacy")], [have("legacy")], [],
        refused=("legacy",)),
    Row("same_name_in_another_backend_is_not_ours_here", [want(A)],
        [have(A, backend="other")],
        [f"add server pool/{A} 127.0.0.1:1000 weight 10 {CHECK_WORDS}",
         f"enable health pool/{A}", f"set server pool/{A} state ready"], added=(A,)),
    Row("adds_before_updates_before_removals", [want(C), want(B, weight=3)],
        [have(A), have(B)],
        [f"add server pool/{C} 127.0.0.1:1000 weight 10 {CHECK_WORDS}",
         f"enable health pool/{C}", f"set server pool/{C} state ready",
         f"set weight pool/{B} 3",
         f"set server pool/{A} state maint", f"del server pool/{A}"],
        stats=[busy(A)], added=(C,), deleting=(A,)),
]


@pytest.mark.parametrize("row", ROWS, ids=[r.id for r in ROWS])
def test_plan(row: Row):
    spec = BackendSpec(tuple(row.desired), row.evict)
    plan = plan_sync(spec, row.actual, {s.name: s for s in row.stats}, backend="pool",
                     naming=NAMING, check=CHECK)
    assert [c.text for c in plan.commands] == row.commands
    assert (plan.added, plan.deleting, plan.pending) == (row.added, row.deleting, row.pending)
    assert tuple(name for name, _ in plan.refused) == row.refused
    assert plan.empty == (not row.commands)


def test_plan_is_idempotent_once_applied():
    """Applying the plan's effect and planning again gives no command."""
    spec = BackendSpec((want(A, weight=5), want(B, drain=True)))
    after = [have(A, weight=5), have(B, admin=AdminState.FDRAIN)]
    assert plan_sync(spec, after, {}, backend="pool", naming=NAMING, check=CHECK).empty


def test_plan_over_captured_state_touches_only_ours():
    """On the literal HAProxy 2.6 capture: `legacy` is foreign; `app-*` are ours."""
    actual = parse_servers_state(SERVERS_STATE)
    spec = BackendSpec((
        want("app-0a1b2c3d", 32875, 12),           # unchanged
        want("app-1e2f3a4b", 32876, 150),          # new weight
        want("app-5c6d7e8f", 32876, 1, drain=True),  # still draining
        want("app-aaaa0000", 32875, 4),            # in maint, wanted back
        want("app-bbbb0000", 32877, 9),            # new
    ))
    stats = {"app-99990000": busy("app-99990000")}  # unwanted and idle
    plan = plan_sync(spec, actual, stats, backend="pool", naming=NAMING, check=CHECK)
    assert [c.text for c in plan.commands] == [
        f"add server pool/app-bbbb0000 127.0.0.1:32877 weight 9 {CHECK_WORDS}",
        "enable health pool/app-bbbb0000",
        "set server pool/app-bbbb0000 state ready",
        "set weight pool/app-1e2f3a4b 150",
        "set server pool/app-aaaa0000 state ready",
        "set server pool/app-99990000 state maint",
        "del server pool/app-99990000",
    ]
    assert not any("legacy" in c.text for c in plan.commands)


def container(name: str, port: int | None = 1000, status: str = "running") -> ContainerInfo:
    return ContainerInfo(name=name, id=name, image="img", status=status, created=0.0,
                         host_port=port)


def test_backend_spec_from_the_pool():
    spec = backend_spec(
        [container(B), container(A), container(C), container("app-0000000d", port=None),
         container("app-0000000e", status="exited")],
        {A: 0.5, B: 0.25, C: 0.0},
        draining={C},
    )
    assert spec.servers == (
        DesiredServer(A, "127.0.0.1", 1000, 256),
        DesiredServer(B, "127.0.0.1", 1000, 128),
        DesiredServer(C, "127.0.0.1", 1000, 1, drain=True),
    )
    assert spec.evict == frozenset()


def test_backend_spec_evicts_a_timed_out_drain_while_its_container_runs():
    spec = backend_spec([container(A), container(C)], {A: 1.0}, draining={C}, evict={C})
    assert [s.name for s in spec.servers] == [A]
    assert spec.evict == frozenset({C})


def test_backend_spec_without_weights_gives_equal_weights():
    spec = backend_spec([container(A), container(B)], {})
    assert {s.weight for s in spec.servers} == {256}


@pytest.mark.parametrize("kwargs, message", [
    ({"name": "a b"}, "characters HAProxy refuses"),
    ({"name": "a;del"}, "characters HAProxy refuses"),
    ({"address": "1.2.3.4;x"}, "is not an address"),
    ({"port": 0}, "port must be 1..65535"),
    ({"weight": 0}, "weight must be an integer 1..256"),
    ({"weight": 257}, "weight must be an integer 1..256"),
    ({"weight": 2.0}, "weight must be an integer 1..256"),
])
def test_desired_server_validation(kwargs, message):
    base = {"name": A, "address": "127.0.0.1", "port": 1000, "weight": 1}
    with pytest.raises(ValueError, match=message):
        DesiredServer(**{**base, **kwargs})


def test_backend_spec_validation():
    with pytest.raises(ValueError, match="listed twice"):
        BackendSpec((want(A), want(A)))
    with pytest.raises(ValueError, match="both desired and evicted"):
        BackendSpec((want(A),), frozenset({A}))


@pytest.mark.parametrize("name, owned", [
    ("app-1a2b3c4d", True), ("app-x", True), ("app-", False), ("app", False),
    ("app-eu-1a2b3c4d", False), ("xapp-1a2b3c4d", False), ("legacy", False),
])
def test_naming(name, owned):
    assert ServerNaming("app").owns(name) is owned
    assert ServerNaming("app-eu").owns("app-eu-1a2b3c4d")


def test_report_idle_is_never_true_on_an_unknown():
    assert not SyncReport(ok=False, error="down").idle(A)
    report = SyncReport(ok=True, stats={A: busy(A, sessions=1), B: busy(B)})
    assert (report.idle(A), report.idle(B), report.idle(C)) == (False, True, True)
