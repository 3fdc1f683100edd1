"""Open ingress: registered clients send requests of their own to a running harness and get every answer.

One real run (embedded broker, every role a process) serves the whole
module: two clients with overlapping ids, a duplicate, an unregistered and
a forged sender, a plain pulsar-client script written from docs/PROTOCOL.md,
and a request left queued at the stop. Each test checks one part of it.
"""

from __future__ import annotations

import ast
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from live.client import EdgebatchClient, payload_bytes
from live.config import build_run
from live.deploy.local import role_commands, run_live
from live.deploy.processes import ControlChannel
from live.roles.gateway_open_intake import OpenIntake, Rejected
from live.wire.broker import connect
from live.wire.messages import KEY_ENV, Kind, Message, encode
from live.wire.topics import Topics
from spec.validation import ConfigError
from tests.live.test_harness import edge_config

ROOT = Path(__file__).resolve().parents[2]
PLAIN_CLIENT = ROOT / "docs" / "examples" / "plain_client.py"
N = 40  # requests per client in the burst
MAX_BATCH = 8
MAX_WAIT_S = 0.3  # long enough that a request sent alone just before the stop is still queued then
ALICE_ENV = "EDGEBATCH_TEST_ALICE_KEY"


def open_config() -> dict:
    config = edge_config(num_requests=1, rate_rps=1.0)  # the workload names the gateway; it is not replayed
    config["policy"]["batching"] = {"_target_": "policies.batching.TimeoutBatching", "max_batch_size": MAX_BATCH, "max_wait_s": MAX_WAIT_S}
    config["live"]["timeout_s"] = 60
    config["live"]["ingress"] = {"mode": "open", "clients": {
        "alice": {"gateway": "edge", "slo_s": 5.0, "key_env": ALICE_ENV},  # her own key
        "bob": {"slo_s": 5.0},                                              # the run's key
        "carol": {},                                                        # the plain script, the run's key
    }, "drain_s": 5.0}  # fmt: skip
    return config


def _raw_request(client: str, request_id: str, key: bytes, payload: bytes = b"\x01" * 16) -> bytes:
    return encode(Message(kind=Kind.REQUEST, ids=(request_id,), sizes=(len(payload),), source=client, trace_id=request_id,
                          ts={"sent_unix_s": time.time()}, payload=payload), key=key)  # fmt: skip


def _dead_letters(consumer, count: int, timeout_s: float = 10.0) -> list[dict]:
    found, deadline = [], time.monotonic() + timeout_s
    while len(found) < count and time.monotonic() < deadline:
        try:
            msg = consumer.receive(timeout_millis=500)
        except Exception:
            continue
        consumer.acknowledge(msg)
        found.append(dict(msg.properties()))
    return found


def _scenario(handle, run_key: bytes, alice_key: bytes, seen: dict) -> None:
    """What the clients do once the run has started (run_live's on_start hook); ends with a stop."""
    topics = Topics(handle.run_id)
    client, _ = connect(handle.broker_url)
    try:
        dlq = client.subscribe(topics.dead_letter, "test-dead-letters", initial_position=__import__("pulsar").InitialPosition.Earliest)
        alice = EdgebatchClient(client, handle.run_id, "alice", alice_key, gateway="edge", resend_after_s=None)  # counts exact
        bob = EdgebatchClient(client, handle.run_id, "bob", run_key.hex(), gateway="edge", resend_after_s=None)
        for i in range(N):  # the same ids from both: kept apart by client
            alice.submit(bytes([i % 256]) * 64, request_id=str(i))
            bob.submit(bytes([(i + 128) % 256]) * 64, request_id=str(i))
        seen["alice"] = [alice.result(str(i), timeout_s=15) for i in range(N)]
        seen["bob"] = [bob.result(str(i), timeout_s=15) for i in range(N)]
        raw = client.create_producer(topics.requests("edge"), batching_enabled=False)
        raw.send(_raw_request("alice", "3", alice_key))  # a duplicate id
        raw.send(_raw_request("mallory", "m1", run_key))  # unregistered
        raw.send(_raw_request("alice", "forged", os.urandom(32)))  # claims to be alice, not her key
        raw.send(_raw_request("bob", "forged-bob", alice_key))  # bob's name, alice's key
        seen["after"] = alice.result(alice.submit(b"\x07" * 64), timeout_s=15)  # the run goes on
        seen["dead"] = _dead_letters(dlq, 4)
        deadline = time.monotonic() + 5
        while alice.stats["duplicates_rejected"] < 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        seen["alice_stats"] = dict(alice.stats)
        env = {**os.environ, "EDGEBATCH_CLIENT_KEY": run_key.hex()}
        env.pop("PYTHONPATH", None)
        seen["plain"] = subprocess.run([sys.executable, "-I", str(PLAIN_CLIENT), handle.broker_url, handle.run_id, "carol", "edge", "5"],
                                       env=env, capture_output=True, text=True, timeout=40)  # fmt: skip
        late = bob.submit(b"\x09" * 64, request_id="late")  # alone: queued for MAX_WAIT_S, so still queued at the stop
        time.sleep(0.1)
        ControlChannel(client, handle.run_id, source="run").stop()
        seen["late"] = bob.result(late, timeout_s=15)
        alice.close()
        bob.close()
    finally:
        client.close()


