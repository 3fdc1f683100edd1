"""Every bad message is dead-lettered, even when the consumer holding it dies (issue 20, item 4).

A worker is frozen (SIGSTOP), a malformed message is published on its
batch topic, so the broker dispatches it to that worker and it sits there
unread, and the worker is SIGKILLed. pulsar-lite keeps the consumer of a
connection that was reset (with what it held) instead of delivering it
again; the message must still reach the dead-letter topic with its reason.
The run is an open-ingress one, so that no batch of the gateway's can take
the frozen worker's place in the queue: the bad message is surely the one
it holds.
"""

from __future__ import annotations

import os
import signal
import time
from collections import Counter

import numpy as np
import pulsar

from live.client import EdgebatchClient
from live.deploy.local import run_live
from live.deploy.processes import ControlChannel
from live.wire.broker import connect
from live.wire.messages import KEY_ENV
from live.wire.topics import Topics
from tests.live.test_harness import edge_config, pool_config

BAD = (b"EB\x02\x02" + b"\xff" * 12, b"not a batch at all")  # too short to hold a tag; bad magic


def _dead_letters(dlq, source_topics, *, expected: int, timeout_s: float, linger_s: float) -> dict[str, list[tuple[bytes, str]]]:
    """(data, reason) of the dead letters from each of ``source_topics``: until ``expected`` came in all and
    ``linger_s`` more (a second copy of one would show then), or ``timeout_s``."""
    deadline, dead = time.monotonic() + timeout_s, {topic: [] for topic in source_topics}
    while time.monotonic() < deadline:
        if sum(map(len, dead.values())) >= expected:
            if linger_s <= 0:
                break
            deadline = min(deadline, time.monotonic() + linger_s)
        try:
            msg = dlq.receive(timeout_millis=500)
        except pulsar.Timeout:
            continue
        dlq.acknowledge(msg)
        topic = msg.properties().get("source_topic")
        if topic in dead:
            dead[topic].append((msg.data(), msg.properties()["reason"]))
    return dead


def _dlq_and_user(client, handle):
    """The test's own dead-letter subscription (from the start) and an open-ingress client of the edge gateway."""
    dlq = client.subscribe(Topics(handle.run_id).dead_letter, "test-dlq", consumer_type=pulsar.ConsumerType.Shared,
                           initial_position=pulsar.InitialPosition.Earliest)  # fmt: skip
    return dlq, EdgebatchClient(client, handle.run_id, "user", os.environ[KEY_ENV], gateway="edge")


def _fault(handle, seen: dict) -> None:
    topics = Topics(handle.run_id)
    client, _ = connect(handle.broker_url)
    try:
        dlq, user = _dlq_and_user(client, handle)
        seen["before"] = user.result(user.submit(b"\x01" * 64), timeout_s=15).ok  # the worker serves
        # frozen, then killed: a reset connection, pulsar-lite keeps its consumer and what it held
        pid = _freeze_fuzz_kill(handle, client, "worker-edge-0", {topics.batches("edge"): list(BAD)})
        seen["after"] = user.result(user.submit(b"\x02" * 64), timeout_s=30).ok  # the restarted worker serves
        dead = _dead_letters(dlq, [topics.batches("edge")], expected=len(BAD), timeout_s=10, linger_s=1.0)
        seen["dead"] = dead[topics.batches("edge")]
        seen["restarted"] = handle.pid("worker-edge-0") != pid
        user.close()
        ControlChannel(client, handle.run_id, source="run").stop()
    finally:
        client.close()


