"""Helpers of the web tests."""
from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import trio

T = TypeVar("T")


async def eventually(
    probe: Callable[[], Awaitable[T]] | Callable[[], T],
    *,
    timeout: float = 10.0,
    interval: float = 0.02,
    message: str = "condition not met",
) -> T:
    """Poll `probe` until it returns something truthy; fail after `timeout` seconds."""
    last: Any = None
    with trio.move_on_after(timeout):
        while True:
            last = probe()
            if isinstance(last, Awaitable):
                last = await last
            if last:
                return last
            await trio.sleep(interval)
    raise AssertionError(f"{message} within {timeout} s (last value: {last!r})")
