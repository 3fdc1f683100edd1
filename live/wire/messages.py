"""Wire format of the live harness: a versioned binary header plus raw payload bytes.

No pickle, ever: a message from the network must not be able to run code. The
only parsers used are ``struct`` and ``json``.

Layout (big-endian)::

    offset 0   2 bytes  magic b"EB"
    offset 2   1 byte   version: 1 (VERSION, unsigned) or 2 (VERSION_SIGNED)
    offset 3   1 byte   kind (Kind: REQUEST, BATCH, RESULT, CONTROL)
    offset 4   4 bytes  header length H (uint32)
    offset 8   H bytes  header: UTF-8 JSON object
    offset 8+H P bytes  payload: the per-request payloads, concatenated in ``ids`` order
    version 2 only:
    offset 8+H+P  32 bytes  HMAC-SHA256, keyed by the run key, of every byte before it

A process that holds a run key (:func:`configure`; the roles take it from the
environment variable ``EDGEBATCH_RUN_KEY``, hex) signs everything it encodes
and decodes only signed messages whose tag verifies (``bad_mac`` otherwise),
so that a broker client without the key can neither forge nor alter a
message. A process without a key reads and writes version 1 only.

Every decoded size is checked against :class:`WireLimits` before anything is
built from it (header bytes, ids per message, payload bytes), and error
details are cut to ``max_reason_chars``: a message cannot make a role
allocate without bound, nor fill a dead-letter reason.

Header fields (all kinds):

    ids         list[str]            request ids (one for REQUEST, >=1 for BATCH/RESULT, any for CONTROL)
    sizes       list[int >= 0]       payload bytes per request, same length as ids
    size_bytes  int                  sum(sizes) == len(payload)
    source      str                  who sent it (source / gateway / worker name)
    trace_id    str                  trace context, carried end to end
    ts          {str: number}        message-level timestamps in seconds (e.g. sent_s)
optional:
    req_ts      list[{str: number}]  per-request timestamps, same length as ids
    batch_id    str                  required for BATCH and RESULT
    labels      list[int]            RESULT only: one predicted label per request
    meta        {str: any JSON}      anything else (model, executor, op of a CONTROL message ...)

A CONTROL message carries its operation as ``meta["op"]``, a string, one of
the values of :class:`ControlOp` (``start``, ``stop``, ``ready``, ...); the
decoder rejects any other (``header_field``).

Anything malformed raises :class:`DecodeError` with a ``reason`` code (one of
:data:`REASONS`) and a human-readable ``detail``. A consumer that gets one sends
the raw bytes to a dead-letter topic (:func:`dead_letter`) and goes on.
"""

from __future__ import annotations

import dataclasses
import enum
import hashlib
import hmac
import json
import math
import os
import struct
from dataclasses import dataclass, field
from typing import Any, Mapping, Optional, Sequence

__all__ = [
    "MAGIC",
    "VERSION",
    "VERSION_SIGNED",
    "MAC_BYTES",
    "KEY_ENV",
    "WireLimits",
    "WireSettings",
    "configure",
    "wire_settings",
    "key_from_env",
    "HEADER",
    "MAX_HEADER_BYTES",
    "REASONS",
    "Kind",
    "ControlOp",
    "Message",
    "DecodeError",
    "encode",
    "encode_request",
    "encode_batch",
    "encode_result",
    "encode_control",
    "encode_drop",
    "decode",
    "peek_source",
    "PROCESS_KEY",
    "dead_letter",
    "bounded_reason",
    "decode_or_dead_letter",
]

MAGIC = b"EB"
VERSION = 1  # unsigned
VERSION_SIGNED = 2  # the same, plus an HMAC-SHA256 tag at the end
MAC_BYTES = 32
HEADER = struct.Struct(">2sBBI")  # magic, version, kind, header length
MAX_HEADER_BYTES = 1024 * 1024
#: the environment variable that carries a run's key (hex) to every role process
KEY_ENV = "EDGEBATCH_RUN_KEY"

