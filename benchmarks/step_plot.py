"""One PNG timeline per step-load run (matplotlib, the ``bench`` extra).

Three panels over the trace's time: the request rate (offered, sent, answered
200, and failures), the p99 latency per second (log scale), and the workers —
running, desired and needed — with every scale decision of the policy marked
(▲ up, ▼ down) and the phases shaded.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from benchmarks.step_analysis import RunRecord, needed, time_series

__all__ = ["plot_run"]

_SHADE = {"baseline": "#ffffff", "step": "#fbe3d6", "after": "#e3eef9"}


def plot_run(record: RunRecord, figs: dict[str, Any], path: str | Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series = time_series(record)
    fig, (rate, lat, pool) = plt.subplots(3, 1, figsize=(9, 6.6), sharex=True, dpi=80,
                                          gridspec_kw={"height_ratios": [1, 1, 1.2]})
    for ax in (rate, lat, pool):
        for p in record.phases:
            ax.axvspan(p.start, p.end, color=_SHADE.get(p.name, "#f4f4f4"), lw=0)
        ax.grid(alpha=0.3)
    t = series["t"]
    rate.plot(t, series["offered"], color="black", lw=1, ls="--", label="offered")
    rate.plot(t, series["ok"], color="tab:green", lw=1.2, label="answered 200 (by due time)")
    failed = [(x, y) for x, y in zip(t, series["failed"]) if y > 0]
    if failed:
        rate.bar([x for x, _ in failed], [y for _, y in failed], width=0.9, color="tab:red",
                 label="failed")
    rate.set_ylabel("requests/s")
    rate.legend(loc="upper right", fontsize=7)
    p99 = [(x, 1000 * y) for x, y in zip(t, series["p99"]) if math.isfinite(y)]
    lat.plot([x for x, _ in p99], [y for _, y in p99], color="tab:purple", lw=1)
    lat.set_yscale("log")
    lat.set_ylabel("p99 per s (ms)")
    _pool_panel(pool, record)
    pool.set_xlabel("seconds since the trace started")
    step = figs["phases"]["step"]
    title = (f"{record.policy}: p99 at the step {_ms(step['p99'])}, decision "
             f"{_s(figs['decision_s'])} and traffic {_s(figs['traffic_s'])} after the step, "
             f"{figs['container_seconds']:.0f} container-s, {figs['failed']} failed")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)


def _pool_panel(ax: Any, record: RunRecord) -> None:
    hist = sorted(record.history)
    times = [h[0] for h in hist] + [record.end]
    ax.step(times, [h[2] for h in hist] + [hist[-1][2]] if hist else [], where="post",
            color="tab:blue", lw=1.5, label="running")
    ax.step(times, [h[1] for h in hist] + [hist[-1][1]] if hist else [], where="post",
            color="tab:orange", lw=1, ls="--", label="desired")
    ax.step([p.start for p in record.phases] + [record.end],
            [needed(p.rate, record.capacity) for p in record.phases]
            + [needed(record.phases[-1].rate, record.capacity)],
            where="post", color="grey", lw=1, ls=":", label="needed")
    for c in record.checks:
        if c.direction:
            ax.plot(c.time, c.desired, marker="^" if c.direction > 0 else "v",
                    color="tab:green" if c.direction > 0 else "tab:red", ms=6, ls="none")
    ax.set_ylabel("workers")
    ax.set_xlim(0, record.end)
    ax.set_ylim(0, max([h[2] for h in hist] + [h[1] for h in hist] + [2]) + 1)
    ax.legend(loc="upper right", fontsize=7)


def _ms(x: Any) -> str:
    return "-" if x is None else f"{1000 * x:.0f} ms"


def _s(x: Any) -> str:
    return "-" if x is None else f"{x:.1f} s"
