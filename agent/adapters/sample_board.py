"""Node reports in Redis: where collectors post their samples and the leader reads them.

Each collector writes its node's `agent.core.sample_codec.NodeReport` with one
``SET key value PX ttl`` per tick (key: `report_key`, under the app's prefix), so a
node that stops writing loses its report when the TTL runs out — Redis's clock
decides, not the nodes'. A collector that stops cleanly deletes its key at once
(`withdraw`). The leader reads the reports of the nodes it cares about with one
``MGET`` per tick (`read`); a report that does not decode is logged and counts as
missing (the node's workers are then stale, never zero).

redis-py is synchronous: every call runs in a Trio worker thread under a
`CapacityLimiter`, with short socket timeouts and no retries of redis-py's own, so
a tick is held for `socket_timeout` at most. Every redis-py or OS error becomes
`StoreError` naming the operation and the server (no credentials).
"""
from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

import redis
import redis.exceptions
import trio
from redis.backoff import NoBackoff
from redis.retry import Retry

from agent.core.errors import StoreError
from agent.core.redact import redact_url
from agent.core.sample_codec import NodeReport, decode_report, encode_report, report_key
from agent.core.store_codec import Keys

__all__ = ["SampleBoard"]

log = logging.getLogger(__name__)

T = TypeVar("T")


class SampleBoard:
    """The collectors' reports of one application in one Redis."""

    def __init__(
        self,
        url: str,
        app_identifier: str,
        *,
        limiter: trio.CapacityLimiter | None = None,
        socket_timeout: float = 2.0,
    ) -> None:
        if not socket_timeout > 0:
            raise ValueError(f"socket_timeout must be > 0, got {socket_timeout}")
        self.prefix = Keys.for_app(app_identifier).prefix
        try:
            self._client: redis.Redis = redis.Redis.from_url(
                url, decode_responses=True, socket_timeout=socket_timeout,
                socket_connect_timeout=socket_timeout, retry=Retry(NoBackoff(), 0),
                health_check_interval=0, protocol=2,
            )
        except ValueError as exc:
            raise StoreError(f"invalid Redis URL {redact_url(url)!r}: {exc}") from exc
        kw = self._client.connection_pool.connection_kwargs
        where = kw.get("path") or f"{kw.get('host', 'localhost')}:{kw.get('port', 6379)}"
        self.server = f"redis://{where}/{kw.get('db', 0)}"
        self._limiter = limiter if limiter is not None else trio.CapacityLimiter(4)

    def key(self, node: str) -> str:
        return report_key(self.prefix, node)

    async def publish(self, report: NodeReport, ttl: float) -> None:
        """Replace the node's report; it lives `ttl` seconds unless written again."""
        if not ttl > 0:
            raise ValueError(f"ttl must be > 0, got {ttl}")
        key, text, px = self.key(report.node), encode_report(report), max(1, round(ttl * 1000))
        await self._call("publishing a node report", lambda c: c.set(key, text, px=px))

    async def withdraw(self, node: str) -> None:
        """Delete the node's report now (a collector that stops says so)."""
        key = self.key(node)
        await self._call("withdrawing a node report", lambda c: c.delete(key))

    async def read(self, nodes: Iterable[str]) -> dict[str, NodeReport]:
        """The current reports of `nodes` (one MGET); nodes without one are absent."""
        wanted = sorted({n for n in nodes if n})
        if not wanted:
            return {}
        keys = [self.key(n) for n in wanted]
        texts: list[Any] = await self._call("reading node reports", lambda c: c.mget(keys))
        reports: dict[str, NodeReport] = {}
        for node, text in zip(wanted, texts):
            if text is None:
                continue
            try:
                report = decode_report(text)
            except ValueError as exc:
                log.warning("ignoring the report of node %s: %s", node, exc)
                continue
            if report.node != node:
                log.warning("ignoring a report of node %s stored under node %s", report.node, node)
                continue
            reports[node] = report
        return reports

    async def ping(self) -> None:
        await self._call("ping", lambda c: c.ping())

    async def aclose(self) -> None:
        self._client.close()
        await trio.lowlevel.checkpoint()

    async def _call(self, what: str, fn: Callable[[redis.Redis], T]) -> T:
        def work() -> T:
            return fn(self._client)

        try:
            return await trio.to_thread.run_sync(work, limiter=self._limiter,
                                                 abandon_on_cancel=True)
        except (redis.exceptions.RedisError, OSError) as exc:
            raise StoreError(f"{what}: Redis at {self.server} failed: {exc}") from exc
