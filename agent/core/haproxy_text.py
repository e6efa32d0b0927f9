"""HAProxy's runtime API as text: the commands' expected answers and the outputs' parsers.

Pure: strings in, typed records out, so every quirk below is tested on literal
output captured from Debian's HAProxy 2.6.12 (`tests/unit/test_haproxy_text.py`).

The CLI answers errors as plain text, never with a status code, so each command
the agent sends carries what a success looks like (`Expect`):

===============================  ==============================================
command                          success answer (anything else is an error)
===============================  ==============================================
``add server b/s ...``           ``New server registered.``
``del server b/s``               ``Server deleted.``; ``Server still has
                                 connections attached to it, cannot remove it.``
                                 is *pending* (sessions left), not a failure
``set server b/s addr A port P`` a sentence with ``changed from`` or ``no need
                                 to change`` (it reports what it did)
``set weight``, ``set server b/s state ...``, ``enable health``,
``shutdown sessions server``     empty
===============================  ==============================================

Errors seen: ``No such server.``, ``No such backend.``, ``Can't find backend.``,
``No such proxy.``, ``Already exists a server with the same name in backend.``,
``Only servers in maintenance mode can be deleted.``, ``Absolute weight can only be
between 0 and 256 inclusive.``, ``Backend must use a dynamic load balancing to
support dynamic servers.``, ``Unknown command, ...``.

Outputs parsed here, all by their header line (columns are looked up by name, so
fields HAProxy appends later are ignored):

- ``show servers state <b>``: format version ``1``, a ``# be_id be_name ...``
  header, one space-separated line per server (`ServerState`). Admin and check
  states are bit masks (`AdminState`, `CheckState`). It has no session counts.
- ``show stat <b> 4 -1``: CSV, ``# pxname,svname,...`` header, one row per server
  (`ServerStats`). Empty cells mean "not applicable". Servers have no
  ``req_rate`` (frontend-only); their request rate is ``rate`` (sessions per
  second over the last second; in HTTP mode a session is a request). In HTTP mode
  a server's ``req_tot`` counts the requests it *answered* (``stot`` counts those
  sent, in flight included); ``rtime`` is an average over the last
  ``min(req_tot, 1024)`` of them, so it moves slowly (`agent.core.traffic` turns
  two readings into the mean of the requests between them).
  A 502 that HAProxy makes of a server's empty answer counts in ``eresp``, not in
  ``hrsp_5xx``, which only counts the server's own 5xx.
- ``show stat <b> 2 -1``: the ``BACKEND`` row, whose ``algo`` column names the
  balancing algorithm (`backend_algorithm`).
- ``show info``: ``Name: value`` lines (`parse_info`); ``Pid`` and
  ``Uptime_sec`` tell a restarted HAProxy from the one seen before.
"""
from __future__ import annotations

import csv
import enum
import functools
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from agent.core.balancer import ServerStats

__all__ = [
    "AdminState",
    "CheckState",
    "Command",
    "Expect",
    "Outcome",
    "RuntimeAddress",
    "ServerState",
    "backend_algorithm",
    "classify_reply",
    "parse_info",
    "parse_runtime_address",
    "parse_servers_state",
    "parse_stat_csv",
    "server_stats",
    "STAT_COLUMNS",
]

SERVERS_STATE_VERSION = "1"
DELETE_PENDING = "Server still has connections attached to it"


class AdminState(enum.IntFlag):
    """``srv_admin_state`` of ``show servers state`` (a bit mask)."""

    FMAINT = 0x01  # forced into maintenance (CLI or `disabled`)
    IMAINT = 0x02  # inherited from a tracked server
    CMAINT = 0x04  # maintenance from the configuration
    FDRAIN = 0x08  # forced into drain (CLI)
    IDRAIN = 0x10  # inherited drain
    RMAINT = 0x20  # address resolution failed
    HMAINT = 0x40  # FQDN set from the stats socket

    @property
    def maint(self) -> bool:
        return bool(self & (AdminState.FMAINT | AdminState.IMAINT | AdminState.CMAINT))

    @property
    def drain(self) -> bool:
        return bool(self & (AdminState.FDRAIN | AdminState.IDRAIN))


class CheckState(enum.IntFlag):
    """``srv_check_state``: the health check's bit mask."""

    INPROGRESS = 0x01
    CONFIGURED = 0x02  # the server was created with `check`
    ENABLED = 0x04  # and checks are on (a dynamic server needs `enable health`)
    PAUSED = 0x08  # paused by maintenance


