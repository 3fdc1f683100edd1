"""The live harness end to end: real broker, real processes, real PyTorch; no mocks.

Three live runs (module-scoped, each a few seconds of workload): a local edge
server (with a bad message waiting on its worker's topic), a remote cloud
server behind an emulated 20 ms / 5 MB/s link (on its own embedded broker),
and a serverless pool with keep-alive 0. Plus broker-free unit checks of the
pieces: the sink's dedupe, the link emulator, the gateway's timers, the
config checks.
"""

from __future__ import annotations

import copy
import math
import os
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pulsar
import pytest

from live.wire.broker import connect, topic
from live.config import LIVE_DEFAULTS, RunClock, Topics, build_run
from live.roles.gateway import Gateway
from spec.link_queue import LinkQueue
from live.wire.messages import (KEY_ENV, ControlOp, Kind, WireSettings, configure, decode, encode_batch, encode_control,
                                encode_drop, encode_request, encode_result)
from live.deploy.local import role_commands, run_live
from live.roles.sink import SinkState
from spec.links import MB, Link
from spec.records import BATCH_COLUMNS, REQUEST_COLUMNS, summarize
from spec.validation import ConfigError

pytestmark = pytest.mark.live

MAX_BATCH = 8
MAX_WAIT_S = 0.02
DELAY_S = 0.02
BANDWIDTH_MBPS = 5.0
CLOUD_SIZE = 20_000


def edge_config(num_requests: int = 150, rate_rps: float = 40.0) -> dict:
    return {
        "seed": 3,
        "workload": {
            "num_requests": num_requests,
            "sources": [{"name": "cam", "size_bytes": 256, "slo_s": 0.5, "gateway": "edge",
                         "arrivals": {"kind": "poisson", "rate_rps": rate_rps}}],
        },
        "cluster": {"executors": [{"name": "edge", "kind": "edge", "gateway": "edge",
                                   "profile": {"kind": "linear", "per_item_s": 0.0005, "base_s": 0.002}}]},
        "policy": {"placement": {"_target_": "policies.placement.StaticPlacement"},
                   "batching": {"_target_": "policies.batching.TimeoutBatching", "max_batch_size": MAX_BATCH, "max_wait_s": MAX_WAIT_S}},
        "live": {"model": "mlp", "timeout_s": 60, "startup_timeout_s": 60},
    }  # fmt: skip


def cloud_config() -> dict:
    config = edge_config()
    config["workload"]["sources"][0]["size_bytes"] = CLOUD_SIZE
    config["cluster"] = {
        "executors": [{"name": "cloud", "kind": "cloud", "slots": 2, "profile": {"kind": "linear", "per_item_s": 0.0005, "base_s": 0.002},
                       "pricing": {"kind": "hourly", "price_per_hour": 0.5}}],
        "links": {"cloud": {"delay_s": DELAY_S, "bandwidth_MBps": BANDWIDTH_MBPS}},
    }  # fmt: skip
    return config


def pool_config() -> dict:
    config = edge_config(num_requests=8, rate_rps=8.0)
    config["workload"]["sources"][0]["slo_s"] = 30.0
    config["cluster"] = {
        "executors": [{"name": "lambda", "kind": "serverless", "keep_alive_s": 0, "memory_mb": 1024,
                       "profile": {"kind": "linear", "per_item_s": 0.0005, "base_s": 0.002},
                       "pricing": {"kind": "serverless", "price_per_gb_s": 0.0000166667, "per_invocation": 0.0000002}}],
        "links": {"lambda": {"delay_s": 0.01, "bandwidth_MBps": 50}},
    }  # fmt: skip
    config["policy"]["batching"] = {"_target_": "policies.batching.TimeoutBatching", "max_batch_size": 4, "max_wait_s": 0.3}
    return config


