"""The EdgeServe-style API against the real embedded broker: joins, cascades, lazy routing, stale drops."""

from __future__ import annotations

import http.server
import threading
import time
import urllib.error

import pulsar
import pytest

from live.edgeserve import Compute, DataSource, Materialize
from live.wire.messages import encode_request


def drain(endpoint, steps: int, until=lambda: False) -> list:
    out = []
    for _ in range(steps):
        value = next(endpoint)
        if value is not None:
            out.append(value)
        if until():
            break
    return out


def test_source_compute_materialize_pipeline(client, topic_name):
    topic_in, topic_out = topic_name("in"), topic_name("out")
    seen = []
    with Materialize(seen.append, client=client, topic=topic_out) as sink, \
         Compute(lambda x: x.upper(), client=client, worker_id="w1", topic_in=topic_in, topic_out=topic_out) as compute, \
         DataSource([b"a", b"b", b"c"], client=client, source_id="cam", topic=topic_in) as source:  # fmt: skip
        sent = list(source)
        assert sent == ["cam-0", "cam-1", "cam-2"]
        drain(compute, 30, until=lambda: compute.stats.computed == 3)
        drain(sink, 30, until=lambda: len(seen) == 3)
    assert sorted(seen) == [b"A", b"B", b"C"]


def test_join_respects_the_maximum_skew(client, topic_name):
    topic_in, topic_out = topic_name("in"), topic_name("out")
    producer = client.create_producer(topic_in)
    now = time.time()

    def send(source: str, index: int, sent_s: float) -> None:
        producer.send(encode_request(f"{source}-{index}", source.encode(), source=source, sent_s=sent_s))

    joined = []
    with Compute(lambda a, b: joined.append((a, b)) or b"ok", client=client, worker_id="j", topic_in=topic_in,
                 topic_out=topic_out, sources=["a", "b"], max_skew_s=0.1) as compute:  # fmt: skip
        send("a", 0, now)
        send("b", 0, now + 0.5)  # too far from a's: no join
        drain(compute, 20, until=lambda: compute.stats.received == 2)
        assert joined == [] and compute.stats.skew_waits == 1
        send("a", 1, now + 0.55)  # within 0.1 s of b's latest: join
        drain(compute, 20, until=lambda: compute.stats.received == 3)
    assert joined == [(b"a", b"b")]
    assert compute.stats.computed == 1


def test_cascade_forwards_only_unconfident_results(client, topic_name):
    topic_in, topic_out, expensive = topic_name("in"), topic_name("out"), topic_name("expensive")
    confidences = {b"easy1": 0.9, b"hard": 0.2, b"easy2": 0.95}
    forwarded = client.subscribe(expensive, "check", consumer_type=pulsar.ConsumerType.Shared)
    with Compute(lambda x: (b"label", confidences[x]), client=client, worker_id="cheap", topic_in=topic_in, topic_out=topic_out,
                 cascade_topic=expensive, confidence_threshold=0.5) as compute, \
         DataSource(list(confidences), client=client, source_id="cam", topic=topic_in) as source:  # fmt: skip
        list(source)
        drain(compute, 30, until=lambda: compute.stats.computed == 3)
    assert compute.stats.forwarded == 1
    message = forwarded.receive(timeout_millis=5000)
    from live.wire.messages import decode

    assert decode(message.data()).payload == b"hard"
    forwarded.acknowledge(message)
    try:
        forwarded.receive(timeout_millis=300)
        raise AssertionError("a confident result was forwarded too")
    except pulsar.Timeout:
        pass


def test_lazy_routing_fetches_only_what_the_task_reads(client, topic_name):
    topic_in, topic_out = topic_name("in"), topic_name("out")
    payloads = [bytes([i]) * 50_000 for i in range(4)]
    # the task reads only every other payload's bytes
    with Compute(lambda p: len(p.get()) if p.size_bytes and p.get()[0] % 2 == 0 else -1, client=client, worker_id="lazy",
                 topic_in=topic_in, topic_out=topic_out) as compute, \
         DataSource(payloads, client=client, source_id="cam", topic=topic_in, lazy=True) as source:  # fmt: skip
        list(source)
        drain(compute, 40, until=lambda: compute.stats.computed == 4)
        assert source.store.fetches == 4  # the first byte is needed to decide; one fetch each
    assert compute.stats.fetched == 4


