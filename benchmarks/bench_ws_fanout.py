"""WebSocket fan-out benchmark: many subscribers of /ws, one agent, N queue updates.

    python -m benchmarks.bench_ws_fanout                         # 1,000 subscribers, 50 updates
    python -m benchmarks.bench_ws_fanout --clients 200 --updates 20 --json out.json

What runs:
  * the *server* — the real web app (`agent.interfaces.web.serve`, `agent.service.hub.Hub`)
    over a synthetic agent (no engine, no Redis) — in a child process, so its memory
    and CPU are measured alone. `--port ws` (the default) measures the WebSocket
    port's own server (`agent.interfaces.web.ws_port`: each snapshot framed once for
    everyone); `--port http` the HTTP port's ``/ws`` (Hypercorn's Trio worker, ASGI);
  * the *subscribers* in this process: plain loopback TCP sockets speaking just
    enough WebSocket (handshake checked, frames parsed) to time deliveries
    without a heavy client library skewing the figures.

Each update is a queue of `--containers` items; the first item's ``id`` carries
the update's sequence number and the CLOCK_MONOTONIC time it was published
(shared by both processes on Linux). The next update is published once every
subscriber has it (or `--update-timeout` passes), so this measures the delay of
one update fanned out to everyone, not a backlog. Reported: p50/p90/p99/max of
publish → received over all deliveries, the time for an update to reach the
last subscriber, deliveries skipped (latest value wins), the server's RSS before
the subscribers connect, once they are connected and after the updates, and its
CPU time. `--stalled K` adds K subscribers that connect and never read: their socket
buffers fill up and the server must skip them (latest value wins) without
delaying the others or growing its memory. Bounded: at most 10,000 (+10,000
stalled) subscribers, 10,000 updates, `--timeout` s.
"""
from __future__ import annotations

import argparse
import base64
import hashlib
import json
import math
import os
import platform
import re
import resource
import secrets
import statistics
import subprocess
import sys
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import trio

ROOT = Path(__file__).resolve().parent.parent
_STAMP = re.compile(rb'"id":"([0-9]+):([0-9.]+)"')
MAX_CLIENTS = 10_000
MAX_UPDATES = 10_000


# --------------------------------------------------------------------------- helpers


def raise_fd_limit(wanted: int) -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def rss_bytes(pid: int | str = "self") -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def cpu_seconds(pid: int | str = "self") -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks  # utime + stime


def pct(values: list[float], q: float) -> float:
    if not values:
        return math.nan
    ordered = sorted(values)
    k = (len(ordered) - 1) * q
    lo, hi = math.floor(k), math.ceil(k)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


# --------------------------------------------------------------------------- server (child)


class SyntheticAgent:
    """The Agent facade with nothing behind it but a hub."""

    def __init__(self) -> None:
        from agent.core.settings import Settings
        from agent.service.hub import Hub
        from agent.service.metrics import Metrics

        self.settings = Settings(docker_image="bench:latest", target_port=8080,
                                 ws_max_connections=MAX_CLIENTS + 64,
                                 agent_api_token=secrets.token_urlsafe(16))
        self.hub = Hub()
        self.metrics = Metrics()
        self.history: deque[tuple[float, int, int]] = deque(maxlen=720)

    @property
    def snapshot(self) -> Any:
        return self.hub.latest

    def health(self) -> dict[str, Any]:
        return {"alive": True, "last_tick_age": 0.0}

    async def readiness(self) -> tuple[bool, dict[str, str]]:
        return True, {"engine": "ok", "redis": "ok"}

    async def events(self, limit: int = 50, before: str | None = None, kind: str | None = None) -> list[dict[str, Any]]:
        return []

    async def update_config(self, partial: dict[str, Any]) -> Any:
        return self.settings.with_updates(partial)

    async def request_scale(self, count: int) -> dict[str, Any]:
        return {"action": "none", "reason": "benchmark"}

    async def request_sundown(self, name: str) -> dict[str, Any]:
        from agent.core.errors import ContainerNotFound

        raise ContainerNotFound(name)

    async def aclose(self) -> None:
        pass


def make_snapshot(seq: int, containers: int) -> Any:
    from agent.core.records import Category, ContainerScore, QueueItem, Snapshot

    scores, queue = [], []
    stamp = f"{seq}:{time.monotonic():.9f}"
    for i in range(containers):
        score = 90.0 - (i * 60.0 / max(1, containers)) - (seq % 7)
        cat = Category.LU if score >= 70 else Category.MU if score >= 40 else Category.HU
        name = f"bench-worker-{i:03d}"
        scores.append(ContainerScore(name, score, score, 100.0, score, score, cat, id=f"{i:064x}"))
        queue.append(QueueItem(name, score, cat, 1.0 / containers, "127.0.0.1", 32000 + i,
                               stamp if i == 0 else f"{i:064x}"))
    return Snapshot(seq, time.time(), tuple(scores), tuple(queue), {}, containers, containers)


