"""Records streamed to Parquet (``sim.stream_records_to``) against the in-memory tables and summary.

A streamed run writes its two tables a row group at a time; read back, they
must be the very tables an in-memory run writes (``to_parquet``), and its
summary the same. Beyond ``sim.max_records_in_memory`` the summary is the
running one: counts exact, sums to rounding, percentiles within the sketch's
stated bound of numpy's. The recorder's buffers stay bounded by its row-group
size, however long the run.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

import sim.simulation
from sim import build_simulation, simulate
from spec.record_files import write_records
from spec.streaming_recorder import BATCHES_FILE, REQUESTS_FILE, StreamingRecorder
from tests.sim.configs import STATIC, timeout_batching

ROUND_ROBIN = {"_target_": "policies.placement.RoundRobinPlacement"}


def fleet_config(*, devices: int = 12, per_device: int = 150, seed: int = 1) -> dict:
    """A small fleet sharing a cloud server over varied uplinks; hops on the sources and the cloud."""
    return {
        "seed": seed,
        "workload": {"num_requests": per_device, "sources": {"cam": {
            "gateway": "edge", "size_bytes": 40_000, "slo_s": 0.05, "hop_s": 0.001, "arrivals": {"kind": "poisson", "rate_rps": 40.0}}}},
        "cluster": {
            "devices": devices,
            "executors": {
                "edge": {"kind": "edge", "gateway": "edge", "profile": {"kind": "linear", "per_item_s": 0.004, "base_s": 0.006}},
                "cloud": {"kind": "cloud", "slots": 4, "hop_s": 0.002, "profile": {"kind": "linear", "per_item_s": 0.001, "base_s": 0.003},
                          "pricing": {"kind": "hourly", "price_per_hour": 3.0}},
            },
            "links": {"cloud": {"delay_s": 0.01, "bandwidth_MBps": 8.0}},
            "vary": {"rate_scale": {"kind": "uniform", "low": 0.5, "high": 1.5}, "bandwidth_scale": {"kind": "uniform", "low": 0.5, "high": 2.0}},
        },
        "policy": {"placement": ROUND_ROBIN, "batching": timeout_batching(max_batch_size=4, max_wait_s=0.004)},
    }  # fmt: skip


def failing_pool_config() -> dict:
    """Serverless failures retried once (failed batches, retries, drops), priced per invocation."""
    return {
        "seed": 3,
        "workload": {"num_requests": 1500, "sources": [{"name": "cam", "slo_s": 5.0, "arrivals": {"kind": "poisson", "rate_rps": 20}}]},
        "cluster": {"executors": [{
            "name": "fn", "kind": "serverless", "keep_alive_s": 10, "max_instances": 4, "memory_mb": 1024,
            "profile": {"kind": "linear", "per_item_s": 0.01, "base_s": 0.02}, "cold_start": {"kind": "constant", "value_s": 0.5},
            "failure_probability": 0.3, "pricing": {"kind": "serverless", "price_per_gb_s": 1.6e-5, "per_invocation": 2e-7},
        }]},
        "policy": {"placement": STATIC, "batching": timeout_batching(max_batch_size=4, max_wait_s=0.05), "max_retries": 1},
    }  # fmt: skip


def with_sim(config: dict, **sim_options) -> dict:
    return {**config, "sim": {**config.get("sim", {}), **sim_options}}


def same_summary(a: dict, b: dict) -> list[str]:
    differ = []
    for key in a:
        x, y = a[key], b.get(key)
        if not (x == y or (isinstance(x, float) and isinstance(y, float) and math.isnan(x) and math.isnan(y))):
            differ.append(f"{key}: {x!r} != {y!r}")
    return differ


@pytest.fixture
def small_row_groups(monkeypatch):
    monkeypatch.setattr(sim.simulation, "RECORD_ROWS_PER_GROUP", 64)


@pytest.mark.parametrize("make", [fleet_config, failing_pool_config], ids=["fleet", "failures"])
@pytest.mark.parametrize("horizon_s", [None, 2.0])
def test_streamed_tables_read_back_are_the_in_memory_tables(make, horizon_s, tmp_path, small_row_groups):
    config = with_sim(make(), horizon_s=horizon_s)
    kept = simulate(config)
    kept.requests.to_parquet(tmp_path / "kept_requests.parquet", index=False)
    kept.batches.to_parquet(tmp_path / "kept_batches.parquet", index=False)
    streamed = simulate(with_sim(config, stream_records_to=str(tmp_path / "streamed")))
    assert pq.ParquetFile(tmp_path / "streamed" / REQUESTS_FILE).metadata.num_row_groups > 5  # it did stream
    for name, kept_file in ((REQUESTS_FILE, "kept_requests.parquet"), (BATCHES_FILE, "kept_batches.parquet")):
        pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / kept_file), pd.read_parquet(tmp_path / "streamed" / name))
    assert not same_summary(kept.summary, streamed.summary)
    if horizon_s is not None:
        assert kept.summary["drops_by_reason"].get("run_ended", 0) > 0  # the horizon cut requests off
    if make is failing_pool_config and horizon_s is None:
        assert kept.summary["retries"] > 0 and kept.summary["dropped"] > 0 and kept.summary["batch_cost"] > 0


def test_the_running_summary_beyond_the_memory_limit(tmp_path, small_row_groups):
    config = fleet_config(devices=20, per_device=300)
    kept = simulate(config)
    streamed = simulate(with_sim(config, stream_records_to=str(tmp_path), max_records_in_memory=100))
    assert len(streamed.requests) == 0 and streamed.extra["records_dir"] == str(tmp_path)  # the tables stay on disk
    exact, running = kept.summary, streamed.summary
    for key in ("count", "completed", "dropped", "drops_by_reason", "slo_attainment", "cold_starts", "batches", "mean_batch_size",
                "retries", "redelivered", "replans", "complete", "span_s", "throughput_rps"):  # fmt: skip
        assert running[key] == exact[key], key
    for key in ("latency_mean_s", "batch_cost", "total_cost", "cost_per_1k"):
        assert running[key] == pytest.approx(exact[key], rel=1e-12), key
    assert exact["total_cost"] > exact["batch_cost"] > 0  # the cloud's idle hours count, and were summed per executor
    latency = np.sort(kept.requests.loc[~kept.requests["dropped"], "latency_s"].to_numpy())
    for q in (50, 95, 99):
        rank = q / 100 * (len(latency) - 1)
        low, high = latency[math.floor(rank)], latency[math.ceil(rank)]
        assert (1 - 0.005) * low <= running[f"latency_p{q}_s"] <= (1 + 0.005) * high, q


def test_the_buffers_stay_bounded_by_the_row_group_size(tmp_path, monkeypatch):
    rows = 256
    monkeypatch.setattr(sim.simulation, "RECORD_ROWS_PER_GROUP", rows)
    simulation = build_simulation(with_sim(fleet_config(devices=40, per_device=500), stream_records_to=str(tmp_path)))
    recorder = simulation.recorder
    assert isinstance(recorder, StreamingRecorder)
    held = []
    write_slice = recorder._write_slice

    def watched(key):
        held.append((recorder.held_requests, recorder.held_batches, len(recorder._members)))
        write_slice(key)

    monkeypatch.setattr(recorder, "_write_slice", watched)
    simulation.run()
    assert len(held) == 20_000 // rows + 1  # every slice written as it went, not at the end
    # at most a few slices of requests and their batches at any time, over 20,000 requests
    assert max(h[0] for h in held) <= 4 * rows
    assert max(h[1] for h in held) <= 6 * rows
    assert pq.ParquetFile(tmp_path / REQUESTS_FILE).metadata.num_rows == 20_000


def test_the_bulk_path_streams_the_same_tables(tmp_path, small_row_groups):
    config = {
        "seed": 2,
        "workload": {"num_requests": 3000, "sources": [{"name": "cam", "slo_s": 0.02, "arrivals": {"kind": "poisson", "rate_rps": 300.0}}]},
        "cluster": {"executors": [{"name": "edge", "kind": "edge", "gateway": "edge", "profile": {"kind": "linear", "per_item_s": 0.0005, "base_s": 0.002}}]},
        "policy": {"placement": STATIC, "batching": timeout_batching(max_batch_size=8, max_wait_s=0.005)},
    }  # fmt: skip
    kept = simulate(config)
    kept.requests.to_parquet(tmp_path / "kept.parquet", index=False)
    simulation = build_simulation(with_sim(config, stream_records_to=str(tmp_path / "streamed")))
    streamed = simulation.run()
    assert simulation.feed_path == "bulk"  # the recorder took whole columns at once
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "kept.parquet"), pd.read_parquet(tmp_path / "streamed" / REQUESTS_FILE))
    assert not same_summary(kept.summary, streamed.summary)


def test_dictionary_pages_and_no_statistics_on_the_categorical_columns(tmp_path):
    """Parquet's default dictionary on every column is most of a write's time on the float columns, string statistics most
    of the categorical columns' (BENCHMARKS: Fleets)."""
    config = fleet_config(devices=3, per_device=200)
    streamed = simulate(with_sim(config, stream_records_to=str(tmp_path / "streamed")))
    kept = simulate(config)
    write_records(kept.requests, tmp_path / "kept.parquet")
    for path in (tmp_path / "streamed" / REQUESTS_FILE, tmp_path / "kept.parquet"):
        metadata = pq.ParquetFile(path).metadata
        encodings = {metadata.schema.column(i).name: metadata.row_group(0).column(i).encodings for i in range(metadata.num_columns)}
        dictionary = {name for name, used in encodings.items() if any("DICTIONARY" in e for e in used)}
        assert dictionary == {"source", "executor", "executor_kind", "drop_reason"}, (path.name, dictionary)
        with_statistics = {metadata.schema.column(i).name for i in range(metadata.num_columns) if metadata.row_group(0).column(i).is_stats_set}
        assert with_statistics == set(encodings) - dictionary, (path.name, with_statistics)
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "kept.parquet"), kept.requests)  # categoricals read back as such
    assert len(streamed.requests) == len(kept.requests)