def test_lazy_payload_not_read_is_never_fetched(client, topic_name):
    topic_in, topic_out = topic_name("in"), topic_name("out")
    with Compute(lambda p: p.size_bytes, client=client, worker_id="lazy", topic_in=topic_in, topic_out=topic_out) as compute, \
         DataSource([b"x" * 10_000] * 3, client=client, source_id="cam", topic=topic_in, lazy=True) as source:  # fmt: skip
        list(source)
        drain(compute, 40, until=lambda: compute.stats.computed == 3)
        assert source.store.fetches == 0
    assert compute.stats.fetched == 0


def test_stale_messages_are_dropped_and_counted_and_bad_ones_dead_lettered(client, topic_name):
    topic_in, topic_out = topic_name("in"), topic_name("out")
    producer = client.create_producer(topic_in)
    dlq = client.subscribe(f"{topic_in}-dlq", "check", consumer_type=pulsar.ConsumerType.Shared)
    with Compute(lambda x: x, client=client, worker_id="w", topic_in=topic_in, topic_out=topic_out, max_age_s=2.0) as compute:
        # subscribed first: a subscription starts at the latest message
        producer.send(encode_request("old", b"x", source="cam", sent_s=time.time() - 10))
        producer.send(b"garbage that is not a message")
        producer.send(encode_request("new", b"y", source="cam", sent_s=time.time()))
        drain(compute, 30, until=lambda: compute.stats.computed == 1 and compute.stats.stale == 1 and compute.stats.dead_lettered == 1)
    assert (compute.stats.stale, compute.stats.dead_lettered, compute.stats.computed) == (1, 1, 1)
    dead = dlq.receive(timeout_millis=5000)
    assert dead.data() == b"garbage that is not a message"
    assert "bad_magic" in dead.properties()["reason"] or "too_short" in dead.properties()["reason"]


def test_a_forged_reference_is_dead_lettered_without_being_opened(client, topic_name, tmp_path):
    """A message whose lazy reference names a local file, another host or an odd scheme: never opened."""
    secret = tmp_path / "secret.txt"
    secret.write_text("a local file no message may read")
    topic_in, topic_out = topic_name("in"), topic_name("out")
    producer = client.create_producer(topic_in)
    dlq = client.subscribe(f"{topic_in}-dlq", "check", consumer_type=pulsar.ConsumerType.Shared)
    forged = [f"file://{secret}", "http://169.254.169.254/latest/meta-data", "ftp://127.0.0.1/x", "gopher://127.0.0.1:70/"]
    opened = []
    with Compute(lambda p: opened.append(p.get()), client=client, worker_id="w", topic_in=topic_in, topic_out=topic_out) as compute:
        for ref in forged:
            producer.send(encode_request(ref[:8], b"", source="cam", sent_s=time.time(), meta={"ref": ref, "ref_size_bytes": 10}))
        drain(compute, 40, until=lambda: compute.stats.dead_lettered == len(forged))
    assert opened == [] and compute.stats.dead_lettered == len(forged) and compute.stats.fetched == 0
    reasons = sorted(dlq.receive(timeout_millis=5000).properties()["reason"].split(" ")[1] for _ in forged)
    assert reasons == ["host", "scheme", "scheme", "scheme"], reasons
    dlq.close()
    producer.close()


def test_a_lazy_fetch_is_capped_and_follows_no_redirect():
    from live.edgeserve import LazyPayload, PayloadStore, RefPolicy, Stats

    store = PayloadStore()
    try:
        ref = store.put(b"y" * 5000)
        assert LazyPayload(ref, 5000, Stats()).get() == b"y" * 5000
        with pytest.raises(ValueError, match="cap"):
            LazyPayload(ref, 5000, Stats(), RefPolicy(max_bytes=1000)).get()
        with pytest.raises(ValueError, match="scheme"):
            LazyPayload("file:///etc/passwd", 10, Stats())
        assert RefPolicy(schemes=("file",)).check("file:///tmp/x") is None  # only when a caller asks for it
    finally:
        store.close()

    class Redirect(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            self.send_response(302)
            self.send_header("Location", ref)  # to the (allowed) store: still not followed
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Redirect)
    threading.Thread(target=server.handle_request, daemon=True).start()
    try:
        with pytest.raises(urllib.error.HTTPError, match="redirects are not followed"):
            LazyPayload(f"http://127.0.0.1:{server.server_address[1]}/x", 10, Stats()).get()
    finally:
        server.server_close()
