"""A gateway restarted after a crash replays its predecessor's event log (live.roles.gateway_replay).

Broker-free: two in-process gateways on a fake clock. The first runs a
planner-driven config, commits its log part way, records more (lost at the
"kill"), and a torn line is appended; the second replays the log and must
hold exactly the committed state (plan in force, requests held and ended,
batches in flight), take no request twice, republish the batches in flight
once their payloads are back, and accept its predecessor's results of them.
A log altered after the fact fails the replay loudly.
"""

from __future__ import annotations

import json
import logging

import pytest

from live.config import Topics, build_run
from live.eventlog import EventLog, log_path, read_log, recover_log
from live.roles.gateway import Gateway
from live.roles.gateway_replay import open_event_log
from live.wire.messages import Kind, decode, encode_request, encode_result
from tests.live.test_replay import planner_config

BATCHES = Topics("unit").batches


class _Clock:
    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t


def _gateway(spec, clock, sent, incarnation=0):
    return Gateway(spec, "edge", Topics("unit"), lambda topic, data, properties=None: sent.append((topic, data)), clock,
                   incarnation=incarnation)  # fmt: skip


def _request(spec, i):
    arrival_s = float(spec.arrivals.arrival_s[i])
    return encode_request(str(i), bytes([i % 251]) * 64, source="cam", sent_s=arrival_s, ts={"arrival_s": arrival_s})


def _answer(gateway, clock, sent, done: set, *, skip=()):
    """Results for every batch published so far (but those in ``skip``)."""
    for topic, data in list(sent):
        message = decode(data)
        if message.kind is not Kind.BATCH or message.batch_id in done or message.batch_id in skip:
            continue
        done.add(message.batch_id)
        clock.t += 0.001
        executor = message.meta["executor"]
        gateway.on_result(encode_result(message.batch_id, list(message.ids), source="w", meta={"executor": executor},
                                        ts={"start_s": clock.t, "end_s": clock.t + 0.002, "service_s": 0.002}))  # fmt: skip
        gateway.poll()


def _drive(gateway, spec, clock, sent, ids, done, skip=()):
    for i in ids:
        clock.t = max(clock.t, float(spec.arrivals.arrival_s[i]))
        gateway.on_request(_request(spec, i))
        gateway.poll()
        _answer(gateway, clock, sent, done, skip=skip)


@pytest.fixture
def crashed(tmp_path):
    """The first gateway's log after a kill: committed at request 200, then 20 more requests (lost), then a torn line."""
    config = planner_config()
    config["workload"]["num_requests"] = 300
    config["policy"]["planner"]["nominal_rate_rps"] = 10.0  # its prior; the rate it measures is 60 req/s
    spec = build_run(config)
    clock, sent, done = _Clock(), [], set()
    first = _gateway(spec, clock, sent)
    path = log_path(tmp_path, "edge")
    first.event_log = EventLog(path, "edge")
    _drive(first, spec, clock, sent, range(200), done)
    for i in (200, 201, 202):  # queued, then dispatched; their batch gets no result before the kill
        clock.t = float(spec.arrivals.arrival_s[i])
        first.on_request(_request(spec, i))
    clock.t += 1.0
    first.poll()
    in_flight = {decode(d).batch_id for _, d in sent if decode(d).kind is Kind.BATCH} - done
    first.event_log.commit()  # what the broker has stored records of
    committed = {"plan": first.scheduler.plan.as_dict(), "ended": first.ended, "arrived": first.arrivals_seen, "in_flight": in_flight,
                 "plans": len(first.plans), "batches": first.counts["batches"]}  # fmt: skip
    _drive(first, spec, clock, sent, range(203, 223), done, skip=in_flight)  # recorded, never committed: lost at the kill
    first.event_log._lines.clear()
    with open(path, "ab") as fp:
        fp.write(b'{"event":{"type":"RequestArr')  # torn by the kill
    return spec, path, clock, committed


