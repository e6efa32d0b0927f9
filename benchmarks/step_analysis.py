"""The step-load benchmark's figures, from what one run recorded (pure: no I/O).

`bench_step_load` records a run as a `RunRecord` — the trace's phases, every
request the open-loop generator sent, the agent's ledger (scale checks, created
and removed containers), when each server first took traffic at the balancer,
and the agent's own desired/running history — and this module turns it into
the figures and the verdicts. Times are seconds since the trace started (one
clock: the wall clock, which the agent's ledger uses too). The integration test
(`tests/integration/test_step_load.py`) judges its short trace with the same
functions, so the counts it asserts are the benchmark's.

Definitions (the README and the benchmark's output say the same):

* **needed** during a phase = ceil(offered rate / capacity of one worker), the
  capacity being what one worker serves at its CPU limit (measured before the
  runs: CPU-seconds per request, from the engine's counters under a light load,
  into CONTAINER_CPUS). The fewest workers that can keep up at all; at exactly
  "needed" they run near 100 %, so a policy aiming at headroom overshoots it.
* **overshoot** = the most workers running from the step on − needed at the step.
* **the first scale check that sees the step**: the first one at least one tick
  after the step (its samples then hold load from after the step).
* **direction reversals during a hold**: in the sequence of the policy's own
  scale decisions inside the hold (scale_up / scale_down; the floor, the
  ceiling and manual scales excluded), every change of direction counts one:
  up, up, down is one; up, down, up two. (A single move against the hold's
  direction, such as a scale-up just after the step down, is not a reversal
  by itself; it shows in the per-phase decision counts.)
* **scale-in window**: from the first scale-down decision after the step down to
  the last removal of a container (+ one tick); a request is in it when it was
  due, or still open, inside it.
* **cost** = container-seconds: the running count (draining ones included) of the
  agent's history, integrated over the trace.
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from benchmarks.open_loop import Request, percentile

__all__ = [
    "Phase",
    "Check",
    "RunRecord",
    "needed",
    "phase_stats",
    "reversals",
    "scale_in_window",
    "container_seconds",
    "figures",
    "time_series",
    "verdicts",
    "TARGETS",
]

#: Reasons of scale decisions that are not the policy reacting to load.
NOT_LOAD = frozenset({"below_min", "above_max", "manual"})

TARGETS = {
    "decision_ticks_after_seeing_max": 2,
    "traffic_after_decision_s_max": 3.0,
    "reversals_max": 0,
    "scale_in_failed_max": 0,
}


@dataclass(frozen=True, slots=True)
class Phase:
    name: str  # "baseline", "step", "after"
    start: float
    end: float
    rate: float  # requests per second offered


@dataclass(frozen=True, slots=True)
class Check:
    """One ``scale_check`` ledger entry."""

    time: float
    action: str  # scale_up, scale_down, none
    reason: str
    desired: int

    @property
    def direction(self) -> int:
        """+1 up, −1 down, 0 for none and for decisions not driven by load."""
        if self.reason in NOT_LOAD:
            return 0
        return {"scale_up": 1, "scale_down": -1}.get(self.action, 0)


@dataclass
class RunRecord:
    policy: str
    phases: tuple[Phase, ...]
    requests: list[Request]  # `due` since the trace started
    checks: list[Check]
    created: list[tuple[float, str]]  # (time, container name)
    removed: list[tuple[float, str]]
    first_traffic: dict[str, float]  # server → when it first had a request
    history: list[tuple[float, int, int]]  # (time, desired, running), per tick
    capacity: float  # requests per second one worker serves at its CPU limit
    tick: float
    check_period: float
    host_cpu: list[tuple[float, float]] = field(default_factory=list)  # (time, busy 0..1)
    notes: dict[str, Any] = field(default_factory=dict)

    def phase(self, name: str) -> Phase:
        return next(p for p in self.phases if p.name == name)

    @property
    def end(self) -> float:
        return self.phases[-1].end


def needed(rate: float, capacity: float) -> int:
    """The fewest workers whose CPU limits can serve `rate` (see the module doc)."""
    return max(1, math.ceil(rate / capacity - 1e-9))


def phase_stats(requests: Iterable[Request], start: float, end: float) -> dict[str, Any]:
    """Requests due in [start, end): counts, the rate achieved, p50/p99 (seconds)
    of those answered 200."""
    inside = [r for r in requests if start <= r.due < end]
    ok = [r.latency for r in inside if r.status == 200]
    span = end - start
    return {
        "sent": sum(1 for r in inside if r.status != -1),
        "answered_200": len(ok),
        "failed": len(inside) - len(ok),
        "achieved_rate": sum(1 for r in inside if r.status != -1) / span if span > 0 else math.nan,
        "p50": percentile(ok, 0.50),
        "p99": percentile(ok, 0.99),
        "max": max(ok) if ok else math.nan,
    }


def reversals(checks: Iterable[Check], start: float, end: float, expected: int = 0) -> int:
    """Changes of direction among the load decisions in [start, end); with
    `expected` (+1 or −1) the first one is judged against it too."""
    last = expected
    count = 0
    for c in sorted(checks, key=lambda c: c.time):
        if not start <= c.time < end or c.direction == 0:
            continue
        if last != 0 and c.direction != last:
            count += 1
        last = c.direction
    return count


def scale_in_window(record: RunRecord) -> tuple[float, float] | None:
    """(first scale-down decision after the step down, last removal + one tick),
    or None when the policy did not scale in."""
    after = record.phase("after")
    downs = [c.time for c in record.checks if c.time >= after.start and c.direction < 0]
    if not downs:
        return None
    start = min(downs)
    removals = [t for t, _ in record.removed if t >= start]
    return start, (max(removals) if removals else record.end) + record.tick


def _open_in(r: Request, start: float, end: float) -> bool:
    """Due inside the window, or sent before it and still open when it began."""
    if start <= r.due < end:
        return True
    finish = r.due + (r.latency if math.isfinite(r.latency) else 0.0)
    return r.due < start < finish


def container_seconds(history: Sequence[tuple[float, int, int]], start: float, end: float) -> float:
    """∫ running dt over [start, end), the history a step function (each point
    holds until the next)."""
    points = sorted(history)
    total = 0.0
    for i, (t, _, running) in enumerate(points):
        nxt = points[i + 1][0] if i + 1 < len(points) else end
        lo, hi = max(t, start), min(nxt, end)
        if hi > lo:
            total += running * (hi - lo)
    return total


def _running_between(history: Sequence[tuple[float, int, int]], start: float, end: float) -> list[int]:
    points = sorted(history)
    before = [r for t, _, r in points if t < start]
    inside = [r for t, _, r in points if start <= t < end]
    return ([before[-1]] if before else []) + inside


def _reaction(record: RunRecord) -> dict[str, Any]:
    """Step → the first check that sees it, the first scale-up decision, and the
    first request on a container that decision created."""
    step = record.phase("step")
    checks = sorted(record.checks, key=lambda c: c.time)
    seen = next((c for c in checks if c.time >= step.start + record.tick), None)
    up = next((c for c in checks if c.time >= step.start and c.direction > 0), None)
    out: dict[str, Any] = {
        "seen_check_s": None if seen is None else seen.time - step.start,
        "decision_s": None if up is None else up.time - step.start,
        "decision_ticks_after_seeing": None,
        "traffic_s": None,
        "traffic_after_decision_s": None,
        "first_new_container": None,
    }
    if up is None or seen is None:
        return out
    out["decision_ticks_after_seeing"] = (up.time - seen.time) / record.tick
    made = sorted((t, n) for t, n in record.created if t >= up.time - record.tick)
    if made:
        name = made[0][1]
        out["first_new_container"] = name
        first = record.first_traffic.get(name)
        if first is not None:
            out["traffic_s"] = first - step.start
            out["traffic_after_decision_s"] = first - up.time
    return out


def figures(record: RunRecord) -> dict[str, Any]:
    """Every figure of one run (see the module doc for the definitions)."""
    base, step, after = (record.phase(n) for n in ("baseline", "step", "after"))
    need_step = needed(step.rate, record.capacity)
    running_step = _running_between(record.history, step.start, record.end)
    reached = next((t for t, _, r in sorted(record.history)
                    if step.start <= t < step.end and r >= need_step), None)
    window = scale_in_window(record)
    in_window = [] if window is None else [r for r in record.requests if _open_in(r, *window)]
    ups_in_step = [c for c in record.checks if step.start <= c.time < step.end and c.direction > 0]
    return {
        "policy": record.policy,
        **_reaction(record),
        "needed": {p.name: needed(p.rate, record.capacity) for p in record.phases},
        "peak_running": max(running_step) if running_step else None,
        "overshoot": (max(running_step) - need_step) if running_step else None,
        "reached_needed_s": None if reached is None else reached - step.start,
        "reversals": {
            "baseline": reversals(record.checks, base.start, base.end),
            "step": reversals(record.checks, step.start, step.end),
            "after": reversals(record.checks, after.start, after.end),
        },
        "decisions": {
            p.name: {"up": sum(1 for c in record.checks if p.start <= c.time < p.end and c.direction > 0),
                     "down": sum(1 for c in record.checks if p.start <= c.time < p.end and c.direction < 0)}
            for p in record.phases
        },
        "failed": sum(1 for r in record.requests if r.status != 200),
        "requests": len(record.requests),
        "scale_in": None if window is None else {
            "start_s": window[0], "end_s": window[1], "requests": len(in_window),
            "failed": sum(1 for r in in_window if r.status != 200),
            "removed": sum(1 for t, _ in record.removed if window[0] <= t <= window[1]),
        },
        "phases": {p.name: {"rate": p.rate, "start_s": p.start, "duration_s": p.end - p.start,
                            **phase_stats(record.requests, p.start, p.end),
                            "host_cpu_busy": _mean(b for t, b in record.host_cpu
                                                   if p.start <= t < p.end)}
                   for p in record.phases},
        "container_seconds": container_seconds(record.history, 0.0, record.end),
        "container_seconds_by_phase": {p.name: container_seconds(record.history, p.start, p.end)
                                       for p in record.phases},
        "seen_and_answered": bool(ups_in_step) and reached is not None,
        "notes": dict(record.notes),
    }


def _mean(values: Iterable[float]) -> float:
    xs = [v for v in values if math.isfinite(v)]
    return math.fsum(xs) / len(xs) if xs else math.nan


def time_series(record: RunRecord, width: float = 1.0) -> dict[str, list[float]]:
    """Per `width`-second bin of due time: offered and sent rate, failures, p99."""
    bins = max(1, math.ceil(record.end / width))
    due: list[list[Request]] = [[] for _ in range(bins)]
    for r in record.requests:
        i = int(r.due // width)
        if 0 <= i < bins:
            due[i].append(r)
    offered = []
    for i in range(bins):
        t = (i + 0.5) * width
        offered.append(next((p.rate for p in record.phases if p.start <= t < p.end), math.nan))
    return {
        "t": [(i + 0.5) * width for i in range(bins)],
        "offered": offered,
        "sent": [sum(1 for r in b if r.status != -1) / width for b in due],
        "ok": [sum(1 for r in b if r.status == 200) / width for b in due],
        "failed": [float(sum(1 for r in b if r.status != 200)) for b in due],
        "p99": [percentile([r.latency for r in b if r.status == 200], 0.99) for b in due],
    }


# --------------------------------------------------------------------------- verdicts


def _num(x: Any) -> float:
    return x if isinstance(x, (int, float)) and math.isfinite(x) else math.inf


def verdicts(results: Mapping[str, Mapping[str, Any]], *, ours: str = "ours",
             hpa: str = "hpa") -> list[tuple[str, str, str]]:
    """(target, value, PASS/MISS with the limit) for the default policy `ours`."""
    if ours not in results:
        return []
    r, t = results[ours], TARGETS
    rows = []
    ticks = r["decision_ticks_after_seeing"]
    rows.append(("ours: scale-up decided, ticks after the check that sees the step",
                 "none" if ticks is None else f"{ticks:.1f}",
                 _pf(ticks is not None and ticks <= t["decision_ticks_after_seeing_max"] + 1e-6,
                     f"≤ {t['decision_ticks_after_seeing_max']}")))
    after = r["traffic_after_decision_s"]
    rows.append(("ours: new container takes traffic, s after the decision",
                 "none" if after is None else f"{after:.2f}",
                 _pf(after is not None and after <= t["traffic_after_decision_s_max"],
                     f"≤ {t['traffic_after_decision_s_max']:g}")))
    for name, res in results.items():
        rev = res["reversals"]["step"] + res["reversals"]["after"]
        rows.append((f"{name}: direction reversals during the holds", str(rev),
                     _pf(rev <= t["reversals_max"], "= 0") if name == ours else "(info)"))
    for name, res in results.items():
        si = res["scale_in"]
        # no scale-in is no evidence: a miss for ours (the hold was too short for it)
        ok = si is not None and si["failed"] <= t["scale_in_failed_max"]
        value = "no scale-in" if si is None else f"{si['failed']} of {si['requests']}"
        rows.append((f"{name}: failed requests during scale-in", value,
                     _pf(ok, "= 0") if name == ours else "(info)"))
    p99 = {n: _num(res["phases"]["step"]["p99"]) for n, res in results.items()}
    best = min(p99, key=lambda n: p99[n])
    others = [n for n in results if n != ours]
    if others:
        rows.append(("ours: lowest p99 in the step-up phase", f"{best} ({1000 * p99[best]:.0f} ms)",
                     _pf(best == ours, f"ours {1000 * p99[ours]:.0f} ms")))
    if hpa in results:
        mine, theirs = results[ours]["container_seconds"], results[hpa]["container_seconds"]
        rows.append(("ours: container-seconds vs the HPA-equivalent", f"{mine:.0f} / {theirs:.0f}",
                     _pf(mine <= theirs, "≤ 1")))
    rows.append(("ours (defaults): the step is seen and answered",
                 "yes" if r["seen_and_answered"] else "no", _pf(r["seen_and_answered"], "yes")))
    return rows


def _pf(ok: bool, limit: str) -> str:
    return f"{'PASS' if ok else 'MISS'} ({limit})"
