"""The wire format: round trips, every malformed case, fuzzing, and the dead-letter path."""

from __future__ import annotations

import json
import pathlib
import struct
import time

import pulsar
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from live.wire import messages as M
from live.wire.messages import (
    HEADER,
    MAGIC,
    VERSION,
    DecodeError,
    Kind,
    decode,
    decode_or_dead_letter,
    encode_batch,
    encode_control,
    encode_drop,
    encode_request,
    encode_result,
)


def _raw(head: dict | bytes, payload: bytes = b"", *, magic=MAGIC, version=VERSION,
         kind=Kind.REQUEST, hlen=None) -> bytes:
    body = head if isinstance(head, bytes) else json.dumps(head).encode()
    return HEADER.pack(magic, version, int(kind), len(body) if hlen is None else hlen) + body + payload


def _good_head(**over) -> dict:
    h = {"ids": ["r1"], "sizes": [3], "size_bytes": 3, "source": "src", "trace_id": "t", "ts": {"sent_s": 1.5}}
    h.update(over)
    return {k: v for k, v in h.items() if v is not _DROP}


_DROP = object()


# ---------------------------------------------------------------------------
# round trips
# ---------------------------------------------------------------------------


def test_request_round_trip():
    raw = encode_request("req-1", b"\x00\x01\xff", source="cam0", sent_s=12.25,
                         trace_id="tr-9", ts={"arrival_s": 12.0}, meta={"slo_ms": 100})
    assert raw[:2] == b"EB" and raw[2] == VERSION and raw[3] == Kind.REQUEST
    m = decode(raw)
    assert m.kind is Kind.REQUEST
    assert m.request_id == "req-1" and m.ids == ("req-1",)
    assert m.payload == b"\x00\x01\xff" and m.size_bytes == 3 and m.sizes == (3,)
    assert m.source == "cam0" and m.trace_id == "tr-9"
    assert m.ts == {"sent_s": 12.25, "arrival_s": 12.0}
    assert m.meta == {"slo_ms": 100}
    assert m.batch_id is None and m.req_ts is None and m.labels is None
    assert decode(m.to_bytes()) == m
    assert decode(bytearray(raw)) == m and decode(memoryview(raw)) == m


def test_request_trace_id_defaults_to_request_id_and_empty_payload():
    m = decode(encode_request("r", b"", source="s", sent_s=0))
    assert m.trace_id == "r" and m.payload == b"" and m.sizes == (0,)


def test_batch_round_trip_with_offsets():
    payloads = [b"aaaa", b"", b"bb", bytes(range(256))]
    ids = ["r1", "r2", "r3", "r4"]
    req_ts = [{"sent_s": float(i), "gw_recv_s": i + 0.5} for i in range(4)]
    raw = encode_batch("b7", ids, payloads, source="gw0", req_ts=req_ts,
                       ts={"formed_s": 9.0, "sent_s": 9.1}, meta={"executor": "edge0", "model": "mlp"})
    m = decode(raw)
    assert m.kind is Kind.BATCH and m.batch_id == "b7" and m.trace_id == "b7"
    assert m.ids == tuple(ids)
    assert m.sizes == (4, 0, 2, 256) and m.offsets == (0, 4, 4, 6)
    assert m.payloads() == payloads
    assert m.size_bytes == sum(map(len, payloads))
    assert [dict(d) for d in m.req_ts] == req_ts
    assert m.meta["executor"] == "edge0"
    assert decode(m.to_bytes()) == m


def test_result_round_trip():
    outs = [struct.pack("<3f", 1, 2, 3), struct.pack("<3f", 4, 5, 6)]
    raw = encode_result("b7", ["r1", "r2"], outs, source="worker-1", labels=[2, 0],
                        req_ts=[{"sent_s": 1.0}, {"sent_s": 2.0}], ts={"compute_end_s": 3.0})
    m = decode(raw)
    assert m.kind is Kind.RESULT and m.batch_id == "b7"
    assert m.labels == (2, 0)
    assert m.payloads() == outs
    assert m.ts == {"compute_end_s": 3.0}
    # outputs are optional
    m2 = decode(encode_result("b8", ["r3"], source="w", labels=[1]))
    assert m2.payload == b"" and m2.sizes == (0,) and m2.labels == (1,)


