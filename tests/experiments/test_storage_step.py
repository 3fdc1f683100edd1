"""experiments.storage_step: the broker's CPU step, found where it is and not where there is none."""

from __future__ import annotations

import numpy as np
import pytest

from experiments.storage_step import fit_storage_step

SIZE = 2 * 200 * 1024  # a request and its share of a batch


def _series(step_at: int | None, factor: float, seed: int = 0, rate_rps: float = 250.0, count: int = 4000):
    rng = np.random.default_rng(seed)
    arrivals = np.cumsum(rng.exponential(1 / rate_rps, count))
    times = np.arange(0.0, arrivals[-1] + 1.0, 0.25)
    arrived = np.searchsorted(arrivals, times, side="right")
    before = np.minimum(arrived, step_at if step_at is not None else count)
    cpu = 1e-3 * before + factor * 1e-3 * (arrived - before) + 0.04 * times
    cpu += np.cumsum(rng.normal(0, 0.004, len(times)))  # sampling jitter, accumulated
    return list(zip(times.tolist(), cpu.tolist())), arrivals


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_step_after_2000_requests_is_found_with_its_size_and_place(seed):
    series, arrivals = _series(2000, 1.8, seed)
    fit = fit_storage_step(series, arrivals, stored_bytes_per_request=SIZE, idle_cores=0.04)
    assert fit["found"] and fit["step_factor"] == pytest.approx(1.8, rel=0.05)
    assert fit["step_after_MB"] == pytest.approx(2000 * SIZE / 1e6, rel=0.05)
    assert fit["cpu_s_per_request_before"] == pytest.approx(1e-3, rel=0.05)


def test_no_step_is_reported_as_none_found():
    series, arrivals = _series(None, 1.0)
    fit = fit_storage_step(series, arrivals, stored_bytes_per_request=SIZE, idle_cores=0.04)
    assert not fit["found"] and "no step" in fit["note"]


def test_a_step_in_the_last_requests_of_the_run_is_not_claimed():
    series, arrivals = _series(3980, 2.0)  # the split may not leave under 15% of the requests on a side
    assert not fit_storage_step(series, arrivals, stored_bytes_per_request=SIZE, idle_cores=0.04)["found"]


def test_too_few_samples_say_so():
    series, arrivals = _series(None, 1.0, count=20)
    fit = fit_storage_step(series[:3], arrivals, stored_bytes_per_request=SIZE)
    assert not fit["found"] and "too few" in fit["note"]
