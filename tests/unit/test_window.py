"""`_scoring._window.RollingWindow`: exactness, missing samples, slots, API.

The compiled kernel is called directly and held to `agent.reference.window`
(the property tests live in `test_window_properties.py`).
"""
from __future__ import annotations

import math

import numpy as np
import pytest

from _scoring._window import RollingWindow
from agent.reference.window import rolling_window_stats, window_stats

NAMES = ("mean", "std", "slope", "ewma", "threshold")
EPS = np.finfo(np.float64).eps


def run(samples: np.ndarray, window: int, alpha: float = 0.3, *, resets=(), **kw):
    """Feed `samples` (T, N) to a fresh kernel; return its outputs as (T, N) arrays."""
    T, N = samples.shape
    rw = RollingWindow(N, window, alpha, **kw)
    out = [np.empty((T, N)) for _ in range(5)]
    by_tick: dict[int, list[int]] = {}
    for t, i in resets:
        by_tick.setdefault(t, []).append(i)
    for t in range(T):
        for i in by_tick.get(t, ()):
            rw.reset(i)
        for k, row in enumerate(rw.push(samples[t])):
            out[k][t] = row
    return rw, out


def window_scales(samples: np.ndarray, window: int, resets=()):
    """Per (tick, series): max |x| and max - min over the series' current window,
    and max |x| over all its samples since its last reset (the smoothers'
    memory)."""
    T, N = samples.shape
    mx = np.zeros((T, N))
    rng = np.zeros((T, N))
    hist = np.zeros((T, N))
    reset_at = set(resets)
    for i in range(N):
        kept: list[float] = []
        seen = 0.0
        for t in range(T):
            if (t, i) in reset_at:
                kept = []
                seen = 0.0
            v = samples[t, i]
            if math.isfinite(v):
                kept = (kept + [v])[-window:]
                seen = max(seen, abs(v))
            if kept:
                mx[t, i] = max(abs(u) for u in kept)
                rng[t, i] = max(kept) - min(kept)
            hist[t, i] = seen
    return mx, rng, hist


def assert_matches_reference(samples, window, alpha=0.3, jk=(0.125, 0.25, 4.0),
                             resets=(), rel=1e-9, **kw):
    rw, got = run(samples, window, alpha, resets=resets, jk_alpha=jk[0], jk_beta=jk[1],
                  jk_k=jk[2], **kw)
    ref = rolling_window_stats(samples, window, alpha, *jk, resets=resets)
    mx, spread, hist = window_scales(samples, window, resets)
    for k, name in enumerate(NAMES):
        g, r = got[k], ref[k]
        assert np.array_equal(np.isnan(g), np.isnan(r)), f"{name}: NaN pattern differs"
        ok = ~np.isnan(r)
        # 1e-300: an absolute floor for subnormal results
        if name in ("std", "slope"):
            tol = rel * (np.abs(r) + spread) + 64 * EPS * mx + 1e-300
        elif name == "mean":
            tol = rel * (np.abs(r) + mx) + 64 * EPS * mx + 1e-300
        else:
            # the kernel's smoothers use the incremental form e += a (x - e)
            # (exact on constant input), the reference the textbook
            # (1 - a) e + a x: they differ by ulps of the largest value seen
            tol = rel * (np.abs(r) + mx) + 64 * EPS * hist + 1e-300
        err = np.abs(g - r)
        bad = ok & ~(err <= tol)
        if bad.any():
            t, i = np.argwhere(bad)[0]
            raise AssertionError(
                f"{name}[t={t}, i={i}]: kernel {g[t, i]!r} reference {r[t, i]!r} "
                f"(|diff| {err[t, i]:.3g} > tol {tol[t, i]:.3g})")
    return rw, got


# -- construction ---------------------------------------------------------------

