"""spec.recorder: the one recorder, summary and standing cost of both backends, and RunResult."""

from __future__ import annotations

import math
import typing

import numpy as np
import pandas as pd
import pytest

from spec.pricing import HourlyPricing
from spec.profiles import LinearProfile
from spec.recorder import Recorder, busy_s, hourly_servers, run_span_s, standing_cost, summary
from spec.records import BATCH_COLUMNS, DROP_REASONS, REQUEST_COLUMNS
from spec.run_result import RunResult
from spec.topology import Cluster, ServerlessSpec, ServerSpec
from spec.workload import Arrivals, PoissonArrivals, Source

NAN = math.nan


def arrivals(times, slo_s: float = math.inf) -> Arrivals:
    source = Source(name="cam", arrivals=PoissonArrivals(rate_rps=1.0), slo_s=slo_s)
    return Arrivals(arrival_s=np.asarray(times, dtype=float), source_index=np.zeros(len(times), np.int16), sources=(source,))


def feed(recorder: Recorder) -> None:
    """Six requests: two completed in one batch, one retried after a failed batch, one dropped
    after that failure, one dropped for a policy's own reason, one never ended."""
    a = recorder.batch_dispatched(0.10, 0, [0, 1], None)
    recorder.batch_finished(a, 0.11, 0.12, 0.15, 0.16, 0.0, 0.0)
    b = recorder.batch_dispatched(0.20, 0, [2, 3], None)
    recorder.batch_failed(b, cost=0.001)
    c = recorder.batch_dispatched(0.30, 0, [2], None, attempt=1)
    recorder.batch_finished(c, 0.31, 0.32, 0.40, 0.41, 0.0, 0.002)
    recorder.dropped(3, "retries_exhausted")
    recorder.dropped(4, "my_policy_gave_up")


def six() -> Recorder:
    return Recorder(arrivals([0.0, 0.05, 0.15, 0.18, 0.19, 0.25], slo_s=0.3), ["edge"], ["edge"])


def test_every_request_ends_exactly_once_and_the_unfinished_are_listed():
    recorder = six()
    feed(recorder)
    assert recorder.unfinished().tolist() == [5]
    assert recorder.end_unfinished() == 1
    assert recorder.unfinished().tolist() == []
    requests = recorder.requests()
    assert tuple(requests.columns) == REQUEST_COLUMNS
    completed = requests["completed_s"].notna().to_numpy()
    dropped = requests["dropped"].to_numpy(bool)
    assert completed.tolist() == [True, True, True, False, False, False]
    assert (completed ^ dropped).all()  # completed or dropped, never both, never neither
    assert requests["drop_reason"].astype(object).tolist()[3:] == ["retries_exhausted", "my_policy_gave_up", "run_ended"]


def test_a_failed_batch_is_in_the_tables_and_its_requests_point_at_their_latest_try():
    recorder = six()
    feed(recorder)
    batches = recorder.batches()
    assert tuple(batches.columns) == BATCH_COLUMNS
    assert batches["size"].tolist() == [2, 2, 1]
    assert batches["attempt"].tolist() == [0, 0, 1]
    failed = batches.iloc[1]
    assert math.isnan(failed["start_s"]) and math.isnan(failed["end_s"]) and failed["cost"] == pytest.approx(0.001)
    requests = recorder.requests()
    assert requests["batch_id"].tolist() == [0, 0, 2, 1, -1, -1]
    assert not requests["met_slo"].iloc[3]


def test_the_derived_columns_add_up():
    recorder = six()
    feed(recorder)
    r = recorder.requests().iloc[2]  # arrived 0.15, dispatched 0.30, at the executor 0.31, served 0.32-0.40, back 0.41
    assert r["transfer_s"] == pytest.approx((0.31 - 0.30) + (0.41 - 0.40))
    assert r["service_s"] == pytest.approx(0.08)
    assert r["latency_s"] == pytest.approx(0.41 - 0.15)
    assert r["queue_s"] == pytest.approx(0.30 - 0.15 + (0.32 - 0.31))
    assert r["hop_s"] == 0.0
    assert r["transfer_s"] + r["hop_s"] + r["queue_s"] + r["cold_start_s"] + r["service_s"] == pytest.approx(r["latency_s"])
    assert r["cost"] == pytest.approx(0.002)
    assert r["met_slo"]  # deadline 0.45
    first = recorder.requests().iloc[:2]
    assert first["cost"].tolist() == [0.0, 0.0] and first["batch_size"].tolist() == [2, 2]