def test_a_bad_batch_held_by_a_killed_worker_reaches_the_dead_letter_topic(broker, tmp_path, monkeypatch):
    config = edge_config(num_requests=1, rate_rps=1.0)
    config["live"]["broker"] = {"url": broker.url}
    config["live"]["ingress"] = {"mode": "open", "clients": {"user": {}}, "drain_s": 2.0}
    monkeypatch.setenv(KEY_ENV, os.urandom(32).hex())
    seen: dict = {}
    result = run_live(config, tmp_path / "run", on_start=lambda handle: _fault(handle, seen))
    assert seen["before"] and seen["after"] and seen["restarted"]
    assert result.summary["restarts"] == 1
    dead = dict(seen["dead"])
    assert sorted(seen["dead"]) == sorted(dead.items()) and set(dead) == set(BAD), seen["dead"]  # each once, unchanged
    assert dead[BAD[0]].startswith("too_short") and dead[BAD[1]].startswith("bad_magic")  # signed: no room for a tag
    worker = result.extra["roles"]["worker-edge-0"]  # the restarted one: it swept what its predecessor held
    assert worker["swept_dead_letters"] >= 1


def _freeze_and_kill_the_sink(handle, seen: dict) -> None:
    topics = Topics(handle.run_id)
    client, _ = connect(handle.broker_url)
    try:
        dlq = client.subscribe(topics.dead_letter, "test-dlq", consumer_type=pulsar.ConsumerType.Shared,
                               initial_position=pulsar.InitialPosition.Earliest)  # fmt: skip
        handle.sleep_until(1.5)
        pid = handle.pid("sink")
        os.kill(pid, signal.SIGSTOP)  # records (and the bad one) pile up unread in its socket
        client.create_producer(topics.records, batching_enabled=False).send(BAD[1])
        handle.sleep_until(handle.now() + 0.5)
        os.kill(pid, signal.SIGKILL)
        seen["dead"] = [data for data, _ in _dead_letters(dlq, [topics.records], expected=1, timeout_s=15, linger_s=0)[topics.records]]
    finally:
        client.close()


def test_records_held_by_a_killed_sink_are_kept_and_a_bad_one_dead_lettered(broker, tmp_path):
    config = edge_config(num_requests=240, rate_rps=60.0)  # 4 s of arrivals
    config["live"]["broker"] = {"url": broker.url}
    seen: dict = {}
    result = run_live(config, tmp_path / "run", on_start=lambda handle: _freeze_and_kill_the_sink(handle, seen))
    assert result.extra["restarts"] == {"sink": 1}
    summary = result.summary
    # what the frozen sink had been sent came to its successor from the topic: no record lost
    assert summary["complete"] is True and summary["completed"] == 240 and summary["dropped"] == 0, summary
    assert seen["dead"] == [BAD[1]]
    assert result.extra["roles"]["sink"]["swept_records"] >= 1


def fuzz(count: int, seed: int) -> list[bytes]:
    """``count`` random messages (0-300 bytes; some empty, some the same), and the two hand-made bad ones."""
    rng = np.random.default_rng(seed)
    return [rng.bytes(int(rng.integers(0, 300))) for _ in range(count)] + list(BAD)


def _freeze_fuzz_kill(handle, client, name: str, messages_by_topic: dict[str, list[bytes]]) -> int:
    """SIGSTOP role ``name``, publish each topic's messages (dispatched to it, unread), SIGKILL it; its pid."""
    pid = handle.pid(name)
    os.kill(pid, signal.SIGSTOP)
    for topic, messages in messages_by_topic.items():
        producer = client.create_producer(topic, batching_enabled=False)
        for data in messages:
            producer.send(data)
        producer.close()
    time.sleep(0.5)
    os.kill(pid, signal.SIGKILL)
    return pid


def _open_ingress(config: dict, broker) -> dict:
    config["live"]["broker"] = {"url": broker.url}
    config["live"]["ingress"] = {"mode": "open", "clients": {"user": {}}, "drain_s": 2.0}
    return config


def _pool_fault(handle, seen: dict) -> None:
    topics = Topics(handle.run_id)
    client, _ = connect(handle.broker_url)
    try:
        dlq, user = _dlq_and_user(client, handle)
        seen["before"] = user.result(user.submit(b"\x01" * 64), timeout_s=60).ok  # the pool serves (a cold start)
        seen["pid"] = _freeze_fuzz_kill(handle, client, "pool-lambda", {topics.batches("lambda"): seen["sent"]})
        seen["after"] = user.result(user.submit(b"\x02" * 64), timeout_s=90).ok  # the restarted pool serves
        dead = _dead_letters(dlq, [topics.batches("lambda")], expected=len(seen["sent"]), timeout_s=15, linger_s=1.5)
        seen["dead"] = dead[topics.batches("lambda")]
        seen["restarted"] = handle.pid("pool-lambda") != seen["pid"]
        user.close()
        ControlChannel(client, handle.run_id, source="run").stop()
    finally:
        client.close()