@dataclass(frozen=True, slots=True)
class ServerState:
    """One line of ``show servers state``."""

    backend: str
    name: str
    id: int
    address: str
    port: int
    op_state: int  # 0 stopped (down), 1 starting, 2 running, 3 stopping
    admin: AdminState
    user_weight: int
    initial_weight: int
    check: CheckState


@dataclass(frozen=True, slots=True)
class RuntimeAddress:
    """Where a runtime API listens: a unix socket path, or a TCP host and port."""

    path: str | None = None
    host: str | None = None
    port: int | None = None

    def __str__(self) -> str:
        if self.path is not None:
            return self.path
        host = f"[{self.host}]" if self.host and ":" in self.host else self.host
        return f"{host}:{self.port}"


def parse_runtime_address(text: str) -> RuntimeAddress:
    """``/run/haproxy.sock``, ``unix@/...``, ``unix:/...``, ``host:port``, ``[::1]:port``.

    Raises ValueError with the reason (the settings layer names the variable).
    """
    value = text.strip()
    for prefix in ("unix@", "unix:"):
        if value.startswith(prefix):
            value = value[len(prefix):]
            if not value:
                raise ValueError("a unix socket needs a path")
            return RuntimeAddress(path=value)
    if value.startswith("/") or value.startswith("."):
        return RuntimeAddress(path=value)
    match = re.fullmatch(r"\[([0-9A-Fa-f:.]+)\]:([0-9]{1,5})|([A-Za-z0-9_.-]+):([0-9]{1,5})", value)
    if not match:
        raise ValueError(
            f"must be a unix socket path or host:port, got {text!r}"
        )
    host = match.group(1) or match.group(3)
    port = int(match.group(2) or match.group(4))
    if not 1 <= port <= 65535:
        raise ValueError(f"port must be 1..65535, got {port}")
    return RuntimeAddress(host=host, port=port)


class Expect(enum.Enum):
    """What a success answer of a command looks like (see the module table)."""

    EMPTY = "empty"
    ADDED = "added"
    DELETED = "deleted"
    ADDR = "addr"


class Outcome(enum.Enum):
    OK = "ok"
    PENDING = "pending"  # `del server` refused because sessions remain
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class Command:
    """One runtime-API command line and how to read its answer."""

    text: str
    expect: Expect = Expect.EMPTY
    server: str = ""  # the server it acts on, for the report

    def __post_init__(self) -> None:
        if "\n" in self.text or ";" in self.text:
            raise ValueError(f"a command is one line without ';': {self.text!r}")


def classify_reply(command: Command, reply: str) -> Outcome:
    """Whether HAProxy's answer to `command` means success, pending or failure."""
    text = reply.strip()
    if command.expect is Expect.EMPTY:
        ok = text == ""
    elif command.expect is Expect.ADDED:
        ok = text == "New server registered."
    elif command.expect is Expect.DELETED:
        if text.startswith(DELETE_PENDING):
            return Outcome.PENDING
        ok = text == "Server deleted."
    else:
        ok = "changed from" in text or "no need to change" in text
    return Outcome.OK if ok else Outcome.FAILED


def parse_servers_state(text: str) -> list[ServerState]:
    """The servers of a ``show servers state`` answer (any number of backends).

    Raises ValueError when the answer is not that output (e.g. ``Can't find
    backend.``): the message quotes it.
    """
    lines = [line for line in text.splitlines() if line.strip()]
    if not lines or lines[0].strip() != SERVERS_STATE_VERSION:
        raise ValueError(f"not a 'show servers state' v1 answer: {_quote(text)}")
    if len(lines) < 2 or not lines[1].startswith("#"):
        raise ValueError(f"'show servers state' answer has no header: {_quote(text)}")
    header = lines[1].lstrip("#").split()
    need = ("be_name", "srv_id", "srv_name", "srv_addr", "srv_op_state", "srv_admin_state",
            "srv_uweight", "srv_iweight", "srv_check_state", "srv_port")
    missing = [name for name in need if name not in header]
    if missing:
        raise ValueError(f"'show servers state' header lacks {', '.join(missing)}")
    at = [header.index(name) for name in need]
    width = len(header)
    result = []
    for line in lines[2:]:
        if line.startswith("#"):
            continue
        cells = line.split()
        if len(cells) < width:
            raise ValueError(f"short 'show servers state' line: {line!r}")
        (backend, sid, name, address, op_state, admin, uweight, iweight, check,
         port) = [cells[i] for i in at]
        try:
            result.append(ServerState(
                backend=backend,
                name=name,
                id=int(sid),
                address=address,
                port=int(port),
                op_state=int(op_state),
                admin=_admin_state(int(admin)),
                user_weight=int(uweight),
                initial_weight=int(iweight),
                check=_check_state(int(check)),
            ))
        except ValueError as exc:
            raise ValueError(f"bad 'show servers state' line {line!r}: {exc}") from None
    return result


