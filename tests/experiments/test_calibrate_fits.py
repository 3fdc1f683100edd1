"""Calibration's fits on known synthetic measurements (no live run): spread, role CPU, loud failures."""

from __future__ import annotations

import numpy as np
import pytest

from experiments.calibrate import CalibrationError, _hop_rate, _quantiles, fit_role_cpu, spread


def _runs(a: float, b: float, c: float, shape) -> list[dict]:
    runs = []
    for requests, batches, duration_s in shape:
        cpu = a * requests + b * batches + c * duration_s
        runs.append({"requests": requests, "batches": batches, "duration_s": duration_s,
                     "cpu_s": {"broker": cpu, "gateway": 2 * cpu, "source": a * requests + c * duration_s, "sink": cpu / 2,
                               "worker": 3 * cpu}})  # fmt: skip
    return runs


def test_role_cpu_per_request_per_batch_and_idle_cores_are_recovered():
    runs = _runs(3e-4, 5e-4, 0.05, [(500, 500, 2.0), (500, 500, 6.0), (500, 125, 2.1)])
    fitted = fit_role_cpu(runs)
    assert fitted["broker"]["cpu_s_per_request"] == pytest.approx(3e-4, rel=1e-4)
    assert fitted["broker"]["cpu_s_per_batch"] == pytest.approx(5e-4, rel=1e-4)
    assert fitted["broker"]["idle_cores"] == pytest.approx(0.05, rel=1e-3)
    assert fitted["gateway"]["cpu_s_per_batch"] == pytest.approx(1e-3, rel=1e-4)
    assert fitted["worker"]["idle_cores"] == pytest.approx(0.15, rel=1e-3)
    assert fitted["source"]["cpu_s_per_batch"] == 0.0
    assert fitted["source"]["cpu_s_per_request"] == pytest.approx(3e-4, rel=1e-4)


def test_role_cpu_that_the_runs_cannot_separate_fails_naming_it():
    with pytest.raises(CalibrationError, match="role CPU: .*cannot separate"):
        fit_role_cpu(_runs(3e-4, 5e-4, 0.05, [(500, 500, 2.0), (500, 500, 6.0), (500, 500, 4.0)]))  # no batch > 1


def test_role_cpu_never_negative():
    runs = _runs(3e-4, 0.0, 0.0, [(500, 500, 2.0), (500, 500, 6.0), (500, 125, 2.1)])
    runs[2]["cpu_s"]["broker"] *= 1.2  # noise that would make a free fit's per-batch term negative
    fitted = fit_role_cpu(runs)
    assert all(v >= 0 for role in fitted.values() for v in role.values())


def test_spread_gives_the_mean_an_interval_over_rounds_and_the_cv():
    rng = np.random.default_rng(0)
    rounds = [rng.normal(0.005, 0.0005, 40) for _ in range(8)]
    result = spread(rounds)
    assert result["ci95_s"][0] < 0.005 < result["ci95_s"][1]
    assert result["cv"] == pytest.approx(0.1, rel=0.15)
    assert result["rounds"] == 8 and result["n"] == 320


def test_a_distribution_with_too_few_measurements_fails_naming_the_field():
    with pytest.raises(CalibrationError, match="hop_samples_s: only 3 measurements"):
        _quantiles(np.array([0.001, 0.002, 0.003]), "hop_samples_s")
    assert len(_quantiles(np.linspace(0.001, 0.01, 50), "hop_samples_s")) == 40


def test_the_hop_rate_comes_from_the_live_run_or_says_where_else_it_came_from(capsys):
    # idle batches of sizes 1 and 4 whose dispatch-to-start grows 10 ms per MB: a rate of 100 MB/s
    sizes = np.array([1, 4] * 20)
    size_mb = sizes * 200 * 1024 / 2**20
    dispatched = np.arange(len(sizes) + 1, dtype=float)
    start = dispatched.copy()
    start[1:] += 0.001 + 0.01 * size_mb
    batched = {"backlogged": np.zeros(len(sizes), bool), "batches": {"size": _Column(np.concatenate([[1], sizes]))},
               "start": start, "dispatched": dispatched}  # fmt: skip
    there_s, rate, note = _hop_rate(batched, idle_broker={"size_mb": np.array([0.001, 1.6]), "hop_s": np.array([0.001, 0.002])})
    assert rate == pytest.approx(100.0, rel=1e-6) and there_s == pytest.approx(0.001)
    assert note["source"].startswith("live run")
    batched["backlogged"][:] = True  # no idle batches: from the idle broker, and it says so
    _, rate, note = _hop_rate(batched, idle_broker={"size_mb": np.array([0.001, 0.001, 1.6, 1.6]),
                                                    "hop_s": np.array([0.001, 0.001, 0.002, 0.002])})  # fmt: skip
    assert note["source"].startswith("idle broker") and "fitted from the idle broker" in capsys.readouterr().out
    assert rate == pytest.approx(1.599 / 0.001, rel=1e-6)


class _Column:
    def __init__(self, values):
        self.values = values

    def to_numpy(self):
        return self.values


def test_run_to_run_cv_recovers_the_drift_between_rounds_beyond_their_own_noise():
    from experiments.calibrate import run_to_run_cv

    rng = np.random.default_rng(1)

    def rounds(drift_cv: float, count: int = 200) -> dict:
        # per size, each round's batches share one speed factor (drift) and have their own 10% noise
        return {size: [mean_s * rng.normal(1.0, drift_cv) * rng.normal(1.0, 0.10, 12) for _ in range(count)]
                for size, mean_s in ((1, 0.003), (8, 0.012))}  # fmt: skip

    assert run_to_run_cv(rounds(0.05)) == pytest.approx(0.05, rel=0.15)
    # no drift at all: the round means vary only by their own noise (10% / sqrt(12) = 2.9%), which is not counted
    assert run_to_run_cv(rounds(0.0)) < 0.01
    with pytest.raises(CalibrationError, match="run_cv: batch size 1 has 1 round"):
        run_to_run_cv({1: [np.array([0.003, 0.0031])]})
    with pytest.raises(CalibrationError, match=r"run_cv: .*\(>= 1\)"):
        run_to_run_cv({1: [np.array([0.001, 0.001]), np.array([0.01, 0.01]), np.array([0.0001, 0.0001])]})
