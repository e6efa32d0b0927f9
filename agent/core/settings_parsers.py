"""Value parsers of the settings: one raw value in, one typed value or `Invalid` out.

A raw value is what a source holds: text from the environment or `.env`, a TOML
value (int, float, bool, str, list), a CLI flag, a JSON value of ``PUT /config``.
Each parser accepts every spelling a person would use and fails with `Invalid`,
whose `reason` ends in ``got <raw value>``; `agent.core.settings` prefixes it with
the variable as the user wrote it. Numbers are checked against `Bounds`, which are
data (not code) so the table can show them, reuse them for typed values
(`Bounds.contains`, as `PolicyConfig` does) and, later, carry a second, narrower
range for run-time updates.

Nothing here reads a file, the environment, the working directory or a clock.
"""
from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from agent.core.haproxy_text import parse_runtime_address
from agent.core.redact import mask_userinfo

__all__ = [
    "Bounds",
    "Invalid",
    "got",
    "number",
    "one_of",
    "to_bool",
    "MEMORY_RE",
    "MEMORY_UNITS",
]


class Invalid(Exception):
    """A value failed to parse; `agent.core.settings` turns it into ConfigError."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def got(raw: object) -> str:
    return f"got {raw!r}"


@dataclass(frozen=True, slots=True)
class Bounds:
    """An interval of numbers, each end open, closed or absent (None)."""

    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False
    hi_open: bool = False

    def contains(self, value: float) -> bool:
        if math.isnan(value):
            return False
        if self.lo is not None and (value <= self.lo if self.lo_open else value < self.lo):
            return False
        if self.hi is not None and (value >= self.hi if self.hi_open else value > self.hi):
            return False
        return True

    def expect(self, integer: bool) -> str:
        """What an accepted value is, for messages: ``an integer ≥ 1``, ``a number in (0, 1]``."""
        lo, hi = self.lo, self.hi
        if integer:
            if lo is not None and hi is not None:
                return f"an integer in {lo:g}..{hi:g}"
            return f"an integer ≥ {lo:g}" if lo is not None else "an integer"
        if lo is not None and hi is not None:
            return (f"a number in {'(' if self.lo_open else '['}{lo:g}, "
                    f"{hi:g}{')' if self.hi_open else ']'}")
        if lo is not None:
            return f"a number {'>' if self.lo_open else '≥'} {lo:g}"
        return "a number"


def _to_int(raw: object, expect: str) -> int:
    if isinstance(raw, bool):
        raise Invalid(f"must be {expect}, {got(raw)}")
    if isinstance(raw, int):
        return raw
    if isinstance(raw, float) and raw.is_integer():
        return int(raw)
    if isinstance(raw, str):
        text = raw.strip()
        if re.fullmatch(r"[+-]?[0-9]{1,30}", text):
            return int(text)
    raise Invalid(f"must be {expect}, {got(raw)}")


def _to_float(raw: object, expect: str) -> float:
    value: float | None = None
    if isinstance(raw, bool):
        value = None
    elif isinstance(raw, (int, float)):
        try:
            value = float(raw)
        except OverflowError:
            value = None
    elif isinstance(raw, str):
        try:
            value = float(raw.strip())
        except ValueError:
            value = None
    if value is None or not math.isfinite(value):
        raise Invalid(f"must be {expect}, {got(raw)}")
    return value


def number(bounds: Bounds, *, integer: bool) -> Callable[[object], Any]:
    """The parser of an integer or a finite number inside `bounds`."""
    expect = bounds.expect(integer)

    def parse(raw: object) -> int | float:
        value: int | float = _to_int(raw, expect) if integer else _to_float(raw, expect)
        if not bounds.contains(value):
            raise Invalid(f"must be {expect}, {got(raw)}")
        return value

    return parse


_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}


def to_bool(raw: object) -> bool:
    if isinstance(raw, bool):
        return raw
    if isinstance(raw, int) and raw in (0, 1):
        return bool(raw)
    if isinstance(raw, str) and raw.strip().lower() in _TRUE | _FALSE:
        return raw.strip().lower() in _TRUE
    raise Invalid(f"must be one of true/false/1/0/yes/no/on/off, {got(raw)}")


def to_str(raw: object) -> str:
    if isinstance(raw, str):
        return raw.strip()
    raise Invalid(f"must be a string, {got(raw)}")


def one_of(
    choices: tuple[str, ...], aliases: Mapping[str, str] | None = None
) -> Callable[[object], str]:
    """The parser of one of `choices`, matched without regard to case; `aliases`
    maps other accepted spellings (any case) to a choice."""
    by_key = {c.lower(): c for c in choices}
    by_key.update({a.lower(): c for a, c in (aliases or {}).items()})

    def parse(raw: object) -> str:
        value = by_key.get(to_str(raw).lower())
        if value is None:
            raise Invalid(f"must be one of {', '.join(choices)}, {got(raw)}")
        return value

    return parse


_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}")


def app_identifier(raw: object) -> str:
    value = to_str(raw)
    if not _NAME_RE.fullmatch(value):
        raise Invalid(
            "must be 1–63 letters, digits, '_', '.' or '-', starting with a letter or "
            f"digit (it names containers and Redis keys), {got(raw)}"
        )
    return value


def image(raw: object) -> str:
    value = to_str(raw)
    if not value or any(c.isspace() for c in value):
        raise Invalid(f"must be an image reference such as 'nginx:alpine', {got(raw)}")
    return value


_DOCKER_SCHEMES = ("unix", "tcp", "ssh", "http", "https", "npipe")


def docker_host(raw: object) -> str:
    value = to_str(raw)
    scheme, sep, rest = value.partition("://")
    if not sep or scheme not in _DOCKER_SCHEMES or not rest:
        raise Invalid(
            "must be an engine address such as unix:///var/run/docker.sock or "
            f"tcp://host:2375 (schemes: {', '.join(_DOCKER_SCHEMES)}), {got(raw)}"
        )
    return value


def redis_url(raw: object) -> str:
    value = to_str(raw)
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - validates the port
    except ValueError:
        parts = None
    if parts is None or parts.scheme not in ("redis", "rediss", "unix") or not (
        parts.hostname or parts.path
    ):
        shown = mask_userinfo(value)  # never echo a password
        raise Invalid(
            "must be a redis://, rediss:// or unix:// URL such as "
            f"redis://localhost:6379/0, {got(shown)}"
        )
    return value


def hostname(raw: object) -> str:
    value = to_str(raw)
    if not value or any(c.isspace() or c in "/@" for c in value):
        raise Invalid(f"must be a host name or IP address, {got(raw)}")
    return value


_BIND_RE = re.compile(r"[A-Za-z0-9_.:-]{1,253}")


def bind_address(raw: object) -> str:
    """An address to listen on: a host name, an IPv4 or an IPv6 address (no brackets)."""
    value = to_str(raw)
    if not _BIND_RE.fullmatch(value):
        raise Invalid(f"must be a host name or IP address such as 127.0.0.1 or ::1, {got(raw)}")
    return value


def haproxy_socket(raw: object) -> str:
    """The runtime API of an HAProxy: a unix socket path (``/run/haproxy.sock``,
    ``unix@/...``) or ``host:port``; kept as written, checked by the parser the
    adapter uses (`agent.core.haproxy_text.parse_runtime_address`)."""
    value = to_str(raw)
    try:
        parse_runtime_address(value)
    except ValueError:
        raise Invalid("must be a unix socket path or host:port such as "
                      f"/run/haproxy/admin.sock or 127.0.0.1:9999, {got(raw)}") from None
    return value


_BACKEND_RE = re.compile(r"[A-Za-z0-9_.:-]{1,64}")


def haproxy_backend(raw: object) -> str:
    """A backend name as HAProxy's runtime API takes it (no spaces, ';', '/', '#')."""
    value = to_str(raw)
    if not _BACKEND_RE.fullmatch(value):
        raise Invalid("must be the name of an HAProxy backend (letters, digits, '_', '.', "
                      f"':', '-'), {got(raw)}")
    return value
