"""The percentile sketch against numpy's exact percentiles: within its stated bound, and mergeable."""

from __future__ import annotations

import math

import numpy as np
import pytest

from spec.latency_sketch import LatencySketch

SAMPLES = {
    "lognormal": lambda rng: rng.lognormal(-3.0, 1.0, 200_000),
    "exponential, few": lambda rng: rng.exponential(0.01, 7),
    "narrow": lambda rng: rng.uniform(0.010, 0.011, 50_000),
    "bimodal": lambda rng: np.concatenate([rng.normal(0.005, 0.0005, 10_000), rng.normal(2.0, 0.1, 500)]).clip(1e-5),
}


@pytest.mark.parametrize("alpha", [0.005, 0.02])
@pytest.mark.parametrize("name", list(SAMPLES))
def test_every_percentile_lies_within_the_stated_bound(name, alpha):
    values = SAMPLES[name](np.random.default_rng(7))
    sketch = LatencySketch(alpha=alpha)
    sketch.add(values)
    ordered = np.sort(values)
    for q in (0, 0.1, 1, 25, 50, 90, 95, 99, 99.9, 100):
        rank = q / 100 * (len(values) - 1)
        low, high = ordered[math.floor(rank)], ordered[math.ceil(rank)]
        estimate = sketch.percentile(q)
        assert (1 - alpha) * low <= estimate <= (1 + alpha) * high, (q, estimate, low, high)
        if len(values) > 10_000:  # order statistics close together: a relative error of alpha of numpy's value
            assert abs(estimate / np.percentile(values, q) - 1) <= alpha * 1.01, q


def test_sketches_merge_without_loss():
    rng = np.random.default_rng(3)
    values = rng.lognormal(-4, 0.7, 30_000)
    whole = LatencySketch()
    whole.add(values)
    parts = [LatencySketch() for _ in range(3)]
    for part, chunk in zip(parts, np.array_split(values, 3)):
        part.add(chunk)
    parts[0].merge(parts[1])
    parts[0].merge(parts[2])
    np.testing.assert_array_equal(parts[0].counts, whole.counts)
    assert parts[0].count == 30_000
    with pytest.raises(ValueError):
        parts[0].merge(LatencySketch(alpha=0.01))


def test_memory_is_fixed_by_the_range_not_the_count():
    sketch = LatencySketch()
    size = sketch.counts.nbytes
    sketch.add(np.random.default_rng(0).exponential(0.1, 1_000_000))
    assert sketch.counts.nbytes == size < 32_000 and sketch.count == 1_000_000
    assert math.isnan(LatencySketch().percentile(50))
