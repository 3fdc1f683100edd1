"""A gateway behind its input takes what is queued as one ``RequestsArrived``: batches of what it holds, replayable."""

from __future__ import annotations

from live.config import Topics, build_run
from live.eventlog import EventLog, first_mismatch, log_path, read_log
from live.roles.gateway import Gateway
from live.wire.messages import decode, encode_request
from policies.events import RequestsArrived
from tests.live.test_replay import fresh_scheduler, timeout_config


def _setup(tmp_path):
    config = timeout_config(num_requests=40, rate_rps=200.0)
    spec = build_run(config)
    clock, sent = [0.0], []
    gateway = Gateway(spec, "edge", Topics("unit"), lambda topic, data, properties=None: sent.append((topic, data)), lambda: clock[0])
    gateway.event_log = EventLog(log_path(tmp_path, "edge"), "edge")
    return config, spec, clock, sent, gateway


def _raw(spec, i):
    arrival_s = float(spec.arrivals.arrival_s[i])
    return encode_request(str(i), bytes([i]) * 32, source="cam", sent_s=arrival_s, ts={"arrival_s": arrival_s})


def _batches(sent):
    return [decode(d) for topic, d in sent if topic == Topics("unit").batches("edge")]


def test_a_backlog_read_late_goes_as_full_batches_and_replays(tmp_path):
    config, spec, clock, sent, gateway = _setup(tmp_path)
    wait_s, size = spec.config["policy"]["batching"]["max_wait_s"], spec.config["policy"]["batching"]["max_batch_size"]
    count = size + 2
    clock[0] = float(spec.arrivals.arrival_s[count - 1]) + 10 * wait_s  # every one of them is past its wait
    taken = gateway.on_requests([_raw(spec, i) for i in range(count)])
    gateway.poll()
    assert taken == list(range(count))
    assert [len(b.ids) for b in _batches(sent)] == [size, 2]
    gateway.event_log.commit()
    _, entries = read_log(log_path(tmp_path, "edge"))
    assert [type(e.event) for e in entries if e.event is not None] == [RequestsArrived]
    assert first_mismatch(entries, fresh_scheduler(config, "edge")) is None  # the bunch replays to the same actions


def test_one_at_a_time_the_same_backlog_leaves_request_by_request(tmp_path):
    # what on_requests prevents: the first request is past its wait, so it leaves alone, and so on
    _, spec, clock, sent, gateway = _setup(tmp_path)
    size = spec.config["policy"]["batching"]["max_batch_size"]
    clock[0] = float(spec.arrivals.arrival_s[size + 1]) + 1.0
    for i in range(size + 2):
        gateway.on_request(_raw(spec, i))
    assert [len(b.ids) for b in _batches(sent)] == [1] * (size + 2)


def test_a_bad_message_in_a_bunch_is_dead_lettered_and_the_rest_taken(tmp_path):
    _, spec, clock, sent, gateway = _setup(tmp_path)
    clock[0] = 5.0
    taken = gateway.on_requests([_raw(spec, 0), b"\x00garbage", _raw(spec, 1), _raw(spec, 0)])
    assert taken == [0, None, 1, None]  # the garbage dead-lettered, the copy of 0 not taken twice
    assert gateway.counts["dead_letters"] == 1 and gateway.arrivals_seen == 2
    assert sorted(int(i) for b in _batches(sent) for i in b.ids) == [0, 1]
