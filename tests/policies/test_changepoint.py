"""BOCPD (Adams & MacKay 2007): detection delay and false alarms on synthetic series."""

from __future__ import annotations

import math

import numpy as np
import pytest

from policies.planning.changepoint import ChangepointDetector

SEGMENT = 100
SHIFTS = (3.0, 4.0, 3.0, -3.0, -2.5)  # in noise standard deviations
MAX_DELAY = 10


def piecewise(seed: int, base: float = 0.0, sigma: float = 1.0) -> tuple[np.ndarray, list[int]]:
    rng = np.random.default_rng(seed)
    means = base + np.cumsum((0.0,) + SHIFTS) * sigma
    x = np.concatenate([m + sigma * rng.standard_normal(SEGMENT) for m in means])
    return x, [SEGMENT * (k + 1) for k in range(len(SHIFTS))]


def detections(detector: ChangepointDetector, x: np.ndarray) -> list[int]:
    return [i for i, v in enumerate(x.tolist()) if detector.update(v)]


def score(seeds=range(20), **kwargs):
    delays, misses, extra = [], 0, 0
    for seed in seeds:
        x, changes = piecewise(seed, **kwargs)
        found = detections(ChangepointDetector(prior_std=kwargs.get("sigma", 1.0)), x)
        matched = set()
        for c in changes:
            hits = [t for t in found if c <= t <= c + MAX_DELAY]
            if hits:
                delays.append(hits[0] - c)
                matched.add(hits[0])
            else:
                misses += 1
        extra += len([t for t in found if t not in matched])
    return delays, misses, extra


def test_detects_known_changes_with_bounded_delay():
    delays, misses, extra = score()
    n = 20 * len(SHIFTS)
    print(f"\nBOCPD: {n} changes, missed {misses}, delay mean {np.mean(delays):.2f} max {max(delays)}, extra alarms {extra}")
    assert misses == 0
    assert max(delays) <= MAX_DELAY
    assert np.mean(delays) <= 4.0
    assert extra <= 0.1 * n


def test_few_false_alarms_on_a_stationary_series():
    alarms = 0
    for seed in range(20):
        x = 5.0 + np.random.default_rng(1000 + seed).standard_normal(1000)
        alarms += len(detections(ChangepointDetector(prior_std=1.0), x))
    print(f"\nBOCPD: {alarms} false alarms in 20 x 1000 stationary samples")
    assert alarms <= 6  # at most 0.3 per 1000 samples (measured over 100 series: 0.14)


def test_few_false_alarms_with_the_scale_taken_from_the_first_sample():
    # no prior_std: 10 % of the first sample (about 2 here, twice the true noise)
    alarms = 0
    for seed in range(20):
        x = 20.0 + np.random.default_rng(2000 + seed).standard_normal(1000)
        alarms += len(detections(ChangepointDetector(), x))
    assert alarms <= 4


def test_scale_free_by_default_on_rate_like_series():
    # a Poisson-ish rate telemetry: 50 rps (sd 7), then 100 rps (sd 10)
    rng = np.random.default_rng(3)
    x = np.concatenate([rng.poisson(50, 150), rng.poisson(100, 150)]).astype(float)
    found = detections(ChangepointDetector(), x)
    assert found and 150 <= found[0] <= 150 + MAX_DELAY
    assert len(found) <= 2


def test_posterior_is_normalised_capped_and_tracks_the_segment():
    detector = ChangepointDetector(max_run_length=50, prior_std=1.0)
    rng = np.random.default_rng(0)
    for v in rng.standard_normal(200):
        detector.update(float(v))
        posterior = detector.run_length_posterior
        assert posterior.shape == (51,)
        assert posterior.sum() == pytest.approx(1.0)
    assert detector.run_length_map == 50  # a long run sits in the capped bin
    for v in 10.0 + rng.standard_normal(30):
        detector.update(float(v))
    assert 25 <= detector.run_length_map <= 31
    assert detector.segment_mean == pytest.approx(10.0, abs=0.6)
    assert detector.count == 230 and detector.detections


def test_stays_finite_on_long_and_extreme_series():
    detector = ChangepointDetector()
    rng = np.random.default_rng(1)
    for v in np.concatenate([1e6 + rng.standard_normal(3000), [0.0] * 50, 1e-6 * rng.standard_normal(100)]):
        detector.update(float(v))
        assert math.isfinite(detector.change_probability)
    assert np.all(np.isfinite(detector.run_length_posterior))


def test_reset_and_bad_input():
    detector = ChangepointDetector()
    for v in range(20):
        detector.update(1.0)
    detector.reset()
    assert detector.count == 0 and not detector.armed
    with pytest.raises(ValueError):
        detector.update(math.nan)


@pytest.mark.parametrize(
    "kwargs,name",
    [
        ({"hazard_lambda": 1.0}, "hazard_lambda"),
        ({"max_run_length": 1}, "max_run_length"),
        ({"threshold": 1.0}, "threshold"),
        ({"window": 0}, "window"),
        ({"window": 400}, "window"),
        ({"prior_std": 0.0}, "prior_std"),
        ({"prior_mean": math.inf}, "prior_mean"),
        ({"prior_kappa": -1.0}, "prior_kappa"),
    ],
)
def test_bad_settings(kwargs, name):
    with pytest.raises(ValueError, match=name):
        ChangepointDetector(**kwargs)