def _check_every_request_ended_once(result, count: int) -> None:
    requests = result.requests
    assert len(requests) == count
    assert requests["request_id"].tolist() == list(range(count))
    completed = requests["completed_s"].notna()
    dropped = requests["dropped"].to_numpy(bool)
    assert not (completed & dropped).any()
    assert (completed | dropped).all()
    assert result.summary["complete"] is True
    assert result.summary["completed"] + result.summary["dropped"] == count
    assert int(result.batches["size"].sum()) == int(completed.sum())  # each completed request in exactly one batch


def _check_schema(result, config) -> None:
    from sim import simulate  # the tests may compare both backends; live itself never imports sim

    assert tuple(result.requests.columns) == REQUEST_COLUMNS
    assert tuple(result.batches.columns) == BATCH_COLUMNS
    simulated = simulate({k: v for k, v in config.items() if k != "live"})
    assert result.requests.dtypes.equals(simulated.requests.dtypes)
    assert result.batches.dtypes.equals(simulated.batches.dtypes)
    again = summarize(result.requests, result.batches, span_s=result.summary["span_s"])
    assert again["completed"] == result.summary["completed"]
    return simulated


def _check_decomposition(requests: pd.DataFrame) -> None:
    done = requests[requests["completed_s"].notna()]
    parts = done["transfer_s"] + done["queue_s"] + done["cold_start_s"] + done["service_s"]
    assert np.allclose(parts, done["latency_s"], atol=1e-9)
    for column in ("transfer_s", "queue_s", "cold_start_s", "service_s"):
        assert (done[column] >= -1e-3).all(), column
    assert (done["service_s"] > 0).all()


# ---------------------------------------------------------------------------
# a local edge server, on the session broker, with bad messages waiting
# ---------------------------------------------------------------------------


def _signed(key: bytes | None, encode_it) -> bytes:
    """What ``encode_it()`` gives when this process signs with ``key`` (None: unsigned)."""
    before = configure(WireSettings(key=key))
    try:
        return encode_it()
    finally:
        configure(before)


@pytest.fixture(scope="module")
def edge_run(broker, tmp_path_factory):
    run_id = "edge" + str(int(time.time() * 1000) % 10**8)
    config = edge_config()
    config["live"]["broker"] = {"url": broker.url}
    run_key, other_key = os.urandom(32), os.urandom(32)
    request = lambda: encode_request("0", b"x", source="cam", sent_s=0.0)  # noqa: E731
    stop = lambda: encode_control(ControlOp.STOP, source="run")  # noqa: E731
    client, _ = connect(broker.url)
    try:
        producer = client.create_producer(topic(run_id, "batches-edge"), batching_enabled=False)
        producer.send(b"definitely not an edgebatch message")
        producer.send(_signed(None, request))  # unsigned
        producer.send(_signed(other_key, request))  # signed with another key
        producer.send(_signed(run_key, request))  # genuine, but no batch
        producer.close()
        # forged stops, waiting on the control topic for every role: the run must go on
        control = client.create_producer(topic(run_id, "control"), batching_enabled=False)
        control.send(_signed(None, stop))
        control.send(_signed(other_key, stop))
        control.close()
    finally:
        client.close()
    os.environ[KEY_ENV] = run_key.hex()  # the key this run signs with (a local run makes its own otherwise)
    try:
        result = run_live(config, tmp_path_factory.mktemp("edge-run"), run_id=run_id)
    finally:
        del os.environ[KEY_ENV]
    return config, result, run_id


def test_edge_run_ends_every_request_once(edge_run):
    config, result, _ = edge_run
    _check_every_request_ended_once(result, 150)
    assert result.summary["dropped"] == 0
    assert result.summary["duplicate_records"] == 0


def test_edge_run_has_the_simulators_tables(edge_run):
    config, result, _ = edge_run
    simulated = _check_schema(result, config)
    assert (result.requests["executor"] == "edge").all()
    assert (result.requests["executor_kind"] == "edge").all()
    # same arrivals as the simulator, request by request
    assert np.array_equal(result.requests["arrival_s"].to_numpy(), simulated.requests["arrival_s"].to_numpy())
    assert np.array_equal(result.requests["deadline_s"].to_numpy(), simulated.requests["deadline_s"].to_numpy())
    # the same policy: latency is dominated by the 20 ms wait in both backends
    live_p50, sim_p50 = result.summary["latency_p50_s"], simulated.summary["latency_p50_s"]
    assert sim_p50 - 0.01 < live_p50 < sim_p50 + 0.05