def test_control_round_trip():
    m = decode(encode_control("eos", source="source", ts={"sent_s": 5.0}, meta={"count": 10}))
    assert m.kind is Kind.CONTROL and m.ids == () and m.meta == {"op": "eos", "count": 10}


def test_control_ops_are_typed_and_written_as_their_strings():
    raw = encode_control(M.ControlOp.STOP, source="run", meta={"timed_out": False})
    assert encode_control("stop", source="run", meta={"timed_out": False}) == raw  # the same bytes as the string
    assert b'"op":"stop"' in raw
    m = decode(raw)
    assert m.op is M.ControlOp.STOP and m.meta["op"] == "stop"
    assert decode(encode_request("r", b"", source="s", sent_s=0.0)).op is None
    assert decode(encode_drop(["1"], "deadline", source="gw")).op is M.ControlOp.DROP
    with pytest.raises(ValueError):
        encode_control("reboot", source="x")


def test_decoder_rejects_an_unknown_control_op():
    forged = M.encode(M.Message(kind=Kind.CONTROL, ids=(), sizes=(), source="x", trace_id="", meta={"op": "reboot"}))
    with pytest.raises(DecodeError, match="unknown control op 'reboot'") as info:
        decode(forged)
    assert info.value.reason == "header_field"


def test_with_ts_adds_stamps():
    m = decode(encode_request("r", b"x", source="s", sent_s=1.0))
    m2 = m.with_ts(gw_recv_s=2.0)
    assert m2.ts == {"sent_s": 1.0, "gw_recv_s": 2.0} and m.ts == {"sent_s": 1.0}
    assert decode(m2.to_bytes()) == m2


def test_encoder_rejects_non_finite_timestamps():
    with pytest.raises(ValueError):
        encode_request("r", b"", source="s", sent_s=float("nan"))


def test_no_pickle_in_the_module():
    src = pathlib.Path(M.__file__).read_text()
    assert "pickle" not in src.replace("No pickle", "").replace("no pickle", "")
    assert "eval(" not in src


# ---------------------------------------------------------------------------
# malformed messages
# ---------------------------------------------------------------------------

