"""A fleet's bulk path (``sim.fleet_bulk_driver``) against the per-request path: identical tables, exactly.

Randomized small fleets (``cluster.devices`` copies of a site, per-device
rate and speed drawn from distributions, noise on and off, timeout, fixed
and no batching, one to three slots, one or two cameras per device, chunks
of a few arrivals up to thousands, arrival times on a dyadic grid for exact
ties in half the cases) run once on the fleet's bulk path and once with it
turned off (``Simulation.bulk = False``): request and batch tables and
summaries must be equal, with no tolerance, in memory and streamed.
Every case runs twice: all gateways' chunk in a few vectorized passes
(``FleetBulkDriver.vectorized_from`` lowered to 2) and one call per gateway.
Fleets whose gateways share something fall back and say why.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest

from policies.run_spec import build_run_spec
from sim.fleet_bulk_driver import FleetBulkDriver
from sim import build_simulation
from spec.streamed_arrivals import RollingArrivals, StreamedArrivals
from spec.workload import Arrivals, Workload
from tests.sim.test_bulk_path import both_paths, on_grid, run


@pytest.fixture(autouse=True, params=["vectorized", "per_gateway"])
def fleet_mode(request, monkeypatch):
    """Each test on both of the fleet path's ways, and a check that the vectorized one did the cutting."""
    vectorized = request.param == "vectorized"
    monkeypatch.setattr(FleetBulkDriver, "vectorized_from", 2 if vectorized else 10**9)
    calls = {"all": 0, "each": 0}
    cut_all, arrivals_at = FleetBulkDriver._cut_all, FleetBulkDriver._arrivals_at

    def counted_all(self, *args):
        calls["all"] += 1
        return cut_all(self, *args)

    def counted_each(self, *args):
        calls["each"] += 1
        return arrivals_at(self, *args)

    monkeypatch.setattr(FleetBulkDriver, "_cut_all", counted_all)
    monkeypatch.setattr(FleetBulkDriver, "_arrivals_at", counted_each)
    yield request.param
    if calls["all"] or calls["each"]:  # the fleet path ran: on the way asked for
        assert (calls["all"] > 0, calls["each"] > 0) == (vectorized, not vectorized), calls


def fleet_config(rng: np.random.Generator, *, devices: int, per_device: int, noise: bool) -> dict:
    batching = [
        {"_target_": "policies.batching.TimeoutBatching", "max_batch_size": int(rng.choice([1, 3, 8])),
         "max_wait_s": float(rng.choice([0.0, 0.002, 0.005, 0.02]))},
        {"_target_": "policies.batching.FixedBatching", "batch_size": int(rng.choice([2, 4])), "max_wait_s": 0.01},
        {"_target_": "policies.batching.NoBatching"},
    ][int(rng.choice(3, p=[0.6, 0.25, 0.15]))]  # fmt: skip
    slots = int(rng.integers(1, 4))
    executor = {"kind": "edge", "gateway": "edge", "slots": slots,
                "profile": {"kind": "linear", "per_item_s": float(rng.uniform(0.0003, 0.001)), "base_s": float(rng.uniform(0.0, 0.004))},
                "noise": {"kind": "gamma", "cv": 0.5} if noise else {"kind": "none"},
                "pricing": {"kind": "hourly", "price_per_hour": 0.5} if rng.integers(2) else {"kind": "free"}}  # fmt: skip
    rate = float(rng.uniform(100.0, 600.0)) * slots
    sources = {"cam": {"gateway": "edge", "size_bytes": 2048, "slo_s": 0.05, "arrivals": {"kind": "poisson", "rate_rps": rate}}}
    if rng.integers(2):
        sources["mic"] = {"gateway": "edge", "size_bytes": 512, "slo_s": 0.2, "arrivals": {"kind": "gamma", "rate_rps": rate / 3, "cv": 2.0}}
    return {"seed": int(rng.integers(1000)), "workload": {"num_requests": per_device, "sources": sources},
            "cluster": {"devices": devices, "fleet_seed": int(rng.integers(100)), "executors": {"edge": executor},
                        "vary": {"rate_scale": {"kind": "uniform", "low": 0.3, "high": 2.0},
                                 "speed_scale": {"kind": "lognormal", "mean": 1.0, "cv": 0.3, "low": 0.5, "high": 2.0}}},
            "policy": {"placement": {"_target_": "policies.placement.StaticPlacement"}, "batching": batching}}  # fmt: skip