@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(n_series=0, window=5, ewma_alpha=0.5), "n_series must be >= 1, got 0"),
        (dict(n_series=3, window=0, ewma_alpha=0.5), "window must be in 1..1000000, got 0"),
        (dict(n_series=3, window=10**6 + 1, ewma_alpha=0.5),
         "window must be in 1..1000000, got 1000001"),
        (dict(n_series=3, window=5, ewma_alpha=0.0), "ewma_alpha must be in (0, 1], got 0.0"),
        (dict(n_series=3, window=5, ewma_alpha=1.5), "ewma_alpha must be in (0, 1], got 1.5"),
        (dict(n_series=3, window=5, ewma_alpha=math.nan), "ewma_alpha must be in (0, 1], got nan"),
        (dict(n_series=3, window=5, ewma_alpha=0.5, jk_alpha=0.0),
         "jk_alpha must be in (0, 1], got 0.0"),
        (dict(n_series=3, window=5, ewma_alpha=0.5, jk_beta=2.0),
         "jk_beta must be in (0, 1], got 2.0"),
        (dict(n_series=3, window=5, ewma_alpha=0.5, jk_k=-1.0),
         "jk_k must be finite and >= 0, got -1.0"),
        (dict(n_series=3, window=5, ewma_alpha=0.5, jk_k=math.inf),
         "jk_k must be finite and >= 0, got inf"),
        (dict(n_series=3, window=5, ewma_alpha=0.5, refresh_every=-1),
         "refresh_every must be >= 0 (0 = never), got -1"),
    ],
)
def test_constructor_rejects(kwargs, message):
    with pytest.raises(ValueError) as exc:
        RollingWindow(**kwargs)
    assert str(exc.value) == message


def test_push_rejects_wrong_length_and_dtype():
    rw = RollingWindow(3, 4, 0.5)
    with pytest.raises(ValueError, match="expected 3 samples, got 2"):
        rw.push(np.zeros(2))
    with pytest.raises(ValueError):
        rw.push(np.zeros(3, dtype=np.float32))
    with pytest.raises(TypeError):
        rw.push(None)


# -- exactness --------------------------------------------------------------------

@pytest.mark.parametrize("value", [100.0, 1e9 + 0.1, 0.1, -3.7e-5, 0.0, 1e15 + 3.0, 5e-300])
@pytest.mark.parametrize("window", [2, 7, 60])
def test_constant_series_gives_exact_zero_std_and_slope(value, window):
    T = 3 * window + 5
    noise = np.random.default_rng(0).normal(50.0, 20.0, T)
    samples = np.column_stack([np.full(T, value), noise])   # a noisy neighbour
    _, got = run(samples, window)
    mean, std, slope, ewma, thr = (g[:, 0] for g in got)
    assert np.all(mean == value)
    assert np.all(ewma == value)
    assert math.isnan(std[0]) and math.isnan(slope[0])
    assert np.all(std[1:] == 0.0)
    assert np.all(slope[1:] == 0.0)
    assert thr[0] == value + 4.0 * (value / 2.0)


def test_step_between_constants_becomes_exact_again():
    H = 10
    x = np.concatenate([np.full(25, 100.0), np.full(30, 200.0 + 1e-9)])
    _, got = run(x[:, None], H)
    std, slope, mean = got[1][:, 0], got[2][:, 0], got[0][:, 0]
    assert std[30] > 0                    # the step is in the window
    assert np.all(std[25 + H - 1:] == 0.0)
    assert np.all(slope[25 + H - 1:] == 0.0)
    assert np.all(mean[25 + H - 1:] == 200.0 + 1e-9)


def test_pinned_at_100_between_noise_stays_exact_after_refreshes():
    H = 60
    rng = np.random.default_rng(3)
    x = rng.uniform(0, 100, (400, 3))
    x[150:, 1] = 100.0                    # pinned at 100 % CPU from tick 150 on
    _, got = run(x, H, refresh_every=7)
    assert np.all(got[1][150 + H - 1:, 1] == 0.0)
    assert np.all(got[2][150 + H - 1:, 1] == 0.0)


# -- agreement with the reference -----------------------------------------------------

def test_matches_reference_on_noise_with_wrapping_windows():
    rng = np.random.default_rng(11)
    x = rng.normal(40.0, 15.0, (50, 6))
    assert_matches_reference(x, 7)