async def serve_child(containers: int) -> None:
    from functools import partial

    from agent.interfaces.web import serve

    raise_fd_limit(MAX_CLIENTS * 2 + 512)
    agent = SyntheticAgent()
    agent.hub.publish(make_snapshot(0, containers))
    async with trio.open_nursery() as nursery:
        info = await nursery.start(partial(serve, agent, http_port=0, ws_port=0, backlog=4096))
        print(f"READY {info.http_port} {info.ws_port}", flush=True)
        while True:
            line = await trio.to_thread.run_sync(sys.stdin.readline, abandon_on_cancel=True)
            cmd, _, arg = line.strip().partition(" ")
            if cmd == "PUBLISH":
                agent.hub.publish(make_snapshot(int(arg), containers))
            elif cmd == "QUIT" or not line:
                agent.hub.close()
                nursery.cancel_scope.cancel()
                return


# --------------------------------------------------------------------------- subscribers


class Subscriber:
    """A minimal WebSocket client: handshake, then text frames (server frames are unmasked)."""

    def __init__(self, index: int) -> None:
        self.index = index
        self.stream: trio.SocketStream | None = None
        self.buffer = bytearray()
        self.last_seq = -1

    async def connect(self, port: int) -> None:
        self.stream = await trio.open_tcp_stream("127.0.0.1", port)
        key = base64.b64encode(secrets.token_bytes(16)).decode()
        await self.stream.send_all(
            (f"GET /ws HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
             f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode()
        )
        while b"\r\n\r\n" not in self.buffer:
            chunk = await self.stream.receive_some(65536)
            if not chunk:
                raise ConnectionError("closed during the handshake")
            self.buffer += chunk
        head, _, rest = bytes(self.buffer).partition(b"\r\n\r\n")
        expected = base64.b64encode(hashlib.sha1((key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").encode()).digest())
        if not head.startswith(b"HTTP/1.1 101") or expected not in head:
            raise ConnectionError(f"bad handshake: {head[:80]!r}")
        self.buffer = bytearray(rest)

    async def message(self) -> bytes | None:
        """The next text message (None when the server closes)."""
        assert self.stream is not None
        payload = bytearray()
        while True:
            while True:
                frame = self._frame()
                if frame is not None:
                    break
                chunk = await self.stream.receive_some(65536)
                if not chunk:
                    return None
                self.buffer += chunk
            fin, opcode, data = frame
            if opcode == 0x8:
                return None
            if opcode in (0x9, 0xA):  # ping/pong: not sent by this server
                continue
            payload += data
            if fin:
                return bytes(payload)

    def _frame(self) -> tuple[bool, int, bytes] | None:
        b = self.buffer
        if len(b) < 2:
            return None
        fin, opcode, length, pos = bool(b[0] & 0x80), b[0] & 0x0F, b[1] & 0x7F, 2
        if length == 126:
            if len(b) < 4:
                return None
            length, pos = int.from_bytes(b[2:4], "big"), 4
        elif length == 127:
            if len(b) < 10:
                return None
            length, pos = int.from_bytes(b[2:10], "big"), 10
        if len(b) < pos + length:
            return None
        data = bytes(b[pos:pos + length])
        del b[:pos + length]
        return fin, opcode, data

    async def aclose(self) -> None:
        if self.stream is not None:
            await trio.aclose_forcefully(self.stream)


@dataclass
class Run:
    clients: int
    updates: int
    delays: list[float] = field(default_factory=list)
    reached: list[int] = field(default_factory=list)        # per seq: subscribers at or past it
    reached_at: list[float] = field(default_factory=list)   # per seq: monotonic time all were reached
    published_at: list[float] = field(default_factory=list)
    events: list[trio.Event] = field(default_factory=list)
    skipped: int = 0
    message_bytes: int = 0

    def __post_init__(self) -> None:
        n = self.updates + 1
        self.reached = [0] * n
        self.reached_at = [math.nan] * n
        self.published_at = [math.nan] * n
        self.events = [trio.Event() for _ in range(n)]

    def deliver(self, sub: Subscriber, message: bytes, now: float) -> None:
        if sub.last_seq < 0:
            json.loads(message)  # the first message of each subscriber is fully checked
        match = _STAMP.search(message, 0, 1024)  # the first item's id: "<seq>:<monotonic>"
        if match is None:
            raise ValueError(f"no stamp in {message[:200]!r}")
        seq, stamp = int(match[1]), float(match[2])
        if seq > 0:
            self.delays.append(now - float(stamp))
            self.message_bytes = len(message)
        start = sub.last_seq + 1
        if sub.last_seq >= 0 and seq > sub.last_seq + 1:
            self.skipped += seq - sub.last_seq - 1
        for s in range(max(start, 0), min(seq, self.updates) + 1):
            self.reached[s] += 1
            if self.reached[s] == self.clients:
                self.reached_at[s] = now
                self.events[s].set()
        sub.last_seq = max(sub.last_seq, seq)


async def subscriber_task(sub: Subscriber, run: Run) -> None:
    while True:
        message = await sub.message()
        if message is None:
            return
        run.deliver(sub, message, time.monotonic())


# --------------------------------------------------------------------------- driver


async def bench(opts: argparse.Namespace) -> dict[str, Any]:
    fd_limit = raise_fd_limit(opts.clients + opts.stalled + 512)
    if fd_limit < opts.clients + opts.stalled + 64:
        raise SystemExit(f"fd limit {fd_limit} is too low for {opts.clients} subscribers")
    cmd = [sys.executable, "-m", "benchmarks.bench_ws_fanout", "--serve", "--containers", str(opts.containers)]
    async with trio.open_nursery() as nursery:
        proc = await trio.lowlevel.open_process(cmd, cwd=str(ROOT), stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        assert proc.stdin is not None and proc.stdout is not None
        try:
            with trio.fail_after(opts.timeout):
                line = b""
                while not line.endswith(b"\n"):
                    chunk = await proc.stdout.receive_some(1)
                    if not chunk:
                        raise RuntimeError("server exited before it was ready")
                    line += chunk
                _, http_port, ws_port = line.decode().split()
                port = int(ws_port if opts.port == "ws" else http_port)
                rss_idle = rss_bytes(proc.pid)
                cpu_idle = cpu_seconds(proc.pid)

                run = Run(opts.clients, opts.updates)
                subs = [Subscriber(i) for i in range(opts.clients)]
                # Stalled subscribers connect and never read: their socket buffers
                # fill up, the server must skip them without delaying the others.
                stalled = [Subscriber(-1 - i) for i in range(opts.stalled)]
                for sub in stalled:
                    await sub.connect(port)
                limiter = trio.CapacityLimiter(opts.connect_concurrency)
                connect_start = time.monotonic()

                async def connect(sub: Subscriber, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
                    async with limiter:
                        await sub.connect(port)
                    task_status.started()
                    await subscriber_task(sub, run)

                async with trio.open_nursery() as clients:
                    async with trio.open_nursery() as connecting:
                        for sub in subs:
                            connecting.start_soon(clients.start, connect, sub)
                    with trio.fail_after(opts.update_timeout):
                        await run.events[0].wait()  # everyone has the on-connect queue
                    connect_seconds = time.monotonic() - connect_start
                    rss_connected = rss_bytes(proc.pid)
                    cpu_connected = cpu_seconds(proc.pid)
                    client_cpu_start = cpu_seconds()

                    timed_out = 0
                    for seq in range(1, opts.updates + 1):
                        run.published_at[seq] = time.monotonic()
                        await proc.stdin.send_all(f"PUBLISH {seq}\n".encode())
                        with trio.move_on_after(opts.update_timeout) as scope:
                            await run.events[seq].wait()
                        timed_out += scope.cancelled_caught
                        if opts.interval:
                            await trio.sleep(opts.interval)
                    rss_after = rss_bytes(proc.pid)
                    cpu_after = cpu_seconds(proc.pid)
                    client_cpu = cpu_seconds() - client_cpu_start
                    clients.cancel_scope.cancel()
                for sub in subs + stalled:
                    await sub.aclose()
                await proc.stdin.send_all(b"QUIT\n")
                await proc.wait()
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
        nursery.cancel_scope.cancel()

    spread = [run.reached_at[s] - run.published_at[s] for s in range(1, opts.updates + 1)
              if not math.isnan(run.reached_at[s])]
    ms = 1000.0
    return {
        "benchmark": "ws_fanout",
        "clients": opts.clients,
        "stalled_clients": opts.stalled,
        "updates": opts.updates,
        "containers": opts.containers,
        "port": opts.port,
        "message_bytes": run.message_bytes,
        "deliveries": len(run.delays),
        "skipped_deliveries": run.skipped,
        "updates_timed_out": timed_out,
        "connect_seconds": connect_seconds,
        "delay_ms": {
            "p50": pct(run.delays, 0.50) * ms, "p90": pct(run.delays, 0.90) * ms,
            "p99": pct(run.delays, 0.99) * ms, "max": max(run.delays, default=math.nan) * ms,
            "mean": (statistics.fmean(run.delays) * ms) if run.delays else math.nan,
        },
        "all_reached_ms": {
            "p50": pct(spread, 0.50) * ms, "p99": pct(spread, 0.99) * ms, "max": max(spread, default=math.nan) * ms,
        },
        "server_rss_bytes": {"before": rss_idle, "connected": rss_connected, "after": rss_after},
        "server_rss_per_client_bytes": (rss_connected - rss_idle) / max(1, opts.clients),
        "server_cpu_seconds": {"connect": cpu_connected - cpu_idle, "updates": cpu_after - cpu_connected},
        "server_cpu_per_delivery_us": (cpu_after - cpu_connected) / max(1, len(run.delays)) * 1e6,
        "client_cpu_seconds_updates": client_cpu,
        "client_process_rss_bytes": rss_bytes(),
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count(), "platform": platform.platform()},
    }


def report(r: dict[str, Any]) -> str:
    mb = 1024 * 1024
    d, a, rss = r["delay_ms"], r["all_reached_ms"], r["server_rss_bytes"]
    rows = [
        ("subscribers", f"{r['clients']:,} (WebSocket, loopback, {r['port']} port)"
                        + (f" + {r['stalled_clients']:,} stalled (never read)" if r["stalled_clients"] else "")),
        ("updates", f"{r['updates']:,} × queue of {r['containers']} ({r['message_bytes']:,} B/message)"),
        ("connect all", f"{r['connect_seconds']:.2f} s"),
        ("delay p50 / p90", f"{d['p50']:.2f} ms / {d['p90']:.2f} ms"),
        ("delay p99 / max", f"{d['p99']:.2f} ms / {d['max']:.2f} ms"),
        ("last subscriber p50/p99", f"{a['p50']:.2f} ms / {a['p99']:.2f} ms"),
        ("deliveries / skipped", f"{r['deliveries']:,} / {r['skipped_deliveries']:,} (timed-out updates: {r['updates_timed_out']})"),
        ("server RSS before", f"{rss['before'] / mb:.1f} MiB"),
        ("server RSS connected", f"{rss['connected'] / mb:.1f} MiB (+{r['server_rss_per_client_bytes'] / 1024:.1f} KiB/subscriber)"),
        ("server RSS after", f"{rss['after'] / mb:.1f} MiB"),
        ("server CPU", f"connect {r['server_cpu_seconds']['connect']:.2f} s, updates {r['server_cpu_seconds']['updates']:.2f} s"
                       f" ({r['server_cpu_per_delivery_us']:.0f} µs/delivery)"),
        ("subscribers' CPU", f"updates {r['client_cpu_seconds_updates']:.2f} s (this process, {r['machine']['cpus']} CPUs shared)"),
    ]
    width = max(len(k) for k, _ in rows)
    return "\n".join(["WebSocket fan-out (agent.web + agent.hub)", "-" * 60]
                     + [f"{k.ljust(width)}  {v}" for k, v in rows])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=1000, help="concurrent subscribers (default 1000)")
    parser.add_argument("--updates", type=int, default=50, help="queue updates to publish (default 50)")
    parser.add_argument("--containers", type=int, default=15, help="items per queue (default 15)")
    parser.add_argument("--stalled", type=int, default=0, help="extra subscribers that never read (default 0)")
    parser.add_argument("--port", choices=("http", "ws"), default="ws", help="connect to the WebSocket or the HTTP port")
    parser.add_argument("--interval", type=float, default=0.02, help="pause between updates, s (default 0.02)")
    parser.add_argument("--update-timeout", type=float, default=10.0, help="max wait for one update to reach all, s")
    parser.add_argument("--connect-concurrency", type=int, default=100, help="connections opened at once")
    parser.add_argument("--timeout", type=float, default=300.0, help="bound on the whole run, s (default 300)")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    opts = parser.parse_args(argv)
    if opts.serve:
        trio.run(serve_child, opts.containers)
        return 0
    if (not 1 <= opts.clients <= MAX_CLIENTS or not 0 <= opts.stalled <= MAX_CLIENTS
            or not 1 <= opts.updates <= MAX_UPDATES or opts.containers < 1):
        parser.error(f"need 1 ≤ clients ≤ {MAX_CLIENTS}, 0 ≤ stalled ≤ {MAX_CLIENTS}, "
                     f"1 ≤ updates ≤ {MAX_UPDATES}, containers ≥ 1")
    result = trio.run(bench, opts)
    print(report(result))
    if opts.json:
        Path(opts.json).write_text(json.dumps(result, indent=2) + "\n")
        print(f"\nwritten: {opts.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