REASONS = (
    "not_bytes",       # not a bytes-like object
    "too_short",       # shorter than the fixed header
    "bad_magic",       # first two bytes are not b"EB"
    "bad_version",     # a version this code does not read
    "bad_kind",        # unknown kind byte
    "header_length",   # declared header length runs past the buffer or the limit
    "header_json",     # header is not UTF-8 JSON, or not a JSON object
    "header_field",    # a field is missing, of the wrong type, or inconsistent
    "payload_length",  # payload length differs from the declared sizes
    "over_limit",      # more ids or payload bytes than WireLimits allows
    "bad_mac",         # a run key is set and the message is unsigned, or its tag does not verify
)


@dataclass(frozen=True, kw_only=True, slots=True)
class WireLimits:
    """The most a decoded message may declare; anything larger is rejected before it is built."""

    max_header_bytes: int = MAX_HEADER_BYTES
    max_ids: int = 4096
    max_payload_bytes: int = 64 * 1024 * 1024
    #: error details (and so dead-letter reasons) are cut to this many characters
    max_reason_chars: int = 300

    def __post_init__(self):
        for name in ("max_header_bytes", "max_ids", "max_payload_bytes", "max_reason_chars"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"live.limits.{name}={value!r} is not allowed: an integer >= 1")


@dataclass(frozen=True, kw_only=True, slots=True)
class WireSettings:
    """What this process's encoder and decoder use: the run key (None: unsigned) and the limits."""

    key: bytes | None = None
    limits: WireLimits = field(default_factory=WireLimits)

    def __post_init__(self):
        if self.key is not None and (not isinstance(self.key, bytes) or len(self.key) < 16):
            raise ValueError(f"the run key must be at least 16 bytes ({KEY_ENV}: at least 32 hex digits)")


_SETTINGS = WireSettings()

#: ``encode(..., key=PROCESS_KEY)`` / ``decode(..., key=PROCESS_KEY)``: sign and verify with this process's
#: run key (``configure``); any other value (bytes, or None for unsigned) is used instead, for one message
#: (an open-ingress client's own key, ``live.client``)
PROCESS_KEY = object()


def configure(settings: WireSettings) -> WireSettings:
    """Use ``settings`` for every later encode and decode in this process; returns the previous ones."""
    global _SETTINGS
    if not isinstance(settings, WireSettings):
        raise TypeError(f"configure takes WireSettings, got {type(settings).__name__}")
    previous, _SETTINGS = _SETTINGS, settings
    return previous


def wire_settings() -> WireSettings:
    """The settings this process encodes and decodes with."""
    return _SETTINGS


def key_from_env(environ=os.environ) -> bytes | None:
    """The run key from ``EDGEBATCH_RUN_KEY`` (hex), or None when unset; a malformed one is an error naming it."""
    text = environ.get(KEY_ENV)
    if not text:
        return None
    try:
        key = bytes.fromhex(text.strip())
    except ValueError:
        raise ValueError(f"{KEY_ENV} is not hex: give at least 32 hex digits") from None
    if len(key) < 16:
        raise ValueError(f"{KEY_ENV} holds {len(key)} bytes: give at least 16 (32 hex digits)")
    return key


class Kind(enum.IntEnum):
    REQUEST = 1
    BATCH = 2
    RESULT = 3
    CONTROL = 4


class ControlOp(enum.StrEnum):
    """The operation of a CONTROL message; on the wire it is its string value, ``meta["op"]``."""

    START = "start"  # orchestrator -> every role: the run's clock starts at meta["epoch_unix"]
    STOP = "stop"  # orchestrator -> every role: end the run
    READY = "ready"  # a role (or a pool's instance) -> orchestrator (pool): connected and subscribed
    EOS = "eos"  # end of a stream
    DROP = "drop"  # records: these requests ended without a result (meta["reason"])
    BATCH_FAILED = "batch_failed"  # records: a batch failed (its requests may be retried)
    PLAN = "plan"  # records: a plan the gateway adopted (meta["plan"])
    NUDGE = "nudge"  # gateway -> its own results topic: wakes a quiet topic of pulsar-lite
    INSTANCES = "instances"  # pool -> gateway: how many instances are warm (meta["executor"], meta["warm"])
    CRASH = "crash"  # pool -> its instance: crash in the next batch (fault injection)
    RESEND = "resend"  # a restarted gateway -> its sources (control topic): send these due requests again (ids)