@pytest.fixture(scope="module")
def served(broker, tmp_path_factory):
    run_id = "open" + str(int(time.time() * 1000) % 10**8)
    run_key, alice_key = os.urandom(32), os.urandom(32)
    config = open_config()
    config["live"]["broker"] = {"url": broker.url}
    seen: dict = {}
    os.environ[KEY_ENV] = run_key.hex()  # the run signs with this key; bob and carol are given it
    os.environ[ALICE_ENV] = alice_key.hex()  # alice's own: the gateway reads it from its environment
    try:
        started = time.monotonic()
        result = run_live(config, tmp_path_factory.mktemp("open") / "run", run_id=run_id,
                          on_start=lambda handle: _scenario(handle, run_key, alice_key, seen))  # fmt: skip
        seen["wall_s"] = time.monotonic() - started
    finally:
        del os.environ[KEY_ENV], os.environ[ALICE_ENV]
    return result, seen


def test_each_client_gets_one_answer_per_request_with_its_ids(served):
    result, seen = served
    for name in ("alice", "bob"):
        replies = seen[name]
        assert [r.request_id for r in replies] == [str(i) for i in range(N)]
        assert all(r.ok and r.label is not None and len(r.logits()) == 10 for r in replies), replies[:3]
        # the client's latency (its own clock, submit to answer) holds the gateway's (arrival to completion)
        assert all(r.latency_s >= r.gateway_latency_s - 0.005 and r.gateway_latency_s > 0 for r in replies)
    assert seen["after"].ok
    summary = result.summary
    assert summary["complete"] is True and not summary["timed_out"]
    assert not any(name.startswith("source-") for name in result.extra["roles"])  # nothing replayed


def test_overlapping_ids_of_two_clients_are_kept_apart(served):
    result, seen = served
    # the same payload gives the same logits (one model, seeded weights): alice's and bob's differ, so no answer crossed
    assert all(a.logits() != b.logits() for a, b in zip(seen["alice"], seen["bob"]))
    ingress = pd.read_parquet(Path(result.extra["out_dir"]) / "ingress.parquet")
    for name in ("alice", "bob"):
        mine = ingress[ingress.client == name]
        assert set(map(str, range(N))) <= set(mine.client_request_id)
        assert mine.client_request_id.is_unique
    assert len(ingress) == len(result.requests) == 2 * N + 1 + 5 + 1  # bursts, "after", carol's, "late"
    assert (result.requests.source.astype(str).to_numpy() == ingress.client.to_numpy()).all()


def test_a_duplicate_id_is_dead_lettered_and_answered_as_rejected(served):
    _, seen = served
    reasons = [d["reason"] for d in seen["dead"]]
    assert any(r.startswith("duplicate_id") and "'3'" in r for r in reasons), reasons
    assert seen["alice_stats"]["duplicates_rejected"] == 1  # the rejection came; the first "3" kept its result
    assert seen["alice"][3].ok


def test_unregistered_and_forged_senders_are_dead_lettered_and_the_run_goes_on(served):
    result, seen = served
    reasons = sorted(d["reason"] for d in seen["dead"])
    assert len(reasons) == 4, reasons
    assert sum(r.startswith("unknown_client") and "mallory" in r for r in reasons) == 1
    assert sum(r.startswith("bad_mac") for r in reasons) == 2  # alice's name with a random key, bob's with alice's
    assert all(d["source_topic"].endswith("requests-edge") for d in seen["dead"])
    assert seen["after"].ok  # answered after them
    ids = set(pd.read_parquet(Path(result.extra["out_dir"]) / "ingress.parquet").client_request_id)
    assert not ids & {"m1", "forged", "forged-bob"}


