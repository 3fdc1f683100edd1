"""The service per batch size under contention: calibration's live runs against their simulated twins (no live run here)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from experiments.calibrate import CalibrationError, apply_contention
from experiments.calibrate_contention import contended_table, contention_by_size, simulated_twin
from sim import simulate

SIZES = [1, 2, 4, 8, 16, 32]
ISOLATED = [0.003, 0.004, 0.006, 0.010, 0.018, 0.034]


def _profile(latencies=ISOLATED, cores: float = 4) -> dict:
    roles = {r: {"cpu_s_per_request": 2e-4, "cpu_s_per_batch": 1e-4, "idle_cores": 0.0} for r in ("broker", "gateway", "source", "sink", "worker")}
    return {"edge": {"kind": "table", "batch_sizes": SIZES, "latencies_s": list(latencies)}, "edge_noise": {"kind": "none"},
            "hop_s": 0.001, "overhead_s": 0.0005, "hop_MBps": None, "hop_samples_s": None, "overhead_samples_s": None,
            "ingest_s": 0.001, "ingest_samples_s": None,
            "hosts": {"local": {"cores": cores, "executors": "*", "roles": roles, "batch_cores": {"edge": 1.0}}},
            "calibration": {"in_situ": {"role_runs": []}}}  # fmt: skip


def _live_config(batch_size: int, rate_rps: float = 100.0) -> dict:
    batching = {"_target_": "policies.batching.NoBatching"} if batch_size == 1 else \
        {"_target_": "policies.batching.FixedBatching", "batch_size": batch_size, "max_wait_s": 0.5}
    return {"seed": 0, "workload": {"num_requests": 400, "sources": [{"name": "cam", "size_bytes": 1000, "arrivals": {"kind": "poisson", "rate_rps": rate_rps}}]},
            "cluster": {"executors": [{"name": "edge", "kind": "edge", "gateway": "edge", "slots": 1,
                                       "profile": {"kind": "linear", "per_item_s": 0.003, "base_s": 0.0}}]},
            "policy": {"placement": {"_target_": "policies.placement.StaticPlacement"}, "batching": batching},
            "live": {"model": "wide_mlp"}}  # fmt: skip


def test_the_contended_table_scales_each_size_interpolating_in_log_size_and_flat_beyond():
    table = contended_table(SIZES, ISOLATED, {2: 2.0, 8: 1.5})
    expected = np.array(ISOLATED) * np.array([2.0, 2.0, 1.75, 1.5, 1.5, 1.5])
    assert table == pytest.approx(expected.tolist(), rel=1e-6)
    with pytest.raises(ValueError, match="no contention factor"):
        contended_table(SIZES, ISOLATED, {})


def test_a_size_counts_only_with_enough_batches_in_both_backends():
    live = pd.DataFrame({"size": [1] * 12 + [4] * 3, "start_s": 0.0, "end_s": [0.006] * 12 + [0.02] * 3})
    sim = pd.DataFrame({"size": [1] * 12 + [4] * 12, "start_s": 0.0, "end_s": [0.003] * 12 + [0.01] * 12})
    assert contention_by_size([live], [sim]) == {1: 2.0}
    assert contention_by_size([live], [sim], min_batches=3) == {1: 2.0, 4: 2.0}


@pytest.mark.parametrize("cores", [4, 1.2])
def test_a_machine_slower_than_its_isolated_table_is_measured_by_that_factor_net_of_the_cores_shared(cores):
    # "live" is the simulator itself on a table 1.6x the isolated one: on ample cores the ratio is the factor;
    # on 1.2 cores (the roles take some) the host model's own sharing is in both twins, so it cancels to within a few %
    truth = _profile([1.6 * v for v in ISOLATED], cores)
    model = _profile(ISOLATED, cores)
    configs = [_live_config(1), _live_config(4), _live_config(8)]
    live = [simulate(simulated_twin(c, truth)).batches for c in configs]
    factors = contention_by_size(live, [simulate(simulated_twin(c, model)).batches for c in configs])
    assert set(factors) >= {1, 4, 8}
    for size in (1, 4, 8):
        assert factors[size] == pytest.approx(1.6, rel=0.001 if cores == 4 else 0.08), (size, factors)


def test_apply_contention_replaces_the_edge_table_keeps_the_isolated_one_and_fails_loudly_without_batches():
    profile = _profile(ISOLATED)
    runs = []
    for config in (_live_config(1), _live_config(4)):
        batches = simulate(simulated_twin(config, _profile([2.0 * v for v in ISOLATED]))).batches
        run = {"requests": 400, "batches": len(batches), "duration_s": 4.0 + len(runs), "cpu_s": {r: 0.1 for r in ("broker", "gateway", "source", "sink")},
               "worker_process_cpu_s": 1.0, "batch_sizes": {int(k): int(v) for k, v in batches["size"].value_counts().items()}}  # fmt: skip
        runs.append((config, batches, run))
    runs.append((_live_config(1, rate_rps=20), *runs[0][1:]))
    runs[-1] = (runs[-1][0], runs[-1][1], {**runs[0][2], "duration_s": 20.0})
    profile["calibration"]["in_situ"]["role_runs"] = [r for _, _, r in runs]
    factors = apply_contention(profile, [(c, b) for c, b, _ in runs], threads=1)
    assert factors[1] == pytest.approx(2.0, rel=1e-3) and factors[4] == pytest.approx(2.0, rel=1e-3)
    assert profile["edge_isolated"]["latencies_s"] == ISOLATED
    assert profile["edge"]["latencies_s"] == pytest.approx([2.0 * v for v in ISOLATED], rel=1e-3)
    assert profile["hosts"]["local"]["roles"]["worker"]["cpu_s_per_request"] == 2e-4  # the worker's own CPU is left as fitted
    empty = pd.DataFrame({"size": [1] * 3, "start_s": 0.0, "end_s": 0.01})
    with pytest.raises(CalibrationError, match="edge contention: no batch size"):
        apply_contention(_profile(ISOLATED), [(_live_config(1), empty)], threads=1)


def test_the_twin_is_the_machine_as_its_run_found_it_without_per_run_draws():
    profile = _profile(ISOLATED, cores=2)
    profile["hosts"]["local"].update(run_cv=0.2, background_cores_sd=0.5, background_cores=0.3)
    twin = simulated_twin(_live_config(4), profile, background_cores=1.9)
    host = twin["cluster"]["hosts"]["local"]
    assert host["run_cv"] == 0.0 and host["background_cores_sd"] == 0.0 and host["background_cores"] == pytest.approx(1.8)  # capped
    assert "live" not in twin and twin["cluster"]["executors"][0]["profile"]["latencies_s"] == ISOLATED
    assert profile["hosts"]["local"]["run_cv"] == 0.2  # the profile itself is left as it was