class DecodeError(ValueError):
    """A malformed message. ``reason`` is one of :data:`REASONS`."""

    def __init__(self, reason: str, detail: str = ""):
        assert reason in REASONS, reason
        self.reason = reason
        self.detail = detail = bounded_reason(detail)  # it may quote what a sender wrote
        super().__init__(f"{reason}: {detail}" if detail else reason)


@dataclass(frozen=True)
class Message:
    kind: Kind
    ids: tuple[str, ...]
    sizes: tuple[int, ...]
    source: str
    trace_id: str
    ts: Mapping[str, float] = field(default_factory=dict)
    payload: bytes = b""
    req_ts: Optional[tuple[Mapping[str, float], ...]] = None
    batch_id: Optional[str] = None
    labels: Optional[tuple[int, ...]] = None
    meta: Mapping[str, Any] = field(default_factory=dict)
    version: int = VERSION

    # -- views ------------------------------------------------------------
    @property
    def size_bytes(self) -> int:
        return len(self.payload)

    @property
    def request_id(self) -> str:
        if len(self.ids) != 1:
            raise ValueError(f"{self.kind.name} message carries {len(self.ids)} requests, not one")
        return self.ids[0]

    @property
    def offsets(self) -> tuple[int, ...]:
        """Start offset of each request's payload in ``payload``."""
        out, pos = [], 0
        for s in self.sizes:
            out.append(pos)
            pos += s
        return tuple(out)

    def payloads(self) -> list[bytes]:
        """The per-request payloads (slices of ``payload``)."""
        mv = memoryview(self.payload)
        return [bytes(mv[o:o + s]) for o, s in zip(self.offsets, self.sizes)]

    @property
    def op(self) -> ControlOp | None:
        """A CONTROL message's operation (None for any other kind)."""
        return ControlOp(self.meta["op"]) if self.kind is Kind.CONTROL else None

    def with_ts(self, **stamps: float) -> "Message":
        """A copy with message-level timestamps added or replaced."""
        return dataclasses.replace(self, ts={**self.ts, **stamps})

    def to_bytes(self) -> bytes:
        return encode(self)


# ---------------------------------------------------------------------------
# Encoding
# ---------------------------------------------------------------------------


def _ts_dict(d: Optional[Mapping[str, float]]) -> dict[str, float]:
    out = {}
    for k, v in (d or {}).items():
        if not isinstance(k, str) or isinstance(v, bool) or not isinstance(v, (int, float)):
            raise TypeError(f"timestamps must map str to numbers, got {k!r}: {v!r}")
        if not math.isfinite(v):
            raise ValueError(f"timestamp {k!r} is not finite: {v!r}")
        out[k] = float(v)
    return out


