"""Engine timestamps → epoch seconds.

Pure (no engine client): the engine adapter parses container creation times with
it, and `agent.core.cgroups` the `read` time of a stats document, without importing
docker or trio.
"""
from __future__ import annotations

import datetime as _dt
import math
import re

__all__ = ["parse_engine_time"]


def parse_engine_time(text: str) -> float:
    """Epoch seconds of an engine timestamp (RFC 3339, nanoseconds, ``Z``).

    Returns NaN for the zero time (``0001-01-01T00:00:00Z``) and unparsable text.
    """
    match = re.fullmatch(
        r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)", text.strip()
    )
    if match is None:
        return math.nan
    base, fraction, zone = match.groups()
    try:
        when = _dt.datetime.fromisoformat(base + ("+00:00" if zone == "Z" else zone))
    except ValueError:
        return math.nan
    if when.year <= 1:
        return math.nan
    seconds = when.timestamp()
    if fraction:
        seconds += int(fraction) / 10 ** len(fraction)
    return seconds
