"""Faults, overload and bad input against the real embedded broker: nothing is lost.

Each live run here injects one fault into a real run (real pulsar-lite,
real role processes, real PyTorch) and checks that every request still ends
exactly once in the records, completed or dropped with a reason:

- a worker SIGKILLed while it holds a batch: the broker redelivers it;
- the broker restarted on the same port mid-run: every client reconnects;
- serverless instances dying in their cold start or mid-batch
  (``failure_probability``): the scheduler retries up to ``policy.max_retries``;
- a link outage (a bandwidth trace at zero) plus bad messages on every
  consumed topic: transfers wait, the bad messages go to the dead-letter topic;
- overload at several times the sustainable rate: bounded queues, shedding
  with a reason, recovery;
- SIGINT / SIGTERM to ``python -m live.deploy.local`` and ``python -m experiments.run
  backend=live``: everything stopped, records flushed, run marked incomplete.

Plus broker-free checks: bad live configuration, the sink's dead letters.
The simulator's side of the same faults is in tests/sim/test_faults.py.
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pulsar
import pytest

from live.wire.broker import topic
from live.config import build_run
from live.wire.messages import HEADER, Kind, Message, encode, encode_batch, encode_request, encode_result
from live.deploy.local import run_live
from live.roles.sink import SinkState
from spec.records import BATCH_COLUMNS, REQUEST_COLUMNS
from spec.validation import ConfigError

pytestmark = pytest.mark.live

ROOT = Path(__file__).resolve().parents[2]
LINEAR = {"kind": "linear", "per_item_s": 0.0005, "base_s": 0.002}


def edge_config(num_requests: int = 150, rate_rps: float = 40.0, *, slo_s: float = 5.0, max_batch: int = 4) -> dict:
    return {
        "seed": 7,
        "workload": {
            "num_requests": num_requests,
            "sources": [{"name": "cam", "size_bytes": 256, "slo_s": slo_s, "gateway": "edge",
                         "arrivals": {"kind": "poisson", "rate_rps": rate_rps}}],
        },
        "cluster": {"executors": [{"name": "edge", "kind": "edge", "gateway": "edge", "profile": LINEAR}]},
        "policy": {"placement": {"_target_": "policies.placement.StaticPlacement"},
                   "batching": {"_target_": "policies.batching.TimeoutBatching", "max_batch_size": max_batch, "max_wait_s": 0.02}},
        "live": {"model": "mlp", "timeout_s": 60, "startup_timeout_s": 60},
    }  # fmt: skip


def check_ended_exactly_once(result, count: int, reruns_allowed: int = 0) -> int:
    """Every request of the workload in the records once: completed, or dropped with a reason.

    ``reruns_allowed``: how many completed requests may also sit in a second finished batch (run again
    after a crash: at-least-once execution, exactly-once records). Returns how many did.
    """
    requests = result.requests
    assert tuple(requests.columns) == REQUEST_COLUMNS and tuple(result.batches.columns) == BATCH_COLUMNS
    assert requests["request_id"].tolist() == list(range(count))
    completed = requests["completed_s"].notna().to_numpy()
    dropped = requests["dropped"].to_numpy(bool)
    assert not (completed & dropped).any()
    assert (completed | dropped).all()
    assert requests.loc[dropped, "drop_reason"].notna().all()
    assert result.summary["completed"] + result.summary["dropped"] == count
    finished = result.batches[result.batches["start_s"].notna()]
    reruns = int(finished["size"].sum()) - int(completed.sum())
    assert 0 <= reruns <= reruns_allowed, reruns  # each completed request in exactly one finished batch (or a rerun)
    return reruns


def figures(name: str, **values) -> None:
    """Print measured figures (visible with ``pytest -s``)."""
    print(f"\n[fault figures] {name}: " + json.dumps(values, default=str))


# ---------------------------------------------------------------------------
# a worker killed while it holds a batch
# ---------------------------------------------------------------------------


def test_a_worker_killed_mid_batch_is_redelivered_and_restarted(broker, tmp_path):
    # 6 s of arrivals: the restarted worker (a fresh torch import, ~3 s on a loaded machine) is ready well before the end
    config = edge_config(num_requests=300, rate_rps=50)
    config["live"]["broker"] = {"url": broker.url}
    config["live"]["executors"] = {"edge": {"replicas": 2}}
    config["live"]["redeliver_after_s"] = 1.0

    def kill_a_worker(handle):
        handle.sleep_until(0.8)
        pid = handle.pid("worker-edge-0")
        # frozen first, so that it surely holds an unacknowledged batch (received, never acked) when it dies
        os.kill(pid, signal.SIGSTOP)
        handle.notes["stopped_at_s"] = handle.now()
        handle.sleep_until(handle.now() + 0.4)
        os.kill(pid, signal.SIGKILL)
        handle.notes["killed_at_s"] = handle.now()
        handle.notes["killed_pid"] = pid

    result = run_live(config, tmp_path, on_start=kill_a_worker)
    check_ended_exactly_once(result, 300)
    assert result.summary["complete"] is True
    assert result.summary["dropped"] == 0
    # the broker delivered what the dead worker held again, and the records say so
    assert result.summary["redelivered"] >= 1
    assert int(result.batches["redelivered"].sum()) == result.summary["redelivered"]
    # the orchestrator restarted the dead worker (a new pid), which took its share again
    assert result.summary["restarts"] == 1 and result.extra["restarts"] == {"worker-edge-0": 1}
    run_file = json.loads((tmp_path / "run.json").read_text())
    assert run_file["pids"]["worker-edge-0"] != result.extra["faults"]["killed_pid"]
    roles = result.extra["roles"]
    assert roles["worker-edge-0"]["batches"] >= 1  # the restarted one
    # the broker redelivers what a dead consumer held when it sees the connection close; pulsar-lite keeps
    # the consumer of a connection that was reset instead, and then the gateway publishes the batch again
    by_broker = roles["worker-edge-0"]["redelivered"] + roles["worker-edge-1"]["redelivered"]
    by_gateway = roles["gateway-edge"]["redelivered"]
    assert by_broker + by_gateway >= 1
    assert result.summary["latency_p99_s"] < 5.0  # waited ~redeliver_after_s at most, not the run's timeout
    figures("worker killed", redelivered=result.summary["redelivered"], by_broker=by_broker, by_gateway=by_gateway,
            restarts=result.summary["restarts"],
            batches=len(result.batches), duplicate_results=roles["gateway-edge"]["duplicate_results"],
            killed_at_s=result.extra["faults"]["killed_at_s"], p99_s=result.summary["latency_p99_s"])  # fmt: skip


def test_a_single_worker_killed_with_default_settings_costs_seconds_not_the_redelivery_cap(broker, tmp_path):
    """One worker, every live setting at its default (redeliver_after_s 30 s): its loss is noticed from its
    own measured service times, and the batches it held go again as soon as it is back."""
    config = edge_config(num_requests=300, rate_rps=60)
    config["live"]["broker"] = {"url": broker.url}

    def kill_the_worker(handle):
        handle.sleep_until(1.5)
        pid = handle.pid("worker-edge-0")
        os.kill(pid, signal.SIGSTOP)  # it surely holds a batch, received and never acknowledged
        handle.sleep_until(handle.now() + 0.3)
        os.kill(pid, signal.SIGKILL)
        handle.notes["killed_at_s"] = handle.now()

    result = run_live(config, tmp_path, on_start=kill_the_worker)
    check_ended_exactly_once(result, 300)
    assert result.summary["complete"] is True and result.summary["dropped"] == 0
    assert result.summary["restarts"] == 1
    killed_at_s = result.extra["faults"]["killed_at_s"]
    held = result.requests[result.requests["arrival_s"] < killed_at_s]
    worst_s = float(result.requests["latency_s"].max())
    # a restart (process start, torch import, model load) plus a patience of a few service times: seconds,
    # where the 30 s cap alone left p50 at 26 s
    assert worst_s < 10.0, worst_s
    figures("single worker killed, defaults", worst_latency_s=worst_s, p99_s=result.summary["latency_p99_s"],
            redelivered_by_gateway=result.extra["roles"]["gateway-edge"]["redelivered"], held=len(held))


def test_a_source_killed_mid_run_resumes_its_schedule_and_nothing_is_lost_or_duplicated(broker, tmp_path):
    config = edge_config(num_requests=420, rate_rps=60)  # 7 s of arrivals
    config["live"]["broker"] = {"url": broker.url}

    def kill_the_source(handle):
        handle.sleep_until(2.0)
        os.kill(handle.pid("source-cam"), signal.SIGKILL)
        handle.notes["killed_at_s"] = handle.now()

    result = run_live(config, tmp_path, on_start=kill_the_source)
    check_ended_exactly_once(result, 420)  # each request once in the records: none lost, none twice
    assert result.summary["complete"] is True and result.summary["dropped"] == 0
    assert result.extra["restarts"] == {"source-cam": 1}
    roles = result.extra["roles"]
    resent = roles["source-cam"]["resent_after_restart"]
    assert resent > 60  # what was due by the restart went again
    assert roles["gateway-edge"]["duplicate_requests"] >= 1  # and the gateway kept one copy of each
    killed_at_s = result.extra["faults"]["killed_at_s"]
    after = result.requests[result.requests["arrival_s"] > killed_at_s + 4.0]
    assert len(after) > 100 and after["latency_s"].median() < 0.5  # back on schedule once restarted
    figures("source killed", resent=resent, duplicates=roles["gateway-edge"]["duplicate_requests"],
            p99_s=result.summary["latency_p99_s"], worst_s=float(result.requests["latency_s"].max()))


def test_a_sink_killed_mid_run_is_restarted_from_its_log_and_keeps_every_record_once(broker, tmp_path):
    config = edge_config(num_requests=420, rate_rps=60)  # 7 s of arrivals
    config["live"]["broker"] = {"url": broker.url}

    def kill_the_sink(handle):
        handle.sleep_until(4.0)
        os.kill(handle.pid("sink"), signal.SIGKILL)  # while records flow to it
        handle.notes["killed_at_s"] = handle.now()

    result = run_live(config, tmp_path, on_start=kill_the_sink)
    check_ended_exactly_once(result, 420)
    assert result.summary["complete"] is True and result.summary["dropped"] == 0
    assert result.extra["restarts"] == {"sink": 1}
    sink = result.extra["roles"]["sink"]
    assert sink["replayed_after_restart"] > 20  # the records (one per batch) the killed sink had taken, from its log
    assert not (tmp_path / "records.wal").exists()  # the tables are written: the log is gone
    figures("sink killed", replayed=sink["replayed_after_restart"], duplicates=sink["duplicates"],
            p99_s=result.summary["latency_p99_s"])


def test_a_gateway_killed_mid_run_is_restarted_and_every_request_ends_once(broker, tmp_path):
    config = edge_config(num_requests=600, rate_rps=60)  # 10 s of arrivals
    config["live"]["broker"] = {"url": broker.url}

    def kill_the_gateway(handle):
        handle.sleep_until(4.0)
        os.kill(handle.pid("gateway-edge"), signal.SIGKILL)  # with requests queued and batches in flight
        handle.notes["killed_at_s"] = handle.now()

    result = run_live(config, tmp_path, on_start=kill_the_gateway)
    # requests finished in the last moments before the kill (their records out, not yet acknowledged) ran again
    reruns = check_ended_exactly_once(result, 600, reruns_allowed=30)
    assert result.summary["complete"] is True and result.summary["dropped"] == 0
    assert result.extra["restarts"] == {"gateway-edge": 1}
    killed_at_s = result.extra["faults"]["killed_at_s"]
    after = result.requests[result.requests["arrival_s"] > killed_at_s + 4.0]
    assert len(after) > 100 and after["latency_s"].median() < 0.5  # back to normal once restarted
    gateway = result.extra["roles"]["gateway-edge"]
    figures("gateway killed", reruns=reruns, worst_s=float(result.requests["latency_s"].max()), p99_s=result.summary["latency_p99_s"],
            stale_results=gateway.get("stale_results"), duplicate_requests=gateway.get("duplicate_requests"))


def test_a_gateway_killed_under_a_planner_replays_its_log_and_keeps_its_plan(broker, tmp_path):
    from tests.live.test_replay import planner_config  # edge + serverless, the edge-first planner re-planning every second

    config = planner_config()
    config["workload"]["num_requests"] = 600  # 10 s at 60 req/s
    config["policy"]["planner"]["nominal_rate_rps"] = 10.0  # its prior's plan (edge batches of 1) is not what 60 req/s gets
    config["policy"]["batching"]["max_wait_s"] = 0.2  # requests queued at any moment: the kill finds some held
    config["live"].update(event_log=False, broker={"url": broker.url}, timeout_s=90)  # the log kept for recovery only

    def kill_the_gateway(handle):
        handle.sleep_until(4.3)
        os.kill(handle.pid("gateway-edge"), signal.SIGKILL)
        handle.notes["killed_at_s"] = handle.now()

    result = run_live(config, tmp_path, on_start=kill_the_gateway)
    reruns = check_ended_exactly_once(result, 600, reruns_allowed=30)
    assert result.summary["complete"] is True and result.summary["dropped"] == 0
    assert result.extra["restarts"] == {"gateway-edge": 1}
    killed_at_s = result.extra["faults"]["killed_at_s"]
    gateway = result.extra["roles"]["gateway-edge"]
    replay = gateway["replay"]
    assert replay["status"] == "replayed", replay  # every replayed call gave the logged actions
    assert replay["held"] > 0 and replay["payloads_back"] == replay["held"]  # queued at the kill, redelivered, not taken twice
    plans = result.plans.sort_values("at_s")
    before = plans[plans["at_s"] < killed_at_s]
    after = plans[plans["at_s"] > killed_at_s]
    assert len(before) >= 3 and len(after) >= 3
    # right after the restart the plan in force is the last one adopted before the kill, not the prior's
    in_force = replay["plan_in_force"]
    assert in_force["at_s"] == pytest.approx(before["at_s"].iloc[-1]) and in_force["batch_size"] == before["batch_size"].iloc[-1]
    assert in_force["batch_size"]["edge"] > 1 and before["batch_size"].iloc[0]["edge"] == 1
    # ... and the planner carries on from it: no new initial plan (a fresh policy's first), the replayed
    # re-plan timer fires (late, the gateway was down) and re-plans from the measured rate
    assert (plans["trigger"] == "initial").sum() == 1 and after["trigger"].iloc[0] == "periodic"
    busy = after[after["at_s"] < result.requests["arrival_s"].max() - 1.0]  # later, the rate it measures falls to 0
    assert len(busy) >= 2 and (busy["batch_size"].map(lambda b: b["edge"]) > 1).all()
    assert not (result.plans["at_s"].duplicated()).any()  # no plan recorded twice
    assert not (tmp_path / "eventlog" / "gateway-edge.jsonl").exists()  # a recovery log goes at the gateway's normal end
    figures("gateway killed, replayed", reruns=reruns, worst_s=float(result.requests["latency_s"].max()),
            p99_s=result.summary["latency_p99_s"], **{k: replay[k] for k in ("entries", "replay_s", "held", "in_flight", "timers",
            "payloads_back", "ended_again", "inherited_results", "torn_line")}, resend_asked=gateway.get("resend_asked"))  # fmt: skip


# ---------------------------------------------------------------------------
# the broker restarted on the same port during the run
# ---------------------------------------------------------------------------


def test_a_broker_restart_mid_run_loses_nothing(tmp_path):
    config = edge_config(num_requests=240, rate_rps=40)  # the run starts its own embedded broker

    def restart_the_broker(handle):
        handle.sleep_until(1.0)
        handle.notes["down_at_s"] = handle.now()
        handle.broker.stop()  # SIGTERM; down for 1.5 s, then back on the same port with the same data
        time.sleep(1.5)
        handle.broker.start()
        handle.notes["up_at_s"] = handle.now()

    result = run_live(config, tmp_path, on_start=restart_the_broker)
    faults = result.extra["faults"]
    requests = result.requests
    completed_s = np.sort(requests["completed_s"].dropna().to_numpy())
    after = completed_s[completed_s > faults["up_at_s"]]
    recovery_s = float(after[0] - faults["up_at_s"]) if len(after) else math.inf  # from back up to the first completion
    late = requests[requests["arrival_s"] > faults["up_at_s"] + recovery_s + 1.0]
    gateway = result.extra["roles"]["gateway-edge"]
    figures("broker restart", down_s=faults["up_at_s"] - faults["down_at_s"], recovery_after_up_s=recovery_s,
            longest_gap_between_completions_s=float(np.diff(completed_s).max()), p99_s=result.summary["latency_p99_s"],
            late_p50_s=float(late["latency_s"].median()) if len(late) else None, duplicate_records=result.summary["duplicate_records"],
            duplicate_requests=gateway["duplicate_requests"], duplicate_results=gateway["duplicate_results"])  # fmt: skip
    check_ended_exactly_once(result, 240)
    assert result.summary["complete"] is True and result.summary["dropped"] == 0
    assert result.summary["restarts"] == 0  # no role died: every client reconnected by itself
    assert recovery_s < 10.0
    # requests that arrived after the recovery are served as before the restart
    assert len(late) > 0 and late["latency_s"].median() < 0.5


# ---------------------------------------------------------------------------
# serverless instances that die in their cold start or mid-batch
# ---------------------------------------------------------------------------


def failing_pool_config(max_retries: int) -> dict:
    config = edge_config(num_requests=4, rate_rps=4.0, max_batch=2)
    config["seed"] = 6  # the pool's failure draws for seed 6: the first instance dies in its cold start, the second mid-batch
    config["cluster"] = {
        "executors": [{"name": "lambda", "kind": "serverless", "keep_alive_s": 30, "memory_mb": 1024, "max_instances": 2,
                       "profile": LINEAR, "failure_probability": 0.4,
                       "pricing": {"kind": "serverless", "price_per_gb_s": 0.0000166667, "per_invocation": 0.0000002}}],
    }  # fmt: skip
    config["policy"]["batching"]["max_wait_s"] = 0.3
    config["policy"]["max_retries"] = max_retries
    config["workload"]["sources"][0]["slo_s"] = 30.0
    return config


def test_serverless_failures_are_retried_then_dropped_with_a_reason(broker, tmp_path):
    from tests.sim.test_faults import check_retries  # the simulator's semantics, checked on the live tables

    config = failing_pool_config(max_retries=1)
    config["live"]["broker"] = {"url": broker.url}
    result = run_live(config, tmp_path)
    check_ended_exactly_once(result, 4)
    assert result.summary["complete"] is True
    check_retries(result, max_retries=1)
    pool = result.extra["roles"]["pool-lambda"]
    injected = pool["injected_failures"]
    failed_batches = int(result.batches["start_s"].isna().sum())
    # every injected death failed exactly one batch, and each shows in the records
    assert sum(injected.values()) == pool["failed"] == failed_batches
    assert injected["cold_start"] >= 1 and injected["execution"] >= 1  # with this seed, both kinds
    assert result.summary["retries"] >= 1
    # the same config in the simulator follows the same rules (its failures are drawn by its own generator)
    from sim import simulate

    simulated = simulate({k: v for k, v in config.items() if k != "live"})
    check_retries(simulated, max_retries=1)
    figures("serverless failures", injected=injected, failed_batches=failed_batches, retries=result.summary["retries"],
            drops=result.summary["drops_by_reason"], instances_started=pool["instances_started"],
            sim_retries=simulated.summary["retries"], sim_drops=simulated.summary["drops_by_reason"])  # fmt: skip


# ---------------------------------------------------------------------------
# a link outage, with bad messages waiting on every consumed topic
# ---------------------------------------------------------------------------

OUTAGE_FROM_S, OUTAGE_TO_S = 2.0, 4.0
ROLES_OF_CLOUD_RUN = ("sink", "worker-cloud-0", "worker-cloud-1", "gateway-edge", "source-cam")


def forged_control(op: str, source: str) -> bytes:
    """A CONTROL message with an op that is not a ``ControlOp`` (``encode_control`` refuses to write one)."""
    return encode(Message(kind=Kind.CONTROL, ids=(), sizes=(), source=source, trace_id="", meta={"op": op}))


def bad_messages() -> list[bytes]:
    """Malformed on the wire: random bytes, nothing, a cut header, a wrong version, sizes that do not add up."""
    valid = encode_request("0", b"abcd", source="cam", sent_s=0.0)
    wrong_version = bytearray(valid)
    wrong_version[2] = 99
    return [
        np.random.default_rng(0).bytes(64),
        b"",
        valid[: HEADER.size + 10],
        bytes(wrong_version),
        valid + b"extra payload bytes the header does not declare",
    ]


def test_a_link_outage_and_bad_messages_lose_nothing(broker, client, tmp_path):
    trace = tmp_path / "bandwidth.json"
    samples = [10.0] * 30
    samples[int(OUTAGE_FROM_S):int(OUTAGE_TO_S)] = [0.0] * int(OUTAGE_TO_S - OUTAGE_FROM_S)
    trace.write_text(json.dumps(samples))  # 10 MB/s, down from 2 s to 4 s
    config = edge_config(num_requests=200, rate_rps=40.0)
    config["workload"]["sources"][0]["size_bytes"] = 20_000
    config["cluster"] = {"executors": [{"name": "cloud", "kind": "cloud", "slots": 2, "profile": LINEAR}],
                         "links": {"cloud": {"delay_s": 0.01, "bandwidth_trace": str(trace)}}}  # fmt: skip
    config["live"]["broker"] = {"url": broker.url}
    # unsigned, so that each role's parser meets every malformation (signed, a malformed message fails its
    # tag first: bad_mac, as tests/live/test_harness.py checks)
    config["live"]["authenticate"] = False
    run_id = "outage" + str(int(time.time() * 1000) % 10**8)

    # before the run: bad messages on every topic a role consumes (each role reads from the earliest message)
    wrong = {
        "requests-edge": encode_batch("edge:0", ["0"], [b"x"], source="edge"),  # a batch where requests go
        "batches-cloud": encode_request("0", b"x", source="cam", sent_s=0.0),  # a request where batches go
        "results-edge": encode_result("edge:99999", ["0"], source="worker", meta={"executor": "cloud"}),  # never dispatched
        "records": encode_result("edge:0", ["123456"], source="edge", meta={"executor": "cloud"}),  # no such request
        "control": forged_control("reboot", source="intruder"),  # no such op
        "ready": encode_result("x:0", ["0"], source="intruder"),  # not a ready
    }
    expected = {}
    for name, odd in wrong.items():
        producer = client.create_producer(topic(run_id, name), batching_enabled=False)
        for raw in [*bad_messages(), odd]:
            producer.send(raw)
        producer.close()
        readers = len(ROLES_OF_CLOUD_RUN) if name == "control" else 1  # every role has its own control subscription
        expected[topic(run_id, name)] = readers * (len(bad_messages()) + 1)

    result = run_live(config, tmp_path / "run", run_id=run_id)
    check_ended_exactly_once(result, 200)
    assert result.summary["complete"] is True and result.summary["dropped"] == 0
    requests = result.requests
    # nothing crossed the link while it was down: batches dispatched in the outage arrived after it
    during = requests[(requests["dispatched_s"] >= OUTAGE_FROM_S) & (requests["dispatched_s"] < OUTAGE_TO_S)]
    assert len(during) > 40
    assert (during["dispatched_s"] + during["transfer_s"] >= OUTAGE_TO_S).all()
    before = requests[requests["arrival_s"] < OUTAGE_FROM_S - 0.5]
    assert before["latency_s"].median() < 0.2

    # every bad message went to the dead-letter topic, with its reason and where it came from; no role crashed
    consumer = client.subscribe(topic(run_id, "dead-letter"), "check", consumer_type=pulsar.ConsumerType.Shared,
                                initial_position=pulsar.InitialPosition.Earliest)  # fmt: skip
    got: dict[str, list[str]] = {}
    deadline = time.monotonic() + 15
    while sum(map(len, got.values())) < sum(expected.values()) and time.monotonic() < deadline:
        try:
            msg = consumer.receive(timeout_millis=300)
        except pulsar.Timeout:
            continue
        got.setdefault(msg.properties()["source_topic"], []).append(msg.properties()["reason"])
        consumer.acknowledge(msg)
    consumer.close()
    assert {t: len(r) for t, r in got.items()} == expected
    reasons = [r for rs in got.values() for r in rs]
    for code in ("too_short", "bad_version", "header_length", "payload_length"):
        assert any(r.startswith(code) for r in reasons), code
    assert any("never dispatched" in r for r in got[topic(run_id, "results-edge")])
    roles = result.extra["roles"]
    assert sum(roles[name]["dead_letters"] for name in ROLES_OF_CLOUD_RUN) == sum(expected.values()) - expected[topic(run_id, "ready")]
    figures("link outage + bad messages", dispatched_in_outage=len(during),
            outage_p50_latency_s=float(during["latency_s"].median()), dead_letters=sum(expected.values()),
            uplink_late_p99_s=roles["gateway-edge"]["uplink_late_s"].get("p99"))  # fmt: skip


# ---------------------------------------------------------------------------
# overload: a burst at several times the sustainable rate
# ---------------------------------------------------------------------------

MAX_QUEUE, MAX_INFLIGHT, OVERLOAD_BATCH = 24, 1, 4
BURST_FROM_S, BURST_TO_S = 1.0, 2.5


def test_overload_is_shed_with_a_reason_within_bounds_and_recovers(broker, tmp_path):
    gaps = [1 / 50] * 50 + [1 / 1000] * 1500 + [1 / 50] * 150  # 50/s, then 1000/s for 1.5 s, then 50/s for 3 s
    trace = tmp_path / "gaps.json"
    trace.write_text(json.dumps(gaps))
    config = edge_config(slo_s=0.5)
    config["workload"] = {"sources": [{"name": "cam", "size_bytes": 1024, "slo_s": 0.5, "gateway": "edge",
                                       "arrivals": {"kind": "trace", "path": str(trace), "start_offset_s": 0}}]}  # fmt: skip
    config["policy"]["batching"] = {"_target_": "policies.batching.TimeoutBatching", "max_batch_size": OVERLOAD_BATCH, "max_wait_s": 0.01,
                                    "max_queue": MAX_QUEUE, "max_inflight": MAX_INFLIGHT}  # fmt: skip
    config["live"].update(model="wide_mlp", broker={"url": broker.url})  # a batch of 4 takes ~10-30 ms here: a few hundred/s at most
    result = run_live(config, tmp_path / "run")
    count = len(gaps)
    check_ended_exactly_once(result, count)
    assert result.summary["complete"] is True
    requests, summary = result.requests, result.summary
    gateway = result.extra["roles"]["gateway-edge"]
    worker = result.extra["roles"]["worker-edge-0"]
    capacity_rps = OVERLOAD_BATCH / worker["service_s"]["p50"]
    after = requests[requests["arrival_s"] > BURST_TO_S + 1.0]
    figures("live overload", requests=count, shed=summary["dropped"], drops=summary["drops_by_reason"],
            peak_pending=gateway["peak_pending"], gateway_peak_rss_mb=gateway["peak_rss_mb"],
            model_capacity_rps=capacity_rps, completed_in_burst=int(requests[(requests["arrival_s"] >= BURST_FROM_S)
                                                                    & (requests["arrival_s"] < BURST_TO_S)]["completed_s"].notna().sum()),
            p99_after_s=float(after["latency_s"].quantile(0.99)), slo_after=float(after["met_slo"].mean()))  # fmt: skip
    # the excess was shed, with a reason, at the gateway's bounded queue
    assert set(summary["drops_by_reason"]) == {"queue_full"}
    assert summary["dropped"] > 500
    # bounded: the gateway never held more than its queue plus what was in flight, whatever the load
    assert gateway["peak_pending"] <= MAX_QUEUE + MAX_INFLIGHT * OVERLOAD_BATCH
    assert gateway["peak_rss_mb"] is None or gateway["peak_rss_mb"] < 250  # ~110 MB of it is Python, numpy, pandas and the client
    # recovered: a second after the burst, requests meet their SLO again
    assert len(after) > 50 and after["met_slo"].mean() >= 0.95
    before = requests[requests["arrival_s"] < BURST_FROM_S]
    assert before["met_slo"].mean() >= 0.95


# ---------------------------------------------------------------------------
# Ctrl-C / SIGTERM during a run
# ---------------------------------------------------------------------------


def _wait_running(proc: subprocess.Popen, out: Path, timeout_s: float = 60.0) -> dict:
    """The run's ``run.json`` once its clock has started."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()[0]
        path = out / "run.json"
        if path.is_file():
            return json.loads(path.read_text())
        time.sleep(0.1)
    raise AssertionError(f"the run did not start within {timeout_s}s")