def encode(msg: Message, *, key=PROCESS_KEY) -> bytes:
    """Serialize a :class:`Message`; the inverse of :func:`decode` (signed with ``key``, see :data:`PROCESS_KEY`)."""
    ids = [str(i) for i in msg.ids]
    sizes = [int(s) for s in msg.sizes]
    if len(ids) != len(sizes):
        raise ValueError("ids and sizes differ in length")
    if sum(sizes) != len(msg.payload):
        raise ValueError(f"payload is {len(msg.payload)} bytes but sizes sum to {sum(sizes)}")
    head: dict[str, Any] = {
        "ids": ids,
        "sizes": sizes,
        "size_bytes": len(msg.payload),
        "source": str(msg.source),
        "trace_id": str(msg.trace_id),
        "ts": _ts_dict(msg.ts),
    }
    if msg.req_ts is not None:
        if len(msg.req_ts) != len(ids):
            raise ValueError("req_ts and ids differ in length")
        head["req_ts"] = [_ts_dict(d) for d in msg.req_ts]
    if msg.batch_id is not None:
        head["batch_id"] = str(msg.batch_id)
    if msg.labels is not None:
        if len(msg.labels) != len(ids):
            raise ValueError("labels and ids differ in length")
        head["labels"] = [int(x) for x in msg.labels]
    if msg.meta:
        head["meta"] = dict(msg.meta)
    body = _JSON_ENCODE(head).encode("utf-8")
    settings = _SETTINGS
    limit = settings.limits.max_header_bytes
    if len(body) > limit:
        raise ValueError(f"header of {len(body)} bytes exceeds {limit}")
    key = settings.key if key is PROCESS_KEY else key
    if key is None:
        return b"".join((HEADER.pack(MAGIC, VERSION, int(msg.kind), len(body)), body, bytes(msg.payload)))
    frame = b"".join((HEADER.pack(MAGIC, VERSION_SIGNED, int(msg.kind), len(body)), body, bytes(msg.payload)))
    return frame + hmac.new(key, frame, hashlib.sha256).digest()


#: made once: ``json.dumps`` / ``json.loads`` with arguments build an encoder / decoder per call (~3 us each,
#: on every message of the gateway's hot path)
_JSON_ENCODE = json.JSONEncoder(separators=(",", ":"), allow_nan=False, sort_keys=True).encode


def _concat(payloads: Sequence[bytes]) -> tuple[tuple[int, ...], bytes]:
    payloads = [bytes(p) for p in payloads]
    return tuple(len(p) for p in payloads), b"".join(payloads)


def encode_request(
    request_id: str,
    payload: bytes,
    *,
    source: str,
    sent_s: float,
    trace_id: Optional[str] = None,
    ts: Optional[Mapping[str, float]] = None,
    meta: Optional[Mapping[str, Any]] = None,
) -> bytes:
    """One request from a source: its id, raw payload, and when it was sent."""
    payload = bytes(payload)
    return encode(Message(
        kind=Kind.REQUEST,
        ids=(str(request_id),),
        sizes=(len(payload),),
        source=source,
        trace_id=str(trace_id if trace_id is not None else request_id),
        ts={**(ts or {}), "sent_s": sent_s},
        payload=payload,
        meta=dict(meta or {}),
    ))


def encode_batch(
    batch_id: str,
    ids: Sequence[str],
    payloads: Sequence[bytes],
    *,
    source: str,
    req_ts: Optional[Sequence[Mapping[str, float]]] = None,
    ts: Optional[Mapping[str, float]] = None,
    trace_id: Optional[str] = None,
    meta: Optional[Mapping[str, Any]] = None,
) -> bytes:
    """Several requests, their payloads concatenated (offsets follow from the sizes)."""
    if len(ids) != len(payloads):
        raise ValueError("ids and payloads differ in length")
    if not ids:
        raise ValueError("a batch carries at least one request")
    return _encode_many(Kind.BATCH, batch_id, ids, payloads, source=source, req_ts=req_ts, ts=ts, trace_id=trace_id, meta=meta)


def encode_result(
    batch_id: str,
    ids: Sequence[str],
    outputs: Optional[Sequence[bytes]] = None,
    *,
    source: str,
    labels: Optional[Sequence[int]] = None,
    req_ts: Optional[Sequence[Mapping[str, float]]] = None,
    ts: Optional[Mapping[str, float]] = None,
    trace_id: Optional[str] = None,
    meta: Optional[Mapping[str, Any]] = None,
) -> bytes:
    """Results of one batch: per-request output bytes (may be empty) and labels."""
    if not ids:
        raise ValueError("a result carries at least one request")
    if outputs is None:
        outputs = [b""] * len(ids)
    if len(outputs) != len(ids):
        raise ValueError("ids and outputs differ in length")
    return _encode_many(Kind.RESULT, batch_id, ids, outputs, source=source, req_ts=req_ts, ts=ts, trace_id=trace_id, meta=meta,
                        labels=tuple(int(x) for x in labels) if labels is not None else None)  # fmt: skip