def test_edge_run_batches_follow_the_policy(edge_run):
    _, result, _ = edge_run
    batches, requests = result.batches, result.requests
    assert batches["size"].between(1, MAX_BATCH).all()
    assert batches["batch_id"].tolist() == list(range(len(batches)))
    sizes = requests.groupby("batch_id")["request_id"].count()
    assert (sizes.sort_index().to_numpy() == batches.set_index("batch_id")["size"].sort_index().to_numpy()).all()
    assert (requests["batch_size"] == batches.set_index("batch_id").loc[requests["batch_id"], "size"].to_numpy()).all()
    # a partial batch waits no longer than max_wait_s (plus the live driver's lateness)
    waited = requests["dispatched_s"] - requests["arrival_s"]
    assert (waited >= -1e-6).all()
    assert (waited <= MAX_WAIT_S + 0.25).all()
    assert (batches["end_s"] >= batches["start_s"]).all()
    _check_decomposition(requests)


def test_edge_run_records_timer_lateness(edge_run):
    _, result, _ = edge_run
    gateway = result.extra["roles"]["gateway-edge"]
    late = gateway["timer_late_s"]
    assert late["count"] > 0
    assert 0.0 <= late["p50"] < 0.05
    assert gateway["duplicate_requests"] == 0


def test_bad_messages_go_to_the_dead_letter_topic(edge_run, client):
    """Garbage, unsigned and wrongly signed messages are dead-lettered with their reason; forged stops stop nothing."""
    _, result, run_id = edge_run
    roles = result.extra["roles"]
    assert roles["worker-edge-0"]["dead_letters"] == 4 + 2  # the batch topic's four, and the two forged stops
    consumer = client.subscribe(topic(run_id, "dead-letter"), "check", consumer_type=pulsar.ConsumerType.Shared,
                                initial_position=pulsar.InitialPosition.Earliest)  # fmt: skip
    got = []
    expected = 4 + 2 * len(roles)  # each role read both forged stops on its control subscription
    deadline = time.monotonic() + 10
    while len(got) < expected and time.monotonic() < deadline:
        try:
            msg = consumer.receive(timeout_millis=200)
        except pulsar.Timeout:
            continue
        got.append((msg.data(), msg.properties()))
        consumer.acknowledge(msg)
    consumer.close()
    on_batches = {raw: p for raw, p in got if p["source_topic"] == topic(run_id, "batches-edge")}
    assert on_batches[b"definitely not an edgebatch message"]["reason"].startswith("bad_magic")
    reasons = sorted(p["reason"].split(":")[0] for p in on_batches.values())
    assert reasons == ["bad_mac", "bad_mac", "bad_magic", "unexpected"], reasons
    assert any("REQUEST" in p["reason"] for p in on_batches.values())
    stops = [p for _, p in got if p["source_topic"] == topic(run_id, "control")]
    assert len(stops) == 2 * len(roles) and all(p["reason"].startswith("bad_mac") for p in stops)
    assert result.summary["completed"] == result.summary["count"]


# ---------------------------------------------------------------------------
# a remote cloud server behind an emulated link, on its own embedded broker
# ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cloud_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("cloud-run")
    config = cloud_config()
    return config, run_live(config, out), out