def test_matches_reference_on_large_offset_and_drift():
    rng = np.random.default_rng(12)
    T = 300
    drift = np.cumsum(rng.normal(0.0, 1.0, (T, 3)), axis=0)
    x = 1e9 + drift + rng.normal(0.0, 1e-3, (T, 3))
    x[:, 2] = np.linspace(0.0, 1e7, T) + rng.normal(0.0, 1.0, T)   # steep trend
    assert_matches_reference(x, 20)


def test_spike_leaving_the_window_does_not_poison_the_std():
    H = 8
    x = 1.0 + np.random.default_rng(5).normal(0.0, 0.01, (40, 1))
    x[10, 0] = 1e12
    rw, got = assert_matches_reference(x, H, refresh_every=0)
    ref_std = window_stats(x[40 - H:, 0])[1]
    assert abs(got[1][-1, 0] - ref_std) <= 1e-9 * ref_std


def test_matches_reference_across_chunks_with_missing_samples():
    rng = np.random.default_rng(13)
    T, N, H = 16, 600, 5                  # three chunks, the last one partial
    x = rng.normal(10.0, 3.0, (T, N))
    holes = rng.random((T, N)) < 0.02
    holes[:, 256:512] = False             # the middle chunk stays uniform
    x[holes] = np.nan
    x[:, 300] = 7.0
    assert_matches_reference(x, H)


def test_long_run_stays_accurate():
    rng = np.random.default_rng(21)
    T, H = 20_000, 16
    walk = np.cumsum(rng.normal(0.0, 5.0, T)) + 1e6
    x = np.column_stack([walk, rng.lognormal(0.0, 2.0, T), np.full(T, 3.25)])
    rw, got = run(x, H)
    for i in range(3):
        mean, std, slope = window_stats(x[T - H:, i])
        assert abs(got[0][-1, i] - mean) <= 1e-12 * abs(mean)
        assert abs(got[1][-1, i] - std) <= 1e-9 * std + 1e-15 * abs(mean)
        assert abs(got[2][-1, i] - slope) <= 1e-9 * (abs(slope) + std)


# -- missing samples --------------------------------------------------------------------

@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_missing_sample_leaves_series_unchanged(bad):
    rng = np.random.default_rng(7)
    H = 6
    x = rng.normal(5.0, 2.0, (30, 4))
    rw = RollingWindow(4, H, 0.25)
    for t in range(20):
        rw.push(x[t])
    before = [row.copy() for row in (rw.mean, rw.std, rw.slope, rw.ewma, rw.threshold)]
    window_before = rw.window_values(2)
    y = x[20].copy()
    y[2] = bad
    after = rw.push(y)
    for k in range(5):
        assert after[k][2] == before[k][2] or (math.isnan(after[k][2]) and math.isnan(before[k][2]))
        assert after[k][0] != before[k][0]            # the others moved on
    assert np.array_equal(rw.window_values(2), window_before)
    assert rw.count[2] == H


def test_missing_before_first_sample_keeps_nan():
    x = np.array([[math.nan, 1.0], [math.nan, 2.0], [4.0, 3.0]])
    _, got = run(x, 3)
    for k in range(5):
        assert np.isnan(got[k][:2, 0]).all()
    assert got[0][2, 0] == 4.0 and math.isnan(got[1][2, 0])


@pytest.mark.parametrize("burst", [1, 4, 5, 6, 11, 17])
def test_outages_of_any_length_match_the_reference(burst):
    H = 5
    rng = np.random.default_rng(burst)
    T = 40
    x = rng.normal(0.0, 1.0, (T, 3))
    x[8:8 + burst, 0] = np.nan            # series 0 falls behind, then comes back
    x[3:3 + burst, 1] = np.nan            # series 1 goes missing while warming up
    rw, _ = assert_matches_reference(x, H)
    for i in range(3):
        kept = [v for v in x[:, i] if math.isfinite(v)][-H:]
        assert np.array_equal(rw.window_values(i), kept)


def test_intermittent_samples_match_the_reference():
    rng = np.random.default_rng(9)
    x = rng.normal(3.0, 1.0, (120, 8))
    x[::2, 0] = np.nan
    x[::3, 1] = np.nan
    x[rng.random(120) < 0.5, 2] = np.nan
    x[:, 3] = np.where(rng.random(120) < 0.3, np.nan, 42.0)
    assert_matches_reference(x, 9)