@functools.lru_cache(maxsize=256)
def _admin_state(value: int) -> AdminState:
    return AdminState(value)  # enum construction is slow; a backend has few distinct masks


@functools.lru_cache(maxsize=256)
def _check_state(value: int) -> CheckState:
    return CheckState(value)


def parse_stat_csv(text: str, columns: Iterable[str] | None = None) -> list[dict[str, str]]:
    """The rows of a ``show stat`` CSV answer, as column -> cell (cells as text).

    With `columns`, only those are kept (those absent from the header read as
    ""): a server row has about 130 cells, and a sync needs 25 of them.
    """
    lines = [line for line in text.splitlines() if line.strip()]
    if not lines or not lines[0].startswith("# pxname,"):
        raise ValueError(f"not a 'show stat' CSV answer: {_quote(text)}")
    header = lines[0][2:].rstrip(",").split(",")
    wanted = header if columns is None else list(columns)
    index = {name: i for i, name in enumerate(header)}
    at = [(name, index.get(name, -1)) for name in wanted]
    rows = []
    for cells in csv.reader(lines[1:]):
        size = len(cells)
        rows.append({name: (cells[i] if 0 <= i < size else "") for name, i in at})
    return rows


# The columns `server_stats` and `backend_algorithm` read.
STAT_COLUMNS = (
    "pxname", "svname", "type", "status", "weight", "uweight", "scur", "qcur", "stot", "req_tot",
    "rate", "rtime", "ttime", "qtime", "ctime", "hrsp_2xx", "hrsp_4xx", "hrsp_5xx", "eresp",
    "econ", "wretr", "wredis", "check_status", "addr", "algo",
)


def server_stats(rows: Iterable[Mapping[str, str]], backend: str) -> dict[str, ServerStats]:
    """`ServerStats` of every server row of `backend` (type 2), by server name."""
    result = {}
    for row in rows:
        if row.get("pxname") != backend or row.get("type") != "2":
            continue
        served = _int(row, "stot")
        answered = _int(row, "req_tot") if row.get("req_tot") else served
        # an average is 0 before the first request: known once one was sent or answered
        known = max(served, answered)
        result[row["svname"]] = ServerStats(
            name=row["svname"],
            status=row.get("status", ""),
            weight=_int(row, "weight"),
            user_weight=_int(row, "uweight"),
            sessions=_int(row, "scur"),
            queued=_int(row, "qcur"),
            sessions_total=served,
            requests_total=answered,
            rate=_int(row, "rate"),
            response_time_ms=_avg(row, "rtime", known),
            total_time_ms=_avg(row, "ttime", known),
            queue_time_ms=_avg(row, "qtime", known),
            connect_time_ms=_avg(row, "ctime", known),
            responses_2xx=_int(row, "hrsp_2xx"),
            responses_4xx=_int(row, "hrsp_4xx"),
            responses_5xx=_int(row, "hrsp_5xx"),
            response_errors=_int(row, "eresp"),
            connect_errors=_int(row, "econ"),
            retries=_int(row, "wretr"),
            redispatches=_int(row, "wredis"),
            check_status=row.get("check_status", "").removeprefix("* "),
            address=row.get("addr", ""),
        )
    return result


def backend_algorithm(rows: Iterable[Mapping[str, str]], backend: str) -> str | None:
    """The ``algo`` of `backend`'s BACKEND row; None when there is no such backend."""
    for row in rows:
        if row.get("pxname") == backend and row.get("svname") == "BACKEND":
            return row.get("algo", "")
    return None


def parse_info(text: str) -> dict[str, str]:
    """``show info``: its ``Name: value`` lines. Raises ValueError on another answer."""
    info = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep and key and " " not in key:
            info[key] = value.strip()
    if "Pid" not in info:
        raise ValueError(f"not a 'show info' answer: {_quote(text)}")
    return info


def _int(row: Mapping[str, str], name: str) -> int:
    text = row.get(name, "")
    if not text:
        return 0
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"'show stat' column {name} is not a number: {text!r}") from None


def _avg(row: Mapping[str, str], name: str, served: int) -> float:
    return float(_int(row, name)) if served > 0 else math.nan


def _quote(text: str, limit: int = 200) -> str:
    text = text.strip()
    return repr(text if len(text) <= limit else text[:limit] + "…")
