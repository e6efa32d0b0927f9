"""Cost of keeping an HAProxy backend in sync: one connection per sync, N servers.

    python -m benchmarks.bench_haproxy_sync                  # 100 servers, 7 rounds
    python -m benchmarks.bench_haproxy_sync --servers 500 --json out.json

What runs: a real embedded haproxy (`HAProxyBalancer.embedded`, Debian's 2.6) in a
temporary directory, on a free loopback port, stopped by pid at the end. Its
servers point at one closed loopback port (their health checks fail and they go
DOWN; that costs HAProxy nothing and the sync does not care). Per round, each
phase is one `sync` (or `observe`) and is timed from the caller's side,
connection included:

| phase | what the sync does |
|---|---|
| add all | N × (add server, enable health, set state ready) |
| no change | reads the backend, plans nothing, sends nothing |
| reweight all | N × set weight |
| drain 10 % | N/10 × set server state drain |
| observe | one `show stat` of N servers, parsed |
| remove all | N × (state maint, del server) |
| reweight, naive | the same N `set weight` as above, one connection per command |

Connections are counted by HAProxy itself: ``CumConns`` of ``show info`` before and
after the phase (less the reading's own connection). Reported: the median and
best time per phase over the rounds, the commands sent, the connections used, and
the ratio naive / one connection. The exit status is 0 (a report).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import trio

from agent.adapters.haproxy import HAProxyBalancer
from agent.adapters.haproxy_cli import RuntimeAPI
from agent.adapters.redis_server import free_loopback_port
from agent.core.balancer import BackendSpec, DesiredServer
from agent.core.haproxy_text import parse_info

MAX_SERVERS = 2000  # HAProxy's fd limit and the machine's patience


def spec(n: int, port: int, *, weight: int = 100, drain_every: int = 0) -> BackendSpec:
    servers = tuple(
        DesiredServer(f"bench-{i:08x}", "127.0.0.1", port, weight,
                      drain=bool(drain_every) and i % drain_every == 0)
        for i in range(n)
    )
    return BackendSpec(servers)


async def connections(api: RuntimeAPI) -> int:
    return int(parse_info((await api.run(["show info"]))[0])["CumConns"])


async def timed(api: RuntimeAPI, coro_fn: Any) -> tuple[float, int, Any]:
    before = await connections(api)
    t0 = time.perf_counter()
    result = await coro_fn()
    elapsed = time.perf_counter() - t0
    used = await connections(api) - before - 1  # less the `show info` of `before`
    return elapsed, used, result


async def naive_reweight(api: RuntimeAPI, n: int, weight: int) -> int:
    for i in range(n):
        (answer,) = await api.run([f"set weight pool/bench-{i:08x} {weight}"])
        assert answer.strip() == "", answer
    return n


async def bench(opts: argparse.Namespace) -> dict[str, Any]:
    n = opts.servers
    data_dir = Path(tempfile.mkdtemp(prefix="dah-bench-", dir="/tmp"))
    balancer = HAProxyBalancer.embedded(data_dir, prefix="bench", port=free_loopback_port())
    dead_port = free_loopback_port()
    await balancer.start()
    assert balancer.process is not None
    api = balancer.api
    phases: dict[str, list[float]] = {}
    info: dict[str, dict[str, int]] = {}

    def record(name: str, seconds: float, commands: int, conns: int) -> None:
        phases.setdefault(name, []).append(seconds)
        info[name] = {"commands": commands, "connections": conns}

    try:
        for round_no in range(1, opts.rounds + 1):
            print(f"round {round_no}/{opts.rounds}", file=sys.stderr)
            for name, desired in [
                ("add all", spec(n, dead_port, weight=100)),
                ("no change", spec(n, dead_port, weight=100)),
                ("reweight all", spec(n, dead_port, weight=50)),
                ("drain 10 %", spec(n, dead_port, weight=50, drain_every=10)),
            ]:
                seconds, conns, report = await timed(api, lambda d=desired: balancer.sync(d))
                assert report.ok, report.error
                record(name, seconds, len(report.commands), conns)
            seconds, conns, observation = await timed(api, balancer.observe)
            assert observation.ok and len(observation.stats) == n
            record("observe", seconds, 1, conns)
            seconds, conns, report = await timed(api, lambda: balancer.sync(BackendSpec()))
            assert report.ok and len(report.removed) == n, report.error
            record("remove all", seconds, len(report.commands), conns)
            # naive: re-add, then reweight with a connection per command
            assert (await balancer.sync(spec(n, dead_port, weight=100))).ok
            seconds, conns, sent = await timed(api, lambda: naive_reweight(api, n, 50))
            record("reweight, naive", seconds, sent, conns)
            assert (await balancer.sync(BackendSpec())).ok
    finally:
        await balancer.process.stop(graceful=False)
        shutil.rmtree(data_dir, ignore_errors=True)
    table = {
        name: {
            "median_ms": statistics.median(times) * 1e3,
            "best_ms": min(times) * 1e3,
            **info[name],
        }
        for name, times in phases.items()
    }
    ratio = table["reweight, naive"]["median_ms"] / table["reweight all"]["median_ms"]
    return {
        "servers": n,
        "rounds": opts.rounds,
        "phases": table,
        "naive_over_one_connection": ratio,
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count(),
                    "loadavg": os.getloadavg()},
    }


def print_table(result: dict[str, Any]) -> None:
    print(f"HAProxy sync, {result['servers']} servers, {result['rounds']} rounds "
          f"(load average {result['machine']['loadavg'][0]:.2f})")
    print(f"{'phase':<18}{'median ms':>11}{'best ms':>10}{'commands':>10}{'connections':>13}")
    for name, row in result["phases"].items():
        print(f"{name:<18}{row['median_ms']:>11.2f}{row['best_ms']:>10.2f}"
              f"{row['commands']:>10}{row['connections']:>13}")
    print(f"reweight: one connection per command is {result['naive_over_one_connection']:.1f}x "
          "slower than one connection per sync")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--servers", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    opts = parser.parse_args(argv)
    if not 1 <= opts.servers <= MAX_SERVERS:
        parser.error(f"--servers must be 1..{MAX_SERVERS}")
    if not 1 <= opts.rounds <= 100:
        parser.error("--rounds must be 1..100")
    result = trio.run(bench, opts)
    print_table(result)
    if opts.json:
        Path(opts.json).write_text(json.dumps(result, indent=2) + "\n")
        print(f"\nwritten: {opts.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
