"""What the leader lease costs a tick in Redis round trips and time.

    python -m benchmarks.bench_lease                      # 15 containers, 500 rounds
    python -m benchmarks.bench_lease --n 100 --rounds 200 --json bench-results/lease.json

Against a redis-server started for this run (the agent's embedded one, loopback,
password), through the project's own `RedisStore` (worker threads, error
translation), it times in turn, `--rounds` times each:

* the tick write of a lone agent (``write_tick``, unfenced, no view): in full,
  and as the delta write it makes every tick (the pool unchanged: no round trip);
* a leader's tick: the lease renewal (one EVAL) and the fenced delta write
  (WATCH, GET, MULTI/EXEC) carrying the followers' tick view — a fenced write
  always goes to Redis, whose refusal is what tells a deposed leader;
* a follower's tick: ``read_shared`` of the one view written since its last read.

The lone and the leading agent write through two stores under two pool names
(a fenced delta is trusted only under its own lease tenure). It prints medians
and p95s, the leader's tick against the lone agent's full write as a ratio
(same run, same load), and the size of one tick view. The figures are a
report; the exit status is 0.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import trio

from agent.adapters.redis_server import EmbeddedRedis
from agent.adapters.redis_store import RedisStore
from agent.core.records import ContainerInfo, Sample
from agent.core.store_codec import TickWrite
from agent.core.tick_view import TickView, encode_view


def _pool(n: int) -> tuple[TickWrite, TickWrite]:
    infos = tuple(ContainerInfo(f"bench-{i:04d}", f"{i:064x}", "img:1", "running", 1.7e9,
                                host_port=30000 + i) for i in range(n))
    records = {i.name: {"id": i.id, "category": "LU", "score": 81.5, "host_port": i.host_port,
                        "image": i.image, "created": i.created} for i in infos}
    samples = {i.name: Sample(12.0, 30.0, 2.5e5, 0.0021) for i in infos}
    view = TickView("bench:1:000000", 1, time.time(), n, infos, samples, {})
    return TickWrite(desired=n, containers=records), TickWrite(desired=n, containers=records, view=view)


async def _timed(rounds: int, step: Callable[[], Awaitable[object]]) -> list[float]:
    out = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        await step()
        out.append(time.perf_counter() - t0)
    return out


def _row(label: str, xs: list[float]) -> dict[str, float | str]:
    xs = sorted(xs)
    return {"what": label, "median_ms": statistics.median(xs) * 1e3,
            "p95_ms": xs[int(0.95 * (len(xs) - 1))] * 1e3}


async def run(n: int, rounds: int) -> dict[str, object]:
    with tempfile.TemporaryDirectory(prefix="bench-lease-") as tmp:
        server = EmbeddedRedis(Path(tmp) / "redis")
        url = await server.start()
        try:
            lone_store, store = RedisStore(url, "bench-lone"), RedisStore(url, "bench-lease")
            plain, shared = _pool(n)
            holder = await store.acquire_lease("bench:1:000000", 10.0, "http://127.0.0.1:1")
            assert holder is not None
            await lone_store.write_tick(plain)
            await store.write_tick(shared, fence=holder)  # a new tenure: in full once
            cursor = (await store.read_shared(None)).cursor

            async def leader_tick() -> None:
                await store.acquire_lease("bench:1:000000", 10.0, "http://127.0.0.1:1")
                await store.write_tick(shared, fence=holder, only_changes=True)

            lone, delta, renew, fenced, lead, follow = [], [], [], [], [], []
            for _ in range(rounds):  # interleaved, so that load hits every kind alike
                lone += await _timed(1, lambda: lone_store.write_tick(plain))
                delta += await _timed(1, lambda: lone_store.write_tick(plain, only_changes=True))
                renew += await _timed(1, lambda: store.acquire_lease(
                    "bench:1:000000", 10.0, "http://127.0.0.1:1"))
                fenced += await _timed(1, lambda: store.write_tick(
                    shared, fence=holder, only_changes=True))
                lead += await _timed(1, leader_tick)
                t0 = time.perf_counter()
                state = await store.read_shared(cursor)
                follow.append(time.perf_counter() - t0)
                cursor = state.cursor
            assert store.delta_writes >= 2 * rounds, store.delta_writes  # not full writes
            await lone_store.aclose()
            await store.aclose()
        finally:
            await server.stop()
    rows = [_row("lone agent: full write_tick", lone),
            _row("lone agent: delta write_tick, unchanged", delta),
            _row("lease renewal (EVAL)", renew),
            _row("fenced delta write_tick + tick view", fenced),
            _row("leader tick: renewal + fenced write", lead),
            _row("follower tick: read_shared (new views)", follow)]
    return {
        "containers": n, "rounds": rounds, "rows": rows,
        "leader_vs_lone_full_median": statistics.median(lead) / statistics.median(lone),
        "view_bytes": len(encode_view(shared.view)) if shared.view else 0,
        "loadavg": os.getloadavg(),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=15, help="containers in the pool")
    parser.add_argument("--rounds", type=int, default=500)
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = parser.parse_args(argv)
    result = trio.run(run, args.n, args.rounds)
    print(f"{args.n} containers, {args.rounds} rounds, load {result['loadavg'][0]:.1f}")
    for row in result["rows"]:  # type: ignore[attr-defined]
        print(f"  {row['what']:<42} median {row['median_ms']:7.3f} ms   p95 {row['p95_ms']:7.3f} ms")
    print(f"  leader tick / lone agent's full tick write (medians): "
          f"{result['leader_vs_lone_full_median']:.2f}×")
    print(f"  one tick view: {result['view_bytes']} bytes")
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
