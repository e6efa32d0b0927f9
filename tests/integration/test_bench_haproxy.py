"""Smoke test of `benchmarks/bench_haproxy_sync.py`: tiny sizes, JSON structure."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_benchmark_runs_one_connection_per_sync(tmp_path):
    out = tmp_path / "bench.json"
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.bench_haproxy_sync", "--servers", "12",
         "--rounds", "1", "--json", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    result = json.loads(out.read_text())
    phases = result["phases"]
    assert phases["add all"]["commands"] == 36 and phases["no change"]["commands"] == 0
    assert phases["remove all"]["commands"] == 24
    for name in ("add all", "no change", "reweight all", "drain 10 %", "observe", "remove all"):
        assert phases[name]["connections"] == 1, (name, phases[name])
    assert phases["reweight, naive"]["connections"] == 12
    assert "reweight: one connection per command" in proc.stdout
