"""`ScorerConfig`: defaults, and one named row per validation rule with its exact message."""
from __future__ import annotations

import dataclasses
import math

import pytest

from agent.scoring import ScorerConfig


def test_defaults_are_the_compat_ones():
    c = ScorerConfig()
    assert (c.cpu_weight, c.memory_weight, c.network_weight, c.availability_weight) == (
        0.35, 0.25, 0.15, 0.25)
    assert (c.history_size, c.best_time_window, c.ema_alpha) == (20, 10, 0.2)
    assert c.network_capacity_bps == 125e6
    assert (c.trend_window, c.holt_alpha, c.holt_beta, c.forecast_horizon) == (60, 0.5, 0.3, 5)
    assert (c.hysteresis, c.slow_start_window, c.slow_start_aggression,
            c.slow_start_min_fraction, c.latency_decay, c.jk_k) == (0.0, 30.0, 1.0, 0.1, 10.0, 4.0)


def test_frozen_and_keyword_only():
    c = ScorerConfig()
    with pytest.raises(dataclasses.FrozenInstanceError):
        c.ema_alpha = 0.5  # type: ignore[misc]
    with pytest.raises(TypeError):
        ScorerConfig(0.35)  # type: ignore[misc]
    assert dataclasses.replace(c, hysteresis=2.0).hysteresis == 2.0


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        pytest.param("cpu_weight", -0.1, "cpu_weight must be a finite number >= 0, got -0.1", id="negative-weight"),
        pytest.param("availability_weight", math.nan, "availability_weight must be a finite number >= 0, got nan", id="nan-weight"),
        pytest.param("memory_weight", "0.2", "memory_weight must be a finite number >= 0, got '0.2'", id="string-weight"),
        pytest.param("history_size", 0, "history_size must be an integer >= 1, got 0", id="zero-history"),
        pytest.param("best_time_window", 2.5, "best_time_window must be an integer >= 1, got 2.5", id="float-size"),
        pytest.param("trend_window", True, "trend_window must be an integer >= 1, got True", id="bool-size"),
        pytest.param("forecast_horizon", -1, "forecast_horizon must be an integer >= 0, got -1", id="negative-horizon"),
        pytest.param("ema_alpha", 0, "ema_alpha must be in (0, 1], got 0", id="alpha-zero"),
        pytest.param("ema_alpha", 1.5, "ema_alpha must be in (0, 1], got 1.5", id="alpha-above-one"),
        pytest.param("holt_alpha", 0.0, "holt_alpha must be in (0, 1], got 0.0", id="holt-alpha-zero"),
        pytest.param("holt_beta", -0.1, "holt_beta must be in [0, 1], got -0.1", id="holt-beta-negative"),
        pytest.param("slow_start_min_fraction", 1.1, "slow_start_min_fraction must be in [0, 1], got 1.1", id="min-fraction"),
        pytest.param("network_capacity_bps", 0, "network_capacity_bps must be a finite number > 0, got 0", id="zero-capacity"),
        pytest.param("slow_start_aggression", 0.0, "slow_start_aggression must be a finite number > 0, got 0.0", id="zero-aggression"),
        pytest.param("latency_decay", math.inf, "latency_decay must be a finite number > 0, got inf", id="infinite-decay"),
        pytest.param("hysteresis", -1.0, "hysteresis must be a finite number >= 0, got -1.0", id="negative-hysteresis"),
        pytest.param("slow_start_window", -5.0, "slow_start_window must be a finite number >= 0, got -5.0", id="negative-window"),
        pytest.param("jk_k", math.nan, "jk_k must be a finite number >= 0, got nan", id="nan-k"),
    ],
)
def test_invalid_values_name_the_field(field, value, message):
    with pytest.raises(ValueError) as info:
        ScorerConfig(**{field: value})
    assert str(info.value) == message


@pytest.mark.parametrize(
    "kwargs",
    [
        pytest.param({"ema_alpha": 1.0, "holt_alpha": 1.0}, id="alpha-one"),
        pytest.param({"holt_beta": 0.0, "slow_start_min_fraction": 0.0}, id="closed-zero"),
        pytest.param({"cpu_weight": 0, "history_size": 1, "trend_window": 1}, id="minimal"),
        pytest.param({"slow_start_window": 0.0, "hysteresis": 0.0, "forecast_horizon": 0}, id="disabled"),
    ],
)
def test_boundary_values_are_accepted(kwargs):
    ScorerConfig(**kwargs)