def test_cloud_run_pays_the_link(cloud_run):
    config, result, out = cloud_run
    _check_every_request_ended_once(result, 150)
    _check_schema(result, config)
    requests = result.requests
    assert (requests["executor"] == "cloud").all() and (requests["executor_kind"] == "cloud").all()
    # up: delay + size / bandwidth (after waiting for the link); back: delay
    minimum = 2 * DELAY_S + requests["batch_size"] * CLOUD_SIZE / (BANDWIDTH_MBPS * MB)
    assert (requests["transfer_s"] >= minimum - 1e-6).all()
    assert (requests["transfer_s"] < minimum + 0.2).all()
    _check_decomposition(requests)
    assert result.batches["size"].max() <= MAX_BATCH
    assert result.summary["total_cost"] > 0  # hourly: busy share plus standing
    gateway = result.extra["roles"]["gateway-edge"]
    assert gateway["link_bytes"]["cloud"] == 150 * CLOUD_SIZE


def test_cloud_replicas_share_one_subscription(cloud_run):
    _, result, _ = cloud_run
    roles = result.extra["roles"]
    done = [roles[f"worker-cloud-{k}"]["batches"] for k in range(2)]  # replicas default to the executor's slots
    assert sum(done) == len(result.batches)
    assert min(done) >= 1


def test_cloud_run_started_and_stopped_its_broker(cloud_run):
    _, result, out = cloud_run
    assert (out / "broker" / "pulsar-lite.log").is_file()
    assert result.extra["broker_url"].startswith("pulsar://127.0.0.1:")
    import socket

    port = int(result.extra["broker_url"].rsplit(":", 1)[1])
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()


def test_cloud_run_leaves_no_broker_data_behind(cloud_run):
    """The broker's data lived in a temporary folder, removed at the end; the results stay small."""
    _, result, out = cloud_run
    data_dir = Path(result.extra["broker_data_dir"])
    assert not data_dir.is_relative_to(out) and not data_dir.exists()
    assert not list(out.rglob("*.rocksdb")) and not (out / "broker" / "data").exists()
    size_bytes = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    assert size_bytes < 5 * 2**20, size_bytes


# ---------------------------------------------------------------------------
# a serverless pool: keep-alive 0, so every batch starts a cold instance
# ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pool_run(broker, tmp_path_factory):
    config = pool_config()
    config["live"]["broker"] = {"url": broker.url}
    return config, run_live(config, tmp_path_factory.mktemp("pool-run"))


def test_pool_with_no_keep_alive_starts_cold_every_time(pool_run):
    config, result = pool_run
    _check_every_request_ended_once(result, 8)
    _check_schema(result, config)
    batches, requests = result.batches, result.requests
    assert batches["cold"].all()
    assert (requests["cold_start_s"] > 0).all()
    assert (requests["memory_mb"] == 1024).all()
    assert batches["size"].max() <= 4
    pool = result.extra["roles"]["pool-lambda"]
    assert pool["instances_started"] == len(batches)
    assert pool["cold_start_s"]["count"] == len(batches)
    assert pool["cold_start_s"]["p50"] > 0.1  # a process start, torch import and model load: real seconds
    # billed: measured service plus cold start, at 1 GB, plus the invocation fee
    per_gb_s, fee = 0.0000166667, 0.0000002
    expected = per_gb_s * 1.0 * np.ceil((requests.groupby("batch_id")[["service_s", "cold_start_s"]].first().sum(axis=1) / 0.001) - 1e-9) * 0.001 + fee
    assert np.allclose(batches.set_index("batch_id")["cost"].sort_index().to_numpy(), expected.sort_index().to_numpy(), rtol=1e-6, atol=1e-12)
    _check_decomposition(requests)


# ---------------------------------------------------------------------------
# broker-free unit checks
# ---------------------------------------------------------------------------


def _completion(key: str, ids, *, dispatched_s, completed_s, executor="edge") -> object:
    data = encode_result(key, [str(i) for i in ids], source="edge", ts={
        "dispatched_s": dispatched_s, "arrived_s": dispatched_s, "start_s": dispatched_s + 0.001,
        "end_s": dispatched_s + 0.002, "service_s": 0.001, "completed_s": completed_s,
    }, meta={"executor": executor, "memory_mb": 0, "cost": 0.0, "cold_start_s": 0.0})  # fmt: skip
    return decode(data)


