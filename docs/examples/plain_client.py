"""A client of an open-ingress edgebatch run, written from docs/PROTOCOL.md alone: pulsar-client and the standard library.

    EDGEBATCH_CLIENT_KEY=<this client's key, hex> python docs/examples/plain_client.py \
        pulsar://127.0.0.1:6650 RUN_ID CLIENT GATEWAY COUNT

The run registers CLIENT in ``live.ingress.clients`` (with the key it signs
with). It subscribes to its reply topic, sends COUNT requests of 64 bytes
with ids ``plain-0`` ... to GATEWAY's requests topic, and waits for one
answer per id (a result or a drop with its reason), then prints
``answered N`` and one line per answer. Without EDGEBATCH_CLIENT_KEY it
sends unsigned messages (a run with ``live.authenticate: false``). It
imports nothing from edgebatch.
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
REQUEST, RESULT, CONTROL = 1, 3, 4
MAC_BYTES = 32


def encode(key: bytes | None, kind: int, header: dict, payload: bytes) -> bytes:
    body = json.dumps(header, separators=(",", ":")).encode("utf-8")
    frame = FIXED.pack(b"EB", 2 if key else 1, kind, len(body)) + body + payload
    return frame + hmac.new(key, frame, hashlib.sha256).digest() if key else frame


def decode(key: bytes | None, data: bytes) -> tuple[int, dict, bytes]:
    """(kind, header, payload); ValueError for anything not signed by the gateway with this client's key."""
    magic, version, kind, header_len = FIXED.unpack_from(data, 0)
    if magic != b"EB" or version != (2 if key else 1):
        raise ValueError(f"magic {magic!r} or version {version}")
    if key:
        data, tag = data[:-MAC_BYTES], data[-MAC_BYTES:]
        if not hmac.compare_digest(tag, hmac.new(key, data, hashlib.sha256).digest()):
            raise ValueError("bad tag")
    header = json.loads(data[FIXED.size:FIXED.size + header_len])
    return kind, header, data[FIXED.size + header_len:]


def topic(run_id: str, name: str) -> str:
    return f"persistent://public/default/edgebatch-{run_id}-{name}"


def main(argv: list[str]) -> int:
    url, run_id, client_id, gateway, count = argv[1], argv[2], argv[3], argv[4], int(argv[5])
    key = bytes.fromhex(os.environ["EDGEBATCH_CLIENT_KEY"]) if os.environ.get("EDGEBATCH_CLIENT_KEY") else None
    client = pulsar.Client(url, logger=pulsar.ConsoleLogger(pulsar.LoggerLevel.Warn))
    # the reply topic first: an answer may come before the last request is sent
    replies = client.subscribe(topic(run_id, f"replies-{client_id}"), f"client-{client_id}", consumer_type=pulsar.ConsumerType.Shared,
                               initial_position=pulsar.InitialPosition.Earliest)  # fmt: skip
    requests = client.create_producer(topic(run_id, f"requests-{gateway}"), batching_enabled=False)
    sent_at = {}
    for n in range(count):
        request_id = f"plain-{n}"
        payload = bytes((n + i) % 256 for i in range(64))
        header = {"ids": [request_id], "sizes": [len(payload)], "size_bytes": len(payload), "source": client_id,
                  "trace_id": request_id, "ts": {"sent_unix_s": time.time()}}  # fmt: skip
        sent_at[request_id] = time.monotonic()
        requests.send(encode(key, REQUEST, header, payload))
    answers = {}
    deadline = time.monotonic() + 30.0
    while len(answers) < count and time.monotonic() < deadline:
        try:
            msg = replies.receive(timeout_millis=1000)
        except pulsar.Timeout:
            continue
        replies.acknowledge(msg)
        try:
            kind, header, _ = decode(key, msg.data())
        except ValueError:
            continue  # not from the run's gateway: ignore it
        for k, request_id in enumerate(header["ids"]):
            if request_id not in sent_at or request_id in answers:
                continue
            if kind == RESULT:
                answers[request_id] = f"label {header['labels'][k]}"
            elif kind == CONTROL and header["meta"]["op"] == "drop":
                answers[request_id] = f"dropped {header['meta']['reason']}"
            else:
                continue
            answers[request_id] += f" after {time.monotonic() - sent_at[request_id]:.4f}s"
    client.close()
    print(f"answered {len(answers)} of {count}")
    for request_id, answer in sorted(answers.items()):
        print(request_id, answer)
    return 0 if len(answers) == count else 1


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