@pytest.mark.parametrize("case", range(16))
def test_random_fleets_give_identical_tables(case, monkeypatch):
    rng = np.random.default_rng(2300 + case)
    monkeypatch.setattr(FleetBulkDriver, "min_chunk", int(rng.choice([1, 5, 64, 1000, 1 << 15])))
    monkeypatch.setattr(FleetBulkDriver, "per_gateway", int(rng.choice([1, 8, 128])))
    monkeypatch.setattr(FleetBulkDriver, "vectorized_per_gateway", int(rng.choice([1, 4, 128])))
    devices = int(rng.integers(2, 40))
    spec = build_run_spec(fleet_config(rng, devices=devices, per_device=int(rng.integers(20, 200)), noise=bool(case % 4 < 2)))
    if case % 2:
        spec = on_grid(spec)
    path, result = both_paths(spec)
    assert path == f"bulk: {devices} gateways that share nothing, each on its own"
    assert result.summary["completed"] == len(result.requests)
    assert result.requests["executor"].nunique() == devices  # every device served its own


@pytest.mark.parametrize("noise", [False, True])
def test_a_streamed_fleet_writes_the_same_files_and_summary(noise, tmp_path, monkeypatch):
    monkeypatch.setattr(FleetBulkDriver, "min_chunk", 300)
    monkeypatch.setattr("sim.simulation.RECORD_ROWS_PER_GROUP", 256)  # many row groups, slices written as the run goes
    rng = np.random.default_rng(7)
    config = fleet_config(rng, devices=25, per_device=120, noise=noise)
    results = {}
    for bulk in (False, True):
        config["sim"] = {"stream_records_to": str(tmp_path / str(bulk)), "max_records_in_memory": 0}  # the running summary
        results[bulk] = run(build_run_spec(config), bulk=bulk)
    (path_off, off), (path_on, on) = results[False], results[True]
    assert path_off.startswith("per request") and path_on.startswith("bulk: 25 gateways")
    assert on.summary == off.summary
    for name in ("requests.parquet", "batches.parquet"):
        pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "True" / name), pd.read_parquet(tmp_path / "False" / name), check_exact=True)


def test_the_fleets_of_issue_23_take_the_bulk_path_with_remote_executors_unused():
    # fleet_cloud's shape: every gateway reaches a shared cloud server over its own uplink, but static placement never
    # sends it anything, so the gateways still share nothing
    rng = np.random.default_rng(3)
    config = fleet_config(rng, devices=6, per_device=100, noise=True)
    config["cluster"]["executors"]["cloud"] = {"kind": "cloud", "slots": 2, "profile": {"kind": "linear", "per_item_s": 0.001, "base_s": 0.0}}
    config["cluster"]["links"] = {"cloud": {"delay_s": 0.01, "bandwidth_MBps": 10.0}}
    config["policy"]["placement"] = {"_target_": "policies.placement.StaticPlacement", "executor": None}
    path, result = both_paths(build_run_spec(config))
    assert path.startswith("bulk: 6 gateways"), path
    assert (result.requests["executor_kind"] == "edge").all()