def test_sink_deduplicates_by_request_id():
    spec = build_run(edge_config(num_requests=5))
    sink = SinkState(spec)
    first = _completion("edge:1", [2, 3], dispatched_s=0.5, completed_s=0.6)
    earlier = _completion("edge:0", [0, 1], dispatched_s=0.2, completed_s=0.3)
    drop = decode(encode_drop(["4"], "queue_full", source="edge"))
    for message in (first, first, earlier, drop, drop, first, earlier):
        sink.add(message)
    assert sink.done
    assert sink.duplicates == 2 + 1 + 2 + 2
    sink.add(decode(encode_drop(["2"], "deadline", source="edge")))  # a conflicting late record: the first stands
    assert sink.conflicts == 1
    requests, batches = sink.requests_table(), sink.batches_table()
    assert len(requests) == 5 and len(batches) == 2
    assert batches["batch_id"].tolist() == [0, 1]  # numbered in dispatch order
    assert requests["batch_id"].tolist() == [0, 0, 1, 1, -1]
    assert requests["dropped"].tolist() == [False, False, False, False, True]
    assert requests["drop_reason"].astype(object).iloc[4] == "queue_full"
    assert np.allclose(requests["latency_s"].iloc[:4], [0.3, 0.3, 0.6, 0.6] - spec.arrivals.arrival_s[:4])
    summary = sink.summary(requests, batches, complete=True)
    assert summary["completed"] == 4 and summary["dropped"] == 1


def test_sink_marks_unfinished_requests_run_ended():
    sink = SinkState(build_run(edge_config(num_requests=3)))
    sink.add(_completion("edge:0", [1], dispatched_s=0.1, completed_s=0.2))
    assert not sink.done
    assert sink.finish() == 2
    requests = sink.requests_table()
    assert requests["drop_reason"].astype(object).tolist()[0] == "run_ended"
    assert requests["dropped"].tolist() == [True, False, True]


def test_link_emulator_is_fifo_and_follows_the_trace(tmp_path):
    link = LinkQueue(Link(delay_s=0.1, bandwidth_MBps=1.0))
    assert link.send(0.0, MB) == pytest.approx(1.1)
    assert link.send(0.5, MB) == pytest.approx(2.1)  # waits for the first to leave
    assert link.send(5.0, 0.5 * MB) == pytest.approx(5.6)
    trace = tmp_path / "bw.json"
    trace.write_text("[1.0, 0.0, 2.0]")
    outage = LinkQueue(Link(delay_s=0.0, bandwidth_trace=str(trace)))
    assert outage.send(0.5, MB) == pytest.approx(2.25)  # half a MB in second 0, none in second 1, the rest at 2 MB/s


class _FakeClock:
    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t


def test_gateway_delivers_timers_never_early_and_ignores_duplicates():
    spec = build_run(edge_config(num_requests=4))
    clock = _FakeClock()
    sent = []
    gateway = Gateway(spec, "edge", Topics("unit"), lambda topic, data, properties=None: sent.append((topic, data)), clock)
    arrival = spec.arrivals.arrival_s
    clock.t = float(arrival[0])
    request = encode_request("0", b"a" * 256, source="cam", sent_s=clock.t, ts={"arrival_s": float(arrival[0])})
    gateway.on_request(request)
    gateway.on_request(request)  # at-least-once: the same request again
    assert gateway.counts["duplicate_requests"] == 1
    due = gateway.poll()
    assert due == pytest.approx(arrival[0] + MAX_WAIT_S)
    assert not sent
    clock.t = due + 0.003  # the loop wakes a little late
    gateway.poll()
    assert len(sent) == 1 and sent[0][0] == Topics("unit").batches("edge")
    batch = decode(sent[0][1])
    assert batch.kind is Kind.BATCH and batch.ids == ("0",) and batch.batch_id == "edge:0"
    assert gateway.timer_late_s == [pytest.approx(0.003)]
    result = encode_result("edge:0", ["0"], source="w", ts={"start_s": clock.t, "end_s": clock.t + 0.001, "service_s": 0.001},
                           meta={"executor": "edge"})  # fmt: skip
    clock.t += 0.002
    gateway.on_result(result)
    gateway.on_result(result)  # a duplicated result
    assert gateway.counts["duplicate_results"] == 1
    assert gateway.ended == 1
    record = decode(sent[-1][1])
    assert sent[-1][0] == Topics("unit").records and record.kind is Kind.RESULT and record.ts["completed_s"] == clock.t