MALFORMED = {
    "not bytes": ("not_bytes", "a string"),
    "empty": ("too_short", b""),
    "seven bytes": ("too_short", b"EB\x01\x01\x00\x00\x00"),
    "wrong magic": ("bad_magic", _raw(_good_head(), b"abc", magic=b"XX")),
    "wrong version": ("bad_version", _raw(_good_head(), b"abc", version=VERSION + 1)),
    "version zero": ("bad_version", _raw(_good_head(), b"abc", version=0)),
    "unknown kind": ("bad_kind", _raw(_good_head(), b"abc", kind=99)),
    "header length beyond buffer": ("header_length", _raw(_good_head(), b"abc", hlen=10_000)),
    "header length beyond limit": ("header_length", _raw(b"{}", hlen=0xFFFFFFFF)),
    "header not utf-8": ("header_json", _raw(b"\xff\xfe{}")),
    "header not json": ("header_json", _raw(b"{ids: 1}")),
    "header is a list": ("header_json", _raw(b"[1, 2]")),
    "header has NaN": ("header_json", _raw(b'{"ts": {"sent_s": NaN}}')),
    "deeply nested header": ("header_json", _raw(b"[" * 100_000 + b"]" * 100_000)),
    "missing ids": ("header_field", _raw(_good_head(ids=_DROP), b"abc")),
    "missing source": ("header_field", _raw(_good_head(source=_DROP), b"abc")),
    "missing ts": ("header_field", _raw(_good_head(ts=_DROP), b"abc")),
    "missing trace_id": ("header_field", _raw(_good_head(trace_id=_DROP), b"abc")),
    "missing size_bytes": ("header_field", _raw(_good_head(size_bytes=_DROP), b"abc")),
    "ids not a list": ("header_field", _raw(_good_head(ids="r1"), b"abc")),
    "id not a string": ("header_field", _raw(_good_head(ids=[1]), b"abc")),
    "size negative": ("header_field", _raw(_good_head(sizes=[-3], size_bytes=-3), b"")),
    "size is bool": ("header_field", _raw(_good_head(sizes=[True], size_bytes=1), b"a")),
    "size is float": ("header_field", _raw(_good_head(sizes=[3.0]), b"abc")),
    "size_bytes is string": ("header_field", _raw(_good_head(size_bytes="3"), b"abc")),
    "sizes and ids differ": ("header_field", _raw(_good_head(sizes=[1, 2]), b"abc")),
    "source not a string": ("header_field", _raw(_good_head(source=7), b"abc")),
    "timestamp not a number": ("header_field", _raw(_good_head(ts={"sent_s": "noon"}), b"abc")),
    "timestamp is bool": ("header_field", _raw(_good_head(ts={"sent_s": True}), b"abc")),
    "ts not an object": ("header_field", _raw(_good_head(ts=[1.0]), b"abc")),
    "req_ts wrong length": ("header_field", _raw(_good_head(req_ts=[{}, {}]), b"abc")),
    "meta not an object": ("header_field", _raw(_good_head(meta=[1]), b"abc")),
    "request with two ids": ("header_field",
                             _raw(_good_head(ids=["a", "b"], sizes=[1, 2]), b"abc")),
    "batch without batch_id": ("header_field", _raw(_good_head(), b"abc", kind=Kind.BATCH)),
    "batch without ids": ("header_field",
                          _raw(_good_head(ids=[], sizes=[], size_bytes=0, batch_id="b"), kind=Kind.BATCH)),
    "labels on a request": ("header_field", _raw(_good_head(labels=[1]), b"abc")),
    "labels wrong length": ("header_field",
                            _raw(_good_head(labels=[1, 2], batch_id="b"), b"abc", kind=Kind.RESULT)),
    "control without op": ("header_field",
                           _raw(_good_head(ids=[], sizes=[], size_bytes=0), kind=Kind.CONTROL)),
    "payload shorter than sizes": ("payload_length", _raw(_good_head(), b"ab")),
    "payload longer than sizes": ("payload_length", _raw(_good_head(), b"abcd")),
    "size_bytes disagrees with sizes": ("payload_length", _raw(_good_head(size_bytes=4), b"abc")),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_raises_decode_error_with_reason(case):
    reason, raw = MALFORMED[case]
    with pytest.raises(DecodeError) as info:
        decode(raw)
    assert info.value.reason == reason, str(info.value)
    assert str(info.value).startswith(reason)


def test_good_head_helper_is_valid():
    assert decode(_raw(_good_head(), b"abc")).payload == b"abc"


# ---------------------------------------------------------------------------
# fuzzing
# ---------------------------------------------------------------------------

_VALID = [
    encode_request("req-1", b"hello world", source="cam", sent_s=1.0, meta={"k": [1, 2]}),
    encode_batch("b", ["a", "b", "c"], [b"x" * 5, b"", b"yz"], source="gw",
                 req_ts=[{"sent_s": 1.0}] * 3, ts={"sent_s": 2.0}),
    encode_result("b", ["a", "b"], [b"\x00" * 8, b"\x01" * 8], source="w", labels=[3, 4]),
    encode_control("eos", source="s"),
]


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=300))
def test_decode_random_bytes_only_raises_decode_error(data):
    try:
        decode(data)
    except DecodeError:
        pass


@settings(max_examples=400, deadline=None)
@given(st.sampled_from(_VALID), st.binary(max_size=200))
def test_decode_valid_prefix_plus_garbage(valid, junk):
    """Header intact, bytes after it replaced: the message is either still valid or rejected."""
    cut = HEADER.size + (len(valid) - HEADER.size) // 2
    try:
        decode(valid[:cut] + junk)
    except DecodeError:
        pass


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(_VALID), st.data())
def test_decode_bit_flips(valid, data):
    i = data.draw(st.integers(0, len(valid) - 1))
    b = data.draw(st.integers(0, 255))
    mutated = valid[:i] + bytes([b]) + valid[i + 1:]
    try:
        decode(mutated)
    except DecodeError:
        pass


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.sampled_from(["ids", "sizes", "size_bytes", "source", "trace_id", "ts",
                                        "req_ts", "batch_id", "labels", "meta"]),
                       st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False)
                                    | st.text(max_size=5),
                                    lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=3), c,
                                                                                         max_size=3),
                                    max_leaves=8)),
       st.sampled_from(list(Kind)), st.binary(max_size=8))
