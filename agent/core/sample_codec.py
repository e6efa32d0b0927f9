"""What a node's collector reports, its wire format, and how the leader reads it.

In swarm mode each node's collector samples the workers on its node and writes one
`NodeReport` per tick to Redis under `report_key` (one ``SET … PX`` per node and
tick); the leader reads the reports of the nodes its workers run on (one ``MGET``
per tick) and turns them, with its own availability probes, into one `Sample` per
worker (`samples_from_reports`), which the scorer takes in one kernel call.

A report's key expires after the collector's ``COLLECTOR_REPORT_TTL``: a node that
stops reporting — its engine stopped, the collector died, the node is cut off —
has no report a few ticks later, and its workers' samples are *stale* (the scorer
keeps their last scores: stale is never zero). Staleness is decided by Redis's
clock alone, so the nodes' clocks need not agree.

Wire format (version 1), compact JSON::

    {"v":1,"node":"<node id>","t":<epoch s>,"seq":<n>,
     "w":[["<service>","<task id>",cpu %,memory %,network B/s,stale 0|1], ...]}

CPU and memory are rounded to 0.01 %, network to 1 B/s; NaN (not measured) is
``null``. `decode_report` checks every field and raises `ValueError` on anything
else (stored data is untrusted). Pure: no Redis, no clock.
"""
from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from agent.core.records import Sample

__all__ = [
    "REPORT_VERSION",
    "NodeReport",
    "Placement",
    "WorkerReading",
    "decode_report",
    "encode_report",
    "report_key",
    "samples_from_reports",
]

REPORT_VERSION = 1


@dataclass(frozen=True, slots=True)
class WorkerReading:
    """One worker's numbers as its node's collector measured them."""

    service: str  # the worker's name (its service's name)
    task: str  # the Swarm task the container belongs to
    cpu_percent: float = math.nan
    memory_percent: float = math.nan
    network_bps: float = math.nan
    stale: bool = False  # the collector's own reading missed its deadline


@dataclass(frozen=True, slots=True)
class NodeReport:
    """One collector tick: the node, its wall time, a counter, the readings."""

    node: str
    time: float  # the collector's wall clock, epoch seconds (for display only)
    seq: int
    readings: tuple[WorkerReading, ...] = ()

    def by_task(self) -> dict[str, WorkerReading]:
        return {r.task: r for r in self.readings}


@dataclass(frozen=True, slots=True)
class Placement:
    """Where the leader expects a worker's numbers: its node and current task.
    `probed`: the leader probes it this tick (SUNDOWN workers are not)."""

    name: str
    node: str
    task: str
    probed: bool = True


def report_key(prefix: str, node: str) -> str:
    """The Redis key of a node's latest report, under the app's key prefix
    (``da:<APP_IDENTIFIER>:``, `agent.core.store_codec.Keys.prefix`)."""
    if not node:
        raise ValueError("a report needs a node id")
    return f"{prefix}samples:{node}"


def _num(value: float, digits: int) -> float | int | None:
    if not math.isfinite(value):
        return None
    return round(value) if digits == 0 else round(value, digits)


def encode_report(report: NodeReport) -> str:
    rows = [
        [r.service, r.task, _num(r.cpu_percent, 2), _num(r.memory_percent, 2),
         _num(r.network_bps, 0), int(r.stale)]
        for r in report.readings
    ]
    body = {"v": REPORT_VERSION, "node": report.node, "t": round(report.time, 3),
            "seq": report.seq, "w": rows}
    return json.dumps(body, separators=(",", ":"), allow_nan=False)


def _float(value: Any, what: str) -> float:
    if value is None:
        return math.nan
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{what} must be a finite number or null, got {value!r}")
    return float(value)


def _text(value: Any, what: str) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError(f"{what} must be a non-empty string, got {value!r}")
    return value


def decode_report(text: str | bytes) -> NodeReport:
    """The report `encode_report` wrote; ValueError for anything else."""
    try:
        body = json.loads(text)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"a node report is not JSON: {exc}") from None
    if not isinstance(body, dict) or body.get("v") != REPORT_VERSION:
        raise ValueError(f"not a version {REPORT_VERSION} node report: {str(text)[:80]!r}")
    seq = body.get("seq")
    if isinstance(seq, bool) or not isinstance(seq, int):
        raise ValueError(f"seq must be an integer, got {seq!r}")
    rows = body.get("w")
    if not isinstance(rows, list):
        raise ValueError(f"w must be a list, got {rows!r}")
    readings = []
    for row in rows:
        if not isinstance(row, list) or len(row) != 6 or row[5] not in (0, 1):
            raise ValueError(f"a reading must be [service, task, cpu, mem, net, 0|1], got {row!r}")
        readings.append(WorkerReading(
            service=_text(row[0], "service"), task=_text(row[1], "task"),
            cpu_percent=_float(row[2], "cpu"), memory_percent=_float(row[3], "memory"),
            network_bps=_float(row[4], "network"), stale=bool(row[5]),
        ))
    return NodeReport(node=_text(body.get("node"), "node"), time=_float(body.get("t"), "t"),
                      seq=seq, readings=tuple(readings))


def samples_from_reports(
    placements: Iterable[Placement],
    reports: Mapping[str, NodeReport],
    probes: Mapping[str, float],
) -> dict[str, Sample]:
    """One `Sample` per placement, from its node's report and the leader's probe.

    `reports` holds the reports that were there to read (by node id); `probes` the
    probes that finished in time (by worker name; NaN = no answer). A worker is
    stale when its node has no report, the report has no reading of its current
    task (the collector has not seen the task yet), the collector marked the
    reading stale, or its probe did not finish in time.
    """
    out: dict[str, Sample] = {}
    tasks = {node: report.by_task() for node, report in reports.items()}
    for p in placements:
        reading = tasks.get(p.node, {}).get(p.task) if p.task else None
        late = p.probed and p.name not in probes
        if reading is None:
            out[p.name] = Sample(response_time=probes.get(p.name, math.nan), stale=True)
            continue
        out[p.name] = Sample(
            cpu_percent=reading.cpu_percent,
            memory_percent=reading.memory_percent,
            network_bps=reading.network_bps,
            response_time=probes.get(p.name, math.nan),
            stale=reading.stale or late,
        )
    return out
