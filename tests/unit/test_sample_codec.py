"""`agent.core.sample_codec`: node reports on the wire, and how the leader reads them."""
from __future__ import annotations

import json
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent.core.records import Sample
from agent.core.sample_codec import (
    NodeReport,
    Placement,
    WorkerReading,
    decode_report,
    encode_report,
    report_key,
    samples_from_reports,
)

REPORT = NodeReport(node="n1", time=1_800_000_000.12345, seq=7, readings=(
    WorkerReading("web-a", "t-a", cpu_percent=12.3456, memory_percent=40.0, network_bps=1234.6),
    WorkerReading("web-b", "t-b", cpu_percent=math.nan, memory_percent=3.0,
                  network_bps=math.nan, stale=True),
))


def test_the_wire_format_is_compact_json() -> None:
    text = encode_report(REPORT)
    assert text == ('{"v":1,"node":"n1","t":1800000000.123,"seq":7,"w":['
                    '["web-a","t-a",12.35,40.0,1235,0],["web-b","t-b",null,3.0,null,1]]}')
    back = decode_report(text)
    assert (back.node, back.seq, back.time) == ("n1", 7, 1800000000.123)
    a, b = back.readings
    assert a == WorkerReading("web-a", "t-a", 12.35, 40.0, 1235.0, False)
    assert (b.service, b.task, b.memory_percent, b.stale) == ("web-b", "t-b", 3.0, True)
    assert math.isnan(b.cpu_percent) and math.isnan(b.network_bps)
    assert decode_report(text.encode()) == back


def test_the_key_lives_under_the_app_prefix() -> None:
    assert report_key("da:web:", "n1") == "da:web:samples:n1"
    with pytest.raises(ValueError):
        report_key("da:web:", "")


@pytest.mark.parametrize("text", [
    "", "nope", "[]", "{}", '{"v":2,"node":"n","t":1,"seq":1,"w":[]}',
    '{"v":1,"node":"","t":1,"seq":1,"w":[]}',
    '{"v":1,"node":"n","t":1,"seq":1.5,"w":[]}',
    '{"v":1,"node":"n","t":1,"seq":true,"w":[]}',
    '{"v":1,"node":"n","t":1,"seq":1,"w":{}}',
    '{"v":1,"node":"n","t":1,"seq":1,"w":[["s","t",1,2,3]]}',
    '{"v":1,"node":"n","t":1,"seq":1,"w":[["s","t",1,2,3,2]]}',
    '{"v":1,"node":"n","t":1,"seq":1,"w":[["s","t","1",2,3,0]]}',
    '{"v":1,"node":"n","t":1,"seq":1,"w":[["s","",1,2,3,0]]}',
    '{"v":1,"node":"n","t":1,"seq":1,"w":[["s","t",true,2,3,0]]}',
    '{"v":1,"node":"n","t":"x","seq":1,"w":[]}',
])
def test_anything_else_is_a_value_error(text: str) -> None:
    with pytest.raises(ValueError):
        decode_report(text)


finite = st.floats(min_value=0, max_value=1e12, allow_nan=False)
maybe = st.one_of(st.just(math.nan), finite)
names = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-.", min_size=1, max_size=30)


@given(readings=st.lists(st.builds(WorkerReading, names, names, maybe, maybe, maybe,
                                   st.booleans()), max_size=20),
       seq=st.integers(min_value=0, max_value=2**53), time=finite)
def test_encoding_round_trips_to_the_rounding(readings: list[WorkerReading], seq: int,
                                              time: float) -> None:
    report = NodeReport(node="node-1", time=time, seq=seq, readings=tuple(readings))
    text = encode_report(report)
    json.loads(text)  # strict JSON: no NaN
    back = decode_report(text)
    assert (back.node, back.seq, len(back.readings)) == ("node-1", seq, len(readings))
    for got, want in zip(back.readings, readings):
        assert (got.service, got.task, got.stale) == (want.service, want.task, want.stale)
        for g, w, tol in ((got.cpu_percent, want.cpu_percent, 0.005),
                          (got.memory_percent, want.memory_percent, 0.005),
                          (got.network_bps, want.network_bps, 0.5)):
            assert (math.isnan(g) and math.isnan(w)) or abs(g - w) <= tol + 1e-9 * abs(w)


# -- the leader's view ----------------------------------------------------------------------


def test_a_reported_and_probed_worker_has_a_fresh_sample() -> None:
    samples = samples_from_reports([Placement("web-a", "n1", "t-a")], {"n1": REPORT},
                                   {"web-a": 0.002})
    assert samples == {"web-a": Sample(12.3456, 40.0, 1234.6, 0.002, stale=False)}


@pytest.mark.parametrize(("placement", "reports", "probes", "why"), [
    (Placement("web-a", "n2", "t-a"), {"n1": REPORT}, {"web-a": 0.002}, "its node has no report"),
    (Placement("web-a", "n1", "t-new"), {"n1": REPORT}, {"web-a": 0.002}, "another task"),
    (Placement("web-a", "n1", ""), {"n1": REPORT}, {"web-a": 0.002}, "no task yet"),
    (Placement("web-b", "n1", "t-b"), {"n1": REPORT}, {"web-b": 0.002}, "the collector was late"),
    (Placement("web-a", "n1", "t-a"), {"n1": REPORT}, {}, "the probe was late"),
])
def test_a_worker_is_stale_when(placement: Placement, reports: dict[str, NodeReport],
                                probes: dict[str, float], why: str) -> None:
    (sample,) = samples_from_reports([placement], reports, probes).values()
    assert sample.stale, why


def test_an_unanswered_probe_is_an_observation_not_staleness() -> None:
    (sample,) = samples_from_reports([Placement("web-a", "n1", "t-a")], {"n1": REPORT},
                                     {"web-a": math.nan}).values()
    assert not sample.stale and math.isnan(sample.response_time)


def test_an_unprobed_sundown_worker_is_fresh_with_its_network_rate() -> None:
    (sample,) = samples_from_reports([Placement("web-a", "n1", "t-a", probed=False)],
                                     {"n1": REPORT}, {}).values()
    assert not sample.stale and sample.network_bps == 1234.6
    assert math.isnan(sample.response_time)


def test_a_stale_worker_keeps_no_numbers_but_its_probe() -> None:
    (sample,) = samples_from_reports([Placement("web-a", "n9", "t-a")], {}, {"web-a": 0.1}).values()
    assert sample.stale and sample.response_time == 0.1
    assert all(math.isnan(v) for v in (sample.cpu_percent, sample.memory_percent,
                                        sample.network_bps))
