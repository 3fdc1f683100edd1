"""Live pipelines (live.roles.pipeline_*): joins, lazy bytes, cascades and stale drops on a real broker and real PyTorch.

The same hand-computed expectations as the simulator's (tests/sim/test_pipeline.py): two cameras 30 ms
apart join pairwise within a 50 ms skew; bytes over the emulated uplink are references plus reads times
the payload exactly; the cascade's escalated share lies within a binomial interval of the set share;
inputs older than max_age_s are dropped as stale. Each run is a few seconds of workload.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from live.deploy.local import run_live
from spec.lazy_payload import LazyPayload
from tests.pipeline_configs import CASCADE_PLACEMENT, pipeline_config, trace

pytestmark = pytest.mark.live

LIVE = {"model": "mlp", "timeout_s": 60, "startup_timeout_s": 60}
N = 30


def _live(config, broker) -> dict:
    config["live"] = {**LIVE, "broker": {"url": broker.url}}
    return config


def test_live_cameras_join_pairwise_and_lazy_bytes_are_refs_plus_reads(broker, tmp_path):
    size = 2000
    sources = [
        {"name": "cam0", "gateway": "edge", "size_bytes": size, "arrivals": trace(tmp_path, "a", [0.1] * N)},
        {"name": "cam1", "gateway": "edge", "size_bytes": size, "arrivals": trace(tmp_path, "b", [0.13] + [0.1] * (N - 1))},
    ]
    pipeline = {"join": {"sources": ["cam0", "cam1"], "max_skew_s": 0.05}, "lazy": {"read_probability": 0.5, "ref_size_bytes": 64}}
    placement = {"_target_": "policies.placement.StaticPlacement", "executor": "cloud"}
    config = _live(pipeline_config(sources, pipeline, placement=placement, seed=1), broker)
    result = run_live(config, tmp_path / "run")
    r = result.requests
    assert len(r) == 2 * N and not r["dropped"].any(), r["drop_reason"].value_counts()
    by_task = r.groupby("task_id")["arrival_s"]
    assert (by_task.count() == 2).all() and len(by_task) == N
    assert (by_task.max() - by_task.min()).to_numpy() == pytest.approx(np.full(N, 0.03))
    assert result.batches["size"].sum() == N
    model = LazyPayload(read_probability=0.5, ref_size_bytes=64, seed=1)
    reads = sum(model.reads(i, "") for i in range(2 * N))
    assert result.summary["link_bytes"] == {"edge->cloud": 2 * N * 64 + reads * size}
    assert r["payload_bytes"].sum() == 2 * N * 64 + reads * size


def test_live_cascade_escalates_its_share_to_the_big_model(broker, tmp_path):
    share, n = 0.3, 300
    sources = [{"name": "cam", "gateway": "edge", "size_bytes": 256, "arrivals": {"kind": "poisson", "rate_rps": 100.0}}]
    pipeline = {"cascade": {"cheap": "edge", "big": "cloud", "escalate_share": share}}
    batching = {"_target_": "policies.batching.TimeoutBatching", "max_batch_size": 8, "max_wait_s": 0.01}
    config = _live(pipeline_config(sources, pipeline, placement=CASCADE_PLACEMENT, num_requests=n, seed=4, batching=batching), broker)
    result = run_live(config, tmp_path / "run")
    r = result.requests
    assert not r["dropped"].any()
    escalated = r["escalated"].to_numpy()
    assert abs(escalated.mean() - share) < 3.3 * math.sqrt(share * (1 - share) / n)
    assert (r.loc[escalated, "executor"] == "cloud").all() and (r.loc[~escalated, "executor"] == "edge").all()
    assert (r["latency_s"] > 0).all()


def test_live_stale_inputs_are_dropped_with_the_reason(broker, tmp_path):
    sources = [{"name": "cam", "gateway": "edge", "size_bytes": 64, "arrivals": {"kind": "poisson", "rate_rps": 50.0}}]
    # no message crosses the broker in under a microsecond: every input is stale when the gateway takes it
    config = _live(pipeline_config(sources, {"stale": {"max_age_s": 1e-6}}, cloud=False, num_requests=40), broker)
    result = run_live(config, tmp_path / "run")
    assert result.summary["drops_by_reason"] == {"stale": 40} and result.summary["stale_dropped"] == 40


def _record(key, ids, executor, tasks, t_s, escalating=()):
    from live.wire.messages import decode, encode_result

    ts = {"dispatched_s": t_s, "arrived_s": t_s, "start_s": t_s + 0.001, "end_s": t_s + 0.002, "service_s": 0.001, "completed_s": t_s + 0.003}
    meta = {"executor": executor, "memory_mb": 0, "cost": 0.0, "cold_start_s": 0.0, "tasks": tasks,
            "pipeline": {"task_id": list(ids), "join_wait_s": [0.0] * len(ids), "escalating": list(escalating),
                         "link": "edge->cloud" if executor == "cloud" else None, "bytes": [100] * len(ids)}}  # fmt: skip
    return decode(encode_result(key, [str(i) for i in ids], source="edge", ts=ts, meta=meta))


def test_the_sink_ends_an_escalated_input_with_the_big_models_batch_only():
    from live.config import build_run
    from live.roles.pipeline_sink import sink_state

    sources = [{"name": "cam", "gateway": "edge", "size_bytes": 10, "arrivals": {"kind": "poisson", "rate_rps": 10.0}}]
    config = pipeline_config(sources, {"cascade": {"cheap": "edge", "big": "cloud", "escalate_share": 0.5}}, placement=CASCADE_PLACEMENT,
                             num_requests=3)  # fmt: skip
    config["live"] = dict(LIVE)
    sink = sink_state(build_run(config))
    cheap = _record("edge:0", [0, 1, 2], "edge", 3, 1.0, escalating=[1])
    sink.add(cheap)
    sink.add(cheap)  # at-least-once: a duplicate
    assert not sink.done and sink.ended.tolist() == [True, False, True]
    sink.add(_record("edge:1", [1], "cloud", 1, 1.1))
    assert sink.done
    r, b = sink.requests_table(), sink.batches_table()
    assert b["size"].tolist() == [3, 1]  # tasks per batch
    assert r["executor"].astype(str).tolist() == ["edge", "cloud", "edge"]
    assert r["escalated"].tolist() == [False, True, False]
    assert r["payload_bytes"].tolist() == [0, 100, 0]  # only the cloud batch crossed a link
    assert r.loc[1, "latency_s"] == pytest.approx(1.103 - sink.spec.arrivals.arrival_s[1])
    assert sink.summary(r, b, complete=True)["link_bytes"] == {"edge->cloud": 100}
