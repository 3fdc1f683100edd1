"""Links, serverless pools, batching bounds, costs and request accounting in the simulator.

Each expectation is computed from the model's definition (delay + size /
bandwidth, keep-alive semantics, pricing formulas), not from a previous run.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from policies.batching.base import BatchingPolicy, Decision
from experiments.paths import DATA_DIR
from sim import simulate
from spec.links import MB
from tests.sim.configs import NO_BATCHING, STATIC, single_queue, timeout_batching, with_changes

DATA = str(DATA_DIR)  # ../shared/data, or $EDGEBATCH_DATA


def remote_config(*, link: dict, gaps_path, size_bytes: int, service_s: float = 0.01, batching=None) -> dict:
    return {
        "seed": 0,
        "workload": {
            "sources": [
                {"name": "cam", "size_bytes": size_bytes, "arrivals": {"kind": "trace", "path": str(gaps_path), "start_offset_s": 0}},
            ],
        },
        "cluster": {
            "executors": [
                {"name": "cloud", "kind": "cloud", "profile": {"kind": "linear", "per_item_s": service_s, "base_s": 0.0}},
            ],
            "links": {"cloud": link},
        },
        "policy": {"placement": STATIC, "batching": batching or NO_BATCHING},
    }


def write_json(path, values) -> str:
    path.write_text(json.dumps(values))
    return str(path)


def test_link_transfer_is_delay_plus_size_over_bandwidth(tmp_path):
    gaps = write_json(tmp_path / "gaps.json", [0.5, 10.0, 10.0])
    size = 3 * MB // 2
    result = simulate(remote_config(link={"delay_s": 0.04, "bandwidth_MBps": 2.0}, gaps_path=gaps, size_bytes=size))
    requests = result.requests
    uplink_s = 0.04 + 1.5 / 2.0
    # transfer_s counts the uplink and the result's way back (one more delay)
    np.testing.assert_allclose(requests["transfer_s"], uplink_s + 0.04, rtol=1e-12)
    np.testing.assert_allclose(requests["completed_s"], requests["arrival_s"] + uplink_s + 0.01 + 0.04, rtol=1e-12)
    np.testing.assert_allclose(requests["queue_s"], 0.0, atol=1e-9)


def test_link_waits_out_an_outage(tmp_path):
    gaps = write_json(tmp_path / "gaps.json", [0.5])
    trace = write_json(tmp_path / "bw.json", [0.0, 0.0, 0.0, 1.0, 1.0])
    size = MB // 2
    result = simulate(remote_config(link={"delay_s": 0.01, "bandwidth_trace": trace}, gaps_path=gaps, size_bytes=size))
    row = result.requests.iloc[0]
    # down in seconds 0-2: serialisation starts at 3.0, takes 0.5 s at 1 MB/s
    assert row["completed_s"] == pytest.approx(3.0 + 0.5 + 0.01 + 0.01 + 0.01)
    assert not row["dropped"]


def test_link_is_fifo(tmp_path):
    gaps = write_json(tmp_path / "gaps.json", [1.0, 1e-6, 1e-6])
    size = MB
    result = simulate(remote_config(link={"delay_s": 0.0, "bandwidth_MBps": 1.0}, gaps_path=gaps, size_bytes=size, service_s=1e-3))
    arrived = (result.requests["dispatched_s"] + result.requests["transfer_s"]).to_numpy()
    # each 1 MB transfer waits for the one before it: arrivals at the executor 1 s apart
    np.testing.assert_allclose(np.diff(arrived), 1.0, atol=1e-5)


def serverless_config(*, keep_alive_s: float, max_instances: int, rate_rps: float, num_requests: int, pricing=None, memory_mb=1024) -> dict:
    return {
        "seed": 3,
        "workload": {"num_requests": num_requests, "sources": [{"name": "cam", "arrivals": {"kind": "poisson", "rate_rps": rate_rps}}]},
        "cluster": {
            "executors": [
                {
                    "name": "fn",
                    "kind": "serverless",
                    "profile": {"kind": "linear_memory", "per_item_s": 0.05, "per_mb_s": -1e-5, "base_s": 0.1},
                    "cold_start": {"kind": "constant", "value_s": 0.5},
                    "keep_alive_s": keep_alive_s,
                    "max_instances": max_instances,
                    "memory_mb": memory_mb,
                    "pricing": pricing or {"kind": "serverless", "price_per_gb_s": 0.0000166667, "per_invocation": 2e-7},
                }
            ]
        },
        "policy": {"placement": STATIC, "batching": NO_BATCHING},
    }


def test_serverless_keep_alive_zero_cold_starts_every_batch():
    result = simulate(serverless_config(keep_alive_s=0.0, max_instances=50, rate_rps=5, num_requests=300))
    assert result.summary["cold_starts"] == result.summary["batches"] == 300
    np.testing.assert_allclose(result.requests["cold_start_s"], 0.5)


def test_serverless_one_instance_long_keep_alive_cold_starts_once():
    result = simulate(serverless_config(keep_alive_s=3600.0, max_instances=1, rate_rps=5, num_requests=300))
    assert result.summary["cold_starts"] == 1
    assert result.batches["cold"].iloc[0]
    # one instance: batches never overlap
    batches = result.batches.sort_values("start_s")
    assert (batches["start_s"].to_numpy()[1:] >= batches["end_s"].to_numpy()[:-1] - 1e-12).all()


def test_serverless_scales_to_zero_between_bursts(tmp_path):
    config = serverless_config(keep_alive_s=2.0, max_instances=10, rate_rps=1, num_requests=2)
    gaps = write_json(tmp_path / "gaps.json", [1.0, 10.0])  # second request after the instance expired
    config["workload"] = {"sources": [{"name": "cam", "arrivals": {"kind": "trace", "path": gaps, "start_offset_s": 0}}]}
    result = simulate(config)
    assert result.batches["cold"].tolist() == [True, True]


def test_serverless_memory_selects_profile_and_cost():
    slow = simulate(serverless_config(keep_alive_s=600, max_instances=100, rate_rps=2, num_requests=50, memory_mb=1024))
    fast = simulate(serverless_config(keep_alive_s=600, max_instances=100, rate_rps=2, num_requests=50, memory_mb=4096))
    assert slow.requests["service_s"].iloc[0] == pytest.approx(0.05 + 0.1 - 1e-5 * 1024)
    assert fast.requests["service_s"].iloc[0] == pytest.approx(0.05 + 0.1 - 1e-5 * 4096)
    batches = fast.batches
    duration = batches["end_s"] - batches["start_s"] + np.where(batches["cold"], 0.5, 0.0)  # cold start is billed
    billed = np.ceil(duration / 0.001 - 1e-9) * 0.001
    expected = 0.0000166667 * 4 * billed + 2e-7
    np.testing.assert_allclose(batches["cost"], expected, rtol=1e-9)
    assert fast.summary["total_cost"] == pytest.approx(expected.sum())


def test_serverless_billing_granularity_rounds_up():
    pricing = {"kind": "serverless", "price_per_gb_s": 1.0, "granularity_s": 0.1}
    result = simulate(serverless_config(keep_alive_s=600, max_instances=1, rate_rps=1, num_requests=20, pricing=pricing))
    warm = result.batches[~result.batches["cold"]]
    # 0.15 - 0.01024 s of work is billed as 0.2 s at 1 GB
    np.testing.assert_allclose(warm["cost"], 0.2)


def test_hourly_server_costs_its_price_over_the_span():
    config = single_queue(rate_rps=50, service_s=0.01, num_requests=5000)
    config["cluster"]["executors"][0]["pricing"] = {"kind": "hourly", "price_per_hour": 3.6}
    config["cluster"]["executors"][0]["slots"] = 2
    result = simulate(config)
    assert result.summary["total_cost"] == pytest.approx(3.6 * 2 * result.summary["span_s"] / 3600, rel=1e-9)


@settings(max_examples=25, deadline=None)
@given(
    rate_rps=st.floats(20, 2000),
    max_batch_size=st.integers(1, 16),
    max_wait_s=st.floats(0.0, 0.05),
    service_s=st.floats(1e-4, 0.01),
    seed=st.integers(0, 2**16),
)
def test_timeout_batching_never_holds_too_long_nor_too_many(rate_rps, max_batch_size, max_wait_s, service_s, seed):
    config = single_queue(
        rate_rps=rate_rps, service_s=service_s, num_requests=400, seed=seed, batching=timeout_batching(max_batch_size, max_wait_s)
    )
    result = simulate(config)
    requests, batches = result.requests, result.batches
    assert batches["size"].max() <= max_batch_size
    held_s = requests["dispatched_s"] - requests["arrival_s"]
    assert (held_s <= max_wait_s + 1e-9).all()
    assert result.summary["completed"] == 400


def test_timeout_batching_fills_batches_when_the_wait_allows():
    config = single_queue(rate_rps=2000, service_s=1e-4, num_requests=4000, batching=timeout_batching(8, 0.05))
    batches = simulate(config).batches
    assert (batches["size"] == 8).mean() > 0.99  # at 2000 rps, 8 requests arrive in ~4 ms << 50 ms


def test_every_request_ends_completed_or_dropped_with_a_reason():
    # overload a bounded queue: the excess is rejected, nothing vanishes
    batching = {**timeout_batching(4, 0.01), "max_queue": 20, "max_inflight": 1}
    config = single_queue(rate_rps=500, service_s=0.01, num_requests=5000, batching=batching)
    result = simulate(config)
    requests = result.requests
    assert len(requests) == 5000
    dropped = requests["dropped"]
    assert dropped.sum() > 0
    assert requests.loc[dropped, "drop_reason"].eq("queue_full").all()
    assert requests.loc[~dropped, "completed_s"].notna().all()
    assert requests.loc[~dropped, "drop_reason"].isna().all()
    assert result.summary["completed"] + result.summary["dropped"] == 5000
    assert result.summary["drops_by_reason"] == {"queue_full": int(dropped.sum())}


def test_horizon_drops_what_has_not_finished_as_run_ended():
    config = single_queue(rate_rps=200, service_s=0.01, num_requests=1000)  # overloaded 2x
    config["sim"] = {"horizon_s": 2.0}
    result = simulate(config)
    requests = result.requests
    assert len(requests) == 1000
    late = requests["dropped"]
    assert late.any() and (requests.loc[late, "drop_reason"] == "run_ended").all()
    assert (requests.loc[~late, "completed_s"] <= 2.0 + 1e-9).all()


def test_serverless_failures_drop_with_a_reason_and_nothing_is_lost():
    config = serverless_config(keep_alive_s=600, max_instances=5, rate_rps=5, num_requests=400)
    config["cluster"]["executors"][0]["failure_probability"] = 0.2
    result = simulate(config)
    dropped = result.requests["dropped"]
    assert 0.1 < dropped.mean() < 0.3
    assert (result.requests.loc[dropped, "drop_reason"] == "executor_failed").all()
    assert result.summary["completed"] + result.summary["dropped"] == 400


def test_same_seed_gives_identical_tables_and_another_seed_does_not():
    config = single_queue(rate_rps=300, service_s=0.002, noise={"kind": "lognormal", "cv": 0.3}, num_requests=3000, batching=timeout_batching())
    first, second = simulate(config), simulate(config)
    pd.testing.assert_frame_equal(first.requests, second.requests)
    pd.testing.assert_frame_equal(first.batches, second.batches)
    assert first.summary == second.summary
    other = simulate(with_changes(config, seed=1))
    assert not other.requests["latency_s"].equals(first.requests["latency_s"])


@pytest.mark.parametrize(
    "arrivals",
    [
        {"kind": "gamma", "rate_rps": 100.0, "cv": 3.0},
        {"kind": "mmpp", "rate_high_rps": 180.0, "rate_low_rps": 20.0, "mean_high_s": 0.5, "mean_low_s": 0.5},
    ],
)
def test_bursty_arrivals_keep_their_mean_rate_and_wait_longer_than_poisson(arrivals):
    bursty = simulate(single_queue(rate_rps=100, service_s=0.005, num_requests=40_000, arrivals=arrivals))
    poisson = simulate(single_queue(rate_rps=100, service_s=0.005, num_requests=40_000))
    assert bursty.summary["throughput_rps"] == pytest.approx(100, rel=0.08)
    assert bursty.requests["queue_s"].mean() > 1.5 * poisson.requests["queue_s"].mean()


def test_real_arrival_trace_replays_at_its_rate():
    config = single_queue(rate_rps=1, service_s=0.001, arrivals={"kind": "trace", "path": f"{DATA}/interarrivals_49rps_s.json"})
    config["workload"]["num_requests"] = 20_000
    result = simulate(config)
    gaps = np.array(json.load(open(f"{DATA}/interarrivals_49rps_s.json")))
    expected_rate = 1 / gaps.mean()
    assert result.summary["count"] == 20_000
    assert 20_000 / result.requests["arrival_s"].iloc[-1] == pytest.approx(expected_rate, rel=0.15)


def test_several_sources_each_with_their_own_size_and_slo():
    config = single_queue(rate_rps=50, service_s=0.002, num_requests=1000)
    config["workload"]["sources"] = [
        {"name": "a", "size_bytes": 1000, "slo_s": 0.001, "arrivals": {"kind": "poisson", "rate_rps": 50}},
        {"name": "b", "size_bytes": 5000, "slo_s": 1.0, "arrivals": {"kind": "poisson", "rate_rps": 20}},
    ]
    result = simulate(config)
    requests = result.requests
    assert requests["source"].value_counts().to_dict() == {"a": 1000, "b": 1000}
    assert not requests.loc[requests["source"] == "a", "met_slo"].any()  # 2 ms service > 1 ms SLO
    assert requests.loc[requests["source"] == "b", "met_slo"].all()
    assert result.summary["slo_attainment"] == pytest.approx(0.5)


def test_source_hops_delay_and_reorder_arrivals_at_the_gateway():
    # two sources whose requests reach the gateway 0 s and 30 ms after they arrive; over 4,096
    # requests, so the feed's chunks are crossed too
    config = single_queue(rate_rps=50.0, service_s=1e-6, slots=64, num_requests=6_000)
    near = {"name": "near", "arrivals": {"kind": "poisson", "rate_rps": 50.0}}
    far = {"name": "far", "hop_s": 0.03, "arrivals": {"kind": "poisson", "rate_rps": 50.0}}
    config["workload"]["sources"] = [near, far]
    requests = simulate(config).requests
    assert len(requests) == 12_000 and requests["completed_s"].notna().all()  # num_requests per source
    hop_s = np.where(requests["source"] == "far", 0.03, 0.0)
    np.testing.assert_allclose(requests["dispatched_s"], requests["arrival_s"] + hop_s, rtol=0, atol=1e-9)
    # without batching each request is its own batch, numbered in the order the gateway saw them
    seen_s = requests.sort_values("batch_id")["dispatched_s"].to_numpy()
    assert (np.diff(seen_s) >= 0).all()
    assert (np.diff(requests.sort_values("arrival_s")["dispatched_s"].to_numpy()) < 0).any()  # reordered


@pytest.mark.parametrize(
    ("change", "hops_s"),
    [
        ({"workload.sources.0.hop_s": 0.01}, 0.01),  # the source's hop to its gateway
        ({"cluster.executors.0.hop_s": 0.01}, 0.02),  # the executor's hop there and back
        ({"workload.sources.0.hop_s": 0.01, "cluster.executors.0.hop_s": 0.01}, 0.03),
        ({"cluster.executors.0.hop_s": 0.01, "cluster.executors.0.hop_MBps": 1.0}, 0.02 + 0.5),  # 0.5 MB payloads
    ],
)
def test_a_hop_at_idle_load_is_in_the_hop_column_not_the_queue(tmp_path, change, hops_s):
    # one request a second against 10 ms of service: nothing ever waits
    gaps = write_json(tmp_path / "gaps.json", [0.5] + [1.0] * 9)
    config = single_queue(rate_rps=1.0, service_s=0.01, arrivals={"kind": "trace", "path": gaps, "start_offset_s": 0})
    config["workload"]["num_requests"] = 10
    config["workload"]["sources"][0]["size_bytes"] = MB // 2
    requests = simulate(with_changes(config, **change)).requests
    assert requests["completed_s"].notna().all()
    np.testing.assert_allclose(requests["hop_s"], hops_s, rtol=0, atol=1e-9)
    np.testing.assert_allclose(requests["queue_s"], 0.0, rtol=0, atol=1e-9)
    np.testing.assert_allclose(requests["transfer_s"], 0.0, rtol=0, atol=1e-9)
    np.testing.assert_allclose(requests["latency_s"], hops_s + 0.01, rtol=0, atol=1e-9)


def test_a_hop_behind_a_link_is_apart_from_the_link(tmp_path):
    gaps = write_json(tmp_path / "gaps.json", [0.5, 10.0, 10.0])
    config = remote_config(link={"delay_s": 0.04, "bandwidth_MBps": 2.0}, gaps_path=gaps, size_bytes=MB)
    config["cluster"]["executors"][0]["hop_s"] = 0.01
    requests = simulate(config).requests
    np.testing.assert_allclose(requests["transfer_s"], 0.04 + 0.5 + 0.04, rtol=0, atol=1e-9)  # up and back over the link
    np.testing.assert_allclose(requests["hop_s"], 0.02, rtol=0, atol=1e-9)
    np.testing.assert_allclose(requests["queue_s"], 0.0, rtol=0, atol=1e-9)
    np.testing.assert_allclose(requests["latency_s"], 0.04 + 0.5 + 0.01 + 0.01 + 0.01 + 0.04, rtol=0, atol=1e-9)


class DropByParity(BatchingPolicy):
    """Drops every request with a reason of its own: one for even ids, another for odd ones."""

    def decide(self, now_s: float) -> Decision:
        return Decision(drops=tuple((r, "odd_id" if r.request_id % 2 else "even_id") for r in self.queue))


def test_a_policys_own_drop_reasons_are_each_kept_by_name():
    batching = {"_target_": "tests.sim.test_components.DropByParity"}
    requests = simulate(single_queue(rate_rps=100.0, service_s=0.001, num_requests=200, batching=batching)).requests
    assert requests["dropped"].all()
    expected = np.where(requests["request_id"] % 2 == 1, "odd_id", "even_id")
    assert (requests["drop_reason"].astype(str).to_numpy() == expected).all()
