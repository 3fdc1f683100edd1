"""live.wire.messages: the plain-header fast path of decode accepts only what the checked path accepts, and
builds the same message; oversized integers in timestamps are a DecodeError, not a crash."""

from __future__ import annotations

import copy
import itertools
import json

import pytest

from live.wire import messages as m
from live.wire.messages import DecodeError, Kind

PAYLOAD = b"\1" * 8

GOOD = {
    Kind.REQUEST: {"ids": ["7"], "sizes": [8], "size_bytes": 8, "source": "cam", "trace_id": "7", "ts": {"arrival_s": 1.0, "sent_s": 2}},
    Kind.BATCH: {"ids": ["1", "2"], "sizes": [4, 4], "size_bytes": 8, "source": "edge", "trace_id": "edge:1", "batch_id": "edge:1",
                 "ts": {"dispatched_s": 1.5}, "meta": {"executor": "edge", "attempt": 0}},
    Kind.CONTROL: {"ids": [], "sizes": [], "size_bytes": 0, "source": "edge", "trace_id": "x", "ts": {}, "meta": {"op": "nudge"}},
}

#: values each field is set to in turn (a missing field too), wrong types, edge values, non-finite and huge numbers
VARIANTS = {
    "ids": [None, "7", ["7", "8"], [7], [], [True], ["7"] * 5000],
    "sizes": [None, [8.0], [-1], [True], [4, 4], [8, 0], "8"],
    "size_bytes": [None, 8.0, True, -8, 9, 0, 10**400],
    "source": [None, 7, "", ["cam"]],
    "trace_id": [None, 7, ""],
    "ts": [None, [], {"a": True}, {"a": "1"}, {"a": float("inf")}, {"a": 10**400}, {"a": 2**60}, {"a": -(2**53) + 1}, {}],
    "batch_id": [None, 7, "edge:9"],
    "meta": [None, [], {}, {"op": "nudge"}, {"op": 7}, {"op": "bogus"}],
    "labels": [None, [1], [True]],
    "req_ts": [None, [{"a": 1.0}]],
}
_MISSING = object()


def _cases():
    for kind, head in GOOD.items():
        yield kind, head
        for field, values in VARIANTS.items():
            for value in [_MISSING, *values]:
                variant = copy.deepcopy(head)
                if value is _MISSING:
                    variant.pop(field, None)
                else:
                    variant[field] = copy.deepcopy(value)
                yield kind, variant


def _payload(head):
    size = head.get("size_bytes")
    return b"\1" * size if isinstance(size, int) and not isinstance(size, bool) and 0 <= size < 10**6 else PAYLOAD


def test_the_fast_path_agrees_with_the_checked_one():
    taken = 0
    for kind, head in _cases():
        head = json.loads(json.dumps(head, allow_nan=True))  # what a decoder sees: plain JSON types
        payload = _payload(head)
        try:
            expected = m._decode_checked(m.VERSION_SIGNED, kind, head, payload)
        except DecodeError as error:
            expected = error
        try:
            fast = m._decode_plain(m.VERSION_SIGNED, kind, head, payload)
        except DecodeError as error:
            assert isinstance(expected, DecodeError), (kind, head, error)
            assert str(error) == str(expected)
            continue
        if fast is None:
            continue
        taken += 1
        assert not isinstance(expected, DecodeError), (kind, head, expected)
        assert fast == expected
        assert [type(v) for v in fast.ts.values()] == [float] * len(fast.ts)
    assert taken >= 10  # the plain headers do take the fast path


def test_an_integer_too_large_for_a_float_is_a_decode_error():
    settings = m.configure(m.WireSettings(key=b"k" * 32))
    try:
        good = m.encode_request("7", b"x", source="cam", sent_s=1.0)
        frame = good[:-m.MAC_BYTES]
        _, version, kind, hlen = m.HEADER.unpack_from(frame, 0)
        head = json.loads(frame[m.HEADER.size:m.HEADER.size + hlen])
        head["ts"]["sent_s"] = 10**400
        body = json.dumps(head).encode()
        forged = m.HEADER.pack(m.MAGIC, version, kind, len(body)) + body + b"x"
        import hashlib
        import hmac

        forged += hmac.new(b"k" * 32, forged, hashlib.sha256).digest()  # signed: only the decoder's checks stand in the way
        with pytest.raises(DecodeError, match="header_field"):
            m.decode(forged)
    finally:
        m.configure(settings)


def test_every_variant_is_distinct():
    # the case list covers each field's variants for each kind (a guard on the generator above)
    cases = list(itertools.islice(_cases(), 100000))
    assert len(cases) == len(GOOD) * (1 + sum(len(v) + 1 for v in VARIANTS.values()))