def _leftovers(out: Path) -> list[str]:
    """Processes still running whose command line names the run's folder (roles, instances, broker)."""
    found = subprocess.run(["pgrep", "-f", str(out)], capture_output=True, text=True).stdout.split()
    return [pid for pid in found if int(pid) != os.getpid()]


def _check_interrupted_run(out: Path, count: int, signame: str, pids: dict) -> dict:
    assert _leftovers(out) == []
    for pid in pids.values():
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["complete"] is False and summary["interrupted"] == signame
    requests = pd.read_parquet(out / "requests.parquet")
    batches = pd.read_parquet(out / "batches.parquet")
    assert tuple(requests.columns) == REQUEST_COLUMNS and tuple(batches.columns) == BATCH_COLUMNS
    assert len(requests) == count == summary["count"]
    completed = requests["completed_s"].notna()
    assert 0 < completed.sum() < count  # the records gathered before the signal, flushed
    assert (completed | requests["dropped"]).all()
    assert "run_ended" in summary["drops_by_reason"]  # what had not ended when it stopped
    return summary


def test_sigint_stops_every_process_and_flushes_the_records(tmp_path):
    config = edge_config(num_requests=2000, rate_rps=50)  # 40 s of arrivals: stopped long before
    (tmp_path / "run.json").write_text(json.dumps(config))
    out = tmp_path / "out"
    started = time.monotonic()
    proc = subprocess.Popen([sys.executable, "-m", "live.deploy.local", "--config", str(tmp_path / "run.json"), "--out", str(out)],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)  # fmt: skip
    try:
        running = _wait_running(proc, out)
        time.sleep(1.5)
        proc.send_signal(signal.SIGINT)  # as Ctrl-C at a terminal does (the roles are in sessions of their own)
        output, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 128 + signal.SIGINT, output
    assert "stopped by SIGINT" in output
    summary = _check_interrupted_run(out, 2000, "SIGINT", running["pids"])
    figures("SIGINT", completed=summary["completed"], run_ended=summary["drops_by_reason"]["run_ended"],
            wall_s=time.monotonic() - started)  # fmt: skip


