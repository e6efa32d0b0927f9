"""Secrets kept in files of the data directory: the API token, the embedded Redis
password.

Generated once and read back on every start, so restarts (and the CLI on the same
machine) agree on them. The file is created with mode 0600 and its mode is put
back to 0600 whenever it is read, so a secret never becomes readable by other
local users through a loosened umask or a copied directory.
"""
from __future__ import annotations

import os
import secrets
from pathlib import Path

__all__ = ["read_or_create_secret"]


def read_or_create_secret(path: Path, *, nbytes: int = 32) -> str:
    """The secret stored in `path`, generated (URL-safe text) when absent or empty."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        value = path.read_text().strip()
        if value:
            os.chmod(path, 0o600)
            return value
    except FileNotFoundError:
        pass
    value = secrets.token_urlsafe(nbytes)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(value + "\n")
    os.chmod(path, 0o600)  # O_CREAT's mode does not apply to an existing file
    return value
