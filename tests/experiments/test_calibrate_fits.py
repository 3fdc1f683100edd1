"""Calibration's fits on known synthetic measurements (no live run): spread, role CPU, loud failures."""

from __future__ import annotations

import numpy as np
import pytest

from experiments.calibrate import CalibrationError, _hop_rate, _quantiles, cold_start_cores, fit_role_cpu, spread
from experiments.role_cpu_fit import count_wakeups


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
    fitted, _ = fit_role_cpu(runs)
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
    fitted, _ = fit_role_cpu(runs)
    assert all(v >= 0 for role in fitted.values() for v in role.values())


def _timed_runs(truth: dict, shape, seed: int = 0) -> list[dict]:
    """Poisson runs of (rate, batch size), each role's CPU from the wake-up model itself with ``truth``'s costs."""
    from experiments.role_cpu_fit import _HANDLES, _events, count_wakeups

    rng = np.random.default_rng(seed)
    runs = []
    for rate_rps, batch in shape:
        times = np.cumsum(rng.exponential(1 / rate_rps, 500))
        ends = times[batch - 1 :: batch] + 0.01
        run = {"requests": 500, "batches": len(ends), "duration_s": float(times[-1] + 0.02), "request_times_s": times,
               "batch_times_s": ends, "cpu_s": {}}  # fmt: skip
        for role, (per_request_s, per_batch_s, wakeup_s, idle) in truth.items():
            woken = count_wakeups(*_events(run, role, per_request_s, per_batch_s), wakeup_s) if any(_HANDLES[role]) else 0
            run["cpu_s"][role] = per_request_s * 500 + per_batch_s * len(ends) + wakeup_s * woken + idle * run["duration_s"]
        runs.append(run)
    return runs


TRUTH = {"broker": (2e-4, 1e-4, 1.2e-3, 0.02), "gateway": (1e-4, 2e-4, 1.5e-3, 0.01), "source": (1e-4, 0.0, 7e-4, 0.0),
         "sink": (0.0, 1e-4, 5e-4, 0.0), "worker": (3e-4, 4e-4, 0.0, 0.05)}  # fmt: skip


def test_count_wakeups_counts_messages_that_find_the_process_idle():
    assert count_wakeups([0.0, 0.5, 1.0], [0.1] * 3, 0.1) == 3  # each done before the next
    assert count_wakeups([0.0, 0.15, 0.25, 1.0], [0.1] * 4, 0.1) == 2  # busy until 0.2, then 0.3, then 0.4
    assert count_wakeups([1.0, 0.0], [0.1, 0.1], 0.0) == 2  # any order


def test_role_cpu_per_wakeup_is_recovered_from_runs_at_different_rates():
    fitted, note = fit_role_cpu(_timed_runs(TRUTH, [(108, 1), (30, 1), (108, 4), (108, 8), (400, 16)]))
    # the sink's batches (at most 25 a second here) nearly always find it idle: its wake-up goes with its batch
    assert note["wakeups_not_separable"] == ["sink"]
    assert fitted["sink"]["cpu_s_per_batch"] == pytest.approx(sum(TRUTH["sink"][1:3]), rel=0.1)
    for role, (per_request_s, per_batch_s, wakeup_s, idle) in TRUTH.items():
        if role == "sink":
            continue
        got = fitted[role]
        assert got["cpu_s_per_wakeup"] == pytest.approx(wakeup_s, rel=0.1, abs=1e-5), role
        assert got["cpu_s_per_request"] == pytest.approx(per_request_s, rel=0.25, abs=1e-5), role
        assert got["idle_cores"] == pytest.approx(idle, rel=0.1, abs=1e-3), role


def test_role_cpu_per_wakeup_that_the_rates_cannot_separate_is_left_0_and_said():
    # every run slow: every message wakes its role, so wake-ups go exactly as messages
    fitted, note = fit_role_cpu(_timed_runs(TRUTH, [(5, 1), (2, 1), (5, 4), (5, 8)]))
    assert "broker" in note["wakeups_not_separable"] and fitted["broker"]["cpu_s_per_wakeup"] == 0.0
    # the per-message term then carries the wake-up (as a one-term fit must)
    assert fitted["broker"]["cpu_s_per_request"] > TRUTH["broker"][0] + 0.5 * TRUTH["broker"][2]


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
    there_s, rate, note = _hop_rate([batched], idle_broker={"size_mb": np.array([0.001, 1.6]), "hop_s": np.array([0.001, 0.002])})
    assert rate == pytest.approx(100.0, rel=1e-6) and there_s == pytest.approx(0.001)
    assert note["source"].startswith("live runs")
    # one size per run (fixed batches), two runs: the runs' idle batches together give the rate
    ones, fours = ({**batched, "backlogged": batched["backlogged"] | (np.concatenate([[1], sizes])[1:] != size)} for size in (1, 4))
    there_s, rate, note = _hop_rate([ones, fours], idle_broker={"size_mb": np.array([0.001, 1.6]), "hop_s": np.array([0.001, 0.002])})
    assert rate == pytest.approx(100.0, rel=1e-6) and note["source"].startswith("live runs") and note["points"] == 40
    _, _, note = _hop_rate([fours], idle_broker={"size_mb": np.array([0.001, 1.6]), "hop_s": np.array([0.001, 0.002])})
    assert note["source"].startswith("idle broker")  # one size alone cannot give a slope
    batched["backlogged"][:] = True  # no idle batches: from the idle broker, and it says so
    _, rate, note = _hop_rate([batched], idle_broker={"size_mb": np.array([0.001, 0.001, 1.6, 1.6]),
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


def test_cold_start_cores_are_cpu_over_wall_to_ready():
    lone_walls_s = [1.5, 1.6, 1.55]
    assert cold_start_cores(lone_walls_s, [1.7, 1.75, 1.8], cores=2) == pytest.approx(5.25 / 4.65, abs=1e-3)
    assert cold_start_cores(lone_walls_s, [9.0, 9.0, 9.0], cores=2) == 2.0  # at most the machine's cores
    with pytest.raises(CalibrationError, match="no CPU time"):
        cold_start_cores(lone_walls_s, [0.0, 0.0], cores=2)


def test_a_cold_starts_cpu_is_counted_to_its_ready_frame_not_to_its_exit():
    """Counted to the exit (torch's teardown, about 0.5 CPU-s here), a lone start read 1.41 cores instead of 1.13."""
    import resource

    from experiments.calibrate import measure_cold_starts

    def children_cpu_s() -> float:
        usage = resource.getrusage(resource.RUSAGE_CHILDREN)
        return usage.ru_utime + usage.ru_stime

    before_s = children_cpu_s()
    cpu_s: list[float] = []
    (wall_s,) = measure_cold_starts("mlp", 1, 1, cpu=cpu_s)
    to_exit_s = children_cpu_s() - before_s
    assert len(cpu_s) == 1 and 0 < cpu_s[0] < to_exit_s and wall_s > 0
