"""Smoke test of `benchmarks/bench_kernel.py`: tiny sizes, JSON structure, agreement."""
from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
TINY = ["--n", "300", "--t", "30", "--h", "8", "--runs", "5", "--py-containers", "16",
        "--bw-mib", "8"]


def test_benchmark_runs_and_writes_json(tmp_path):
    out = tmp_path / "bench.json"
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.bench_kernel", *TINY, "--json", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for heading in ("a. SAME WORK", "b. FULL SCORING TICK", "c. PHYSICAL LIMIT",
                    "d. MEMORY", "e. TARGETS"):
        assert heading in proc.stdout
    assert "same work round 5/5" in proc.stderr        # progress goes to stderr

    rep = json.loads(out.read_text())
    assert set(rep) == {"meta", "agreement", "same_work", "full_tick", "bandwidth",
                        "memory", "targets"}
    assert (rep["meta"]["n"], rep["meta"]["t"], rep["meta"]["h"]) == (300, 30, 8)
    assert rep["meta"]["threads"]["OPENBLAS_NUM_THREADS"] == "1"

    agree = rep["agreement"]
    assert agree["ok"] is True
    for key in ("kernel vs reference", "numpy vs kernel", "bottleneck vs kernel",
                "python vs kernel"):
        assert set(agree[key]) == {"mean", "std", "slope", "ewma", "threshold"}
        assert max(agree[key].values()) <= 1e-9
    # the kernel timed is the scorer's: a Scorer reports its slopes and bands exactly
    assert agree["scorer vs kernel"] == {"slope": 0.0, "threshold": 0.0}
    assert agree["scorer bitwise"] is True
    assert "slopes and bands bit for bit" in proc.stdout

    for method in ("kernel", "numpy", "bottleneck", "python"):
        r = rep["same_work"][method]
        assert len(r["runs_s"]) >= 5
        assert r["s_per_tick"] > 0 and r["ns_per_container_tick"] > 0
        assert rep["bandwidth"]["ratio_to_bound"][method] > 0
    assert rep["same_work"]["kernel"]["speedup_of_kernel"] == 1.0
    assert "16 containers" in rep["same_work"]["python"]["scaled_from"]

    ft = rep["full_tick"]
    if ft["available"]:
        assert ft["kernel_s_per_tick"] > 0 and ft["python_s_per_tick"] > 0
        assert ft["numpy_s_per_tick"] > 0 and len(ft["numpy_runs"]) == 5
        assert ft["numpy_label"] == "all outputs agree with the kernel"
        ag = ft["agreement"]
        assert ag["ok"] is True
        assert set(ag["worst"]) == {"numpy vs kernel", "python vs kernel"}
        assert max(ag["worst"].values()) <= 1e-9
        assert {"category", "weight", "slope_response_time", "forecast"} <= set(ag["numpy vs kernel"])
        assert "NumPy (vectorized, NumpyScorer)" in proc.stdout
        fc = ft["facade"]
        assert set(fc["us_per_container"]) == {"update", "update_samples", "update_arrays",
                                               "records"}
        assert all(len(v) == 5 for v in fc["runs_s"].values())
        assert all(v > 0 for v in fc["us_per_container"].values())
        assert fc["object_over_array"] > 0
        assert "object path vs array path" in proc.stdout
    else:
        assert ft["reason"].startswith("skipped: agent.scoring not available")

    bw = rep["bandwidth"]
    assert bw["copy_bytes_per_s"] > 0 and bw["bound_s_per_tick"] > 0
    assert rep["memory"]["kernel_bytes_per_container"] == 8 * 8 + 120

    names = [t["name"] for t in rep["targets"]]
    assert len(names) == 6
    for t in rep["targets"]:
        assert t["pass"] in (True, False, None)
    state = rep["targets"][-1]
    assert state["pass"] is True and state["value"] == 8 * 8 + 120


@pytest.fixture
def bench():
    saved = dict(os.environ)
    try:
        yield importlib.import_module("benchmarks.bench_kernel")
    finally:
        os.environ.clear()
        os.environ.update(saved)


def test_disagreeing_method_aborts_before_timing(bench, monkeypatch, tmp_path, capsys):
    def broken_numpy(x, p, collect=False):
        seconds, outs = bench.run_kernel(x, p, collect)
        if outs is not None:
            outs[2] = outs[2] + 1e-3          # a wrong slope
        return seconds, outs

    monkeypatch.setattr(bench, "run_numpy", broken_numpy)
    out = tmp_path / "abort.json"
    code = bench.main([*TINY, "--json", str(out)])
    assert code == 2
    text = capsys.readouterr().out
    assert "ABORT: the methods disagree" in text
    assert "numpy vs kernel" in text
    rep = json.loads(out.read_text())
    assert rep["aborted"] is True and rep["agreement"]["ok"] is False
    assert rep["agreement"]["numpy vs kernel"]["slope"] > 1e-9


def test_full_tick_numpy_that_disagrees_is_not_timed(bench, monkeypatch):
    from agent.reference import scoring_numpy

    class Broken(scoring_numpy.NumpyScorer):
        def update_arrays(self, *args, **kwargs):
            arrays = super().update_arrays(*args, **kwargs)
            self.out[4] += 1e-3                # a wrong overall score
            return arrays

    monkeypatch.setattr(scoring_numpy, "NumpyScorer", Broken)
    ft = bench.full_tick(50, 5, 2, 10, seed=1)
    assert ft["available"] is True and ft["agreement"]["ok"] is False
    assert ft["numpy_s_per_tick"] is None and ft["numpy_runs"] == []
    assert ft["numpy_label"].startswith("NOT TIMED: disagrees")
    assert ft["agreement"]["numpy vs kernel"]["overall_score"] > 1e-9
    assert ft["python_s_per_tick"] > 0                 # the others are still timed


def test_same_work_kernel_is_the_scorers_window(bench):
    from _scoring import _kernel

    rw = bench.scorer_window(10, bench.Params(window=7))
    ref = _kernel.make_windows(10, 7, bench.JK[2])[-1]
    assert (rw.window, rw.jk_alpha, rw.jk_beta, rw.jk_k, rw.refresh_every) == (
        ref.window, ref.jk_alpha, ref.jk_beta, ref.jk_k, ref.refresh_every)
    assert rw.ewma_alpha == bench.EWMA_ALPHA  # the one factor the scorer does not read


def test_scorer_that_disagrees_aborts(bench, monkeypatch, tmp_path, capsys):
    real = bench.run_scorer

    def off_by_one_ulp(x, p, n):
        slope, band = real(x, p, n)
        return slope, np.nextafter(band, np.inf)

    monkeypatch.setattr(bench, "run_scorer", off_by_one_ulp)
    assert bench.main([*TINY, "--json", str(tmp_path / "abort.json")]) == 2
    text = capsys.readouterr().out
    assert "ABORT: the methods disagree" in text and "not the kernel's bits" in text
    rep = json.loads((tmp_path / "abort.json").read_text())
    assert rep["agreement"]["scorer bitwise"] is False


def test_python_method_matches_kernel_exactly_enough(bench):
    x = bench.make_samples(20, 50, seed=3)
    p = bench.Params(window=7)
    _, k = bench.run_kernel(x, p, collect=True)
    _, py = bench.run_python(x, p, 20, collect=True)
    _, nump = bench.run_numpy(x, p, collect=True)
    for a, b, c in zip(k, py, nump):
        assert np.allclose(a, b, rtol=1e-10, atol=1e-10, equal_nan=True)
        assert np.allclose(a, c, rtol=1e-10, atol=1e-10, equal_nan=True)