def test_requests_go_through_the_policy_in_batches(served):
    result, seen = served
    batches = result.batches
    assert batches["size"].max() > 1 and batches["size"].max() <= MAX_BATCH
    burst = [r for name in ("alice", "bob") for r in seen[name]]
    assert max(r.batch_size for r in burst) > 1
    # timeout batching: a request waits at most max_wait_s in its queue (plus the loop's lateness)
    completed = result.requests[~result.requests.dropped]
    assert (completed.queue_s <= MAX_WAIT_S + 0.1).all()


def test_latencies_count_from_the_clients_send_time_and_the_gateways_receive_time(served):
    result, _ = served
    ingress = pd.read_parquet(Path(result.extra["out_dir"]) / "ingress.parquet")
    requests = result.requests
    done = ~ingress.dropped.to_numpy()
    # on one machine the clocks agree: arrival (the client's send time) <= received, within max_skew_s
    assert ((ingress.received_s - ingress.arrival_s).between(0, 1.0)).all()
    assert (ingress.latency_s[done] >= ingress.latency_from_received_s[done]).all()
    assert (requests.hop_s.to_numpy() == pytest.approx((ingress.received_s - ingress.arrival_s).to_numpy(), abs=1e-9))
    parts = requests.hop_s + requests.queue_s + requests.transfer_s + requests.cold_start_s + requests.service_s
    assert parts[done].to_numpy() == pytest.approx(requests.latency_s[done].to_numpy(), abs=1e-9)


def test_a_request_queued_at_the_stop_is_answered_with_why(served):
    result, seen = served
    late = seen["late"]
    assert not late.ok and late.reason == "run_ended" and not late.rejected
    ingress = pd.read_parquet(Path(result.extra["out_dir"]) / "ingress.parquet")
    row = ingress[(ingress.client == "bob") & (ingress.client_request_id == "late")]
    assert len(row) == 1 and bool(row.dropped.iloc[0]) and row.drop_reason.iloc[0] == "run_ended"


def test_a_plain_pulsar_client_script_from_the_document_is_served(served):
    result, seen = served
    plain = seen["plain"]
    assert plain.returncode == 0, plain.stdout + plain.stderr
    assert "answered 5 of 5" in plain.stdout
    assert sum(line.startswith("plain-") and " label " in line for line in plain.stdout.splitlines()) == 5
    ingress = pd.read_parquet(Path(result.extra["out_dir"]) / "ingress.parquet")
    assert sorted(ingress[ingress.client == "carol"].client_request_id) == [f"plain-{n}" for n in range(5)]


def test_the_plain_client_imports_nothing_of_edgebatch():
    tree = ast.parse(PLAIN_CLIENT.read_text())
    imported = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    imported |= {node.module.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module}
    assert imported <= {"__future__", "hashlib", "hmac", "json", "os", "struct", "sys", "time", "pulsar"}, imported


# -- without a broker: the config and the payloads -----------------------------------------------------------


def test_open_mode_starts_no_source_and_replay_stays_the_default():
    assert build_run(edge_config()).settings.ingress.mode == "replay"
    assert [n for n, _, _ in role_commands(build_run(edge_config()))][-1] == "source-cam"
    assert not [n for n, _, _ in role_commands(build_run(open_config())) if n.startswith("source-")]


@pytest.mark.parametrize("ingress, field", [
    ({"mode": "opn", "clients": {"a": {}}}, "live.ingress.mode"),
    ({"mode": "open"}, "live.ingress.clients"),
    ({"mode": "open", "clients": {"a b": {}}}, "live.ingress.clients.a b"),
    ({"mode": "open", "clients": {"a": {"gateway": "cloud"}}}, "live.ingress.clients.a.gateway"),
    ({"mode": "open", "clients": {"a": {"key": "00"}}}, "live.ingress.clients.a.key"),
    ({"mode": "open", "clients": {"a": {"key_env": KEY_ENV}}}, "live.ingress.clients.a.key_env"),
    ({"mode": "replay", "clients": {"a": {}}}, "live.ingress.clients"),
    ({"mode": "open", "clients": {"a": {}}, "max_skew_s": 0}, "live.ingress.max_skew_s"),
])  # fmt: skip
def test_a_bad_ingress_setting_names_its_field(ingress, field):
    config = edge_config()
    config["live"]["ingress"] = ingress
    with pytest.raises(ConfigError) as error:
        build_run(config)
    assert error.value.field == field


