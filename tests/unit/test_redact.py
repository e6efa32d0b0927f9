"""Passwords never reach what people read: one redaction rule for every URL shown."""
from __future__ import annotations

import pytest

from agent.core.redact import redact_url


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        pytest.param("redis://user:pw@host:6379/0", "redis://user:***@host:6379/0", id="user-and-password"),
        pytest.param("redis://:s3cr3t@127.0.0.1:4000/0", "redis://:***@127.0.0.1:4000/0", id="password-only"),
        pytest.param("rediss://u:p@[::1]:6380/2", "rediss://u:***@[::1]:6380/2", id="ipv6"),
        pytest.param("redis://host:6379/0", "redis://host:6379/0", id="no-credentials"),
        pytest.param("redis://user@host/0", "redis://user@host/0", id="user-without-password"),
        pytest.param("redis://u:p@host:99999999/0", "redis://***@host:99999999/0", id="unparseable-port"),
    ],
)
def test_redact_url(url: str, shown: str) -> None:
    assert redact_url(url) == shown