def test_bad_batches_held_by_a_killed_serverless_pool_are_dead_lettered_once(broker, tmp_path, monkeypatch):
    config = _open_ingress(pool_config(), broker)
    config["live"]["timeout_s"] = 150
    monkeypatch.setenv(KEY_ENV, os.urandom(32).hex())
    seen: dict = {"sent": fuzz(40, seed=5)}
    result = run_live(config, tmp_path / "run", on_start=lambda handle: _pool_fault(handle, seen))
    assert seen["before"] and seen["after"] and seen["restarted"]
    assert result.extra["restarts"] == {"pool-lambda": 1}
    # every bad message once, unchanged: none lost with the killed pool, none dead-lettered twice
    assert Counter(data for data, _ in seen["dead"]) == Counter(seen["sent"]), (len(seen["dead"]), len(seen["sent"]))
    pool = result.extra["roles"]["pool-lambda"]  # the restarted one: it swept what its predecessor held
    assert pool["swept_dead_letters"] >= 1 and pool["dead_letters"] + pool["swept_dead_letters"] >= 1
    assert result.summary["completed"] == 2 and result.summary["dropped"] == 0, result.summary


def _gateway_fault(handle, seen: dict) -> None:
    topics = Topics(handle.run_id)
    client, _ = connect(handle.broker_url)
    try:
        dlq, user = _dlq_and_user(client, handle)
        seen["before"] = user.result(user.submit(b"\x01" * 64), timeout_s=15).ok
        # frozen: what the broker sends it stays unread in its socket and queues
        by_topic = {topics.requests("edge"): "requests", topics.results("edge"): "results"}
        pid = _freeze_fuzz_kill(handle, client, "gateway-edge", {topic: seen[name] for topic, name in by_topic.items()})
        seen["after"] = user.result(user.submit(b"\x02" * 64), timeout_s=30).ok  # the restarted gateway serves
        expected = len(seen["requests"]) + len(seen["results"])
        dead = _dead_letters(dlq, list(by_topic), expected=expected, timeout_s=20, linger_s=1.5)
        seen["dead"] = {name: [data for data, _ in dead[topic]] for topic, name in by_topic.items()}
        seen["restarted"] = handle.pid("gateway-edge") != pid
        user.close()
        ControlChannel(client, handle.run_id, source="run").stop()
    finally:
        client.close()


def test_bad_requests_and_results_held_by_a_killed_gateway_are_dead_lettered_once(broker, tmp_path, monkeypatch):
    config = _open_ingress(edge_config(num_requests=1, rate_rps=1.0), broker)
    monkeypatch.setenv(KEY_ENV, os.urandom(32).hex())
    seen: dict = {"requests": fuzz(30, seed=8), "results": fuzz(30, seed=9)}
    result = run_live(config, tmp_path / "run", on_start=lambda handle: _gateway_fault(handle, seen))
    assert seen["before"] and seen["after"] and seen["restarted"]
    assert result.extra["restarts"] == {"gateway-edge": 1}
    for name in ("requests", "results"):  # every bad message once, unchanged: none lost with the gateway, none twice
        # (the client's own late copy of its request, rejected as a duplicate_id by design, is not one of them)
        dead = [data for data in seen["dead"][name] if data in set(seen[name])]
        assert Counter(dead) == Counter(seen[name]), (name, len(dead), len(seen[name]))
    gateway = result.extra["roles"]["gateway-edge"]  # the restarted one: it swept what its predecessor held
    assert gateway["swept_dead_letters"] >= 1, gateway
    assert result.summary["completed"] == 2 and result.summary["dropped"] == 0, result.summary
