"""The inline executor (``live.executors.<name>.inline``): an edge device run in its gateway's process.

Config checks (where it applies), the executor thread on its own (a batch in,
a signed RESULT out on the gateway's inbox; a bad batch to the dead-letter
topic), and one live run: every request completes, with the simulator's
columns, and no worker process is started.
"""

from __future__ import annotations

import copy
import os
import queue

import pytest

from live.config import build_run
from live.deploy.local import role_commands, run_live
from live.roles.inline_executor import InlineExecutors
from live.wire.messages import Kind, WireSettings, configure, decode, encode_batch
from live.wire.topics import Topics
from spec.records import BATCH_COLUMNS, REQUEST_COLUMNS
from spec.validation import ConfigError

pytestmark = pytest.mark.live

COUNT = 60


def inline_config(num_requests: int = COUNT) -> dict:
    return {
        "seed": 5,
        "workload": {
            "num_requests": num_requests,
            "sources": [{"name": "cam", "size_bytes": 256, "slo_s": 0.5, "gateway": "edge",
                         "arrivals": {"kind": "poisson", "rate_rps": 60.0}}],
        },
        "cluster": {"executors": [{"name": "edge", "kind": "edge", "gateway": "edge",
                                   "profile": {"kind": "linear", "per_item_s": 0.0005, "base_s": 0.002}}]},
        "policy": {"placement": {"_target_": "policies.placement.StaticPlacement"},
                   "batching": {"_target_": "policies.batching.TimeoutBatching", "max_batch_size": 4, "max_wait_s": 0.01}},
        "live": {"model": "mlp", "timeout_s": 60, "startup_timeout_s": 60, "executors": {"edge": {"inline": True}}},
    }  # fmt: skip


# ---------------------------------------------------------------------------
# where it applies
# ---------------------------------------------------------------------------


def test_an_inline_executor_starts_no_worker_process():
    spec = build_run(inline_config())
    assert spec.settings.executors["edge"].inline is True
    names = [name for name, _, _ in role_commands(spec)]
    assert names == ["sink", "gateway-edge", "source-cam"]
    plain = inline_config()
    plain["live"]["executors"] = {}
    assert "worker-edge-0" in [name for name, _, _ in role_commands(build_run(plain))]


@pytest.mark.parametrize(
    "change, why",
    [
        (lambda c: c["cluster"]["executors"][0].update(slots=2), "one slot"),
        (lambda c: c["live"]["executors"]["edge"].update(replicas=2), "one replica"),
        (lambda c: c["live"]["executors"]["edge"].update(inline="yes"), "true or false"),
        (lambda c: c["cluster"]["executors"][0].update(kind="cloud", gateway=None), "remote"),
    ],
)
def test_inline_is_refused_where_it_does_not_apply(change, why):
    config = copy.deepcopy(inline_config())
    change(config)
    if config["cluster"]["executors"][0].get("gateway") is None:  # a remote executor needs a gateway for the source
        config["cluster"]["executors"].append({"name": "cam-edge", "kind": "edge", "gateway": "edge",
                                               "profile": {"kind": "linear", "per_item_s": 0.0005, "base_s": 0.002}})  # fmt: skip
    with pytest.raises(ConfigError) as error:
        build_run(config)
    assert "live.executors.edge.inline" in str(error.value)
    assert why in str(error.value)


# ---------------------------------------------------------------------------
# the thread on its own (no broker)
# ---------------------------------------------------------------------------


class _DeadLetters:
    def __init__(self):
        self.sent = []

    def send(self, content, properties=None):
        self.sent.append((content, properties))


@pytest.fixture
def signed():
    before = configure(WireSettings(key=os.urandom(32)))
    try:
        yield
    finally:
        configure(before)


def test_a_batch_goes_to_the_thread_and_its_result_to_the_inbox(signed):
    spec = build_run(inline_config())
    topics, inbox, dlq, elsewhere = Topics("t1"), queue.SimpleQueue(), _DeadLetters(), []
    inline = InlineExecutors(spec, "edge", topics, dlq, inbox)
    send = inline.route(lambda topic, data, properties=None: elsewhere.append(topic))
    inline.start(lambda: 1.0)
    try:
        send(topics.records, b"a record")  # anything but the inline executor's batches goes on to the broker
        assert elsewhere == [topics.records]
        send(topics.batches("edge"), encode_batch("edge:0", ["3", "4"], [b"\x01" * 256, b"\x02" * 256], source="edge",
                                                  meta={"executor": "edge"}))  # fmt: skip
        kind, consumer, msg = inbox.get(timeout=30)
        consumer.acknowledge(msg)  # nothing to acknowledge: no broker holds it
        result = decode(msg.data())  # signed with the run's key, as a worker's
        assert (kind, result.kind, result.batch_id, result.ids) == ("result", Kind.RESULT, "edge:0", ("3", "4"))
        assert len(result.labels) == 2 and result.meta["executor"] == "edge" and not result.meta.get("failed")
        assert set(result.ts) == {"received_s", "start_s", "end_s", "service_s"}
        send(topics.batches("edge"), b"not a message")  # a bad batch: to the dead-letter topic, nothing comes back
        send(topics.batches("edge"), encode_batch("edge:1", ["5"], [b"x"], source="intruder"))
        send(topics.batches("edge"), encode_batch("edge:2", ["6"], [b"y"], source="edge"))
        kind, _, msg = inbox.get(timeout=30)
        assert decode(msg.data()).batch_id == "edge:2"
    finally:
        stats = inline.close()["inline_executors"]["edge"]
    assert [p["source_topic"] for _, p in dlq.sent] == [topics.batches("edge")] * 2
    assert "bad_magic" in dlq.sent[0][1]["reason"] and "unknown gateway" in dlq.sent[1][1]["reason"]
    assert (stats["batches"], stats["dead_letters"]) == (2, 2)


def test_without_an_inline_executor_the_send_is_untouched():
    config = inline_config()
    config["live"]["executors"] = {}
    inline = InlineExecutors(build_run(config), "edge", Topics("t2"), _DeadLetters(), queue.SimpleQueue())
    send = object()
    assert inline.route(send) is send
    assert inline.close() == {}


# ---------------------------------------------------------------------------
# a live run
# ---------------------------------------------------------------------------


def test_a_live_run_with_an_inline_executor_completes_every_request(tmp_path):
    result = run_live(inline_config(), tmp_path / "run")
    requests = result.requests
    assert tuple(requests.columns) == REQUEST_COLUMNS and tuple(result.batches.columns) == BATCH_COLUMNS
    assert result.summary["complete"] is True and int(result.summary["completed"]) == COUNT
    assert (requests["executor"] == "edge").all() and (requests["service_s"] > 0).all()
    assert int(result.batches["size"].sum()) == COUNT
    roles = result.extra["roles"]
    assert not [name for name in roles if name.startswith("worker-")]
    stats = roles["gateway-edge"]["inline_executors"]["edge"]
    assert stats["batches"] == len(result.batches) and stats["dead_letters"] == 0
