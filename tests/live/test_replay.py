"""A recorded live event log replays into a fresh policy with the same actions (DESIGN.md).

Two real short live runs on the session's embedded broker, each with
``live.event_log: true``: timeout batching on an edge server, and AIMD
batching (which learns from the measured service times of BatchFinished)
under weighted placement and the edge-first planner on an edge + serverless
cluster (plans, arrival-rate and bandwidth telemetry). Each gateway's log is
replayed, event by event, into a scheduler built afresh from the same config;
the actions must be identical. And the check can fail: one altered logged
event (a timestamp, a service time) gives different actions.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math

import pytest

from policies.timer_id import TimerId

from live.config import build_run
from live.eventlog import (
    EventLog,
    LogEntry,
    action_from_dict,
    action_to_dict,
    canonical,
    event_from_dict,
    event_to_dict,
    first_mismatch,
    log_path,
    read_log,
)
from live.deploy.local import run_live
from policies.actions import CancelTimer, DispatchBatch, DropRequest, NotePlan, StartTimer
from policies.events import (
    ArrivalRateMeasured,
    BandwidthMeasured,
    BatchFailed,
    BatchFinished,
    InstanceStateChanged,
    Request,
    RequestArrived,
    RequestsArrived,
    TimerFired,
)
from policies.factory import make_scheduler_factory
from policies.plan import Plan
from spec.build import build_cluster
from spec.validation import ConfigError
from tests.live.test_harness import edge_config

AIMD_SLO_S = 0.05


def timeout_config(num_requests: int = 120, rate_rps: float = 60.0) -> dict:
    """The harness tests' edge run (timeout batching), with its own seed and the event log on."""
    config = edge_config(num_requests=num_requests, rate_rps=rate_rps)
    config["seed"] = 5
    config["live"]["event_log"] = True
    return config


def planner_config() -> dict:
    """Edge + serverless, weighted placement carrying the edge-first planner's plans, AIMD batching.

    At 60 req/s the plan keeps everything on the edge (the serverless pool
    starts no instance), re-planning every second from the telemetry.
    """
    config = timeout_config(num_requests=150, rate_rps=60.0)
    config["cluster"] = {
        "executors": [
            {"name": "edge", "kind": "edge", "gateway": "edge", "profile": {"kind": "linear", "per_item_s": 0.0005, "base_s": 0.002}},
            {"name": "lambda", "kind": "serverless", "keep_alive_s": 30, "memory_mb": 1024,
             "profile": {"kind": "linear", "per_item_s": 0.0005, "base_s": 0.002},
             "pricing": {"kind": "serverless", "price_per_gb_s": 0.0000166667, "per_invocation": 0.0000002}},
        ],
        "links": {"lambda": {"delay_s": 0.01, "bandwidth_MBps": 20.0}},
    }
    config["policy"] = {
        "placement": {"_target_": "policies.placement.WeightedPlacement"},
        "batching": {"_target_": "policies.batching.AIMDBatching", "slo_s": AIMD_SLO_S, "max_batch_size": 16,
                     "initial_batch_size": 1, "max_wait_s": 0.01},
        "planner": {"_target_": "policies.planning.EdgeFirstPlanner", "slo_s": 0.5, "nominal_rate_rps": 60.0,
                    "request_size_bytes": 256, "period_s": 1.0},
    }  # fmt: skip
    config["live"]["telemetry_period_s"] = 0.5
    return config


def fresh_scheduler(config: dict, gateway: str):
    """A scheduler built from the config alone, exactly as both backends build theirs."""
    return make_scheduler_factory(config["policy"])(gateway, build_cluster(config["cluster"]))


def _run(broker, tmp_path_factory, config, name):
    config = copy.deepcopy(config)
    config["live"]["broker"] = {"url": broker.url}
    out = tmp_path_factory.mktemp(name)
    result = run_live(config, out)
    header, entries = read_log(log_path(out, "edge"))
    return config, result, header, entries


