"""Secrets out of what people read: URLs with passwords, for banners, logs, errors.

One rule for every place that shows a URL the user gave (`GET /config`,
`check-config`, the start-up banner, error messages): the password becomes
``***``; the user name, host, port and path stay, so the message still says
where. A URL too malformed to parse still has anything between ``//`` and ``@``
masked.
"""
from __future__ import annotations

import re
from urllib.parse import urlsplit, urlunsplit

__all__ = ["mask_userinfo", "redact_url"]

_USERINFO = re.compile(r"//[^/@]*@")


def redact_url(url: str) -> str:
    """`url` with its password (if any) replaced by ``***``."""
    try:
        parts = urlsplit(url)
        password, port = parts.password, parts.port
    except ValueError:
        return mask_userinfo(url)
    if password is None:
        return url
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{parts.username or ''}:***@{host}" + (f":{port}" if port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def mask_userinfo(text: str) -> str:
    """`text` with anything between ``//`` and ``@`` masked: for a value that is
    not a valid URL, where even the user name may be a mistyped secret."""
    return _USERINFO.sub("//***@", text)
