"""The `.env` syntax: text in, name → value out (reading the file is the caller's).

Small and strict: ``KEY=VALUE`` lines, optional ``export `` prefix, ``#`` comments
on their own line or after an unquoted value (preceded by a space), values in
single quotes (literal) or double quotes (escapes ``\\\\ \\" \\n \\t \\r``). No
variable expansion, no multi-line values; anything else is a `ConfigError` naming
the source and line, e.g. ``.env:3: expected KEY=VALUE, got 'oops'``.
"""
from __future__ import annotations

import re

from agent.core.errors import ConfigError
from agent.core.settings_parsers import Invalid

__all__ = ["parse_env_text"]

_ENV_LINE = re.compile(r"(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*)")
_ESCAPES = {"\\": "\\", '"': '"', "n": "\n", "t": "\t", "r": "\r", "$": "$"}


def parse_env_text(text: str, *, source: str = "<.env>") -> dict[str, str]:
    """Parse `.env` text; later keys win; a malformed line raises
    ConfigError("<source>:<line>", ...)."""
    out: dict[str, str] = {}
    for lineno, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        where = f"{source}:{lineno}"
        match = _ENV_LINE.fullmatch(stripped)
        if match is None:
            raise ConfigError(where, f"expected KEY=VALUE, got {stripped!r}")
        key, rest = match[1], match[2]
        try:
            out[key] = _env_value(rest)
        except Invalid as exc:
            raise ConfigError(where, f"{key}: {exc.reason}") from None
    return out


def _env_value(rest: str) -> str:
    if not rest:
        return ""
    quote = rest[0]
    if quote not in "'\"":
        value = re.split(r"\s#", rest, maxsplit=1)[0].rstrip()
        if any(q in value for q in "'\""):
            raise Invalid(f"quotes must enclose the whole value, got {rest!r}")
        return value
    return _quoted(rest, quote)


def _quoted(rest: str, quote: str) -> str:
    chars: list[str] = []
    i = 1
    while i < len(rest):
        c = rest[i]
        if c == quote:
            tail = rest[i + 1:].strip()
            if tail and not tail.startswith("#"):
                raise Invalid(f"unexpected text after the closing quote: {tail!r}")
            return "".join(chars)
        if c == "\\" and quote == '"':
            if i + 1 >= len(rest):
                break
            nxt = rest[i + 1]
            if nxt not in _ESCAPES:
                raise Invalid(f"unknown escape '\\{nxt}' in a double-quoted value")
            chars.append(_ESCAPES[nxt])
            i += 2
            continue
        chars.append(c)
        i += 1
    raise Invalid(f"unterminated {quote} quote (values cannot span lines)")