@pytest.fixture(scope="module")
def timeout_run(broker, tmp_path_factory):
    return _run(broker, tmp_path_factory, timeout_config(), "replay-timeout")


@pytest.fixture(scope="module")
def planner_run(broker, tmp_path_factory):
    return _run(broker, tmp_path_factory, planner_config(), "replay-planner")


def _types(entries, kind):
    return [e for e in entries if isinstance(e.event, kind)]


def _dispatched(entries) -> list[int]:
    return sorted(r for e in entries for a in e.actions if a["type"] == "DispatchBatch" for r in a["request_ids"])


# ---------------------------------------------------------------------------
# timeout batching
# ---------------------------------------------------------------------------


@pytest.mark.live
def test_timeout_log_covers_the_run(timeout_run):
    config, result, header, entries = timeout_run
    count = config["workload"]["num_requests"]
    assert header["gateway"] == "edge" and header["version"] == 1
    assert result.summary["complete"] is True and result.summary["completed"] == count
    # one RequestArrived per request, or one RequestsArrived for several the gateway read together
    arrived = [e.event.request.request_id for e in _types(entries, RequestArrived)]
    arrived += [r.request_id for e in _types(entries, RequestsArrived) for r in e.event.requests]
    assert sorted(arrived) == list(range(count))
    assert len(_types(entries, BatchFinished)) == len(result.batches)
    assert _types(entries, TimerFired), "timeout batching at this rate fires timers"
    assert _dispatched(entries) == list(range(count))  # every request dispatched exactly once
    times = [e.event.now_s for e in entries if e.event is not None]
    assert times == sorted(times)


@pytest.mark.live
def test_timeout_log_replays_to_the_same_actions(timeout_run):
    config, _, _, entries = timeout_run
    assert first_mismatch(entries, fresh_scheduler(config, "edge")) is None


@pytest.mark.live
def test_an_altered_timestamp_changes_the_actions(timeout_run):
    config, _, _, entries = timeout_run
    first = next(i for i, e in enumerate(entries) if isinstance(e.event, RequestArrived))
    event = entries[first].event
    later = dataclasses.replace(event.request, arrival_s=event.request.arrival_s + 0.001)
    altered = list(entries)
    altered[first] = LogEntry(dataclasses.replace(event, request=later), None, entries[first].actions)
    mismatch = first_mismatch(altered, fresh_scheduler(config, "edge"))
    assert mismatch is not None
    index, logged, replayed = mismatch
    assert index == first  # the first request's wait timer starts 1 ms later
    assert logged[0]["type"] == replayed[0]["type"] == "StartTimer"
    assert replayed[0]["at_s"] == pytest.approx(logged[0]["at_s"] + 0.001)


# ---------------------------------------------------------------------------
# AIMD batching, weighted placement, edge-first planner
# ---------------------------------------------------------------------------


@pytest.mark.live
def test_planner_log_replays_to_the_same_actions(planner_run):
    config, result, _, entries = planner_run
    count = config["workload"]["num_requests"]
    assert result.summary["completed"] == count
    assert _dispatched(entries) == list(range(count))
    # the planner's inputs and outputs are in the log
    assert _types(entries, ArrivalRateMeasured) and _types(entries, BandwidthMeasured)
    notes = [a for e in entries for a in e.actions if a["type"] == "NotePlan"]
    assert notes and notes[0]["plan"]["trigger"] == "initial"
    assert all(a["executor"] == "edge" for e in entries for a in e.actions if a["type"] == "DispatchBatch")
    assert first_mismatch(entries, fresh_scheduler(config, "edge")) is None