# -- slots ----------------------------------------------------------------------------

def test_reset_frees_a_slot_for_a_new_series():
    rng = np.random.default_rng(17)
    x = rng.normal(10.0, 4.0, (45, 5))
    x[30:, 2] = 1e6 + rng.normal(0.0, 1.0, 15)      # a different container in slot 2
    resets = [(30, 2), (12, 4), (13, 4)]
    rw, got = assert_matches_reference(x, 6, resets=resets)
    assert rw.count[2] == 6
    assert np.array_equal(rw.window_values(2), x[39:, 2])


def test_reset_clears_outputs_and_reset_all():
    rw = RollingWindow(3, 4, 0.5)
    for t in range(6):
        rw.push(np.arange(3.0) + t)
    rw.reset(1)
    assert all(math.isnan(row[1]) for row in (rw.mean, rw.std, rw.slope, rw.ewma, rw.threshold))
    assert rw.count[1] == 0 and rw.count[0] == 4
    rw.reset()
    assert np.isnan(rw.mean).all() and (rw.count == 0).all()
    with pytest.raises(IndexError):
        rw.reset(3)
    with pytest.raises(IndexError):
        rw.window_values(-1)


# -- API --------------------------------------------------------------------------------

def test_push_returns_the_same_read_only_views():
    rw = RollingWindow(4, 3, 0.5)
    a = rw.push(np.ones(4))
    b = rw.push(np.full(4, 2.0))
    assert a is b
    assert a == (rw.mean, rw.std, rw.slope, rw.ewma, rw.threshold)
    assert a[0][0] == 1.5
    for row in a:
        assert not row.flags.writeable
        with pytest.raises(ValueError):
            row[0] = 0.0
    assert not rw.count.flags.writeable
    assert rw.pushes == 2


def test_strided_input_equals_contiguous():
    rng = np.random.default_rng(4)
    x = np.asfortranarray(rng.normal(0.0, 1.0, (20, 7)))
    x[5, 3] = np.nan
    a = RollingWindow(7, 4, 0.3)
    b = RollingWindow(7, 4, 0.3)
    for t in range(20):
        ra = a.push(x[t])                 # stride 20 * 8 bytes
        rb = b.push(np.ascontiguousarray(x[t]))
        for u, v in zip(ra, rb):
            assert np.array_equal(u, v, equal_nan=True)


def test_refresh_changes_nothing_but_rounding():
    rng = np.random.default_rng(8)
    x = rng.normal(100.0, 10.0, (200, 9))
    x[rng.random((200, 9)) < 0.1] = np.nan
    _, never = run(x, 12, refresh_every=0)
    _, always = run(x, 12, refresh_every=1)
    for k in range(5):
        assert np.allclose(never[k], always[k], rtol=1e-12, atol=1e-12, equal_nan=True)


def test_state_fits_in_4_kib_per_series_at_h60():
    assert RollingWindow.bytes_per_series(60) <= 4096
    rw = RollingWindow(1000, 60, 0.3)
    assert rw.nbytes == 1000 * RollingWindow.bytes_per_series(60)



# -- window of one, resize, configure ---------------------------------------------------

def test_window_of_one_has_mean_but_no_spread():
    rng = np.random.default_rng(30)
    x = rng.normal(5.0, 2.0, (12, 3))
    x[4, 1] = np.nan
    rw, got = assert_matches_reference(x, 1)
    assert np.isnan(got[1]).all() and np.isnan(got[2]).all()      # std, slope
    assert np.array_equal(got[0][:, 0], x[:, 0])                  # the mean is the sample