def test_a_float_tensor_is_sent_as_the_bytes_the_workers_read_back():
    torch = pytest.importorskip("torch")
    values = torch.tensor([0.0, 0.5, 1.0, 0.25])
    assert payload_bytes(values) == bytes([0, 128, 255, 64])  # round(255 x v); a worker reads byte / 255
    assert payload_bytes(torch.tensor([1, 2, 3], dtype=torch.uint8)) == b"\x01\x02\x03"
    assert all(math.isclose(b / 255, v, abs_tol=0.5 / 255) for b, v in zip(payload_bytes(values), values.tolist()))
    with pytest.raises(TypeError):
        payload_bytes([1, 2, 3])


def _intake(run_key: bytes, alice_key: bytes, max_skew_s: float = 1.0) -> OpenIntake:
    config = open_config()
    config["live"]["ingress"]["max_skew_s"] = max_skew_s
    return OpenIntake("edge", build_run(config).settings.ingress, run_key, epoch_unix=1000.0, environ={ALICE_ENV: alice_key.hex()})


def _request(client: str, request_id: str, key: bytes, **ts) -> bytes:
    return encode(Message(kind=Kind.REQUEST, ids=(request_id,), sizes=(0,), source=client, trace_id=request_id, ts=ts), key=key)


def test_arrival_is_the_clients_send_time_clamped_to_the_gateways_receive_time():
    run_key, alice_key = os.urandom(32), os.urandom(32)
    intake = _intake(run_key, alice_key, max_skew_s=1.0)
    # (client's send time on the run's clock, received at 10 s) -> arrival, by hand: clamp to [9, 10]
    cases = [(9.8, 9.8), (15.0, 10.0), (7.0, 9.0), (None, 10.0)]
    for k, (sent_s, arrival_s) in enumerate(cases):
        ts = {} if sent_s is None else {"sent_unix_s": 1000.0 + sent_s}
        local_id, request, _ = intake.take(_request("bob", f"r{k}", run_key, **ts), now_s=10.0)
        assert local_id == k and request.received_s == 10.0
        assert request.arrival_s == pytest.approx(arrival_s, abs=1e-9), (sent_s, request)
    assert intake.clamped == 2  # the clock ahead and the one behind by more than max_skew_s
    assert sorted(intake.pending) == [0, 1, 2, 3] and intake.ended(1).request_id == "r1" and 1 not in intake.pending


def test_what_the_intake_rejects_and_whom_it_tells():
    run_key, alice_key = os.urandom(32), os.urandom(32)
    intake = _intake(run_key, alice_key)
    intake.take(_request("alice", "a", alice_key), now_s=0.0)
    cases = [
        (_request("alice", "a", alice_key), "duplicate_id", "alice", "a"),   # told: it verified
        (_request("alice", "x" * 129, alice_key), "bad_id", "alice", "x" * 128),
        (_request("alice", "b", run_key), "bad_mac", None, None),           # the run's key is not hers: told nothing
        (_request("eve", "e", run_key), "unknown_client", None, None),
        (b"EB\x02\x01junk", "header_length", None, None),
    ]  # fmt: skip
    for raw, code, client, request_id in cases:
        with pytest.raises(Rejected) as rejected:
            intake.take(raw, now_s=1.0)
        assert rejected.value.reason.startswith(code), rejected.value.reason
        assert (rejected.value.client, rejected.value.request_id) == (client, request_id)
    assert list(intake.pending) == [0]


def test_a_clients_key_variable_must_be_set_on_the_gateways_host():
    with pytest.raises(ConfigError) as error:
        OpenIntake("edge", build_run(open_config()).settings.ingress, os.urandom(32), epoch_unix=0.0, environ={})
    assert error.value.field == "live.ingress.clients.alice.key_env"
    # an unauthenticated run: unsigned, no key needed
    assert OpenIntake("edge", build_run(open_config()).settings.ingress, None, epoch_unix=0.0, environ={}).keys == dict.fromkeys(["alice", "bob", "carol"])