def test_hops_have_their_own_column_and_leave_the_queue_and_the_link():
    # one request with a 5 ms source hop; its batch: dispatched 0.105, off a 10 ms link 0.115, a 2 ms hop
    # there, served 0.117-0.127, a 3 ms hop back, a 10 ms link back: completed 0.140
    source = Source(name="cam", arrivals=PoissonArrivals(rate_rps=1.0), hop_s=0.005)
    recorder = Recorder(Arrivals(arrival_s=np.array([0.1]), source_index=np.zeros(1, np.int16), sources=(source,)), ["e"], ["edge"])
    batch = recorder.batch_dispatched(0.105, 0, [0], None)
    recorder.batch_finished(batch, 0.115, 0.117, 0.127, 0.140, 0.0, 0.0, hop_s=0.002 + 0.003, hop_back_s=0.003)
    r = recorder.requests(source_hops=True).iloc[0]
    assert r["hop_s"] == pytest.approx(0.005 + 0.002 + 0.003)
    assert r["transfer_s"] == pytest.approx(0.010 + 0.010)
    assert r["queue_s"] == pytest.approx(0.0, abs=1e-12)
    assert r["transfer_s"] + r["hop_s"] + r["queue_s"] + r["service_s"] == pytest.approx(r["latency_s"])
    # a backend that does not time the source's hop apart (live) leaves it in the queue
    assert recorder.requests().iloc[0]["queue_s"] == pytest.approx(0.005)


def test_hops_of_later_batches_leave_earlier_ones_at_zero():
    recorder = Recorder(arrivals([0.0, 1.0, 2.0]), ["near", "far"], ["edge", "edge"])
    for request_id, executor, hop_s in ((0, 0, 0.0), (1, 1, 0.02), (2, 0, 0.0)):
        batch = recorder.batch_dispatched(float(request_id), executor, [request_id], None)
        recorder.batch_finished(batch, request_id, request_id, request_id + 0.1, request_id + 0.1 + hop_s / 2, 0.0, 0.0,
                                hop_s=hop_s, hop_back_s=hop_s / 2)  # fmt: skip
    requests = recorder.requests()
    assert requests["hop_s"].tolist() == [0.0, 0.02, 0.0]
    np.testing.assert_allclose(requests["transfer_s"], 0.0, atol=1e-12)


def test_unlisted_drop_reasons_are_kept_by_name_after_the_listed_ones():
    recorder = Recorder(arrivals([0.0, 1.0, 2.0, 3.0]), ["edge"], ["edge"])
    recorder.dropped(0, "zeta")
    recorder.dropped(1, "deadline")
    recorder.dropped(2, "alpha")
    recorder.dropped(3, "zeta")
    reasons = recorder.requests()["drop_reason"]
    assert reasons.astype(object).tolist() == ["zeta", "deadline", "alpha", "zeta"]
    assert list(reasons.cat.categories) == [*DROP_REASONS, "zeta", "alpha"]  # in the order they first occur


def test_renumbering_puts_batches_in_the_drivers_order():
    recorder = Recorder(arrivals([0.0, 1.0]), ["edge"], ["edge"])
    late = recorder.batch_opened(0.5, 0, 1, None)
    recorder.attribute([1], late)
    recorder.batch_finished(late, 0.5, 0.5, 0.6, 0.7, 0.0, 0.0)
    early = recorder.batch_opened(0.1, 0, 1, None)
    recorder.attribute([0], early)
    recorder.batch_finished(early, 0.1, 0.1, 0.2, 0.3, 0.0, 0.0)
    renumber = np.array([1, 0])
    assert recorder.batches(renumber)["start_s"].tolist() == [0.1, 0.5]
    assert recorder.batches(renumber)["batch_id"].tolist() == [0, 1]
    assert recorder.requests(renumber)["batch_id"].tolist() == [0, 1]


