"""live.eventlog: a RequestArrived line written straight is the very text the JSON encoder writes."""

from __future__ import annotations

import json
import math

from live.eventlog import EventLog, _arrived_line, _dataclass_to_dict, read_log
from policies.actions import DispatchBatch, StartTimer
from policies.events import Request, RequestArrived
from policies.timer_id import TimerId

ENCODE = json.JSONEncoder(allow_nan=True, separators=(",", ":")).encode


def _general(event, actions) -> str:
    return ENCODE({"event": _dataclass_to_dict(event), "actions": [_dataclass_to_dict(a) for a in actions]})


def _arrived(now_s=0.1 + 0.2, source="cam", deadline_s=1.5, request_id=7):
    return RequestArrived(now_s=now_s, request=Request(request_id=request_id, source=source, arrival_s=1e-300, size_bytes=1024,
                                                       deadline_s=deadline_s))  # fmt: skip


def _scheduler_actions():
    """What a timeout-batching scheduler answers three requests with."""
    from policies.factory import make_scheduler_factory
    from spec.build import build_cluster

    cluster = build_cluster({"executors": [{"name": "edge", "kind": "edge", "gateway": "edge",
                                            "profile": {"kind": "linear", "per_item_s": 0.0002, "base_s": 0.001}}]})  # fmt: skip
    policy = {"placement": {"_target_": "policies.placement.StaticPlacement"},
              "batching": {"_target_": "policies.batching.TimeoutBatching", "max_batch_size": 32, "max_wait_s": 0.005,
                           "max_inflight": 1}}  # fmt: skip
    scheduler = make_scheduler_factory(policy)("edge", cluster)
    return [a for k in range(3) for a in scheduler.handle(_arrived(request_id=k))]


def test_the_straight_line_is_the_encoders_text():
    actions = [*_scheduler_actions(), StartTimer(timer_id=TimerId.batch("edge"), at_s=0.005)]
    assert any(isinstance(a, DispatchBatch) for a in actions)
    for event in (_arrived(), _arrived(source='caméra "1"', now_s=1e300), _arrived(request_id=2**70)):
        for actions in ([], actions[:1], actions):
            assert _arrived_line(event, ENCODE, actions) == _general(event, actions)


def test_what_it_cannot_write_plainly_takes_the_general_way(tmp_path):
    assert _arrived_line(_arrived(deadline_s=math.inf), ENCODE, []) is None  # Infinity
    assert _arrived_line(_arrived(now_s=1), ENCODE, []) is None  # an int where a float is
    log = EventLog(tmp_path / "log.jsonl", "edge")
    events = [_arrived(deadline_s=math.inf), _arrived(), _arrived(now_s=2)]
    for event in events:
        log.record(event, [])
    log.close()
    _, entries = read_log(tmp_path / "log.jsonl")
    assert [e.event for e in entries] == events