def test_a_sigkilled_orchestrator_leaves_no_process_behind(tmp_path):
    """Roles and broker hold a lifeline to the orchestrator: when it dies by SIGKILL they end by themselves."""
    config = edge_config(num_requests=2000, rate_rps=50)
    (tmp_path / "run.json").write_text(json.dumps(config))
    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "-m", "live.deploy.local", "--config", str(tmp_path / "run.json"), "--out", str(out)],
                            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)  # fmt: skip
    try:
        running = _wait_running(proc, out)
        time.sleep(1.0)
        assert len(_leftovers(out)) >= 5  # the broker (and its wrapper) and the four roles, all running
        proc.kill()
        proc.wait()
        deadline = time.monotonic() + 20
        while _leftovers(out) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert _leftovers(out) == [], subprocess.run(["ps", "-o", "pid,args", "-p", ",".join(_leftovers(out))],
                                                     capture_output=True, text=True).stdout  # fmt: skip
        assert [pid for pid in running["pids"].values() if _alive(pid)] == []
        # and the broker's temporary data went with it (its starter could not remove it any more)
        db_path = next(line for line in (out / "broker" / "pulsar-lite.toml").read_text().splitlines() if line.startswith("db_path"))
        data_root = Path(db_path.split('"')[1]).parent
        assert data_root.name.startswith("edgebatch-broker-data-") and not data_root.exists()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _alive(pid: int) -> bool:
    """Running, not a zombie (an orphan's zombie waits for whoever adopted it to reap it)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def test_sigterm_to_an_experiment_run_stops_every_process_and_flushes_the_records(tmp_path):
    out = tmp_path / "hydra-run"
    cmd = [sys.executable, "-m", "experiments.run", "backend=live", "num_requests=2000", "rate_rps=50",
           f"hydra.run.dir={out}", "live.model=mlp"]  # fmt: skip
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        running = _wait_running(proc, out)
        time.sleep(1.5)
        proc.send_signal(signal.SIGTERM)
        output, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 128 + signal.SIGTERM, output  # stopped, not finished
    assert "stopped by SIGTERM" in output
    _check_interrupted_run(out, 2000, "SIGTERM", running["pids"])
    assert (out / "config.yaml").exists() and (out / "plans.parquet").exists()


# ---------------------------------------------------------------------------
# bad configuration: caught before anything starts, naming the field and what is allowed
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(("live", "field", "allowed"), [
    ({"bogus": 1}, "live.bogus", "one of broker, model, executors, timeout_s"),
    ({"timeout": 60}, "live.timeout", "timeout_s"),
    ({"timeout_s": 0}, "live.timeout_s", "a number > 0"),
    ({"timeout_s": "60"}, "live.timeout_s", "a number > 0"),
    ({"startup_timeout_s": -1}, "live.startup_timeout_s", "a number > 0"),
    ({"telemetry_period_s": 0}, "live.telemetry_period_s", "a number > 0"),
    ({"emulate_links": "yes"}, "live.emulate_links", "true or false"),
    ({"event_log": 1}, "live.event_log", "true or false"),
    ({"recovery_log": "yes"}, "live.recovery_log", "true or false"),
    ({"max_restarts": -1}, "live.max_restarts", "an integer >= 0"),
    ({"max_restarts": 1.5}, "live.max_restarts", "an integer >= 0"),
    ({"redeliver_after_s": 0}, "live.redeliver_after_s", "a number > 0 (finite), or null"),
    ({"redeliver_after_s": float("inf")}, "live.redeliver_after_s", "a number > 0 (finite), or null"),
    ({"broker": "pulsar://127.0.0.1:6650"}, "live.broker", "a mapping"),
    ({"broker": {"url": "http://127.0.0.1:6650"}}, "live.broker.url", "a pulsar:// or pulsar+ssl:// service URL"),
    ({"broker": {"port": 6650}}, "live.broker.port", "one of url, auth_token, tls_trust_certs_file"),
    ({"broker": {"auth_token": 42}}, "live.broker.auth_token", "a non-empty string or null"),
    ({"model": ""}, "live.model", "a model name"),
    ({"executors": ["edge"]}, "live.executors", "a mapping"),
    ({"executors": {"nope": {}}}, "live.executors.nope", "an executor of the cluster: edge"),
    ({"executors": {"edge": 3}}, "live.executors.edge", "a mapping"),
    ({"executors": {"edge": {"replicas": 0}}}, "live.executors.edge.replicas", "an integer >= 1"),
    ({"executors": {"edge": {"threads": 0}}}, "live.executors.edge.threads", "an integer >= 1"),
    ({"executors": {"edge": {"mb_per_thread": 512}}}, "live.executors.edge.mb_per_thread", "one of model, threads, replicas"),
])  # fmt: skip
def test_bad_live_settings_name_the_field_and_what_is_allowed(live, field, allowed):
    config = edge_config()
    config["live"].update(live)
    with pytest.raises(ConfigError) as caught:
        build_run(config)
    assert caught.value.field == field
    assert allowed in str(caught.value)


@pytest.mark.parametrize(("change", "field", "allowed"), [
    ({"live": "fast"}, "live", "a mapping"),
    ({"policy": {**edge_config()["policy"], "max_retries": -1}}, "policy.max_retries", "an integer >= 0"),
    ({"policy": {**edge_config()["policy"], "retries": 2}}, "policy.retries", "max_retries"),
    ({"cluster": {"executors": [{"name": "fn", "kind": "serverless", "profile": LINEAR, "failure_probability": 2}]}},
     "cluster.executors.fn.failure_probability", "a probability in [0, 1]"),
    ({"seed": -3}, "seed", "an integer >= 0"),
    ({"runs": 3}, "runs", "seed, workload, cluster, policy, sim, live"),
])  # fmt: skip
def test_bad_run_settings_name_the_field_and_what_is_allowed(change, field, allowed):
    config = {**edge_config(), **change}
    with pytest.raises(ConfigError) as caught:
        build_run(config)
    assert caught.value.field == field
    assert allowed in str(caught.value)


def test_a_bad_model_fails_before_anything_starts(tmp_path):
    config = edge_config()
    config["live"]["executors"] = {"edge": {"model": "resnet9000"}}
    with pytest.raises(ConfigError, match=r"live\.executors\.edge\.model='resnet9000' is not allowed: one of cnn, mlp, wide_mlp"):
        run_live(config, tmp_path / "never")
    assert not (tmp_path / "never").exists()  # no folder, no broker, no role


def test_the_command_line_reports_a_bad_setting_without_a_traceback(tmp_path):
    config = edge_config()
    config["live"]["max_restarts"] = "lots"
    (tmp_path / "bad.json").write_text(json.dumps(config))
    done = subprocess.run([sys.executable, "-m", "live.deploy.local", "--config", str(tmp_path / "bad.json"), "--out", str(tmp_path / "out")],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)  # fmt: skip
    assert done.returncode == 2
    assert "live.max_restarts='lots' is not allowed: an integer >= 0" in done.stderr
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "out").exists()


# ---------------------------------------------------------------------------
# the sink's dead letters (broker-free)
# ---------------------------------------------------------------------------


def test_the_sink_says_why_a_message_is_not_a_record():
    sink = SinkState(build_run(edge_config(num_requests=3)))
    from live.wire.messages import ControlOp, DecodeError, decode, encode_control, encode_drop

    assert sink.add(decode(encode_request("0", b"x", source="cam", sent_s=0.0))).startswith("unexpected: a REQUEST")
    assert "not ids of this run" in sink.add(decode(encode_drop(["7"], "deadline", source="edge")))
    assert "executor 'gpu'" in sink.add(decode(encode_result("edge:0", ["1"], source="edge", meta={"executor": "gpu"})))
    assert "op 'eos'" in sink.add(decode(encode_control(ControlOp.EOS, source="x")))
    with pytest.raises(DecodeError, match="unknown control op 'reboot'"):  # the decoder's dead letter, before the sink
        decode(forged_control("reboot", source="x"))
    assert sink.add(decode(encode_drop(["2"], "deadline", source="edge"))) is None
    assert sink.ended_count == 1 and sink.ignored == 4


# ---------------------------------------------------------------------------
# the gateway's own redelivery (broker-free)
# ---------------------------------------------------------------------------


class _Clock:
    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t


def _gateway_with_three_batches():
    from live.config import Topics
    from live.roles.gateway import Gateway
    from live.wire.messages import decode

    config = edge_config(num_requests=3)
    config["policy"]["batching"] = {"_target_": "policies.batching.NoBatching"}
    config["live"]["redeliver_after_s"] = 1.0
    spec = build_run(config)
    clock, sent = _Clock(), []
    gateway = Gateway(spec, "edge", Topics("unit"), lambda topic_name, data, properties=None: sent.append((topic_name, data)), clock)
    for i in range(3):
        clock.t = float(spec.arrivals.arrival_s[i])
        gateway.on_request(encode_request(str(i), b"x" * 256, source="cam", sent_s=clock.t, ts={"arrival_s": clock.t}))
    batches = [decode(data) for topic_name, data in sent if topic_name == Topics("unit").batches("edge")]
    assert [b.batch_id for b in batches] == ["edge:0", "edge:1", "edge:2"]
    return gateway, clock, sent, batches


def _result(batch):
    return encode_result(batch.batch_id, list(batch.ids), source="w", ts={"start_s": 0.0, "end_s": 0.001, "service_s": 0.001},
                         meta={"executor": "edge"})  # fmt: skip


def _republished(sent, gateway):
    from live.wire.messages import decode

    return [decode(data).batch_id for topic_name, data in sent if topic_name.endswith("batches-edge")][3:]


def test_a_batch_overtaken_by_a_later_one_is_published_again():
    gateway, clock, sent, batches = _gateway_with_three_batches()
    clock.t += 0.5
    gateway.on_result(_result(batches[1]))  # a later batch came back: batch 0 looks stranded
    gateway.on_result(_result(batches[2]))
    clock.t += 0.6
    gateway.poll()
    assert _republished(sent, gateway) == ["edge:0"]
    gateway.on_result(_result(batches[0]))
    gateway.on_result(_result(batches[0]))  # the stranded copy comes back after all: a duplicate
    assert gateway.counts["duplicate_results"] == 1 and gateway.done
    from live.wire.messages import decode

    record = [decode(d) for t, d in sent if t.endswith("records") and decode(d).batch_id == "edge:0"][0]
    assert record.meta["redelivered"] == 1


def test_a_batch_waiting_in_a_backlog_is_not_published_again_but_a_silent_executor_is():
    gateway, clock, sent, batches = _gateway_with_three_batches()
    clock.t += 0.9
    gateway.on_result(_result(batches[0]))  # results keep coming in order: 1 and 2 wait their turn
    clock.t += 0.3
    gateway.poll()
    assert _republished(sent, gateway) == []
    clock.t += 1.0  # then nothing from the executor for a whole redeliver_after_s: both go again, in order
    gateway.poll()
    assert _republished(sent, gateway) == ["edge:1", "edge:2"]
    assert gateway.counts["redelivered"] == 2
