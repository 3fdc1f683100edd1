"""Intervals against known distributions: they cover the truth as often as they claim."""

from __future__ import annotations

import math

import numpy as np
import pytest

from experiments.stats import bootstrap_interval, interval, paired_difference, t_interval


def test_the_t_interval_covers_a_normal_mean_about_95_percent_of_the_time():
    rng = np.random.default_rng(0)
    draws = 2000
    covered = 0
    for _ in range(draws):
        found = t_interval(rng.normal(3.0, 2.0, size=5))
        covered += found.low <= 3.0 <= found.high
    # binomial(2000, 0.95): 3 standard deviations are about +/- 0.0146
    assert abs(covered / draws - 0.95) < 0.015


def test_the_bootstrap_interval_covers_an_exponential_mean_roughly_as_claimed():
    rng = np.random.default_rng(1)
    draws = 300
    covered = 0
    for _ in range(draws):
        found = bootstrap_interval(rng.exponential(1.0, size=30), resamples=999, seed=int(rng.integers(1 << 30)))
        covered += found.low <= 1.0 <= found.high
    # the percentile bootstrap under-covers a little on a skewed sample of 30; it must not be far off
    assert 0.86 <= covered / draws <= 0.99


def test_a_policy_compared_with_itself_gives_an_interval_around_zero():
    rng = np.random.default_rng(2)
    values = rng.normal(0.9, 0.05, size=5)
    same = paired_difference(values, values)
    assert same.low <= 0 <= same.high and not same.excludes_zero
    noisy = paired_difference(values, values + rng.normal(0, 0.01, size=5))
    assert noisy.low <= 0 <= noisy.high


def test_a_real_paired_difference_excludes_zero_and_pairing_is_enforced():
    base = np.array([0.80, 0.70, 0.95, 0.60, 0.85])  # large spread across seeds
    better = base + np.array([0.030, 0.028, 0.033, 0.031, 0.029])
    assert paired_difference(base, better).excludes_zero
    assert not t_interval(better).low > t_interval(base).high  # unpaired intervals overlap: pairing is what shows it
    with pytest.raises(ValueError, match="pair them by seed"):
        paired_difference(base, better[:4])


def test_percentiles_and_attainment_are_bootstrapped_and_a_lone_run_has_no_interval():
    assert interval("latency_p95_s", [0.1, 0.2, 0.3]).method == "bootstrap"
    assert interval("total_cost", [1.0, 2.0, 3.0]).method == "t"
    lone = interval("total_cost", [1.0])
    assert lone.mean == 1.0 and math.isnan(lone.low) and lone.n == 1
