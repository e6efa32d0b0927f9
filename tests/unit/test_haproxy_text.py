"""Parsers and answer checks of HAProxy's runtime API, on literal HAProxy 2.6 output."""
from __future__ import annotations

import math

import pytest

from agent.core.haproxy_text import (
    AdminState,
    CheckState,
    Command,
    Expect,
    Outcome,
    RuntimeAddress,
    backend_algorithm,
    classify_reply,
    parse_info,
    parse_runtime_address,
    parse_servers_state,
    parse_stat_csv,
    server_stats,
)

from .haproxy_captures import SERVERS_STATE, SHOW_INFO, STAT_5XX, STAT_BACKEND, STAT_BUSY


def test_servers_state_reads_every_server_with_its_states():
    servers = {s.name: s for s in parse_servers_state(SERVERS_STATE)}
    assert list(servers) == ["legacy", "app-0a1b2c3d", "app-1e2f3a4b", "app-5c6d7e8f",
                             "app-99990000", "app-aaaa0000"]
    ready = servers["app-0a1b2c3d"]
    assert (ready.backend, ready.id, ready.address, ready.port) == ("pool", 2, "127.0.0.1", 32875)
    assert (ready.op_state, ready.admin, ready.user_weight) == (2, AdminState(0), 12)
    assert ready.check == CheckState.CONFIGURED | CheckState.ENABLED
    drained = servers["app-5c6d7e8f"]
    assert drained.admin == AdminState.FDRAIN and drained.admin.drain and not drained.admin.maint
    down = servers["app-99990000"]
    assert (down.op_state, down.port) == (0, 1)
    maint = servers["app-aaaa0000"]
    assert maint.admin == AdminState.FMAINT and maint.admin.maint
    assert maint.check == CheckState(0)  # added without `check`


def test_servers_state_of_an_empty_backend_is_empty():
    header = SERVERS_STATE.splitlines()[1]
    assert parse_servers_state(f"1\n{header}\n\n") == []


@pytest.mark.parametrize("answer", ["Can't find backend.\n", "", "2\n# be_id\n"])
def test_servers_state_refuses_other_answers_quoting_them(answer):
    with pytest.raises(ValueError, match="show servers state"):
        parse_servers_state(answer)


def test_servers_state_refuses_a_header_without_the_needed_columns():
    with pytest.raises(ValueError, match="lacks srv_uweight"):
        parse_servers_state("1\n# be_id be_name srv_id srv_name srv_addr srv_op_state "
                            "srv_admin_state srv_iweight srv_check_state srv_port\n")


def test_show_stat_gives_sessions_times_and_errors_per_server():
    stats = server_stats(parse_stat_csv(STAT_BUSY), "pool")
    assert sorted(stats) == sorted(["legacy", "app-0a1b2c3d", "app-1e2f3a4b", "app-5c6d7e8f",
                                    "app-99990000", "app-aaaa0000"])
    busy = stats["app-1e2f3a4b"]
    assert (busy.sessions, busy.queued, busy.sessions_total, busy.rate) == (3, 0, 75, 3)
    assert busy.requests_total == 72  # answered: the three in flight are not yet counted
    assert not busy.idle and busy.up
    assert (busy.status, busy.weight, busy.user_weight) == ("UP", 200, 200)
    assert busy.response_time_ms == 1.0 and busy.total_time_ms == 1.0
    assert (busy.responses_2xx, busy.responses_4xx, busy.responses_5xx) == (36, 36, 0)
    assert busy.check_status == "L7OK" and busy.address == "127.0.0.1:32876"
    down = stats["app-99990000"]
    # its one request failed to connect and was redispatched to another server
    assert (down.status, down.check_status, down.redispatches) == ("DOWN", "L4CON", 1)
    assert not down.up and down.idle
    drained = stats["app-5c6d7e8f"]
    assert drained.status == "DRAIN" and drained.idle
    assert math.isnan(drained.response_time_ms)  # served nothing: HAProxy prints 0


def test_show_stat_counts_the_servers_own_5xx():
    stats = server_stats(parse_stat_csv(STAT_5XX), "pool")["app-5e5e5e5e"]
    assert (stats.responses_5xx, stats.responses_2xx, stats.sessions_total) == (6, 1, 7)
    assert stats.status == "UP 1/3" and stats.up  # up, first check still running
    assert stats.check_status == "INI"


def test_show_stat_of_another_backend_gives_nothing():
    assert server_stats(parse_stat_csv(STAT_BUSY), "other") == {}


def test_backend_row_names_the_algorithm():
    rows = parse_stat_csv(STAT_BACKEND)
    assert backend_algorithm(rows, "pool") == "roundrobin"
    assert backend_algorithm(rows, "missing") is None
    assert server_stats(rows, "pool") == {}  # the BACKEND row is not a server


def test_show_stat_refuses_an_error_answer():
    with pytest.raises(ValueError, match="No such proxy"):
        parse_stat_csv("No such proxy.\n")


def test_show_stat_reads_quoted_cells():
    header = "# pxname,svname,scur,stot,type,status,last_chk,\n"
    rows = parse_stat_csv(header + 'pool,app-1,2,5,2,UP,"a, b",\n')
    assert rows[0]["last_chk"] == "a, b"
    assert server_stats(rows, "pool")["app-1"].sessions == 2