def _encode_many(kind: Kind, batch_id, ids, blobs, *, source, req_ts, ts, trace_id, meta, labels=None) -> bytes:
    """A batch or a result: several requests' bytes concatenated, with their ids and sizes."""
    sizes, blob = _concat(blobs)
    return encode(Message(
        kind=kind,
        ids=tuple(str(i) for i in ids),
        sizes=sizes,
        source=source,
        trace_id=str(trace_id if trace_id is not None else batch_id),
        ts=dict(ts or {}),
        payload=blob,
        req_ts=tuple(dict(d) for d in req_ts) if req_ts is not None else None,
        batch_id=str(batch_id),
        labels=labels,
        meta=dict(meta or {}),
    ))


def encode_control(
    op: ControlOp,
    *,
    source: str,
    ids: Sequence[str] = (),
    ts: Optional[Mapping[str, float]] = None,
    trace_id: str = "",
    meta: Optional[Mapping[str, Any]] = None,
) -> bytes:
    """A control message (e.g. ``ControlOp.EOS``, end of stream); ``meta["op"]`` holds the op's string.

    ``ids``: the requests it is about, if any (no payload). Raises
    ``ValueError`` for an op that is not a :class:`ControlOp`.
    """
    op = ControlOp(op)
    ids = tuple(str(i) for i in ids)
    return encode(Message(
        kind=Kind.CONTROL,
        ids=ids,
        sizes=(0,) * len(ids),
        source=source,
        trace_id=trace_id,
        ts=dict(ts or {}),
        meta={**(meta or {}), "op": op.value},
    ))


def encode_drop(
    request_ids: Sequence[str],
    reason: str,
    *,
    source: str,
    ts: Optional[Mapping[str, float]] = None,
    meta: Optional[Mapping[str, Any]] = None,
) -> bytes:
    """A drop record: these requests ended without a result, for ``reason``.

    A CONTROL message with ``meta["op"] == "drop"`` and ``meta["reason"]``,
    carrying the request ids (no payload).
    """
    if not request_ids:
        raise ValueError("a drop record names at least one request")
    return encode_control(ControlOp.DROP, source=source, ids=request_ids, ts=ts, meta={**(meta or {}), "reason": str(reason)})


# ---------------------------------------------------------------------------
# Decoding
# ---------------------------------------------------------------------------


def _reject_constant(name: str):
    raise ValueError(f"non-finite number {name} in header")


_JSON_DECODE = json.JSONDecoder(parse_constant=_reject_constant).decode


def _field_error(detail: str) -> DecodeError:
    return DecodeError("header_field", detail)


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v: Any) -> bool:
    if not isinstance(v, (int, float)) or isinstance(v, bool):
        return False
    try:
        return math.isfinite(v)
    except OverflowError:  # an integer past float's range (JSON has no bound on digits): not a timestamp
        return False


def _get(head: dict, key: str, typ: type, required: bool = True):
    if key not in head:
        if required:
            raise _field_error(f"missing field {key!r}")
        return None
    v = head[key]
    if not isinstance(v, typ) or isinstance(v, bool) and typ is not bool:
        raise _field_error(f"field {key!r} must be {typ.__name__}, got {type(v).__name__}")
    return v


def _ts(v: Any, where: str) -> dict[str, float]:
    if not isinstance(v, dict):
        raise _field_error(f"{where} must be an object, got {type(v).__name__}")
    for k, x in v.items():
        if not _is_num(x):
            raise _field_error(f"{where}[{k!r}] must be a finite number, got {x!r}")
    return {k: float(x) for k, x in v.items()}


