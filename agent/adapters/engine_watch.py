"""Following the engine's event stream, so that listing the pool costs nothing.

`DockerEngine.watch` runs `EventWatch.run` in the agent's nursery. It keeps the
engine's `OwnedView` current and tells `list_owned` when it may serve it:

1. connect to ``GET /events`` filtered by type ``container``, both of our labels
   (the engine ANDs label filters) and the lifecycle actions in `ACTIONS`, from
   `_REPLAY` seconds in the past (the engine flushes the response headers before
   it subscribes; replaying a moment covers that gap, and an event seen twice
   only costs one more inspect);
2. a *full resync*: one listing, and an inspect of every running container;
   then the view is `live` — `list_owned` answers from it without asking the
   engine;
3. each event re-inspects its container, once (``destroy`` drops it); a
   container that appears is inspected when it appears, never again while
   nothing happens to it;
4. every `RESYNC_INTERVAL` seconds, a *light resync* as a safety net: one
   listing, compared with the view; only containers that are new to it, missing
   from the engine, or in another state are inspected (or forgotten);
5. when the stream ends or fails (engine restarted or gone, an error on our
   side), the view stops being live at once — `list_owned` lists the engine
   directly again, and fails with `EngineError` while the engine is down, so
   actuation pauses as before — and the watcher reconnects with a capped
   backoff, going back to step 1 (a full resync). An engine that hangs without
   closing the stream is caught by the next light resync, whose listing times
   out like any engine call.

The ownership rule is unchanged: the stream is filtered by both labels on the
engine's side, every inspected container's labels are checked again before it
enters the view (`OwnedView.put`), and `remove` still inspects the container
itself and refuses one without the labels (`NotOwnedError`), whatever the view
says. The stream's reader is a thread of its own (it blocks for as long as the
stream lasts) outside the shared `CapacityLimiter`, so it never holds a slot
the ticks need.
"""
from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import trio

from agent.core.errors import EngineError, EngineUnreachable

if TYPE_CHECKING:
    from agent.adapters.docker_engine import DockerEngine

__all__ = ["ACTIONS", "RESYNC_INTERVAL", "EventWatch"]

log = logging.getLogger("deployment_agent.engine")

# The container events that may change what `list_owned` reports. "kill" and
# "oom" are not listed: a container they end is followed by "die".
ACTIONS = (
    "create", "start", "restart", "die", "stop", "pause", "unpause",
    "rename", "update", "destroy",
)

# Seconds between two light resyncs (listing compared with the view) while the
# stream is up. One listing a minute costs the engine next to nothing; a change
# the stream somehow did not report is repaired within this time.
RESYNC_INTERVAL = 60.0

_REPLAY = 2  # seconds of events replayed on (re)connecting
_BACKOFF = (0.5, 10.0)  # reconnect delay: first, cap (doubles in between)
_STEADY = 30.0  # a stream that lasted this long resets the backoff


