"""The type hints hold: mypy passes on `agent` and the `_scoring` stubs.

mypy is a test dependency (the ``test`` extra), so this never skips. It runs
with the ``[tool.mypy]`` configuration in pyproject.toml (files, flags and the
per-module overrides for untyped third-party libraries), from the project root.
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_mypy_passes():
    result = subprocess.run(
        [sys.executable, "-m", "mypy"],
        check=False,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"mypy failed (exit {result.returncode}):\n{output}"