def test_the_records_and_replies_of_a_gateway_make_the_sinks_tables_as_computed_by_hand(tmp_path):
    """ReplyWriter (what the gateway publishes) into OpenSinkState (what the sink keeps), no broker between."""
    from live.roles.gateway_replies import ReplyWriter
    from live.roles.sink_open import OpenSinkState
    from live.wire.messages import ControlOp, decode, encode_result

    run_key, alice_key = os.urandom(32), os.urandom(32)
    spec = build_run(open_config())
    intake = _intake(run_key, alice_key)
    sent: list[tuple[str, bytes]] = []
    topics = Topics("unit")
    writer = ReplyWriter("edge", topics, lambda topic, data, properties=None: sent.append((topic, data)), intake)
    # bob sends "x" at 1.0 (received 1.25), alice "x" at 1.1 (received 1.5) and "y" (no send time, received 2.0)
    taken = [intake.take(_request("bob", "x", run_key, sent_unix_s=1001.0), now_s=1.25),
             intake.take(_request("alice", "x", alice_key, sent_unix_s=1001.1), now_s=1.5),
             intake.take(_request("alice", "y", alice_key), now_s=2.0)]  # fmt: skip
    ids = [str(local_id) for local_id, _, _ in taken[:2]]
    result = decode(encode_result("edge:0", ids, [b"\x00" * 40, b"\x01" * 40], source="w", labels=[3, 4]))
    ts = {"dispatched_s": 1.6, "arrived_s": 1.6, "start_s": 1.7, "end_s": 1.8, "service_s": 0.1, "completed_s": 1.9}
    writer.completed("edge:0", ids, labels=[3, 4], ts=ts, meta={"executor": "edge", "gateway": "edge"}, result=result)
    writer.dropped(taken[2][0], "deadline", 2.1)
    writer.rejected("alice", "x", "duplicate_id: ...", 2.2)
    assert writer.close(3.0) == 0 and not intake.pending  # nothing left to drop at the end
    replies = [(topic.rsplit("-", 1)[1], decode(data, key=alice_key if topic.endswith("alice") else run_key))
               for topic, data in sent if "replies-" in topic]  # fmt: skip
    assert [(who, m.kind, m.ids) for who, m in replies] == [("bob", Kind.RESULT, ("x",)), ("alice", Kind.RESULT, ("x",)),
                                                          ("alice", Kind.CONTROL, ("y",)), ("alice", Kind.CONTROL, ("x",))]  # fmt: skip
    assert replies[1][1].labels == (4,) and replies[1][1].payload == b"\x01" * 40
    assert replies[2][1].meta["reason"] == "deadline" and not replies[2][1].meta["rejected"] and replies[3][1].meta["rejected"]
    sink = OpenSinkState(spec)
    records = [decode(data) for topic, data in sent if topic == topics.records]
    assert records[-1].op is ControlOp.EOS
    for message in records + records[:2]:  # every record twice (at-least-once): the first wins
        assert sink.add(message) is None
    assert sink.done and sink.finish() == 0
    sink.write(tmp_path, complete=True)
    requests = pd.read_parquet(tmp_path / "requests.parquet")
    ingress = pd.read_parquet(tmp_path / "ingress.parquet")
    # in arrival order: bob x (1.0), alice x (1.1), alice y (2.0, its receive time)
    assert ingress[["client", "client_request_id"]].values.tolist() == [["bob", "x"], ["alice", "x"], ["alice", "y"]]
    assert requests.arrival_s.tolist() == pytest.approx([1.0, 1.1, 2.0])
    assert requests.latency_s.tolist()[:2] == pytest.approx([0.9, 0.8]) and math.isnan(requests.latency_s.iloc[2])
    assert requests.hop_s.tolist()[:2] == pytest.approx([0.25, 0.4])
    assert ingress.latency_from_received_s.tolist()[:2] == pytest.approx([0.65, 0.4])
    assert requests.dropped.tolist() == [False, False, True] and requests.drop_reason.astype(object).iloc[2] == "deadline"
    assert requests.batch_size.tolist()[:2] == [2, 2] and sink.duplicates == 2 + 1  # the completion's two, the drop's one
