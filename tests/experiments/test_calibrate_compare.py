"""Calibration writes a profile the simulator runs with; compare reports every metric for both backends."""

from __future__ import annotations

import math

import pytest
import yaml
from hydra import compose, initialize_config_dir

from experiments import calibrate, compare
from experiments.paths import REPO_ROOT
from experiments.run import to_run_config
from sim import simulate

pytestmark = pytest.mark.live


def test_calibration_composes_as_a_profile_and_the_simulator_runs_with_it(tmp_path):
    search_dir = tmp_path / "conf"
    out = search_dir / "profile" / "test_calibration.yaml"
    calibrate.main(["--model", "mlp", "--repeats", "5", "--rounds", "3", "--cold-starts", "1", "--in-situ-requests", "150",
                    "--out", str(out), "--plots", str(tmp_path / "plots")])  # fmt: skip
    profile = yaml.safe_load(out.read_text())
    assert profile["hop_s"] > 0 and profile["overhead_s"] >= 0 and profile["cold_start"]["samples_s"][0] > 0.1
    assert len(profile["hop_samples_s"]) == len(profile["overhead_samples_s"]) == len(profile["ingest_samples_s"]) == 40
    # when, on what, how noisy
    calibration = profile["calibration"]
    assert calibration["measured_at"].endswith("Z") and calibration["machine"]["cores"] >= 1 and calibration["machine"]["torch"]
    one = calibration["service"]["1_threads"][1]
    assert one["ci95_s"][0] <= one["mean_s"] <= one["ci95_s"][1] and one["cv"] >= 0 and one["rounds"] == 3
    # this machine, with every role's CPU on it
    host = profile["hosts"]["local"]
    assert host["executors"] == "*" and set(host["roles"]) == {"broker", "gateway", "source", "sink", "worker"}
    assert sum(r["cpu_s_per_request"] for r in host["roles"].values()) > 0
    assert 0 <= host["background_cores"] < host["cores"] and host["cold_start_cores"] > 0
    assert 0 <= host["run_cv"] < 1 and 0 <= host["background_cores_sd"] < host["cores"]  # the per-run random effects
    assert (tmp_path / "plots" / "fit.png").stat().st_size > 1000
    with initialize_config_dir(config_dir=str(REPO_ROOT / "conf"), version_base="1.3"):
        cfg = compose("config", overrides=[f"hydra.searchpath=[file://{search_dir}]", "profile=test_calibration",
                                           "cluster=edge_serverless", "policy/placement=round_robin", "num_requests=300"])  # fmt: skip
    config = to_run_config(cfg)
    assert config["cluster"]["executors"]["edge"]["hop_s"] == profile["hop_s"]
    assert config["cluster"]["hosts"]["local"]["cores"] == host["cores"]
    result = simulate(config)
    assert result.summary["completed"] == 300
    assert result.summary["cold_starts"] >= 1  # the serverless pool's first batch, from the measured cold starts
    served = result.requests.loc[result.requests["executor"] == "edge", "service_s"]
    # the measured mlp, not the seed's 50 ms ResNet-50: its isolated table times the contention factors measured
    # in calibration's live runs (on a loaded machine these are several times 1, so the bound is loose)
    factors = profile["calibration"]["contention"]["by_batch_size"]
    assert factors and all(f > 0 for f in factors.values())
    assert profile["edge"]["latencies_s"][0] == pytest.approx(profile["edge_isolated"]["latencies_s"][0] * factors[min(factors)], rel=1e-2)
    assert served.median() < 0.025


def test_compare_gives_every_metric_for_both_backends(tmp_path):
    sim_dir, live_dir = compare.run_both(
        ["num_requests=150", "rate_rps=50", "cluster=edge_only", "policy/batching=timeout", "live.model=mlp"], tmp_path
    )
    table = compare.report(sim_dir, live_dir, tmp_path)
    assert list(table.index) == list(compare.METRICS)
    for metric in ("p50 latency", "p95 latency", "SLO attainment", "throughput", "mean batch size"):
        assert math.isfinite(table.loc[metric, "sim"]) and math.isfinite(table.loc[metric, "live"])
    assert table.loc["throughput", "rel_error"] == pytest.approx(0, abs=0.1)  # same arrivals on both
    assert (tmp_path / "compare.csv").exists() and (tmp_path / "latency_cdf.png").stat().st_size > 1000
