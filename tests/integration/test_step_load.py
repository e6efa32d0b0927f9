"""The step-load benchmark's trace, short, in the suite (issue 8 §4): with the
default settings the pool scales up at the step, never reverses direction during
the holds, and scales in after the step down without failing a request.

It runs `benchmarks.bench_step_load` itself — the same pool (the real agent as
`deployment-agent run`, BALANCER=haproxy, workers at 0.25 CPU, 2..6), the same
open-loop trace through the embedded haproxy and the same figures
(`benchmarks.step_analysis`) — on a trace short enough for the suite: 12 s of
baseline, 25 s at 3.5 × the baseline rate, then the baseline until a container
has been removed (at most 70 s). Only counts are asserted, never times: how fast
it reacts is the benchmark's business.
"""
from __future__ import annotations

import tempfile
from pathlib import Path

import pytest

from agent.adapters.demo_image import DEMO_PORT
from benchmarks import bench_step_load as bench
from benchmarks.step_analysis import figures

pytestmark = [pytest.mark.docker, pytest.mark.redis, pytest.mark.slow]

# ~11 ms of CPU per request at ms=8 (the work, the CGI's fork and exec): 0.25 core
# serves about 22 per second (as tests/integration/test_balancer_scaling.py)
CAPACITY_PER_WORKER = 22.0


def test_default_policy_answers_a_step_without_reversal_and_scales_in_without_failures(
    demo_image,
):
    opts = bench.parse(["--policies", "ours", "--capacity", str(CAPACITY_PER_WORKER),
                        "--baseline", "12", "--high", "25", "--low", "70"])
    with tempfile.TemporaryDirectory(prefix="bst-") as tmp:
        record = bench.run_policy(opts, Path(tmp), "ours", demo_image, DEMO_PORT,
                                  CAPACITY_PER_WORKER, settled=bench.scaled_in)
    result = figures(record)
    summary = {k: result[k] for k in ("decisions", "reversals", "scale_in", "failed")}
    assert record.notes["settings"] == {}, "the default policy has no setting of its own"
    assert result["phases"]["baseline"]["failed"] == 0, summary
    assert result["decisions"]["step"]["up"] >= 1, summary  # the step is answered
    assert result["reversals"] == {"baseline": 0, "step": 0, "after": 0}, summary
    assert result["scale_in"] is not None and result["scale_in"]["removed"] >= 1, summary
    assert result["scale_in"]["failed"] == 0, summary