def test_decode_arbitrary_json_headers(head, kind, payload):
    try:
        decode(_raw(json.dumps(head).encode(), payload, kind=kind))
    except DecodeError:
        pass


@pytest.mark.parametrize("valid", _VALID, ids=["request", "batch", "result", "control"])
def test_every_truncation_raises(valid):
    decode(valid)
    for cut in range(len(valid)):
        with pytest.raises(DecodeError):
            decode(valid[:cut])


@given(st.text(max_size=20), st.binary(max_size=64),
       st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=10))
def test_request_round_trip_property(rid, payload, sent, source):
    m = decode(encode_request(rid, payload, source=source, sent_s=sent))
    assert (m.request_id, m.payload, m.ts["sent_s"], m.source) == (rid, payload, sent, source)


@given(st.lists(st.tuples(st.text(max_size=8), st.binary(max_size=32)), min_size=1, max_size=8))
def test_batch_round_trip_property(items):
    ids = [i for i, _ in items]
    payloads = [p for _, p in items]
    m = decode(encode_batch("b", ids, payloads, source="gw"))
    assert list(m.ids) == ids and m.payloads() == payloads


# ---------------------------------------------------------------------------
# dead letters, on the real broker
# ---------------------------------------------------------------------------


class _FakeProducer:
    def __init__(self):
        self.sent = []

    def send(self, content, properties=None):
        self.sent.append((content, properties))


def test_decode_or_dead_letter_with_fake_producer():
    fp = _FakeProducer()
    good = _VALID[0]
    assert decode_or_dead_letter(good, fp, "in").ids == ("req-1",)
    assert fp.sent == []
    assert decode_or_dead_letter(b"junk!!!!!!", fp, "in") is None
    (content, props), = fp.sent
    assert content == b"junk!!!!!!"
    assert props["source_topic"] == "in" and props["reason"].startswith("bad_magic")


@pytest.mark.live
def test_malformed_message_lands_on_dead_letter_topic(client, topic_name):
    t_in, t_dlq = topic_name("requests"), topic_name("dlq")
    shared = pulsar.ConsumerType.Shared
    earliest = pulsar.InitialPosition.Earliest
    consumer = client.subscribe(t_in, "gateway", consumer_type=shared, initial_position=earliest)
    dlq_reader = client.subscribe(t_dlq, "inspect", consumer_type=shared, initial_position=earliest)
    dlq_producer = client.create_producer(t_dlq)
    producer = client.create_producer(t_in, batching_enabled=False)

    good1 = encode_request("r1", b"abc", source="cam", sent_s=time.time())
    bad = _raw(_good_head(), b"ab")  # payload shorter than declared
    good2 = encode_request("r2", b"def", source="cam", sent_s=time.time())
    for raw in (good1, bad, good2):
        producer.send(raw)

    decoded = []
    deadline = time.monotonic() + 10
    while len(decoded) < 2 and time.monotonic() < deadline:
        try:
            msg = consumer.receive(timeout_millis=200)
        except pulsar.Timeout:
            continue
        m = decode_or_dead_letter(msg.data(), dlq_producer, t_in)
        if m is not None:
            decoded.append(m.request_id)
        consumer.acknowledge(msg)  # the consumer goes on either way
    assert decoded == ["r1", "r2"]

    dead = dlq_reader.receive(timeout_millis=5000)
    assert dead.data() == bad
    props = dead.properties()
    assert props["source_topic"] == t_in
    assert props["reason"].startswith("payload_length")
    dlq_reader.acknowledge(dead)
    with pytest.raises(pulsar.Timeout):
        dlq_reader.receive(timeout_millis=200)
    for x in (consumer, dlq_reader):
        x.close()
    for x in (dlq_producer, producer):
        x.close()


# ---------------------------------------------------------------------------
# authentication (HMAC-SHA256 under the run key) and bounds
# ---------------------------------------------------------------------------

KEY, OTHER_KEY = bytes(range(32)), bytes(range(1, 33))


