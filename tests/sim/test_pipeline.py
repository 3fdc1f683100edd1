"""The simulator's pipelines (sim.pipeline) against hand-computed expectations: joins, cascades, lazy bytes, stale drops."""

from __future__ import annotations

import math

import numpy as np
import pytest

from sim import simulate
from sim.config import build_simulation
from spec.lazy_payload import LazyPayload
from spec.validation import ConfigError
from tests.pipeline_configs import CASCADE_PLACEMENT, pipeline_config, trace

N = 40


def _cams(tmp_path, first_gap_b: float, gap_b: float = 0.1, size_bytes: int = 1000):
    return [
        {"name": "cam0", "gateway": "edge", "size_bytes": size_bytes, "arrivals": trace(tmp_path, "a", [0.1] * N)},
        {"name": "cam1", "gateway": "edge", "size_bytes": size_bytes, "arrivals": trace(tmp_path, "b", [first_gap_b] + [gap_b] * (N - 1))},
    ]


def test_two_cameras_30ms_apart_join_pairwise_within_a_50ms_skew(tmp_path):
    # cam0 at 0.1, 0.2, ...; cam1 at 0.13, 0.23, ...: every pair is 30 ms apart
    config = pipeline_config(_cams(tmp_path, 0.13), {"join": {"sources": ["cam0", "cam1"], "max_skew_s": 0.05}}, cloud=False)
    result = simulate(config)
    r = result.requests
    assert len(r) == 2 * N and not r["dropped"].any()
    assert result.batches["size"].sum() == N  # one task per pair reached the scheduler
    by_task = r.groupby("task_id")["arrival_s"]
    assert (by_task.count() == 2).all() and (by_task.max() - by_task.min()).to_numpy() == pytest.approx(np.full(N, 0.03))
    cam0 = r[r["source"] == "cam0"]
    assert cam0["join_wait_s"].to_numpy() == pytest.approx(np.full(N, 0.03))  # waited for its partner
    # latency of cam0's input: its wait plus one 2 ms service (nothing queues at 10 tasks/s)
    assert cam0["latency_s"].to_numpy() == pytest.approx(np.full(N, 0.032))


def test_inputs_further_apart_than_the_skew_never_join_and_expire_counted(tmp_path):
    config = pipeline_config(_cams(tmp_path, 0.13), {"join": {"sources": ["cam0", "cam1"], "max_skew_s": 0.02}}, cloud=False)
    result = simulate(config)
    r = result.requests
    assert r["dropped"].all() and len(result.batches) == 0
    # each input is 30 ms from its neighbours: all expire as join_skew but cam1's last, unmatched at the end
    assert result.summary["drops_by_reason"] == {"join_skew": 2 * N - 1, "join_unmatched": 1}
    assert result.summary["join_expired"] == 2 * N


def test_a_camera_at_twice_the_rate_has_every_other_input_superseded(tmp_path):
    # cam0 every 0.1 s; cam1 every 0.2 s from 0.13: cam1 joins the cam0 input 30 ms before it, and the one before
    # that is superseded
    config = pipeline_config(_cams(tmp_path, 0.13, gap_b=0.2), {"join": {"sources": ["cam0", "cam1"], "max_skew_s": 0.05}},
                             cloud=False)  # fmt: skip
    config["workload"]["duration_s"] = 4.0
    r = simulate(config).requests
    cam1 = r[r["source"] == "cam1"]
    assert not cam1["dropped"].any()
    reasons = r.loc[r["dropped"], "drop_reason"].astype(str).value_counts().to_dict()
    # cam0 at 0.1..3.9 (39); cam1 at 0.13, 0.33, ..., 3.93 (20): 20 pairs, cam0's 0.2, 0.4, ... 3.8 superseded (19)
    assert len(cam1) == 20 and reasons == {"join_superseded": 19}