def _cluster(price_per_hour: float, slots: int) -> Cluster:
    profile = LinearProfile(per_item_s=0.01, base_s=0.0)
    return Cluster(executors=[
        ServerSpec(name="cloud", kind="cloud", profile=profile, pricing=HourlyPricing(price_per_hour=price_per_hour), slots=slots),
        ServerlessSpec(name="fn", profile=profile, pricing=HourlyPricing(price_per_hour=1000.0)),  # a pool: never standing
    ])  # fmt: skip


def test_standing_cost_of_an_hourly_server_is_its_idle_time():
    # 36 per hour = 0.01 per second; 2 slots over a 100 s span, busy 20 + 10 s
    recorder = Recorder(arrivals([0.0, 50.0]), ["cloud", "fn"], ["cloud", "serverless"])
    one = recorder.batch_dispatched(0.0, 0, [0], None)
    recorder.batch_finished(one, 0.0, 0.0, 20.0, 20.0, 0.0, 0.2)
    two = recorder.batch_dispatched(50.0, 0, [1], None)
    recorder.batch_finished(two, 50.0, 50.0, 60.0, 100.0, 0.0, 0.1)  # the result comes back at 100 s
    requests, batches = recorder.requests(), recorder.batches()
    assert run_span_s(recorder.arrivals, requests) == 100.0
    assert busy_s(batches, "cloud") == 30.0
    servers = hourly_servers(_cluster(36.0, slots=2))
    assert list(servers) == ["cloud"] and servers["cloud"][1] == 2
    assert standing_cost(batches, span_s=100.0, servers=servers) == pytest.approx(2 * 1.0 - 0.3)
    result = summary(requests, batches, arrivals=recorder.arrivals, servers=servers, complete=True,
                     plans=[{"trigger": "initial"}, {"trigger": "changepoint"}])  # fmt: skip
    assert result["batch_cost"] == pytest.approx(0.3)
    assert result["total_cost"] == pytest.approx(0.3 + 1.7)
    assert result["replans"] == 1 and result["complete"] is True
    # live pays for its worker processes, not the configured slots
    one_worker = hourly_servers(_cluster(36.0, slots=2), units={"cloud": 1})
    assert standing_cost(batches, span_s=100.0, servers=one_worker) == pytest.approx(1.0 - 0.3)


def test_busy_time_is_summed_in_the_order_batches_ended():
    # floating point: 2**53 + 1 + 1 is 2**53, 1 + 1 + 2**53 is 2**53 + 2 (the simulator adds as batches end)
    big = 2.0**53
    recorder = Recorder(arrivals([0.0, 0.0, 0.0]), ["cloud"], ["cloud"])
    for request_id, (start, end) in enumerate([(0.0, big), (-2.0, -1.0), (-1.0, 0.0)]):
        b = recorder.batch_dispatched(0.0, 0, [request_id], None)
        recorder.batch_finished(b, 0.0, start, end, end, 0.0, 0.0)
    running = 0.0
    for d in [1.0, 1.0, big]:  # in the order they ended
        running += d
    assert running == big + 2.0
    assert busy_s(recorder.batches(), "cloud") == running