@pytest.fixture
def signing():
    """This process signs and checks with KEY for the test, and goes back to unsigned after."""
    before = M.configure(M.WireSettings(key=KEY))
    yield
    M.configure(before)


def _with(settings: M.WireSettings, fn):
    before = M.configure(settings)
    try:
        return fn()
    finally:
        M.configure(before)


def test_signed_round_trip_carries_a_tag_that_verifies(signing):
    raw = encode_batch("b1", ["a", "b"], [b"xy", b"z"], source="gw")
    assert raw[2] == M.VERSION_SIGNED and len(raw) == len(_with(M.WireSettings(), lambda: encode_batch("b1", ["a", "b"], [b"xy", b"z"], source="gw"))) + M.MAC_BYTES
    message = decode(raw)
    assert message.ids == ("a", "b") and message.payloads() == [b"xy", b"z"]


def test_unsigned_forged_and_other_keys_messages_are_refused(signing):
    unsigned = _with(M.WireSettings(), lambda: encode_control(M.ControlOp.STOP, source="run"))
    other = _with(M.WireSettings(key=OTHER_KEY), lambda: encode_control(M.ControlOp.STOP, source="run"))
    for raw in (unsigned, other):
        with pytest.raises(DecodeError) as error:
            decode(raw)
        assert error.value.reason == "bad_mac"
    # without a key a signed message is not read either (it could not be checked)
    signed = encode_control(M.ControlOp.STOP, source="run")
    with pytest.raises(DecodeError) as error:
        _with(M.WireSettings(), lambda: decode(signed))
    assert error.value.reason == "bad_version"


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_any_altered_byte_of_a_signed_message_is_caught(signing, data):
    raw = bytearray(encode_request("r1", b"payload", source="cam", sent_s=1.0))
    position = data.draw(st.integers(0, len(raw) - 1))
    raw[position] ^= data.draw(st.integers(1, 255))
    with pytest.raises(DecodeError) as error:
        decode(bytes(raw))
    assert error.value.reason in ("bad_mac", "bad_magic", "bad_version", "too_short")


def test_too_many_ids_or_payload_bytes_are_refused_before_anything_is_built():
    limits = M.WireLimits(max_ids=100, max_payload_bytes=1000)
    many = _raw(_good_head(ids=[str(i) for i in range(101)], sizes=[0] * 101, size_bytes=0), kind=Kind.BATCH)
    big = _raw(_good_head(sizes=[2000], size_bytes=2000), b"x" * 2000)
    for raw in (many, big):
        with pytest.raises(DecodeError) as error:
            _with(M.WireSettings(limits=limits), lambda: decode(raw))
        assert error.value.reason == "over_limit"


def test_the_half_million_id_batch_is_refused_at_its_header():
    """The 3.1 MB batch of 520,000 ids that once made a worker allocate 1 GB: its header is over the cap."""
    ids = [str(i) for i in range(520_000)]
    head = {"ids": ids, "sizes": [0] * len(ids), "size_bytes": 0, "source": "gw", "trace_id": "t", "ts": {}, "batch_id": "b"}
    with pytest.raises(DecodeError) as error:
        decode(_raw(head, kind=Kind.BATCH))
    assert error.value.reason == "header_length"


def test_reasons_quoting_a_sender_are_bounded():
    raw = _raw(_good_head(ts={"sent_s": "x" * 100_000}))  # the decoder quotes the bad value
    with pytest.raises(DecodeError) as error:
        decode(raw)
    assert len(str(error.value)) < 400
    fp = _FakeProducer()
    M.dead_letter(fp, b"junk", "y" * 100_000, "t")
    assert len(fp.sent[0][1]["reason"]) <= M.WireLimits().max_reason_chars + 3


def test_the_run_key_comes_from_the_environment_and_a_bad_one_is_named():
    assert M.key_from_env({}) is None
    assert M.key_from_env({M.KEY_ENV: KEY.hex()}) == KEY
    for bad in ("not hex", "abcd"):
        with pytest.raises(ValueError, match=M.KEY_ENV):
            M.key_from_env({M.KEY_ENV: bad})
    with pytest.raises(ValueError, match="live.limits.max_ids"):
        M.WireLimits(max_ids=0)