def _split(data: bytes | bytearray | memoryview, key=PROCESS_KEY, verify: bool = True) -> tuple[int, Kind, dict, bytes]:
    """The fixed header, the JSON header and the payload: (version, kind, header, payload)."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise DecodeError("not_bytes", f"expected bytes, got {type(data).__name__}")
    data = bytes(data)
    n = len(data)
    if n < HEADER.size:
        raise DecodeError("too_short", f"{n} bytes, the fixed header alone is {HEADER.size}")
    magic, version, kind_b, hlen = HEADER.unpack_from(data, 0)
    if magic != MAGIC:
        raise DecodeError("bad_magic", f"expected {MAGIC!r}, got {magic!r}")
    settings = _SETTINGS
    if verify:
        data = _verified(data, version, settings.key if key is PROCESS_KEY else key)
    elif version not in (VERSION, VERSION_SIGNED):
        raise DecodeError("bad_version", f"version {version}, this code reads {VERSION} and {VERSION_SIGNED}")
    elif version == VERSION_SIGNED and len(data) >= HEADER.size + MAC_BYTES:
        data = data[:-MAC_BYTES]  # not verified: only to read who claims to have sent it (peek_source)
    n = len(data)
    try:
        kind = Kind(kind_b)
    except ValueError:
        raise DecodeError("bad_kind", f"unknown kind byte {kind_b}") from None
    limit = settings.limits.max_header_bytes
    if hlen > limit:
        raise DecodeError("header_length", f"header length {hlen} exceeds the limit {limit}")
    if HEADER.size + hlen > n:
        raise DecodeError("header_length",
                          f"header length {hlen} runs past the end of a {n}-byte message")
    raw_head = data[HEADER.size:HEADER.size + hlen]
    try:
        head = _JSON_DECODE(raw_head.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        raise DecodeError("header_json", f"header is not valid UTF-8 JSON: {e}") from None
    if not isinstance(head, dict):
        raise DecodeError("header_json", f"header must be a JSON object, got {type(head).__name__}")
    return version, kind, head, data[HEADER.size + hlen:]


def _verified(data: bytes, version: int, key: bytes | None) -> bytes:
    """The message without its tag, once the tag verifies (with a key), else ``data`` (version 1, no key)."""
    if version not in (VERSION, VERSION_SIGNED):
        raise DecodeError("bad_version", f"version {version}, this code reads {VERSION} and {VERSION_SIGNED}")
    if key is None:
        if version == VERSION_SIGNED:
            raise DecodeError("bad_version", f"version {version}: a signed message, but this process has no run key")
        return data
    if version != VERSION_SIGNED:
        raise DecodeError("bad_mac", f"version {version}: unsigned, and this run accepts only signed messages")
    if len(data) < HEADER.size + MAC_BYTES:
        raise DecodeError("too_short", f"{len(data)} bytes: no room for the {MAC_BYTES}-byte tag")
    frame, tag = data[:-MAC_BYTES], data[-MAC_BYTES:]
    if not hmac.compare_digest(tag, hmac.new(key, frame, hashlib.sha256).digest()):
        raise DecodeError("bad_mac", "the tag does not verify: forged, altered, or signed with another run's key")
    return frame


def _ids_and_sizes(head: dict) -> tuple[list, list, int]:
    ids = _get(head, "ids", list)
    limits = _SETTINGS.limits
    if len(ids) > limits.max_ids:
        raise DecodeError("over_limit", f"{len(ids)} ids, the limit is {limits.max_ids}")
    if not all(isinstance(i, str) for i in ids):
        raise _field_error("every entry of 'ids' must be a string")
    sizes = _get(head, "sizes", list)
    if not all(_is_int(s) and s >= 0 for s in sizes):
        raise _field_error("every entry of 'sizes' must be a non-negative integer")
    if len(sizes) != len(ids):
        raise _field_error(f"'sizes' has {len(sizes)} entries but 'ids' has {len(ids)}")
    size_bytes = _get(head, "size_bytes", int)
    if size_bytes < 0:
        raise _field_error("'size_bytes' must be non-negative")
    if size_bytes > limits.max_payload_bytes:
        raise DecodeError("over_limit", f"{size_bytes} payload bytes, the limit is {limits.max_payload_bytes}")
    return ids, sizes, size_bytes


def _req_ts(head: dict, ids: list) -> Optional[tuple[dict[str, float], ...]]:
    req_ts = head.get("req_ts")
    if req_ts is None:
        return None
    if not isinstance(req_ts, list):
        raise _field_error(f"field 'req_ts' must be list, got {type(req_ts).__name__}")
    if len(req_ts) != len(ids):
        raise _field_error(f"'req_ts' has {len(req_ts)} entries but 'ids' has {len(ids)}")
    return tuple(_ts(d, f"req_ts[{i}]") for i, d in enumerate(req_ts))


def _labels(head: dict, kind: Kind, ids: list) -> Optional[tuple[int, ...]]:
    labels = head.get("labels")
    if labels is None:
        return None
    if kind is not Kind.RESULT:
        raise _field_error(f"'labels' only belongs in RESULT messages, not {kind.name}")
    if not isinstance(labels, list) or not all(_is_int(x) for x in labels):
        raise _field_error("'labels' must be a list of integers")
    if len(labels) != len(ids):
        raise _field_error(f"'labels' has {len(labels)} entries but 'ids' has {len(ids)}")
    return tuple(labels)


def _check_kind(kind: Kind, ids: list, meta: dict) -> None:
    """What each kind needs: one id for a REQUEST, some for a BATCH or RESULT, a known op for a CONTROL."""
    if kind is Kind.REQUEST and len(ids) != 1:
        raise _field_error(f"a REQUEST carries exactly one id, got {len(ids)}")
    if kind in (Kind.BATCH, Kind.RESULT) and not ids:
        raise _field_error(f"a {kind.name} carries at least one id")
    if kind is Kind.CONTROL:
        op = meta.get("op")
        if not isinstance(op, str):
            raise _field_error("a CONTROL message needs a string meta['op']")
        if op not in _CONTROL_OPS:
            raise _field_error(f"unknown control op {op[:40]!r} (one of {', '.join(_CONTROL_OPS)})")


_CONTROL_OPS = tuple(op.value for op in ControlOp)


def peek_source(data: bytes | bytearray | memoryview) -> str:
    """Who a message says sent it (``source``), read without verifying its tag: only to choose the key to
    verify it with (an open-ingress client's). The header length is checked against the limits first.
    Raises :class:`DecodeError`; trust nothing in the message until :func:`decode` has verified it."""
    _, _, head, _ = _split(data, verify=False)
    return _get(head, "source", str)


def decode(data: bytes | bytearray | memoryview, *, key=PROCESS_KEY) -> Message:
    """Parse bytes from the network (verified with ``key``, see :data:`PROCESS_KEY`). Raises :class:`DecodeError` and nothing else."""
    version, kind, head, payload = _split(data, key)
    message = _decode_plain(version, kind, head, payload)
    return message if message is not None else _decode_checked(version, kind, head, payload)


_INT_FLOAT = 2**53  # integers up to this read as floats exactly; beyond it the checked way decides


def _finite_ts(ts) -> dict[str, float] | None:
    """``ts`` as floats when every value is a finite int or float (not a bool), else None."""
    out = {}
    for k, x in ts.items():
        if type(x) is float:
            if x - x != 0.0:  # inf or nan (a JSON 1e999 reads as inf)
                return None
            out[k] = x
        elif type(x) is int and -_INT_FLOAT < x < _INT_FLOAT:
            out[k] = float(x)
        else:
            return None
    return out


def _decode_plain(version: int, kind: Kind, head: dict, payload: bytes) -> Message | None:
    """The message when its header is well formed in the plain way senders write it, else None (then
    ``_decode_checked`` says what is wrong). Only ever accepts what ``_decode_checked`` accepts, and builds
    the same message: the gateway decodes every request, and the checks one by one cost ~15 us of it."""
    ids, sizes, limits = head.get("ids"), head.get("sizes"), _SETTINGS.limits
    if type(ids) is not list or type(sizes) is not list or len(ids) != len(sizes) or len(ids) > limits.max_ids:
        return None
    total = 0
    for request_id, size in zip(ids, sizes):
        if type(request_id) is not str or type(size) is not int or size < 0:
            return None
        total += size
    source, trace_id, ts, meta = head.get("source"), head.get("trace_id"), head.get("ts"), head.get("meta", _NO_META)
    if (head.get("size_bytes") != total or type(head.get("size_bytes")) is not int or total > limits.max_payload_bytes
            or len(payload) != total or type(source) is not str or type(trace_id) is not str or type(ts) is not dict
            or "req_ts" in head or "labels" in head or (meta is not _NO_META and type(meta) is not dict)):
        return None  # req_ts and labels (a worker's results) take the checked way
    ts = _finite_ts(ts)
    batch_id = head.get("batch_id", _NO_META)
    if batch_id is _NO_META and kind is not Kind.BATCH and kind is not Kind.RESULT:
        batch_id = None
    elif type(batch_id) is not str:
        return None
    if ts is None:
        return None
    meta = {} if meta is _NO_META or not meta else meta
    _check_kind(kind, ids, meta)
    return Message(kind=kind, ids=tuple(ids), sizes=tuple(sizes), source=source, trace_id=trace_id, ts=ts, payload=payload,
                   batch_id=batch_id, meta=meta, version=version)  # fmt: skip


_NO_META = object()


def _decode_checked(version: int, kind: Kind, head: dict, payload: bytes) -> Message:
    """Every field checked one by one: the first problem raises its :class:`DecodeError`."""
    ids, sizes, size_bytes = _ids_and_sizes(head)
    source = _get(head, "source", str)
    trace_id = _get(head, "trace_id", str)
    ts = _ts(_get(head, "ts", dict), "ts")
    req_ts = _req_ts(head, ids)
    batch_id = _get(head, "batch_id", str, required=kind in (Kind.BATCH, Kind.RESULT))
    labels = _labels(head, kind, ids)
    meta = _get(head, "meta", dict, required=False) or {}
    _check_kind(kind, ids, meta)

    total = sum(sizes)
    if size_bytes != total:
        raise DecodeError("payload_length", f"'size_bytes' is {size_bytes} but 'sizes' sum to {total}")
    if len(payload) != total:
        raise DecodeError("payload_length",
                          f"payload is {len(payload)} bytes but the header declares {total}")

    return Message(
        kind=kind,
        ids=tuple(ids),
        sizes=tuple(sizes),
        source=source,
        trace_id=trace_id,
        ts=ts,
        payload=payload,
        req_ts=req_ts,
        batch_id=batch_id,
        labels=labels,
        meta=meta,
        version=version,
    )


# ---------------------------------------------------------------------------
# Dead letters
# ---------------------------------------------------------------------------


def dead_letter(producer, raw: bytes, reason: str, source_topic: str) -> None:
    """Publish ``raw`` unchanged to the dead-letter topic ``producer`` writes to.

    Properties: ``reason`` (the error text) and ``source_topic``. ``producer`` is
    any object with a pulsar-style ``send(content, properties=...)``.
    """
    producer.send(bytes(raw), properties={"reason": bounded_reason(reason), "source_topic": str(source_topic)[:200]})


def bounded_reason(reason) -> str:
    """``reason`` as text of at most ``max_reason_chars`` characters (it may quote what a sender wrote)."""
    text, limit = str(reason), _SETTINGS.limits.max_reason_chars
    return text if len(text) <= limit else text[:limit] + "..."


def decode_or_dead_letter(raw: bytes, dlq_producer, source_topic: str) -> Optional[Message]:
    """:func:`decode`; on a :class:`DecodeError` send ``raw`` to the dead-letter producer and return None.

    The caller acknowledges the original message either way and goes on.
    """
    try:
        return decode(raw)
    except DecodeError as e:
        dead_letter(dlq_producer, raw, str(e), source_topic)
        return None