def test_a_restarted_gateway_rebuilds_the_committed_state_and_reconciles(crashed):
    spec, path, clock, committed = crashed
    assert committed["plans"] >= 2 and committed["in_flight"]  # the planner re-planned from its prior; a batch was out
    clock.t += 2.0
    sent, done = [], set()
    second = _gateway(spec, clock, sent, incarnation=1)
    log, stats = open_event_log(second, path, 1, ended_before=[])
    second.event_log = log
    assert stats["status"] == "replayed" and stats["torn_line"] is True
    assert second.scheduler.plan.as_dict() == committed["plan"] and stats["plan_in_force"]["weights"] == committed["plan"]["weights"]
    assert (second.arrivals_seen, second.ended) == (committed["arrived"], committed["ended"])
    assert stats["in_flight"] == len(committed["in_flight"]) and stats["held"] == committed["arrived"] - committed["ended"]
    assert second.counts["batches"] == committed["batches"] + len(committed["in_flight"])  # the batch in flight goes again
    assert not [d for _, d in sent if decode(d).kind is Kind.BATCH]  # in flight, but its payloads are not back yet
    # the broker delivers every unacknowledged request again: held ones are kept, not taken twice; ended ones acknowledged
    assert second.replay.missing() == [200, 201, 202]
    # requests logged after the last commit are new to it: taken as usual, their batches numbered after the parked one
    _drive(second, spec, clock, sent, range(203, 208), done)
    assert second.arrivals_seen == committed["arrived"] + 5 and second.ended == committed["ended"] + 5
    assert second.counts["dead_letters"] == 0  # their results are not taken for batches never dispatched
    assert second.on_request(_request(spec, 5)) is None
    for i in (200, 201, 202):
        assert second.on_request(_request(spec, i)) == i
    assert second.on_request(_request(spec, 200)) is None  # a second copy of a held one
    assert second.arrivals_seen == committed["arrived"] + 5 and not second.replay.missing()
    republished = [decode(d) for _, d in sent if decode(d).kind is Kind.BATCH and decode(d).batch_id not in done]
    assert [m.batch_id.split(":")[0] for m in republished] == ["edge#1"] * len(committed["in_flight"])
    assert [m.ids for m in republished] == [("200", "201", "202")]
    # the predecessor's result of that batch comes after all: accepted, and the republished one's is then a duplicate
    _answer(second, clock, sent, done, skip={m.batch_id for m in republished})
    old = next(iter(committed["in_flight"]))
    second.on_result(encode_result(old, ["200", "201", "202"], source="w", meta={"executor": "edge"},
                                   ts={"start_s": clock.t, "end_s": clock.t, "service_s": 0.002}))  # fmt: skip
    second.poll()
    assert second.replay.stats["inherited_results"] == 1 and second.ended == committed["ended"] + 8
    _answer(second, clock, sent, done)
    assert second.counts["duplicate_results"] == 1
    _drive(second, spec, clock, sent, range(208, 223), done)
    assert second.arrivals_seen == committed["arrived"] + 20 and second.counts["dead_letters"] == 0
    log.close()
    _, entries = read_log(path)  # the appended log is whole (the torn line cut) and names its incarnation
    assert entries[-1].incarnation == 1 and entries[0].incarnation == 0


def test_a_log_that_does_not_replay_fails_loudly_and_the_policy_starts_afresh(crashed):
    spec, path, clock, _ = crashed
    lines = path.read_bytes().splitlines(keepends=True)
    for k, line in enumerate(lines):
        data = json.loads(line) if line.endswith(b"\n") else {}
        if data.get("event", {}).get("type") == "BatchFinished":
            data["event"]["service_s"] = 9.0  # not what the scheduler was fed: different actions follow
            lines[k] = (json.dumps(data) + "\n").encode()
    path.write_bytes(b"".join(lines))
    second = _gateway(spec, clock, [], incarnation=1)
    errors = []
    handler = logging.Handler(logging.ERROR)
    handler.emit = lambda record: errors.append(record.getMessage())  # on the logger itself: roles may stop propagation
    logger = logging.getLogger("edgebatch.live")
    disabled, logger.disabled = logger.disabled, False  # another test's logging config may have disabled it
    logger.addHandler(handler)
    try:
        log, stats = open_event_log(second, path, 1, ended_before=[])
    finally:
        logger.removeHandler(handler)
        logger.disabled = disabled
    log.close()
    assert stats["status"] == "mismatch" and "entry" in stats["reason"]
    assert any("event log replay failed" in e for e in errors)
    assert second.replay is None and second.scheduler.plan is None  # afresh: not the half-fed one
    assert path.with_name(path.name + ".unreplayed").is_file()


def test_an_ended_request_the_replay_did_not_end_is_a_mismatch(crashed):
    spec, path, clock, _ = crashed
    second = _gateway(spec, clock, [], incarnation=1)
    _, stats = open_event_log(second, path, 1, ended_before=[210])  # 210 ended after the last commit: impossible
    assert stats["status"] == "mismatch" and "ended log" in stats["reason"]


def test_recover_log_leaves_out_a_torn_line_and_bounds_what_it_reads(tmp_path):
    path = tmp_path / "log.jsonl"
    with EventLog(path, "edge") as log:
        assert log.pending == 0  # the header is on disk at once
    whole = path.stat().st_size
    with open(path, "ab") as fp:
        fp.write(b'{"close":')
    recovered = recover_log(path, max_bytes=1 << 20)
    assert recovered.torn and recovered.good_bytes == whole and recovered.header["gateway"] == "edge"
    with pytest.raises(ValueError):
        read_log(path)  # the strict reader refuses it
    assert recover_log(path, max_bytes=10).too_large


def test_a_log_with_a_broken_line_in_the_middle_is_not_replayed(crashed):
    spec, path, clock, _ = crashed
    lines = path.read_bytes().splitlines(keepends=True)
    lines[5] = b'{"event": nonsense}\n'  # not a kill's torn last line: the log is damaged
    path.write_bytes(b"".join(lines))
    second = _gateway(spec, clock, [], incarnation=1)
    log, stats = open_event_log(second, path, 1, ended_before=[])
    log.close()
    assert stats["status"] == "mismatch" and "unreadable" in stats["reason"] and second.replay is None
