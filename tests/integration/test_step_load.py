"""The step-load benchmark's trace, short, in the suite (issue 8 §4): with the
default settings the pool scales up at the step, never reverses direction during
the holds, and scales in after the step down without failing a request.

It runs `benchmarks.bench_step_load --quick` itself, the CLI the README shows —
the same pool (the real agent as `deployment-agent run`, BALANCER=haproxy,
workers at 0.25 CPU, 2..6), the same open-loop trace through the embedded haproxy
and the same figures (`benchmarks.step_analysis`) — on a trace short enough for
the suite (about 100 s): 8 s of baseline (then up to a check period more, so the
step falls mid-cycle), 40 s at 3 × the baseline rate (needed: 3 workers), then the
baseline until a container has been removed (at most 60 s). Only counts are
asserted, never times: how fast it reacts is the benchmark's business (its table
and JSON).
"""
from __future__ import annotations

import json
from pathlib import Path

import docker
import pytest

from agent.adapters.docker_engine import APP_LABEL, OWNER_LABEL, OWNER_VALUE
from benchmarks import bench_step_load as bench

pytestmark = [pytest.mark.docker, pytest.mark.redis, pytest.mark.slow]

# ~11 ms of CPU per request at ms=8 (the work, the CGI's fork and exec): 0.25 core
# serves about 22 per second (as tests/integration/test_balancer_scaling.py); given,
# so the suite does not spend a calibration on it
CAPACITY_PER_WORKER = 22.0


def test_default_policy_answers_a_step_without_reversal_and_scales_in_without_failures(
    tmp_path: Path, docker_client: docker.DockerClient, demo_image: str,
) -> None:
    out = tmp_path / "step-load.json"
    # the host is shared: start (waiting a minute at most) when less than half of it
    # is busy, and say how busy it was if the counts miss (workers starved of the
    # CPU their limit promises queue, and a pool that queues does not scale in)
    argv = ["--quick", "--capacity", str(CAPACITY_PER_WORKER), "--calm", "0.5",
            "--patience", "60", "--json", str(out)]
    assert bench.main(argv) == 0
    doc = json.loads(out.read_text())  # the JSON is written, strict
    assert doc["policies"] == {"ours": {}}, "the default policy has no setting of its own"
    result = doc["results"]["ours"]
    summary = {k: result[k] for k in ("decisions", "reversals", "scale_in", "failed")}
    summary["host_cpu_busy"] = {n: ph["host_cpu_busy"] for n, ph in result["phases"].items()}
    assert result["phases"]["baseline"]["failed"] == 0, summary
    assert result["decisions"]["step"]["up"] >= 1, summary  # the step is answered
    assert result["first_new_container"] is not None, summary
    assert result["reversals"] == {"baseline": 0, "step": 0, "after": 0}, summary
    assert result["scale_in"] is not None and result["scale_in"]["removed"] >= 1, summary
    assert result["scale_in"]["failed"] == 0, summary
    assert result["phases"]["after"]["failed"] == 0, summary
    left = docker_client.containers.list(all=True, filters={"label": [
        f"{OWNER_LABEL}={OWNER_VALUE}", f"{APP_LABEL}={result['notes']['app']}"]})
    assert left == []
