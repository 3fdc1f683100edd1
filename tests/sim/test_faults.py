"""Faults in the simulator, with the semantics the live harness shares (tests/live/test_faults.py).

- Serverless failures (``failure_probability``) are retried by the
  ``Scheduler`` up to ``policy.max_retries`` times (the same object drives
  both backends), then dropped as ``retries_exhausted``; ``max_retries: 0``
  keeps the old behaviour (``executor_failed`` at once).
- A link outage (a bandwidth trace at zero): transfers wait; nothing is lost.
- Overload at several times the sustainable rate: the scheduler's queue stays
  bounded by ``max_queue`` and ``max_inflight``, the excess is shed as
  ``queue_full``, and requests after the burst meet their SLO again.
- Bad configuration of the new settings fails before the run, naming the field.
- Both backends' tables have the same columns (``attempt``, ``redelivered``).
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from policies import BatchFailed, BatchFinished, DispatchBatch, DropRequest, Request, RequestArrived, TimerFired
from policies.batching import TimeoutBatching
from policies.placement import StaticPlacement
from policies.scheduler import Scheduler
from sim import build_simulation, simulate
from spec.build import build_cluster
from spec.records import BATCH_COLUMNS, DropReason
from spec.validation import ConfigError
from tests.sim.configs import STATIC, single_queue, timeout_batching, with_changes


def check_retries(result, max_retries: int) -> None:
    """The retry semantics every backend shares, read from a run's tables.

    A failed batch is dispatched again (attempt + 1) with the same requests,
    at most ``max_retries`` times; a request ends completed, or dropped as
    ``retries_exhausted`` after its batch failed on its last allowed attempt
    (``executor_failed`` at once when ``max_retries`` is 0). Failed batches
    have no start or end (they never finished).
    """
    requests, batches = result.requests, result.batches
    assert tuple(batches.columns) == BATCH_COLUMNS
    assert batches["attempt"].between(0, max_retries).all()
    assert (batches["redelivered"] >= 0).all()
    by_id = batches.set_index("batch_id")
    dropped = requests["dropped"].to_numpy(bool)
    reasons = set(requests.loc[dropped, "drop_reason"].astype(str))
    expected = DropReason.RETRIES_EXHAUSTED if max_retries else DropReason.EXECUTOR_FAILED
    assert reasons <= {expected}
    last = by_id.loc[requests["batch_id"].to_numpy()]  # each request's latest try
    assert (last["attempt"].to_numpy()[dropped] == max_retries).all()
    assert last["start_s"].isna().to_numpy()[dropped].all()  # its last try failed
    assert last["start_s"].notna().to_numpy()[~dropped].all()  # its last try finished
    failed = batches["start_s"].isna()
    # every retry follows one failed batch, and every failed batch below the limit was retried
    assert int((batches["attempt"] > 0).sum()) == int((failed & (batches["attempt"] < max_retries)).sum())
    assert result.summary["retries"] == int((batches["attempt"] > 0).sum())


# ---------------------------------------------------------------------------
# retries in the scheduler (pure: no simulator)
# ---------------------------------------------------------------------------


def _scheduler(max_retries: int) -> Scheduler:
    cluster = build_cluster({"executors": [{"name": "fn", "kind": "serverless", "memory_mb": 2048,
                                            "profile": {"kind": "linear", "per_item_s": 0.01, "base_s": 0.0}}]})  # fmt: skip
    return Scheduler(cluster=cluster, placement=StaticPlacement(), batching=TimeoutBatching(max_batch_size=2, max_wait_s=1.0),
                     gateway="edge", max_retries=max_retries)  # fmt: skip


def _two_requests(scheduler: Scheduler) -> DispatchBatch:
    actions = []
    for i in range(2):
        actions += scheduler.handle(RequestArrived(now_s=0.1 * i, request=Request(request_id=i, source="s", arrival_s=0.1 * i, size_bytes=1)))
    (dispatch,) = [a for a in actions if isinstance(a, DispatchBatch)]
    return dispatch


def test_a_failed_batch_is_dispatched_again_up_to_max_retries_then_dropped():
    scheduler = _scheduler(max_retries=2)
    first = _two_requests(scheduler)
    assert first.attempt == 0 and first.memory_mb == 2048
    batch, now_s = first, 0.5
    for attempt in (1, 2):
        actions = scheduler.handle(BatchFailed(now_s=now_s, batch_id=batch.batch_id, executor="fn", reason="executor_failed"))
        (batch,) = actions
        assert isinstance(batch, DispatchBatch)
        assert (batch.attempt, batch.request_ids, batch.executor, batch.memory_mb) == (attempt, (0, 1), "fn", 2048)
        assert batch.batch_id != first.batch_id
        assert scheduler.pending_requests == 2
        assert scheduler.batchers["fn"].batches_in_flight == 1  # still one batch in flight for the batching policy
        now_s += 0.5
    actions = scheduler.handle(BatchFailed(now_s=now_s, batch_id=batch.batch_id, executor="fn", reason="executor_failed"))
    assert [(a.request_id, a.reason) for a in actions if isinstance(a, DropRequest)] == [(0, "retries_exhausted"), (1, "retries_exhausted")]
    assert scheduler.pending_requests == 0 and scheduler.batchers["fn"].batches_in_flight == 0
    assert scheduler.retries == 2


def test_a_retried_batch_that_finishes_ends_its_requests_once():
    scheduler = _scheduler(max_retries=1)
    first = _two_requests(scheduler)
    (retry,) = scheduler.handle(BatchFailed(now_s=0.5, batch_id=first.batch_id, executor="fn", reason="executor_failed"))
    scheduler.handle(BatchFinished(now_s=0.7, batch_id=retry.batch_id, executor="fn", service_s=0.02))
    assert scheduler.pending_requests == 0
    from policies.errors import DriverError

    with pytest.raises(DriverError):  # the failed try is over: reporting it again is a driver bug
        scheduler.handle(BatchFailed(now_s=0.8, batch_id=first.batch_id, executor="fn", reason="executor_failed"))


def test_no_retries_keeps_the_failures_own_reason():
    scheduler = _scheduler(max_retries=0)
    first = _two_requests(scheduler)
    actions = scheduler.handle(BatchFailed(now_s=0.5, batch_id=first.batch_id, executor="fn", reason="executor_failed"))
    assert [a.reason for a in actions if isinstance(a, DropRequest)] == ["executor_failed"] * 2
    assert not [a for a in actions if isinstance(a, DispatchBatch)]


def test_timers_still_work_after_a_retry():
    scheduler = _scheduler(max_retries=1)
    first = _two_requests(scheduler)
    scheduler.handle(BatchFailed(now_s=0.5, batch_id=first.batch_id, executor="fn", reason="executor_failed"))
    actions = scheduler.handle(RequestArrived(now_s=0.6, request=Request(request_id=2, source="s", arrival_s=0.6, size_bytes=1)))
    (timer,) = [a for a in actions if type(a).__name__ == "StartTimer"]
    actions = scheduler.handle(TimerFired(now_s=timer.at_s, timer_id=timer.timer_id))
    assert [a.request_ids for a in actions if isinstance(a, DispatchBatch)] == [(2,)]


# ---------------------------------------------------------------------------
# serverless failures in the simulator
# ---------------------------------------------------------------------------


def failing_pool_config(*, failure_probability: float, max_retries: int | None, num_requests: int = 2000, seed: int = 3) -> dict:
    config = {
        "seed": seed,
        "workload": {"num_requests": num_requests, "sources": [{"name": "cam", "slo_s": 5.0, "arrivals": {"kind": "poisson", "rate_rps": 20}}]},
        "cluster": {"executors": [{
            "name": "fn", "kind": "serverless", "keep_alive_s": 10, "max_instances": 4, "memory_mb": 1024,
            "profile": {"kind": "linear", "per_item_s": 0.01, "base_s": 0.02}, "cold_start": {"kind": "constant", "value_s": 0.5},
            "failure_probability": failure_probability,
        }]},
        "policy": {"placement": STATIC, "batching": timeout_batching(max_batch_size=4, max_wait_s=0.05)},
    }  # fmt: skip
    if max_retries is not None:
        config["policy"]["max_retries"] = max_retries
    return config


@pytest.mark.parametrize("max_retries", [0, 1, 3])
def test_serverless_failures_are_retried_then_dropped_with_a_reason(max_retries):
    p = 0.3
    result = simulate(failing_pool_config(failure_probability=p, max_retries=max_retries))
    check_retries(result, max_retries)
    summary = result.summary
    assert summary["completed"] + summary["dropped"] == 2000 and summary["complete"]
    first_tries = int((result.batches["attempt"] == 0).sum())
    # a batch's requests are lost only when every one of its 1 + max_retries tries failed
    lost_batches = summary["dropped"] / result.batches.loc[result.batches["attempt"] == 0, "size"].mean()
    assert lost_batches == pytest.approx(first_tries * p ** (1 + max_retries), rel=0.5, abs=3)
    assert summary["redelivered"] == 0  # no broker in the simulator


def test_max_retries_defaults_to_zero_and_runs_repeat_bit_for_bit():
    config = failing_pool_config(failure_probability=0.2, max_retries=None, num_requests=500)
    once, again = simulate(config), simulate(config)
    check_retries(once, 0)
    pd.testing.assert_frame_equal(once.requests, again.requests)
    retried = simulate(with_changes(config, **{"policy.max_retries": 2}))
    check_retries(retried, 2)
    assert retried.summary["dropped"] < once.summary["dropped"]


# ---------------------------------------------------------------------------
# a link outage
# ---------------------------------------------------------------------------


def test_a_link_outage_delays_transfers_and_loses_nothing(tmp_path):
    trace = tmp_path / "bw.json"
    trace.write_text(json.dumps([10.0, 10.0, 0.0, 0.0, 0.0] + [10.0] * 25))  # down from 2 s to 5 s
    config = single_queue(rate_rps=50, service_s=0.002, num_requests=400, batching=timeout_batching(max_batch_size=8, max_wait_s=0.02))
    config["workload"]["sources"][0]["size_bytes"] = 20_000
    config["cluster"]["executors"][0].update(kind="cloud", gateway=None)
    config["cluster"]["links"] = {"edge": {"delay_s": 0.01, "bandwidth_trace": str(trace)}}
    result = simulate(config)
    requests = result.requests
    assert result.summary["completed"] == 400 and result.summary["dropped"] == 0
    during = requests[(requests["dispatched_s"] >= 2.0) & (requests["dispatched_s"] < 5.0)]
    assert len(during) > 100
    # nothing crossed the link while it was down: every batch sent in the outage left after it
    assert (during["dispatched_s"] + during["transfer_s"] - 0.01 >= 5.0 - 1e-9).all()
    before = requests[requests["dispatched_s"] < 1.5]
    assert before["latency_s"].max() < 0.2


# ---------------------------------------------------------------------------
# overload
# ---------------------------------------------------------------------------


def _burst_trace(tmp_path, *, base_rps: float, burst_rps: float, before_s: float, burst_s: float, after_s: float) -> str:
    gaps = [1 / base_rps] * int(before_s * base_rps) + [1 / burst_rps] * int(burst_s * burst_rps) + [1 / base_rps] * int(after_s * base_rps)
    path = tmp_path / "burst.json"
    path.write_text(json.dumps(gaps))
    return str(path)


def _max_overlap(start: np.ndarray, end: np.ndarray) -> int:
    """Most intervals [start, end) open at once."""
    events = np.concatenate([np.stack([start, np.ones_like(start)], 1), np.stack([end, -np.ones_like(end)], 1)])
    events = events[np.lexsort((events[:, 1], events[:, 0]))]  # at equal times, ends (-1) before starts
    return int(np.cumsum(events[:, 1]).max()) if len(events) else 0


@pytest.mark.parametrize("batching", [
    {"_target_": "policies.batching.TimeoutBatching", "max_batch_size": 8, "max_wait_s": 0.01, "max_queue": 64, "max_inflight": 1},
    {"_target_": "policies.batching.NoBatching", "max_queue": 64, "max_inflight": 1},
], ids=["timeout", "none"])  # fmt: skip
def test_overload_sheds_with_a_reason_keeps_queues_bounded_and_recovers(tmp_path, batching):
    # capacity: a batch of 8 takes 0.034 s (about 235 requests/s); of 1, 0.006 s (about 165/s)
    path = _burst_trace(tmp_path, base_rps=50, burst_rps=1500, before_s=5, burst_s=20, after_s=10)
    config = single_queue(rate_rps=1, service_s=0.004, batching=batching, arrivals={"kind": "trace", "path": path, "start_offset_s": 0})
    config["cluster"]["executors"][0]["profile"]["base_s"] = 0.002
    config["workload"]["sources"][0]["slo_s"] = 0.5
    config["workload"].pop("num_requests")
    simulation = build_simulation(config)
    peak = {"pending": 0}
    for driver in simulation.gateways.values():  # watch the scheduler's own queue (its memory) through the run
        handle = driver.scheduler.handle

        def watched(event, handle=handle, scheduler=driver.scheduler):
            actions = handle(event)
            peak["pending"] = max(peak["pending"], scheduler.pending_requests)
            return actions

        driver.scheduler.handle = watched
    result = simulation.run()
    requests, summary = result.requests, result.summary
    count = len(requests)
    assert count == 250 + 30_000 + 500
    assert summary["completed"] + summary["dropped"] == count
    # bounded: queued + in flight never above max_queue + max_inflight x batch size
    max_batch = batching.get("max_batch_size", 1)
    assert peak["pending"] <= 64 + max_batch
    dispatched = requests["dispatched_s"].notna().to_numpy()
    queued = _max_overlap(requests["arrival_s"].to_numpy()[dispatched], requests["dispatched_s"].to_numpy()[dispatched])
    assert queued <= 64 + max_batch
    batches = result.batches.sort_values("start_s")
    assert (batches["start_s"].to_numpy()[1:] >= batches["end_s"].to_numpy()[:-1] - 1e-9).all()  # one batch at a time
    # shed with a reason: most of the burst, as queue_full
    assert set(summary["drops_by_reason"]) == {"queue_full"}
    assert summary["dropped"] > 0.75 * 30_000
    # recovered: requests from one second after the burst on all meet the SLO, as before it
    after = requests[requests["arrival_s"] > 5 + 20 + 1.0]
    before = requests[requests["arrival_s"] < 5]
    assert after["met_slo"].all() and before["met_slo"].all()
    print(f"\n[fault figures] sim overload ({batching['_target_'].rsplit('.', 1)[1]}): "
          + json.dumps({"requests": count, "shed": summary["dropped"], "peak_pending": peak["pending"], "max_queued": queued,
                        "p99_after_s": float(after["latency_s"].quantile(0.99))}))  # fmt: skip


# ---------------------------------------------------------------------------
# bad configuration of the fault settings
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(("value", "allowed"), [(-1, "integer >= 0"), (1.5, "integer >= 0"), ("two", "integer >= 0"), (True, "integer >= 0")])
def test_bad_max_retries_names_the_field(value, allowed):
    config = failing_pool_config(failure_probability=0.1, max_retries=value, num_requests=10)
    with pytest.raises(ConfigError) as caught:
        build_simulation(config)
    assert caught.value.field == "policy.max_retries" and allowed in str(caught.value)


@pytest.mark.parametrize("value", [-0.1, 1.5, "often", None])
def test_bad_failure_probability_names_the_field(value):
    config = failing_pool_config(failure_probability=value, max_retries=1, num_requests=10)
    with pytest.raises(ConfigError, match=r"executors\.fn\.failure_probability=.*probability in \[0, 1\]"):
        build_simulation(config)


def test_max_retries_on_the_scheduler_itself_is_checked():
    with pytest.raises(ConfigError, match=r"policy\.max_retries=-2"):
        _scheduler(max_retries=-2)


def test_both_backends_record_the_same_batch_columns():
    result = simulate(failing_pool_config(failure_probability=0.5, max_retries=1, num_requests=50))
    assert tuple(result.batches.columns) == BATCH_COLUMNS
    assert {"attempt", "redelivered"} <= set(BATCH_COLUMNS)
    assert result.batches["attempt"].dtype == np.int32 and result.batches["redelivered"].dtype == np.int32