def test_both_backends_return_a_run_result():
    from sim import simulate

    result = simulate({
        "seed": 1,
        "workload": {"num_requests": 50, "sources": [{"name": "cam", "arrivals": {"kind": "poisson", "rate_rps": 50}}]},
        "cluster": {"executors": [{"name": "edge", "kind": "edge", "profile": {"kind": "linear", "per_item_s": 0.001, "base_s": 0.002},
                                   "pricing": {"kind": "hourly", "price_per_hour": 3.6}}]},
        "policy": {"placement": {"_target_": "policies.placement.StaticPlacement"},
                   "batching": {"_target_": "policies.batching.NoBatching"}},
    })  # fmt: skip
    assert type(result) is RunResult
    # the simulator's summary is spec.recorder.summary of its own tables
    again = summary(result.requests, result.batches, arrivals=arrivals(result.requests["arrival_s"]),
                    servers={"edge": (HourlyPricing(price_per_hour=3.6), 1)}, complete=True)  # fmt: skip
    assert {k: v for k, v in result.summary.items() if k != "wall_s"} == again
    assert result.summary["total_cost"] > result.summary["batch_cost"] > 0

    local = pytest.importorskip("live.deploy.local")
    assert typing.get_type_hints(local.run_live)["return"] is RunResult
    assert not hasattr(local, "LiveResult")


def test_the_live_sink_records_exactly_what_the_simulators_recorder_does():
    """The same facts, as records (out of order, duplicated), give the sink the same tables."""
    messages = pytest.importorskip("live.wire.messages")
    from live.config import build_run
    from live.roles.sink import SinkState

    spec = build_run({
        "seed": 2,
        "workload": {"num_requests": 6, "sources": [{"name": "cam", "slo_s": 0.3, "arrivals": {"kind": "poisson", "rate_rps": 20}}]},
        "cluster": {"executors": [{"name": "edge", "kind": "edge", "gateway": "edge", "profile": {"kind": "linear", "per_item_s": 0.001, "base_s": 0.0}}]},
        "policy": {"placement": {"_target_": "policies.placement.StaticPlacement"}, "batching": {"_target_": "policies.batching.NoBatching"}},
        "live": {"model": "mlp"},
    })  # fmt: skip
    recorder = Recorder(spec.arrivals, ["edge"], ["edge"])
    feed(recorder)
    recorder.end_unfinished()

    def result(key, ids, d, a, s, e, c, cost, attempt=0):
        ts = {"dispatched_s": d, "arrived_s": a, "start_s": s, "end_s": e, "completed_s": c}
        meta = {"executor": "edge", "memory_mb": 0, "cost": cost, "cold_start_s": 0.0, "attempt": attempt}
        return messages.decode(messages.encode_result(key, [str(i) for i in ids], source="edge", ts=ts, meta=meta))

    failed = messages.decode(messages.encode(messages.Message(
        kind=messages.Kind.CONTROL, ids=("2", "3"), sizes=(0, 0), source="edge", trace_id="edge:1",
        ts={"dispatched_s": 0.20, "completed_s": 0.25},
        meta={"executor": "edge", "memory_mb": 0, "cost": 0.001, "cold_start_s": 0.0, "attempt": 0,
              "op": messages.ControlOp.BATCH_FAILED.value, "batch_id": "edge:1", "reason": "executor_failed"},
    )))  # fmt: skip
    records = [
        result("edge:2", [2], 0.30, 0.31, 0.32, 0.40, 0.41, 0.002, attempt=1),
        failed,
        result("edge:0", [0, 1], 0.10, 0.11, 0.12, 0.15, 0.16, 0.0),
        messages.decode(messages.encode_drop(["3"], "retries_exhausted", source="edge")),
        result("edge:0", [0, 1], 0.10, 0.11, 0.12, 0.15, 0.16, 0.0),  # delivered twice
        messages.decode(messages.encode_drop(["4"], "my_policy_gave_up", source="edge")),
    ]
    sink = SinkState(spec)
    for record in records:
        assert sink.add(record) is None
    assert sink.duplicates == 2
    assert sink.finish() == 1
    pd.testing.assert_frame_equal(sink.batches_table(), recorder.batches())
    # the failed batch's uplink time is known live (NaN in the simulator); it shows in no column
    pd.testing.assert_frame_equal(sink.requests_table(), recorder.requests())
    live = sink.summary(sink.requests_table(), sink.batches_table(), complete=True)
    assert live.pop("duplicate_records") == 2
    requests, batches = recorder.requests(), recorder.batches()
    assert live == summary(requests, batches, arrivals=spec.arrivals, servers=hourly_servers(spec.cluster), complete=True)