def test_resize_keeps_every_series_bit_for_bit():
    # a window that grew from 3 to 600 series (crossing a chunk) computes what one
    # of 600 series from the start computes: same bits, refresh schedule included
    rng = np.random.default_rng(31)
    T, H = 90, 7
    x = rng.normal(50.0, 10.0, (T, 600))
    x[rng.random((T, 600)) < 0.05] = np.nan
    x[:20, 3:] = np.nan                     # the series beyond 3 start at tick 20
    big = RollingWindow(600, H, 0.3, refresh_every=5)
    grown = RollingWindow(3, H, 0.3, refresh_every=5)
    for t in range(T):
        if t == 20:
            grown.resize(600)
        a = big.push(x[t])
        b = grown.push(x[t] if t >= 20 else x[t, :3])
        n = 600 if t >= 20 else 3
        for u, v in zip(a, b):
            assert np.array_equal(u[:n], v, equal_nan=True), t
    assert grown.n_series == 600 and np.array_equal(grown.count, big.count)
    grown.resize(2)                          # and shrinking keeps the first ones
    assert grown.n_series == 2 and np.array_equal(grown.window_values(1), big.window_values(1))
    with pytest.raises(ValueError, match="n_series must be >= 1"):
        grown.resize(0)


@pytest.mark.parametrize("new_window", [3, 1, 12])
def test_configure_window_keeps_the_newest_samples(new_window):
    rng = np.random.default_rng(32)
    H, T = 6, 30
    x = rng.normal(10.0, 3.0, (T, 4))
    x[20:24, 2] = np.nan                     # series 2 lags when the window changes
    x[:, 3] = 7.5                            # and series 3 is constant
    rw = RollingWindow(4, H, 0.3)
    for t in range(T):
        rw.push(x[t])
    kept = [rw.window_values(i)[-new_window:] for i in range(4)]
    ewma, srtt = rw.ewma.copy(), rw.srtt.copy()
    rw.configure(window=new_window)
    assert rw.window == new_window
    for i in range(4):
        assert np.array_equal(rw.window_values(i), kept[i])
        mean, std, slope = window_stats(kept[i])
        assert rw.mean[i] == pytest.approx(mean, rel=1e-12)
        assert rw.std[i] == pytest.approx(std, rel=1e-9, nan_ok=True)
        assert rw.slope[i] == pytest.approx(slope, rel=1e-9, abs=1e-12, nan_ok=True)
    assert np.array_equal(rw.ewma, ewma) and np.array_equal(rw.srtt, srtt)
    if new_window >= 2:
        assert rw.std[3] == 0.0 and rw.slope[3] == 0.0
    # it goes on as a window of the new length fed the kept samples would
    y = rng.normal(10.0, 3.0, (2 * new_window + 3, 4))
    for row in y:
        rw.push(row)
    for i in range(4):
        want = window_stats(np.concatenate([kept[i], y[:, i]])[-new_window:])
        got = (rw.mean[i], rw.std[i], rw.slope[i])
        assert got == pytest.approx(want, rel=1e-9, abs=1e-12, nan_ok=True)


def test_configure_parameters():
    rw = RollingWindow(2, 4, 0.5)
    for v in (1.0, 2.0, 4.0):
        rw.push(np.array([v, np.nan]))
    rw.configure(jk_k=1.0)
    assert rw.threshold[0] == rw.srtt[0] + rw.rttvar[0]       # the band at once
    assert math.isnan(rw.threshold[1])                         # never sampled
    rw.configure(ewma_alpha=1.0, jk_alpha=1.0, jk_beta=1.0, refresh_every=0)
    srtt = rw.srtt[0]
    rw.push(np.array([8.0, 1.0]))              # the new factors apply from this push
    assert (rw.ewma[0], rw.srtt[0], rw.rttvar[0]) == (8.0, 8.0, abs(srtt - 8.0))
    assert (rw.ewma_alpha, rw.jk_k, rw.refresh_every) == (1.0, 1.0, 0)
    for kwargs, message in (({"window": 0}, "window must be in 1..1000000, got 0"),
                            ({"jk_beta": 0.0}, "jk_beta must be in (0, 1], got 0.0"),
                            ({"jk_k": -1.0}, "jk_k must be finite and >= 0, got -1.0"),
                            ({"refresh_every": -2}, "refresh_every must be >= 0")):
        with pytest.raises(ValueError) as exc:
            rw.configure(**kwargs)
        assert str(exc.value).startswith(message)
    assert (rw.window, rw.jk_beta) == (4, 1.0)                 # nothing changed