class EventWatch:
    """The event stream and the resyncs of one `DockerEngine` (see module docstring).

    Counters for tests and reports: `connects` (streams opened), `resyncs`
    (full and light), `events` (events handled).
    """

    def __init__(self, engine: DockerEngine, *, resync_interval: float = RESYNC_INTERVAL) -> None:
        self.engine = engine
        self.view = engine.view
        self.resync_interval = resync_interval
        self.connects = 0
        self.resyncs = 0
        self.events = 0
        self._stream_limiter = trio.CapacityLimiter(1)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Keep the view current until cancelled. `started` once the first full
        resync is done, or once the first attempt failed (the agent must start
        while the engine is down; `list_owned` then reports that)."""
        started = _Once(task_status.started)
        delay = _BACKOFF[0]
        failed = 0  # reconnections failed in a row: the first is told, the rest counted
        try:
            while True:
                began = trio.current_time()
                connects = self.connects
                try:
                    await self._follow(started)
                    log.warning("engine event stream ended; reconnecting")
                except EngineUnreachable as exc:
                    # The tick reports the unreachable engine, once per outage.
                    log.debug("engine event stream unavailable: %s", exc)
                except EngineError as exc:
                    if self.connects > connects or not failed:
                        log.warning("engine event stream unavailable: %s", exc)
                    else:
                        log.debug("engine event stream still unavailable: %s", exc)
                except Exception:  # a bug must not end the agent: resync from scratch
                    log.exception("engine event stream failed")
                failed = 0 if self.connects > connects else failed + 1
                started()
                if trio.current_time() - began > _STEADY:
                    delay = _BACKOFF[0]  # it ran fine for a while: reconnect soon
                await trio.sleep(delay)
                delay = min(delay * 2, _BACKOFF[1])
        finally:
            self.view.live = False

    async def _follow(self, started: Callable[[], None]) -> None:
        """One stream, from connecting to its end; the view is live in between.
        Raises `EngineError` when the stream or a resync failed."""
        engine = self.engine
        stream = await engine.run_blocking(self._open, "opening the engine's event stream")
        failures: list[BaseException] = []
        try:
            await engine.run_blocking(lambda: self.resync(full=True), "resyncing the pool")
            self.view.live = True
            started()
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._resync_periodically, failures, nursery.cancel_scope)
                failures.extend(await trio.to_thread.run_sync(
                    self._consume, stream, limiter=self._stream_limiter, abandon_on_cancel=True
                ))
                nursery.cancel_scope.cancel()
        finally:
            self.view.live = False
            _close(stream)
        if failures:
            with engine.translating("following the engine's event stream"):
                raise failures[0]

    async def _resync_periodically(self, failures: list[BaseException], scope: trio.CancelScope) -> None:
        while True:
            await trio.sleep(self.resync_interval)
            try:
                await self.engine.run_blocking(lambda: self.resync(full=False), "resyncing the pool")
            except EngineError as exc:
                failures.append(exc)
                scope.cancel()
                return

    # -- blocking bodies (worker threads) -------------------------------------------

    def _open(self) -> Any:
        engine = self.engine
        stream = engine.api().events(
            since=int(time.time()) - _REPLAY,
            filters={"type": ["container"], "label": engine.label_filter, "event": list(ACTIONS)},
            decode=True,
        )
        self.connects += 1
        return stream

    def _consume(self, stream: Any) -> list[BaseException]:
        """Handle events until the stream ends (EOF or a read error end the
        iteration: docker-py's `CancellableStream` turns both into StopIteration).
        Returns the error that ended it, if any, for the Trio side to translate."""
        try:
            for event in stream:
                self._handle(event)
        except Exception as exc:  # noqa: BLE001 - reported by `_follow`
            return [exc]
        return []

    def _handle(self, event: object) -> None:
        if not isinstance(event, Mapping) or event.get("Type", "container") != "container":
            return
        actor = event.get("Actor") or {}
        cid = actor.get("ID") or event.get("id")
        if not cid:
            return
        self.events += 1
        if (event.get("Action") or event.get("status")) == "destroy":
            self.view.drop(cid)
        elif self.engine.owns(actor.get("Attributes")):
            self.engine.refresh_sync(cid)

    def resync(self, *, full: bool) -> None:
        """One listing compared with the view (see the module docstring)."""
        engine, view = self.engine, self.view
        since = view.ticket()
        rows = [r for r in engine.list_rows_sync() if engine.owns(r.get("Labels"))]
        view.drop_unlisted((r["Id"] for r in rows), since)
        for row in rows:
            current = view.get(row["Id"])
            state = row.get("State")
            if not full and current is not None and current.status == state and (
                state != "running" or current.pid is not None
            ):
                continue
            if state == "running":
                engine.refresh_sync(row["Id"])
            else:
                view.put(engine.info_from_listing(row), since)
        self.resyncs += 1


def _close(stream: Any) -> None:
    """Close a `CancellableStream` from another thread: its reader wakes up."""
    with contextlib.suppress(Exception):
        stream.close()
    with contextlib.suppress(Exception):
        stream._response.close()


class _Once:
    """Call `fn` the first time only (a task's `started`)."""

    def __init__(self, fn: Callable[[], None]) -> None:
        self._fn: Callable[[], None] | None = fn

    def __call__(self) -> None:
        fn, self._fn = self._fn, None
        if fn is not None:
            fn()