def fallback_cases() -> list[tuple[str, dict, str]]:
    base = fleet_config(np.random.default_rng(11), devices=4, per_device=80, noise=True)
    base["policy"]["batching"] = {"_target_": "policies.batching.TimeoutBatching", "max_batch_size": 4, "max_wait_s": 0.004}
    shared = {k: dict(v) if isinstance(v, dict) else v for k, v in base.items()}
    shared["cluster"] = {**base["cluster"], "executors": {**base["cluster"]["executors"], "cloud": {
        "kind": "cloud", "slots": 1, "profile": {"kind": "linear", "per_item_s": 0.0005, "base_s": 0.001}}}}
    shared["policy"] = {**base["policy"], "placement": {"_target_": "policies.placement.StaticPlacement", "executor": "cloud"}}
    linked = {**shared, "cluster": {**shared["cluster"], "links": {"cloud": {"delay_s": 0.002, "bandwidth_MBps": 50.0}}}}
    horizon = {**base, "sim": {"horizon_s": 0.05}}
    round_robin = {**shared, "policy": {**base["policy"], "placement": {"_target_": "policies.placement.RoundRobinPlacement"}}}
    return [("shared_cloud_executor", shared, "share executor 'cloud'"),
            ("shared_behind_links", linked, "behind a link"),
            ("horizon", horizon, "a horizon"),
            ("placement_over_two", round_robin, "policies that take requests one at a time")]  # fmt: skip


@pytest.mark.parametrize("name, config, reason", fallback_cases(), ids=[c[0] for c in fallback_cases()])
def test_fleets_whose_gateways_share_something_fall_back_and_say_why(name, config, reason):
    path, _ = both_paths(build_run_spec(config))
    assert path.startswith("per request: ") and reason in path, path


@pytest.mark.parametrize("batching", [
    {"_target_": "policies.batching.TimeoutBatching", "max_batch_size": 3, "max_wait_s": 8 * 2.0**-11},
    {"_target_": "policies.batching.NoBatching"},
])  # fmt: skip
def test_devices_with_the_very_same_arrival_times_number_their_batches_as_the_per_request_path(batching):
    # every device replays the same times (as a trace would): every batch ties with one at every other gateway
    rng = np.random.default_rng(5)
    config = fleet_config(rng, devices=7, per_device=60, noise=True)
    config["workload"]["sources"] = {"cam": config["workload"]["sources"]["cam"]}
    config["policy"]["batching"] = batching
    spec = build_run_spec(config)
    times = np.cumsum(rng.integers(1, 6, 60)) * 2.0**-11  # on a dyadic grid: due times tie with arrivals too
    arrivals = Arrivals(arrival_s=np.repeat(times, 7), source_index=np.tile(np.arange(7, dtype=np.int16), 60), sources=spec.arrivals.sources)
    path, result = both_paths(dataclasses.replace(spec, arrivals=arrivals))
    assert path.startswith("bulk: 7 gateways")
    assert result.batches["start_s"].duplicated().any()  # ties, indeed


def test_a_long_streamed_fleet_generates_its_arrivals_as_it_goes_and_writes_the_same_files(tmp_path, monkeypatch):
    # a "long" run (spec.streamed_arrivals) in small windows: the bulk path reads a rolling view, trimmed behind it
    monkeypatch.setattr(Workload, "merge_in_windows_above", 1000)
    monkeypatch.setattr(Workload, "merge_window_requests", 97)
    monkeypatch.setattr(FleetBulkDriver, "min_chunk", 200)
    monkeypatch.setattr(FleetBulkDriver, "per_gateway", 1)
    monkeypatch.setattr(FleetBulkDriver, "vectorized_per_gateway", 1)
    monkeypatch.setattr("sim.simulation.RECORD_ROWS_PER_GROUP", 128)
    config = fleet_config(np.random.default_rng(8), devices=12, per_device=400, noise=True)
    results = {}
    for bulk in (False, True):
        config["sim"] = {"stream_records_to": str(tmp_path / str(bulk)), "max_records_in_memory": 0}
        spec = build_run_spec(config)
        assert isinstance(spec.arrivals, StreamedArrivals)
        simulation = build_simulation(spec)
        simulation.bulk = bulk
        results[bulk] = (None, simulation.run(), simulation)
    off, on = results[False][1], results[True][1]
    rolling = results[True][2].recorder.arrivals
    assert isinstance(rolling, RollingArrivals) and rolling.base > 0  # trimmed as it went
    assert rolling.held < len(rolling) // 4
    assert results[True][2].feed_path.startswith("bulk: 12 gateways")
    assert on.summary == off.summary
    for name in ("requests.parquet", "batches.parquet"):
        pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "True" / name), pd.read_parquet(tmp_path / "False" / name), check_exact=True)
