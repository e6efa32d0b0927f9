"""The fan-out benchmark runs (small and quick; the figures are not checked)."""
from __future__ import annotations

import json
from pathlib import Path

from benchmarks import bench_ws_fanout


def test_bench_ws_fanout_smoke(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "fanout.json"
    assert bench_ws_fanout.main(
        ["--clients", "20", "--stalled", "2", "--updates", "3", "--interval", "0", "--timeout", "60",
         "--json", str(out)]
    ) == 0
    result = json.loads(out.read_text())
    assert result["deliveries"] == 60 and result["updates_timed_out"] == 0
    assert result["delay_ms"]["p99"] > 0
    assert result["server_rss_bytes"]["connected"] > 0
    assert "delay p50" in capsys.readouterr().out
