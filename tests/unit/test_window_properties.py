"""Property tests: `RollingWindow` agrees with `agent.reference.window` on random streams.

Hypothesis draws small windows (so they fill and wrap; window 1 too), a few series of different
shapes -- noise, NaN/inf holes, constants (also at 1e9 + 0.1), large offsets with
tiny noise, drifts, spikes -- slot resets, and refresh periods. Every output must
match the reference within 1e-9 relative (to the value, or for std and slope to
the window's spread) plus a few ulps of the window's magnitude (of the history's,
for the smoothers); see `test_window.assert_matches_reference`.
"""
from __future__ import annotations

import math

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.unit.test_window import assert_matches_reference

# magnitudes whose squares underflow (below ~1e-150) are out of scope, as for
# any variance computed in double precision: they become 0
finite = st.one_of(
    st.floats(-1e6, 1e6, allow_nan=False),
    st.floats(-1e12, 1e12, allow_nan=False),
    st.sampled_from([0.0, 100.0, 1e9 + 0.1, -3.5, 1e-9]),
).map(lambda v: v if abs(v) > 1e-150 else 0.0)
cell = st.one_of(finite, finite, finite, st.just(math.nan), st.just(math.inf))


@st.composite
def column(draw, T: int) -> list[float]:
    kind = draw(st.sampled_from(["cells", "constant", "offset", "drift", "spike", "holes"]))
    if kind == "cells":
        return draw(st.lists(cell, min_size=T, max_size=T))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    if kind == "constant":
        v = draw(finite)
        col = np.full(T, v)
    elif kind == "offset":
        col = 1e9 + rng.normal(0.0, 1e-3, T)
    elif kind == "drift":
        col = draw(st.floats(-1e8, 1e8)) + np.cumsum(rng.normal(0.0, 10.0, T))
    elif kind == "spike":
        col = 1.0 + rng.normal(0.0, 0.01, T)
        col[rng.random(T) < 0.1] = 1e12
    else:
        col = rng.normal(50.0, 20.0, T)
    holes = rng.random(T) < draw(st.sampled_from([0.0, 0.1, 0.5, 0.9]))
    col[holes] = math.nan
    return col.tolist()


@st.composite
def streams(draw):
    H = draw(st.integers(1, 7))
    N = draw(st.integers(1, 5))
    T = draw(st.integers(1, 4 * H + 6))
    cols = [draw(column(T)) for _ in range(N)]
    samples = np.array(cols, dtype=np.float64).T.reshape(T, N)
    resets = draw(st.lists(st.tuples(st.integers(0, T - 1), st.integers(0, N - 1)),
                           max_size=3))
    alpha = draw(st.sampled_from([1.0, 0.3, 0.05]))
    jk = draw(st.sampled_from([(0.125, 0.25, 4.0), (0.5, 0.5, 0.0), (1.0, 1.0, 2.0)]))
    refresh = draw(st.sampled_from([0, 1, 3, 1024]))
    return samples, H, alpha, jk, resets, refresh


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(streams())
def test_kernel_matches_reference(case):
    samples, H, alpha, jk, resets, refresh = case
    assert_matches_reference(samples, H, alpha, jk, resets=resets, refresh_every=refresh)
