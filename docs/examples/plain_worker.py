"""A worker for an edgebatch run, written from docs/PROTOCOL.md alone: pulsar-client and the standard library.

    EDGEBATCH_RUN_KEY=<the run's key, hex> python docs/examples/plain_worker.py \
        pulsar://127.0.0.1:6650 RUN_ID EXECUTOR NAME

It joins the run as one external replica of EXECUTOR (the run lists NAME in
``live.executors.<EXECUTOR>.external``), says ready, waits for the start,
then answers every batch with one label per request (the first payload byte
modulo 10: a stand-in for a model) until the run's stop. It imports nothing
from edgebatch.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import struct
import sys
import time

import pulsar

FIXED = struct.Struct(">2sBBI")  # magic, version, kind, header length (PROTOCOL.md, "Bytes")
REQUEST, BATCH, RESULT, CONTROL = 1, 2, 3, 4
MAC_BYTES = 32


class Codec:
    """Encode and decode edgebatch messages, signed with the run key (version 2) or unsigned (version 1)."""

    def __init__(self, key: bytes | None):
        self.key = key

    def encode(self, kind: int, header: dict, payload: bytes = b"") -> bytes:
        body = json.dumps(header, separators=(",", ":")).encode("utf-8")
        frame = FIXED.pack(b"EB", 2 if self.key else 1, kind, len(body)) + body + payload
        return frame + hmac.new(self.key, frame, hashlib.sha256).digest() if self.key else frame

    def decode(self, data: bytes) -> tuple[int, dict, bytes]:
        """(kind, header, payload); ValueError for anything that is not a well-formed message of this run."""
        magic, version, kind, header_len = FIXED.unpack_from(data, 0)
        if magic != b"EB" or version != (2 if self.key else 1):
            raise ValueError(f"magic {magic!r} or version {version}")
        if self.key:
            data, tag = data[:-MAC_BYTES], data[-MAC_BYTES:]
            if not hmac.compare_digest(tag, hmac.new(self.key, data, hashlib.sha256).digest()):
                raise ValueError("bad tag")
        header = json.loads(data[FIXED.size:FIXED.size + header_len])
        payload = data[FIXED.size + header_len:]
        if sum(header["sizes"]) != len(payload):
            raise ValueError("payload length")
        return kind, header, payload


def topic(run_id: str, name: str) -> str:
    return f"persistent://public/default/edgebatch-{run_id}-{name}"


def control(codec: Codec, op: str, source: str, meta: dict | None = None) -> bytes:
    return codec.encode(CONTROL, {"ids": [], "sizes": [], "size_bytes": 0, "source": source, "trace_id": "", "ts": {},
                                  "meta": {**(meta or {}), "op": op}})  # fmt: skip


def wait_for_start(codec: Codec, consumer, dead_letters) -> float | None:
    """The run's epoch (Unix seconds of now_s = 0) from its ``start``; None on ``stop``."""
    while True:
        msg = consumer.receive()
        consumer.acknowledge(msg)
        try:
            kind, header, _ = codec.decode(msg.data())
        except (ValueError, KeyError, struct.error) as error:
            dead_letters.send(msg.data(), properties={"reason": str(error)[:300], "source_topic": msg.topic_name()})
            continue
        op = header.get("meta", {}).get("op") if kind == CONTROL else None
        if op == "start":
            return float(header["meta"]["epoch_unix"])
        if op == "stop":
            return None


def answer(codec: Codec, header: dict, payload: bytes, name: str, executor: str, epoch: float, received_s: float) -> bytes:
    """The RESULT of one batch: a label per request, timed on the run's clock."""
    start_s = time.time() - epoch
    labels, offset = [], 0
    for size in header["sizes"]:
        labels.append(payload[offset] % 10 if size else 0)
        offset += size
    end_s = time.time() - epoch
    ids = header["ids"]
    return codec.encode(RESULT, {
        "ids": ids, "sizes": [0] * len(ids), "size_bytes": 0, "source": name, "trace_id": header["trace_id"],
        "batch_id": header["batch_id"], "labels": labels,
        "ts": {"received_s": received_s, "start_s": start_s, "end_s": end_s, "service_s": end_s - start_s},
        "meta": {"executor": executor, "cost": 0.0, "cold_start_s": 0.0},
    })  # fmt: skip


def serve(url: str, run_id: str, executor: str, name: str) -> int:
    key = bytes.fromhex(os.environ["EDGEBATCH_RUN_KEY"]) if os.environ.get("EDGEBATCH_RUN_KEY") else None
    codec = Codec(key)
    client = pulsar.Client(url)
    shared, earliest = pulsar.ConsumerType.Shared, pulsar.InitialPosition.Earliest
    controls = client.subscribe(topic(run_id, "control"), f"control-{name}-{os.getpid()}", consumer_type=shared, initial_position=earliest)
    batches = client.subscribe(topic(run_id, f"batches-{executor}"), "workers", consumer_type=shared, initial_position=earliest,
                               receiver_queue_size=1)  # fmt: skip
    dead_letters = client.create_producer(topic(run_id, "dead-letter"))
    client.create_producer(topic(run_id, "ready")).send(control(codec, "ready", name, {"role": "worker", "pid": os.getpid()}))
    epoch = wait_for_start(codec, controls, dead_letters)
    results, answered = {}, 0
    while epoch is not None:
        try:
            msg = batches.receive(timeout_millis=200)
        except pulsar.Timeout:
            try:  # a stop ends the run
                stop = controls.receive(timeout_millis=1)
                controls.acknowledge(stop)
                kind, header, _ = codec.decode(stop.data())
                if kind == CONTROL and header.get("meta", {}).get("op") == "stop":
                    break
            except (pulsar.Timeout, ValueError, KeyError, struct.error):
                pass
            continue
        received_s = time.time() - epoch
        try:
            kind, header, payload = codec.decode(msg.data())
            if kind != BATCH:
                raise ValueError(f"kind {kind} on a batch topic")
            data = answer(codec, header, payload, name, executor, epoch, received_s)
        except (ValueError, KeyError, TypeError, IndexError, struct.error) as error:
            dead_letters.send(msg.data(), properties={"reason": str(error)[:300], "source_topic": msg.topic_name()})
            batches.acknowledge(msg)
            continue
        gateway = header["source"]
        if gateway not in results:
            results[gateway] = client.create_producer(topic(run_id, f"results-{gateway}"), batching_enabled=False)
        results[gateway].send(data)  # published first, then acknowledged: at-least-once
        batches.acknowledge(msg)
        answered += 1
    print(f"{name}: answered {answered} batches", flush=True)
    client.close()
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 5:
        raise SystemExit(__doc__)
    raise SystemExit(serve(*sys.argv[1:]))