def test_live_section_is_checked_with_field_names():
    base = edge_config()
    for change, field_name in [
        ({"bogus": 1}, "live.bogus"),
        ({"executors": {"nope": {}}}, "live.executors.nope"),
        ({"executors": {"edge": {"replicas": 0}}}, "live.executors.edge.replicas"),
        ({"executors": {"edge": {"mb_per_thread": 512}}}, "live.executors.edge.mb_per_thread"),
        ({"timeout_s": -1}, "live.timeout_s"),
        ({"broker": {"url": "http://x"}}, "live.broker.url"),
    ]:
        config = copy.deepcopy(base)
        config["live"].update(change)
        with pytest.raises(ConfigError) as error:
            build_run(config)
        assert error.value.field == field_name
    config = copy.deepcopy(base)
    config["live"]["model"] = "resnet9000"
    with pytest.raises(ConfigError, match="live.model"):
        run_live(config, "/nonexistent/never-created")  # fails before anything starts
    assert set(LIVE_DEFAULTS) >= {"broker", "model", "executors", "timeout_s", "startup_timeout_s"}


def test_roles_and_defaults_of_a_run():
    config = cloud_config()
    config["cluster"]["executors"].append({"name": "fn", "kind": "serverless", "memory_mb": 2048,
                                           "profile": {"kind": "linear", "per_item_s": 0.001, "base_s": 0.0}})  # fmt: skip
    spec = build_run(config)
    assert spec.settings.executors["cloud"].replicas == 2  # defaults to slots
    assert spec.settings.executors["fn"].threads >= 1
    names = [name for name, _, _ in role_commands(spec)]
    assert names == ["sink", "worker-cloud-0", "worker-cloud-1", "pool-fn", "gateway-edge", "source-cam"]
    assert [extra for name, _, extra in role_commands(spec) if name == "worker-cloud-1"] == [["--executor", "cloud", "--replica", "1"]]
    clock = RunClock(time.time() - 5.0)
    assert 4.9 < clock.now() < 6.0


def test_drop_record_round_trip():
    message = decode(encode_drop(["7", "9"], "deadline", source="gw", ts={"dropped_s": 1.5}))
    assert message.kind is Kind.CONTROL and message.ids == ("7", "9")
    assert message.meta == {"op": "drop", "reason": "deadline"} and message.ts == {"dropped_s": 1.5}
    with pytest.raises(ValueError):
        encode_drop([], "deadline", source="gw")
    assert not math.isnan(float(decode(encode_batch("g:0", ["1"], [b"ab"], source="g")).size_bytes))


def test_gateway_turns_a_failed_batch_into_drops():
    spec = build_run(edge_config(num_requests=4))
    clock = _FakeClock()
    sent = []
    gateway = Gateway(spec, "edge", Topics("unit"), lambda topic, data, properties=None: sent.append((topic, data)), clock)
    for i in range(2):
        clock.t = float(spec.arrivals.arrival_s[i])
        gateway.on_request(encode_request(str(i), b"x", source="cam", sent_s=clock.t, ts={"arrival_s": clock.t}))
    clock.t += 1.0
    gateway.poll()
    batch = decode(sent[0][1])
    assert batch.ids == ("0", "1")
    from live.roles.worker import failure_result

    gateway.on_result(failure_result(batch, source="w", executor="edge", reason="executor_failed", detail="boom"))
    records = [decode(data) for topic_name, data in sent[1:]]
    records = [r for r in records if r.meta.get("op") != "nudge"]  # the gateway's broker wake-ups
    assert records[0].meta["op"] == "batch_failed"
    assert [(r.meta["op"], r.ids, r.meta["reason"]) for r in records[1:]] == [("drop", ("0",), "executor_failed"), ("drop", ("1",), "executor_failed")]
    sink = SinkState(spec)
    for record in records:
        sink.add(record)
    requests = sink.requests_table()
    assert requests["drop_reason"].astype(object).tolist()[:2] == ["executor_failed"] * 2
    assert requests["batch_id"].tolist()[:2] == [0, 0]
    assert sink.batches_table()["size"].tolist() == [2]