@pytest.mark.live
def test_an_altered_service_time_changes_aimds_actions(planner_run):
    """AIMD cuts its batch size after a batch that overran its SLO: a logged service time matters."""
    config, _, _, entries = planner_run
    probe = fresh_scheduler(config, "edge")
    target = None
    for index, entry in enumerate(entries):
        if entry.event is None:
            break
        if isinstance(entry.event, BatchFinished) and probe.batchers["edge"].batch_size >= 2 and entry.event.service_s <= AIMD_SLO_S:
            target = index
            break
        probe.handle(entry.event)
    assert target is not None, "AIMD never grew past a batch of 1 in this run"
    event = entries[target].event
    altered = list(entries)
    altered[target] = LogEntry(dataclasses.replace(event, service_s=10 * AIMD_SLO_S), None, entries[target].actions)
    mismatch = first_mismatch(altered, fresh_scheduler(config, "edge"))
    assert mismatch is not None and mismatch[0] >= target


# ---------------------------------------------------------------------------
# broker-free: the codec, the config setting
# ---------------------------------------------------------------------------


def test_codec_round_trips_every_event_and_action(tmp_path):
    request = Request(request_id=7, source="cam", arrival_s=0.1 + 0.2, size_bytes=1024, deadline_s=math.inf)
    events = [
        RequestArrived(now_s=0.30000000000000004, request=request),
        RequestArrived(now_s=0.31, request=Request(request_id=8, source="cam", arrival_s=0.31, size_bytes=0)),
        TimerFired(now_s=0.32, timer_id=TimerId.batch("edge"), late_s=1e-5),
        BatchFinished(now_s=0.4, batch_id=0, executor="edge", service_s=0.0012345678901234),
        BatchFailed(now_s=0.5, batch_id=1, executor="edge", reason="executor_failed"),
        BandwidthMeasured(now_s=1.0, executor="lambda", bandwidth_MBps=0.0),
        ArrivalRateMeasured(now_s=1.0, rate_rps=61.5),
        InstanceStateChanged(now_s=1.5, executor="lambda", warm_instances=2),
    ]
    plan = Plan(batch_size={"edge": 15}, memory_mb={"lambda": 1024}, weights={"edge": 1.0, "lambda": 0.0}, trigger="periodic",
                detail={"rate_rps": 61.5, "reason": "edge_only", "nan": math.nan})  # fmt: skip
    actions = [
        DispatchBatch(batch_id=3, executor="edge", request_ids=(7, 8), memory_mb=None),
        StartTimer(timer_id=TimerId.batch("edge"), at_s=0.33),
        CancelTimer(timer_id=TimerId.plan()),
        DropRequest(request_id=9, reason="deadline"),
        NotePlan(at_s=1.0, plan=plan, trigger="periodic"),
    ]
    for event in events:
        data = json.loads(json.dumps(event_to_dict(event)))
        assert data["type"] == type(event).__name__
        assert event_from_dict(data) == event
    assert event_to_dict(events[0])["request"]["type"] == "Request"
    for action in actions:
        data = json.loads(json.dumps(action_to_dict(action)))
        back = action_from_dict(data)
        assert type(back) is type(action)
        assert canonical([back]) == canonical([action])
        if not isinstance(action, NotePlan):
            assert back == action
    assert action_to_dict(actions[-1])["plan"]["batch_size"] == {"edge": 15}
    path = tmp_path / "log.jsonl"
    with EventLog(path, "edge") as log:
        log.record(events[0], actions[:2])
        log.record_close(2.0, actions[3:4])
    header, entries = read_log(path)
    assert header["gateway"] == "edge"
    assert entries[0].event == events[0] and entries[0].close_s is None
    assert entries[1].event is None and entries[1].close_s == 2.0
    assert canonical(entries[0].actions) == canonical(actions[:2])


def test_event_log_setting_is_checked():
    config = timeout_config()
    assert build_run(config).settings.event_log is True
    config["live"]["event_log"] = "yes"
    with pytest.raises(ConfigError) as error:
        build_run(config)
    assert error.value.field == "live.event_log"
    del config["live"]["event_log"]
    assert build_run(config).settings.event_log is False
