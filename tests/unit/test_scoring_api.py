"""The embeddable facade `agent.scoring`: exports, isolation, slots, the array path, pickers."""
from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pytest

import agent.scoring as scoring
from agent.core.records import CATEGORY_CODES, Category, Sample
from agent.reference.scoring import p2c_pick
from agent.scoring import Scorer, ScorerConfig, SmoothWeightedRoundRobin, WeightedP2C


def test_public_exports():
    assert sorted(scoring.__all__) == sorted([
        "ScorerConfig", "Scorer", "TickArrays", "ContainerDetail",
        "SmoothWeightedRoundRobin", "WeightedP2C", "LATENCY_FLOOR",
    ])
    for name in scoring.__all__:
        assert getattr(scoring, name) is not None


def test_import_pulls_in_no_io_library():
    code = ("import sys, agent.scoring, agent.reference.scoring; "
            "bad = sorted(m for m in ('trio', 'docker', 'redis') if m in sys.modules); "
            "print(','.join(bad))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def sample(cpu: float = 10.0, rt: float = 0.01) -> Sample:
    return Sample(cpu_percent=cpu, memory_percent=20.0, network_bps=1e6, response_time=rt)


def test_membership_slots_reuse_and_growth():
    s = Scorer(capacity=2)
    assert (s.add("a", now=0.0), s.add("b", now=0.0)) == (0, 1)
    assert s.capacity == 2
    assert s.add("c", now=0.0) == 2 and s.capacity == 4  # doubled
    assert len(s) == 3 and "b" in s and "z" not in s and s.names() == ["a", "b", "c"]
    s.remove("b")
    assert s.add("d", now=0.0) == 1  # freed slot reused
    assert s.slot_of("d") == 1 and s.names() == ["a", "c", "d"]
    with pytest.raises(ValueError, match="already registered"):
        s.add("a", now=0.0)
    with pytest.raises(KeyError):
        s.remove("b")
    with pytest.raises(KeyError):
        s.slot_of("b")
    with pytest.raises(ValueError, match="now must be a finite number"):
        s.add("e", now=math.nan)


def test_growth_keeps_state():
    # the same history in a scorer that grew from capacity 1 and in one that did not
    grown, big = Scorer(capacity=1), Scorer(capacity=8)
    rng = np.random.default_rng(0)
    names = []
    for t in range(20):
        if t % 4 == 0:
            names.append(f"c{t}")
            grown.add(names[-1], now=float(t))
            big.add(names[-1], now=float(t))
        batch = {n: sample(rng.uniform(0, 100), rng.uniform(0.001, 0.1)) for n in names}
        assert grown.update(batch, float(t)) == big.update(batch, float(t))
    assert grown.capacity == 8
    assert all(grown.detail(n) == big.detail(n) for n in names)


def test_reused_slot_starts_fresh():
    s = Scorer()
    s.add("a", now=0.0)
    for t in range(5):
        s.update({"a": sample(90.0, 2.0)}, float(t))
    s.remove("a")
    s.add("b", now=10.0)
    fresh = Scorer()
    fresh.add("b", now=10.0)
    assert s.update({"b": sample()}, 11.0) == fresh.update({"b": sample()}, 11.0)
    assert s.detail("b") == fresh.detail("b")


def test_update_validates_names_before_scoring():
    s = Scorer()
    s.add("a", now=0.0)
    s.update({"a": sample()}, 1.0)
    before = s.detail("a")
    with pytest.raises(KeyError, match="ghost"):
        s.update({"a": sample(50.0), "ghost": sample()}, 2.0)
    assert s.detail("a") == before
    assert s.scores()[0].cpu_score == 90.0


def test_records_carry_names_ids_and_categories():
    s = Scorer()
    s.add("a", now=0.0, id="abc123")
    assert s.scores() == []
    [r] = s.update({"a": sample()}, 1.0)
    assert (r.name, r.id, r.category) == ("a", "abc123", Category.LU)
    assert s.scores() == [r]


def test_update_arrays_matches_update_and_converts_inputs():
    a, b = Scorer(capacity=4), Scorer(capacity=4)
    for n in ("x", "y", "z"):
        a.add(n, now=0.0)
        b.add(n, now=0.0)
    rng = np.random.default_rng(5)
    for t in range(30):
        cpu, rt = rng.uniform(0, 100, 4), rng.uniform(0.001, 0.1, 4)
        rt[rng.random(4) < 0.2] = np.nan
        valid = rng.random(4) < 0.9
        batch = {n: Sample(cpu[i], 20.0, 1e6, rt[i]) for i, n in enumerate(("x", "y", "z"))
                 if valid[i]}
        recs = a.update(batch, float(t))
        # float32 inputs, a list, and an int array for valid: all converted
        arr = b.update_arrays(cpu.astype(np.float64), [20.0] * 4, np.full(4, 1e6, np.float32),
                              rt, valid.astype(np.int64), float(t))
        for r in recs:
            i = b.slot_of(r.name)
            assert arr.overall_score[i] == r.overall_score
            assert arr.weight[i] == r.weight
            assert CATEGORY_CODES[arr.category[i]] == r.category
            assert bool(arr.stale[i]) == r.stale
    assert arr.active.tolist() == [True, True, True, False]
    assert math.isnan(arr.overall_score[3]) and arr.weight[3] == 0.0
    assert b.scores() == []  # the array path builds no records
    with pytest.raises(ValueError):
        arr.weight[0] = 1.0  # read-only views
    with pytest.raises(ValueError, match=r"mem must have shape \(4,\)"):
        b.update_arrays(cpu, np.zeros(3), cpu, cpu, valid, 31.0)
    with pytest.raises(ValueError, match=r"valid must have shape \(4,\)"):
        b.update_arrays(cpu, cpu, cpu, cpu, valid[:2], 31.0)


def test_tick_arrays_use_the_model_category_codes():
    s = Scorer(capacity=2)
    s.add("a", now=0.0)
    s.add("b", now=0.0)
    s.set_sundown("b")
    recs = s.update({"a": sample(), "b": sample()}, 1.0)
    codes = s.arrays.category
    assert [CATEGORY_CODES[codes[s.slot_of(r.name)]] for r in recs] == [r.category for r in recs]
    assert [r.category for r in recs] == [Category.LU, Category.SUNDOWN]


def test_state_fits_four_kib_per_container_at_h60():
    s = Scorer(ScorerConfig(trend_window=60), capacity=64)
    assert s.state_bytes_per_slot() <= 4096


def test_smooth_weighted_round_robin_facade():
    rr = SmoothWeightedRoundRobin([5, 1, 1])
    assert "".join("abc"[rr.pick()] for _ in range(7)) == "aabacaa"
    assert rr.picks(7).tolist() == [0, 0, 1, 0, 2, 0, 0]
    with pytest.raises(LookupError):
        SmoothWeightedRoundRobin([0.0, 0.0]).pick()
    with pytest.raises(ValueError, match="finite and >= 0"):
        SmoothWeightedRoundRobin([1.0, -1.0])
    with pytest.raises(ValueError, match="one-dimensional"):
        SmoothWeightedRoundRobin([[1.0]])


def test_weighted_p2c_facade():
    w = [0.1, 0.0, 0.5, 0.4]
    a, b = WeightedP2C(w, seed=42), WeightedP2C(w, seed=42)
    picks = [a.pick() for _ in range(50)]
    assert picks == b.picks(50).tolist()  # same generator stream, same picks
    assert 1 not in picks
    p = WeightedP2C(w)
    for u1, u2 in ((0.0, 0.0), (0.3, 0.9), (0.99, 0.01)):
        assert p.pick_with(u1, u2) == p2c_pick(w, u1, u2)
        load = [3.0, 0.0, 1.0, 0.0]
        assert p.pick_with(u1, u2, load=load) == p2c_pick(w, u1, u2, load)
    with pytest.raises(ValueError, match="load must have shape"):
        p.pick(load=[1.0])
    with pytest.raises(LookupError):
        WeightedP2C([0.0]).pick()


def test_weights_feed_the_pickers():
    s = Scorer(ScorerConfig(slow_start_window=0.0))
    for n in ("fast", "slow"):
        s.add(n, now=0.0)
    recs = s.update({"fast": sample(10.0, 0.005), "slow": sample(10.0, 0.05)}, 1.0)
    rr = SmoothWeightedRoundRobin([r.weight for r in recs])
    counts = np.bincount(rr.picks(1100), minlength=2)
    assert counts.tolist() == [1000, 100]  # 10x the latency, a tenth of the traffic


def test_reconfigure_keeps_state_and_resizes_windows():
    from agent.reference.scoring import ReferenceScorer

    small = ScorerConfig(history_size=4, best_time_window=2, trend_window=5, hysteresis=2.0)
    s, ref = Scorer(capacity=2), ReferenceScorer()
    for n in ("a", "b", "c"):
        s.add(n, now=0.0)
        ref.add(n, now=0.0)
    rng = np.random.default_rng(11)

    def tick(t: float) -> None:
        batch = {n: sample(rng.uniform(0, 100), rng.uniform(0.001, 0.1)) for n in ("a", "b", "c")}
        got, want = s.update(batch, t), ref.update(batch, t)
        for g, w in zip(got, want):
            assert g.category == w.category
            for f in ("availability_score", "overall_score", "weight", "slope", "forecast"):
                assert getattr(g, f) == pytest.approx(getattr(w, f), rel=1e-9, abs=1e-9), f

    for t in range(70):
        tick(float(t))
    ema = s.detail("a").availability_ema
    s.reconfigure(small)  # shrink every ring
    ref.reconfigure(small)
    assert s.config is small and s.detail("a").availability_ema == ema
    for t in range(70, 90):
        tick(float(t))
    s.reconfigure(ScorerConfig())  # and grow them back
    ref.reconfigure(ScorerConfig())
    for t in range(90, 160):
        tick(float(t))
    with pytest.raises(TypeError):
        s.reconfigure({"ema_alpha": 0.5})  # type: ignore[arg-type]


# -- the array path and records on demand (issue 11 §5) --------------------------------

def _pool(n: int = 3, capacity: int = 4) -> Scorer:
    s = Scorer(capacity=capacity)
    for i in range(n):
        s.add(f"c{i}", now=0.0, id=f"id{i}")
    return s


def test_update_samples_is_update_without_records():
    a, b = _pool(), _pool()
    rng = np.random.default_rng(21)
    for t in range(12):
        batch = {f"c{i}": sample(rng.uniform(0, 100), rng.uniform(0.001, 0.1))
                 for i in range(3) if rng.random() < 0.8}
        recs = a.update(batch, float(t))
        arr = b.update_samples(batch, float(t))
        assert arr is b.arrays
        assert b.records() == recs
        for r in recs:
            i = b.slot_of(r.name)
            assert (arr.overall_score[i], arr.weight[i], bool(arr.stale[i])) == (
                r.overall_score, r.weight, r.stale)
    assert b.scores() == []  # not refreshed by the array path
    before = b.records()
    with pytest.raises(KeyError, match="ghost"):
        b.update_samples({"c0": sample(), "ghost": sample()}, 20.0)
    with pytest.raises(ValueError, match="now must be a finite number"):
        b.update_samples({"c0": sample()}, math.inf)
    assert b.records() == before  # nothing was scored


def test_update_accepts_any_mapping():
    import types

    a, b = _pool(), _pool()
    batch = {"c0": sample(20.0), "c2": Sample(30.0, 10.0, 5e5, 0.004, stale=True)}
    assert a.update(types.MappingProxyType(batch), 1.0) == b.update(batch, 1.0)
    with pytest.raises(KeyError, match="ghost"):
        a.update(types.MappingProxyType({"ghost": sample()}), 2.0)


def test_records_on_demand_by_name_and_reused_while_unchanged():
    s = _pool()
    recs = s.update({"c0": sample(10.0), "c1": sample(20.0), "c2": sample(30.0)}, 1.0)
    assert s.records() == recs and [r.id for r in recs] == ["id0", "id1", "id2"]
    assert s.records(["c2", "c0"]) == [recs[2], recs[0]]
    assert all(x is y for x, y in zip(s.records(), recs))  # nothing changed: same objects
    with pytest.raises(KeyError):
        s.records(["c0", "nope"])
    again = s.update({"c0": sample(10.0), "c1": sample(40.0)}, 2.0)
    assert again[1].cpu_score == 60.0 and again[1] is not recs[1]
    assert again[2].stale and again[2].cpu_score == recs[2].cpu_score
    assert s.records([]) == []


def test_changed_records_report_each_change_once():
    s = _pool()
    s.update({f"c{i}": sample(10.0 * i) for i in range(3)}, 1.0)
    first = s.changed_records()
    assert [r.name for r in first] == ["c0", "c1", "c2"] and first == s.records()
    assert s.changed_records() == []
    s.set_sundown("c1")
    [c1] = s.changed_records()
    assert (c1.name, c1.category) == ("c1", Category.SUNDOWN)
    s.add("c3", now=1.0, id="id3")
    s.remove("c0")
    assert [r.name for r in s.changed_records()] == ["c3"]
    s.update({"c2": sample(30.0), "c3": sample(50.0)}, 2.0)
    changed = s.changed_records()
    assert {r.name for r in changed} <= {"c1", "c2", "c3"} and len(changed) >= 2
    assert changed == [r for r in s.records() if r.name in {c.name for c in changed}]
    assert s.changed_records() == []


def test_records_survive_growth_and_slot_reuse():
    s = Scorer(capacity=1)
    s.add("a", now=0.0, id="x")
    [a] = s.update({"a": sample()}, 1.0)
    assert s.changed_records() == [a]
    s.add("b", now=1.0)                       # grows: the caches grow with it
    s.remove("a")
    s.add("c", now=1.0, id="y")               # reuses a's slot: never a's record
    recs = s.update({"b": sample(), "c": sample()}, 2.0)
    assert [(r.name, r.id) for r in recs] == [("b", ""), ("c", "y")]
    assert [r.name for r in s.changed_records()] == ["b", "c"]


def test_records_are_plain_container_scores_without_the_fast_path(monkeypatch):
    import gc

    import agent.scoring as scoring_module
    from agent.core.records import ContainerScore

    fast = _pool()
    recs = fast.update({"c0": sample(10.0), "c1": sample(20.0, rt=math.nan)}, 1.0)
    assert all(type(r) is ContainerScore for r in recs)
    assert not gc.is_tracked(recs[0])  # str, float, bool and Category values only
    monkeypatch.setattr(scoring_module, "_RECORD_DESCS", None)  # build by calling the class
    slow = _pool()
    assert slow.update({"c0": sample(10.0), "c1": sample(20.0, rt=math.nan)}, 1.0) == recs
    assert scoring_module._record_descriptors() is not None


def test_free_capacity_changes_nothing():
    # 1,000 free slots (whole window chunks of empty series, skipped) or none:
    # the same records and internals, bit for bit
    roomy, tight = _pool(3, capacity=1024), _pool(3, capacity=4)
    rng = np.random.default_rng(22)
    for t in range(80):
        batch = {f"c{i}": sample(rng.uniform(0, 100), rng.uniform(0.001, 0.1))
                 for i in range(3) if rng.random() < 0.9}
        assert roomy.update(batch, float(t)) == tight.update(batch, float(t))
    assert all(roomy.detail(n) == tight.detail(n) for n in roomy.names())
    assert roomy.state_bytes_per_slot() > 0