def test_show_info_gives_pid_and_uptime():
    info = parse_info(SHOW_INFO)
    assert (info["Pid"], info["Uptime_sec"], info["Version"]) == ("15844", "83", "2.6.12-1+deb12u4")
    with pytest.raises(ValueError, match="show info"):
        parse_info("Unknown command.\n")


ADD = Command("add server pool/a 127.0.0.1:1 weight 1", Expect.ADDED)
DEL = Command("del server pool/a", Expect.DELETED)
SET = Command("set weight pool/a 3")
ADDR = Command("set server pool/a addr 127.0.0.1 port 2", Expect.ADDR)


@pytest.mark.parametrize(
    "command, reply, outcome",
    [
        pytest.param(ADD, "New server registered.\n\n", Outcome.OK, id="add_ok"),
        pytest.param(ADD, "Already exists a server with the same name in backend.\n\n",
                     Outcome.FAILED, id="add_duplicate"),
        pytest.param(ADD, "Backend must use a dynamic load balancing to support dynamic "
                     "servers.\n", Outcome.FAILED, id="add_static_algorithm"),
        pytest.param(ADD, "No such backend.\n", Outcome.FAILED, id="add_no_backend"),
        pytest.param(DEL, "Server deleted.\n", Outcome.OK, id="del_ok"),
        pytest.param(DEL, "Server still has connections attached to it, cannot remove it.\n",
                     Outcome.PENDING, id="del_sessions_left"),
        pytest.param(DEL, "Only servers in maintenance mode can be deleted.\n",
                     Outcome.FAILED, id="del_not_maint"),
        pytest.param(DEL, "No such server.\n", Outcome.FAILED, id="del_missing"),
        pytest.param(SET, "\n", Outcome.OK, id="set_empty_is_ok"),
        pytest.param(SET, "Absolute weight can only be between 0 and 256 inclusive.\n\n",
                     Outcome.FAILED, id="set_weight_range"),
        pytest.param(SET, "No such server.\n\n", Outcome.FAILED, id="set_missing"),
        pytest.param(SET, "Unknown command, but maybe one of the following ones is a "
                     "better match:\n  help\n", Outcome.FAILED, id="unknown_command"),
        pytest.param(ADDR, "no need to change the addr, port changed from '32876' to "
                     "'32875' by 'stats socket command'\n", Outcome.OK, id="addr_port_only"),
        pytest.param(ADDR, "IP changed from '127.0.0.1' to '127.0.0.2', port changed from "
                     "'1' to '2' by 'stats socket command'\n", Outcome.OK, id="addr_both"),
        pytest.param(ADDR, "No such server.\n", Outcome.FAILED, id="addr_missing"),
    ],
)
def test_answers_are_classified(command, reply, outcome):
    assert classify_reply(command, reply) is outcome


@pytest.mark.parametrize("text", ["set weight pool/a 1;del server pool/b", "a\nb"])
def test_a_command_cannot_smuggle_a_second_one(text):
    with pytest.raises(ValueError, match="one line"):
        Command(text)


@pytest.mark.parametrize(
    "text, parsed",
    [
        ("/run/haproxy/admin.sock", RuntimeAddress(path="/run/haproxy/admin.sock")),
        ("unix@/tmp/h.sock", RuntimeAddress(path="/tmp/h.sock")),
        ("unix:/tmp/h.sock", RuntimeAddress(path="/tmp/h.sock")),
        ("127.0.0.1:9999", RuntimeAddress(host="127.0.0.1", port=9999)),
        ("lb.internal:9999", RuntimeAddress(host="lb.internal", port=9999)),
        ("[::1]:9999", RuntimeAddress(host="::1", port=9999)),
    ],
)
def test_runtime_addresses(text, parsed):
    assert parse_runtime_address(text) == parsed
    assert str(parsed) in (text, text.removeprefix("unix@").removeprefix("unix:"))


@pytest.mark.parametrize("text, reason", [
    ("localhost", "unix socket path or host:port"),
    ("127.0.0.1:0", "port must be 1..65535"),
    ("127.0.0.1:70000", "port must be 1..65535"),
    ("unix@", "needs a path"),
])
def test_bad_runtime_addresses(text, reason):
    with pytest.raises(ValueError, match=reason):
        parse_runtime_address(text)


def test_the_balancer_core_imports_no_io_library():
    import subprocess
    import sys

    code = (
        "import sys\n"
        "import agent.core.balancer, agent.core.balancer_weights, agent.core.haproxy_text\n"
        "import agent.core.haproxy_plan, agent.core.haproxy_config\n"
        "heavy = sorted(m for m in ('trio', 'docker', 'redis', 'quart', 'socket', 'subprocess')"
        " if m in sys.modules)\n"
        "print(','.join(heavy))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_an_average_is_known_once_a_request_was_sent_or_answered():
    row = {"pxname": "pool", "svname": "app-0a1b2c3d", "type": "2", "status": "UP",
           "stot": "0", "req_tot": "3", "rtime": "15", "ttime": "16"}
    # counters reset after a reading: three requests sent before it were answered after
    (stats,) = server_stats([row], "pool").values()
    assert (stats.sessions_total, stats.requests_total, stats.response_time_ms) == (0, 3, 15.0)
    idle = {**row, "req_tot": "0", "rtime": "0"}
    (stats,) = server_stats([idle], "pool").values()
    assert math.isnan(stats.response_time_ms)  # HAProxy prints 0 before any request