def test_the_cascade_escalates_its_share_within_a_binomial_interval_to_the_big_executor():
    share, n = 0.3, 2000
    sources = [{"name": "cam", "gateway": "edge", "size_bytes": 1000, "arrivals": {"kind": "poisson", "rate_rps": 100.0}}]
    pipeline = {"cascade": {"cheap": "edge", "big": "cloud", "escalate_share": share}}
    result = simulate(pipeline_config(sources, pipeline, placement=CASCADE_PLACEMENT, num_requests=n, seed=4))
    r = result.requests
    assert not r["dropped"].any()
    escalated = r["escalated"].to_numpy()
    assert abs(escalated.mean() - share) < 3.3 * math.sqrt(share * (1 - share) / n)
    assert (r.loc[escalated, "executor"] == "cloud").all() and (r.loc[~escalated, "executor"] == "edge").all()
    assert len(result.batches) == n + escalated.sum()  # one cheap pass each, a big one for the escalated
    assert result.summary["escalated_share"] == pytest.approx(escalated.mean())


@pytest.mark.parametrize("lazy", [{"read_probability": 0.25, "ref_size_bytes": 64}, {"enabled": False}])
def test_bytes_over_the_link_are_references_plus_reads_times_the_payload_exactly(lazy):
    n, size = 500, 20_000
    sources = [{"name": "cam", "gateway": "edge", "size_bytes": size, "arrivals": {"kind": "poisson", "rate_rps": 50.0}}]
    config = pipeline_config(sources, {"lazy": lazy}, placement={**pipeline_config([], {})["policy"]["placement"], "executor": "cloud"},
                             num_requests=n, seed=2)  # fmt: skip
    simulation = build_simulation(config)
    result = simulation.run()
    model = LazyPayload(**lazy, seed=2)
    reads = sum(model.reads(i, "cam") for i in range(n))
    expected = n * size if lazy.get("enabled") is False else n * 64 + reads * size
    assert result.summary["link_bytes"] == {"edge->cloud": expected}
    assert result.requests["payload_bytes"].sum() == expected
    channel = simulation.gateways["edge"].channels["cloud"]
    assert channel.bytes_sent == expected  # the link model moved exactly what the ledger counts


def test_lazy_reads_cost_one_more_round_trip_on_the_link():
    sources = [{"name": "cam", "gateway": "edge", "size_bytes": 0, "arrivals": {"kind": "poisson", "rate_rps": 1.0}}]
    placement = {"_target_": "policies.placement.StaticPlacement", "executor": "cloud"}
    link = {"delay_s": 0.05, "bandwidth_MBps": 1000.0}
    eager = simulate(pipeline_config(sources, {"lazy": {"enabled": False}}, placement=placement, num_requests=20, link=link))
    lazy = simulate(pipeline_config(sources, {"lazy": {"read_probability": 1.0, "ref_size_bytes": 1}}, placement=placement,
                                    num_requests=20, link=link))  # fmt: skip
    # zero-byte payloads: eager = 50 ms there + 1 ms service + 50 ms back; every lazy read adds 2 x 50 ms
    assert eager.requests["latency_s"].to_numpy() == pytest.approx(np.full(20, 0.101), abs=1e-6)
    assert lazy.requests["latency_s"].to_numpy() == pytest.approx(np.full(20, 0.201), abs=1e-5)


def test_stale_inputs_are_dropped_with_the_reason():
    sources = [{"name": "cam", "gateway": "edge", "size_bytes": 10, "hop_samples_s": [0.05, 0.3],
                "arrivals": {"kind": "poisson", "rate_rps": 20.0}}]  # fmt: skip
    result = simulate(pipeline_config(sources, {"stale": {"max_age_s": 0.2}}, cloud=False, num_requests=400))
    r = result.requests
    too_old = r["hop_s"].to_numpy() > 0.2
    assert 0 < too_old.sum() < len(r)
    assert (r["dropped"].to_numpy() == too_old).all() and set(r.loc[too_old, "drop_reason"].astype(str)) == {"stale"}
    assert result.summary["stale_dropped"] == too_old.sum()


def test_a_bad_pipeline_field_is_named_before_the_run():
    sources = [{"name": "cam", "gateway": "edge", "arrivals": {"kind": "poisson", "rate_rps": 20.0}}]
    with pytest.raises(ConfigError, match=r"pipeline\.join\.sources"):
        build_simulation(pipeline_config(sources, {"join": {"sources": ["cam", "nope"], "max_skew_s": 0.1}}, num_requests=5))
    with pytest.raises(ConfigError, match=r"policy\.placement"):
        build_simulation(pipeline_config(sources, {"cascade": {"cheap": "edge", "big": "cloud", "escalate_share": 0.1}}, num_requests=5))