def http_url(raw: object) -> str:
    """An http:// or https:// URL with a host (a trailing slash is dropped)."""
    value = to_str(raw)
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - validates the port
    except ValueError:
        parts = None
    if (parts is None or parts.scheme not in ("http", "https") or not parts.hostname
            or parts.query or parts.fragment or any(c.isspace() for c in value)):
        raise Invalid(
            f"must be an http:// or https:// URL such as http://agent-1.example:2550, "
            f"{got(mask_userinfo(value))}"
        )
    return value.rstrip("/")


def health_path(raw: object) -> str:
    value = to_str(raw)
    if not value.startswith("/") or any(c.isspace() for c in value):
        raise Invalid(f"must be an HTTP path starting with '/', such as /health, {got(raw)}")
    return value


def path(raw: object) -> Path:
    """A path as written; `agent.core.settings` resolves ``~`` and relative paths
    against the HOME and working directory its sources recorded."""
    return raw if isinstance(raw, Path) else Path(to_str(raw))


def token(raw: object) -> str:
    value = to_str(raw)
    if any(c.isspace() or not c.isprintable() for c in value):
        raise Invalid("must not contain spaces or control characters")
    return value


_ORIGIN_RE = re.compile(r"https?://[^/\s?#]+")


def origins(raw: object, *, star: bool = True) -> tuple[str, ...]:
    if isinstance(raw, str):
        items = [p.strip() for p in raw.split(",")]
    elif isinstance(raw, (list, tuple)) and all(isinstance(p, str) for p in raw):
        items = [p.strip() for p in raw]
    else:
        raise Invalid(f"must be '*' or a comma-separated list of origins, {got(raw)}")
    items = [p.rstrip("/") if p != "*" else p for p in items if p]
    if not items:
        raise Invalid(f"must be '*' or a comma-separated list of origins, {got(raw)}")
    if "*" in items and not star:
        raise Invalid(f"must list the origins; '*' is not allowed for writes, {got(raw)}")
    if "*" in items and len(items) > 1:
        raise Invalid(f"'*' cannot be combined with other origins, {got(raw)}")
    for p in items:
        if p != "*" and not _ORIGIN_RE.fullmatch(p):
            raise Invalid(
                f"must be '*' or origins such as https://example.org:8443, {got(raw)}"
            )
    return tuple(items)


def write_origins(raw: object) -> tuple[str, ...]:
    return origins(raw, star=False)


MEMORY_RE = re.compile(r"(\d+)([bkmg]?)", re.IGNORECASE)
MEMORY_UNITS = {"": 1, "b": 1, "k": 1024, "m": 1024**2, "g": 1024**3}
_MIN_MEMORY = 6 * 1024**2  # the engine refuses less than 6 MiB


def memory(raw: object) -> str:
    text = str(raw).strip() if isinstance(raw, (str, int)) and not isinstance(raw, bool) else None
    match = MEMORY_RE.fullmatch(text) if text is not None else None
    if match is None:
        raise Invalid(f"must be a size such as 256m or 1g (units b, k, m, g), {got(raw)}")
    if int(match[1]) * MEMORY_UNITS[match[2].lower()] < _MIN_MEMORY:
        raise Invalid(f"must be at least 6m (the engine's minimum), {got(raw)}")
    return text.lower()  # type: ignore[union-attr]
