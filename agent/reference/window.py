"""Plain NumPy reference of `_scoring._window.RollingWindow`.

Every statistic is recomputed from its whole window at every tick (two-pass
mean and deviations, the textbook least-squares slope), and the smoothers are
the RFC 6298 formulas as written. Slow on purpose; tests and the kernel
benchmark hold the kernel to it.

Semantics (the kernel's, see its module docstring):

* a series' window is its last ``window`` *valid* samples; a non-finite sample
  (NaN, +/-inf) is missing: the series' window and smoothers are unchanged
  and its outputs repeat their previous values;
* before a series' first sample every output is NaN; std and slope are NaN
  while the window holds fewer than 2 samples;
* std is the sample standard deviation (ddof=1); the slope is per sample
  index (oldest = 0), in units per sample;
* EWMA starts at the first sample, then ``e = (1 - a) e + a x``;
* Jacobson/Karels: the first sample R sets ``SRTT = R, RTTVAR = R/2``, then
  ``RTTVAR = (1 - beta) RTTVAR + beta |SRTT - R|`` and
  ``SRTT = (1 - alpha) SRTT + alpha R``; threshold = ``SRTT + k RTTVAR``;
* a reset (a slot freed and reused) forgets the series: it starts empty.

The kernel writes the smoothers in the algebraically equal incremental form
``e += a (x - e)``, which is exact on constant input; the two agree to a few
ulps of the largest sample the series has seen.
"""
from __future__ import annotations

import math
from collections.abc import Iterable
from typing import NamedTuple

import numpy as np
import numpy.typing as npt

__all__ = ["WindowStats", "window_stats", "rolling_window_stats"]

_Array = npt.NDArray[np.float64]


class WindowStats(NamedTuple):
    """Outputs of `rolling_window_stats`, each of shape (T, N): row t is what
    the kernel's push of tick t returns."""

    mean: _Array
    std: _Array
    slope: _Array
    ewma: _Array
    threshold: _Array


def window_stats(values: npt.ArrayLike) -> tuple[float, float, float]:
    """(mean, sample std, least-squares slope) of one window, oldest first."""
    w = np.asarray(values, dtype=np.float64)
    n = w.size
    if n == 0:
        return math.nan, math.nan, math.nan
    mean = float(np.mean(w))
    if n < 2:
        return mean, math.nan, math.nan
    dev = w - mean
    std = math.sqrt(float(dev @ dev) / (n - 1))
    j = np.arange(n, dtype=np.float64) - (n - 1) / 2.0
    slope = float(j @ dev) / float(j @ j)
    return mean, std, slope


def rolling_window_stats(
    samples: npt.ArrayLike,
    window: int,
    ewma_alpha: float,
    jk_alpha: float = 0.125,
    jk_beta: float = 0.25,
    jk_k: float = 4.0,
    resets: Iterable[tuple[int, int]] = (),
) -> WindowStats:
    """Outputs for every tick of ``samples`` (shape (T, N): one row per tick).

    ``resets``: (t, i) pairs; series i is forgotten just before tick t.
    """
    x = np.asarray(samples, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"samples must be 2-D (ticks, series), got shape {x.shape}")
    if window < 1:
        raise ValueError(f"window must be >= 1, got {window}")
    T, N = x.shape
    reset_at: dict[int, set[int]] = {}
    for t, i in resets:
        reset_at.setdefault(int(t), set()).add(int(i))
    out = [np.full((T, N), np.nan) for _ in range(5)]
    for i in range(N):
        kept: list[float] = []
        ewma = srtt = rttvar = math.nan
        last = (math.nan,) * 5
        for t in range(T):
            if i in reset_at.get(t, ()):
                kept = []
                ewma = srtt = rttvar = math.nan
                last = (math.nan,) * 5
            v = float(x[t, i])
            if math.isfinite(v):
                kept.append(v)
                del kept[:-window]
                if math.isnan(ewma):
                    ewma, srtt, rttvar = v, v, v / 2.0
                else:
                    ewma = (1.0 - ewma_alpha) * ewma + ewma_alpha * v
                    rttvar = (1.0 - jk_beta) * rttvar + jk_beta * abs(srtt - v)
                    srtt = (1.0 - jk_alpha) * srtt + jk_alpha * v
                mean, std, slope = window_stats(kept)
                last = (mean, std, slope, ewma, srtt + jk_k * rttvar)
            for k in range(5):
                out[k][t, i] = last[k]
    return WindowStats(*out)