def test_a_crashing_role_ends_the_run_with_its_log(broker, tmp_path):
    import subprocess

    from live.deploy.local import LiveRunError

    config = edge_config(num_requests=20)
    config["live"]["broker"] = {"url": broker.url}
    config["live"]["timeout_s"] = 30
    config["policy"]["placement"] = {"_target_": "tests.live.helpers.ExplodingPlacement", "after": 3}
    started = time.monotonic()
    with pytest.raises(LiveRunError, match="gateway-edge exited") as error:
        run_live(config, tmp_path)
    assert "exploding placement" in str(error.value)
    assert time.monotonic() - started < 25
    leftover = subprocess.run(["pgrep", "-f", str(tmp_path)], capture_output=True, text=True).stdout.split()
    assert leftover == []


def test_pool_keeps_instances_warm_and_fails_batches_of_a_crashed_one():
    import os
    import queue
    import signal

    from live.roles.pool import Pool

    config = pool_config()
    config["cluster"]["executors"][0]["keep_alive_s"] = 30
    spec = build_run(config)
    inbox = queue.SimpleQueue()
    sent, acked = [], []
    pool = Pool(spec, "lambda", Topics("unit"), RunClock(time.time()), inbox, send=lambda t, d: sent.append((t, decode(d))), ack=acked.append)

    def batch(n: int):
        return decode(encode_batch(f"edge:{n}", [str(n)], [bytes([n]) * 256], source="edge", meta={"executor": "lambda", "memory_mb": 1024}))

    def pump(until, timeout_s=60.0):
        deadline = time.monotonic() + timeout_s
        while not until():
            assert time.monotonic() < deadline, "the pool did not get there in time"
            try:
                kind, a, b = inbox.get(timeout=0.1)
            except queue.Empty:
                continue
            pool.on_frame(a, b) if kind == "frame" else pool.on_exit(a, b)

    def results():
        return [m for _, m in sent if m.kind is Kind.RESULT]

    try:
        pool.submit("m0", batch(0))
        pump(lambda: len(results()) == 1)
        first = results()[0]
        assert first.meta["cold_start_s"] > 0 and acked == ["m0"] and pool.warm == 1
        pool.submit("m1", batch(1))  # the warm instance takes it: no second cold start
        pump(lambda: len(results()) == 2)
        second = results()[1]
        assert second.meta["cold_start_s"] == 0.0 and pool.spawned == 1
        assert second.labels is not None and len(second.labels) == 1
        instances = [m.meta["warm"] for _, m in sent if m.kind is Kind.CONTROL]
        assert instances == [1]  # InstanceStateChanged for the gateways
        # an instance that dies with a batch in hand fails it (its requests are dropped, not lost)
        instance = pool.instances[pool.model.idle_ids(1024)[-1]]
        os.kill(instance.proc.pid, signal.SIGKILL)
        instance.proc.wait(timeout=10)
        pool.submit("m2", batch(2))  # the pool has not heard yet: it hands the batch to the dead instance
        pump(lambda: len(results()) == 3)
        failed = results()[2]
        assert failed.meta["failed"] is True and failed.meta["reason"] == "executor_failed"
        assert acked == ["m0", "m1", "m2"] and pool.warm == 0 and not pool.instances
    finally:
        pool.shutdown()
