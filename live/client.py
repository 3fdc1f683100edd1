"""A Python client of an open-ingress run: submit requests, get each one's answer (docs/PROTOCOL.md, "Open ingress").

::

    from live.client import EdgebatchClient

    with EdgebatchClient.connect("pulsar://host:6650", run_id, "alice", key=ALICE_KEY_HEX, gateway="edge") as client:
        request_id = client.submit(b"\\x01\\x02...")            # bytes, or a uint8 / float (0..1) tensor or array
        reply = client.result(request_id, timeout_s=5.0)      # a Reply: ok, label, logits(), reason, latency_s
        for reply in client.results(timeout_s=10.0):          # or every answer, as they come
            ...

The run's config registers the client (``live.ingress.clients.alice``)
with the key it signs with: its own (``key_env`` on the gateway's host) or
the run's. Requests go to ``requests-<gateway>``, answers come on
``replies-<client>``, signed with the same key; an answer that does not
verify is counted (``stats["unverified"]``) and ignored. Every request gets
exactly one answer: its result, or a drop with the reason (the policy's, or
``run_ended`` at the run's stop), or a rejection (a bad id). A rejection
``duplicate_id`` for an id this client sent once is about a copy the broker
delivered again: the first one's answer still comes, so it is only counted
(``stats["duplicates_rejected"]``). Ids are the client's own, unique for
the whole run (across reconnects too): ``submit`` makes fresh ones unless
given one. A request still without an answer ``resend_after_s`` (5 s) after
it was sent goes again, the same bytes (so the same id and send time), then
after twice that, and so on: a gateway killed mid-run may take requests with
it that the broker never gives its successor (pulsar-lite keeps a reset
connection's consumer); the successor takes the copy, and a gateway that
still has the request rejects the copy as ``duplicate_id``.

``latency_s`` is measured on this machine's monotonic clock, from
``submit`` to the answer: no clock needs to agree with another.
``gateway_latency_s`` is the gateway's: from the request's arrival (this
client's send time, clamped by the gateway when the clocks disagree) to its
completion.
"""

from __future__ import annotations

import array
import concurrent.futures
import math
import os
import queue
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

from live.wire.broker import client_options
from live.wire.messages import ControlOp, DecodeError, Kind, Message, decode, encode, wire_settings
from live.wire.topics import Topics

__all__ = ["EdgebatchClient", "Reply", "payload_bytes"]


@dataclass(frozen=True, kw_only=True, slots=True)
class Reply:
    """The answer to one request: its result (``ok``) or why it has none."""

    request_id: str
    ok: bool
    label: int | None = None
    output_bytes: bytes = b""
    #: why there is no result: a drop's reason, or a rejection's (``rejected``)
    reason: str | None = None
    rejected: bool = False
    #: submit to answer, on this client's monotonic clock (NaN for an id it did not submit)
    latency_s: float = math.nan
    #: arrival to completion, on the gateway's clock (NaN without a result)
    gateway_latency_s: float = math.nan
    batch_id: str | None = None
    batch_size: int = 0

    def logits(self) -> list[float]:
        """The model's raw outputs for this request (float32, little-endian, as the workers send them)."""
        values = array.array("f")
        values.frombytes(self.output_bytes[: len(self.output_bytes) // 4 * 4])
        if sys.byteorder != "little":
            values.byteswap()
        return values.tolist()


def payload_bytes(payload) -> bytes:
    """A request's payload as bytes: bytes as they are; a uint8 tensor or array as its bytes; a float one, with
    values in [0, 1], as bytes of round(255 x value) (the workers read each byte as byte / 255)."""
    if isinstance(payload, (bytes, bytearray, memoryview)):
        return bytes(payload)
    if hasattr(payload, "detach"):  # a torch tensor, without importing torch here
        payload = payload.detach().cpu().numpy()
    if hasattr(payload, "dtype") and hasattr(payload, "tobytes"):
        import numpy as np

        array = np.ascontiguousarray(payload)
        if array.dtype == np.uint8:
            return array.tobytes()
        if array.dtype.kind == "f":
            return np.clip(np.rint(array * 255.0), 0, 255).astype(np.uint8).tobytes()
    raise TypeError(f"a payload is bytes, or a uint8 or float tensor or array; got {type(payload).__name__}")


def _key(key) -> bytes | None:
    if key is None or isinstance(key, bytes):
        return key
    if isinstance(key, str):
        return bytes.fromhex(key.strip())
    raise TypeError(f"key: bytes, hex text or None (an unauthenticated run), got {type(key).__name__}")


class EdgebatchClient:
    """One registered client of an open-ingress run (see the module); thread-safe ``submit``."""

    def __init__(self, pulsar_client, run_id: str, client_id: str, key, *, gateway: str, owns_client: bool = False,
                 resend_after_s: float | None = 5.0):  # fmt: skip
        import pulsar

        if resend_after_s is not None and not resend_after_s > 0:
            raise ValueError(f"resend_after_s={resend_after_s!r}: a number of seconds > 0, or None for never")

        self.client_id = client_id
        self.key = _key(key)
        self.topics = Topics(run_id)
        self._pulsar = pulsar_client
        self._owns = owns_client
        self._lock = threading.Lock()
        self._futures: dict[str, concurrent.futures.Future] = {}
        self._submitted_at: dict[str, float] = {}
        self._answers: queue.SimpleQueue = queue.SimpleQueue()
        self._prefix = os.urandom(6).hex()
        self._next = 0
        self.stats = {"submitted": 0, "answered": 0, "unverified": 0, "duplicates_rejected": 0, "unknown": 0, "resent": 0}
        #: unanswered requests: (their bytes, when last sent, times sent again) for sending again (see ``_resend_due``)
        self._unanswered: dict[str, list] = {}
        self._resend_after_s = resend_after_s
        self._closing = threading.Event()
        # subscribed before the first request goes: no answer can come before there is someone to hear it
        self._consumer = pulsar_client.subscribe(self.topics.replies(client_id), f"client-{client_id}",
                                                 consumer_type=pulsar.ConsumerType.Shared,
                                                 initial_position=pulsar.InitialPosition.Earliest,
                                                 message_listener=self._on_reply)  # fmt: skip
        self._producer = pulsar_client.create_producer(self.topics.requests(gateway), batching_enabled=False, chunking_enabled=True,
                                                       block_if_queue_full=True, send_timeout_millis=0)  # fmt: skip
        if resend_after_s is not None:
            threading.Thread(target=self._resender, name=f"edgebatch-client-{client_id}", daemon=True).start()

    @classmethod
    def connect(cls, url: str, run_id: str, client_id: str, key=None, *, gateway: str, auth_token: str | None = None,
                tls_trust_certs_file: str | None = None, resend_after_s: float | None = 5.0) -> EdgebatchClient:  # fmt: skip
        """Connect to the broker at ``url`` as ``client_id`` of run ``run_id`` (``key``: bytes or hex; None when
        the run does not authenticate), sending to ``gateway``'s requests topic; a request without an answer
        ``resend_after_s`` after it was sent goes again, the same bytes, with the wait doubling (None: never)."""
        import pulsar

        kwargs = client_options(url, tls_trust_certs_file=tls_trust_certs_file)
        if auth_token:
            kwargs["authentication"] = pulsar.AuthenticationToken(auth_token)
        kwargs["logger"] = pulsar.ConsoleLogger(pulsar.LoggerLevel.Warn)
        return cls(pulsar.Client(url, **kwargs), run_id, client_id, key, gateway=gateway, owns_client=True, resend_after_s=resend_after_s)

    # -- requests -----------------------------------------------------------------------
    def submit(self, payload, request_id: str | None = None) -> str:
        """Send one request now; returns its id (``request_id``, or a fresh one). ``ValueError`` for an id used before."""
        data = payload_bytes(payload)
        limit = wire_settings().limits.max_payload_bytes
        if len(data) > limit:
            raise ValueError(f"a payload of {len(data)} bytes; the limit is {limit} (live.limits.max_payload_bytes)")
        with self._lock:
            if request_id is None:
                request_id = f"{self._prefix}-{self._next}"
                self._next += 1
            request_id = str(request_id)
            if request_id in self._futures:
                raise ValueError(f"request id {request_id!r} was used before: ids are unique per client for the run")
            self._futures[request_id] = concurrent.futures.Future()
            self._submitted_at[request_id] = time.monotonic()
            self.stats["submitted"] += 1
        message = Message(kind=Kind.REQUEST, ids=(request_id,), sizes=(len(data),), source=self.client_id, trace_id=request_id,
                          ts={"sent_unix_s": time.time()}, payload=data)  # fmt: skip
        encoded = encode(message, key=self.key)
        if self._resend_after_s is not None:
            with self._lock:
                self._unanswered[request_id] = [encoded, time.monotonic(), 0]
        self._producer.send_async(encoded, None)
        return request_id

    def _resender(self) -> None:
        while not self._closing.wait(min(0.5, self._resend_after_s / 2)):
            self._resend_due(time.monotonic())

    def _resend_due(self, now: float) -> None:
        """Send again what has waited too long for its answer: a gateway that crashed may have taken it with it
        (its successor takes the copy; a gateway that has it still rejects the copy as ``duplicate_id``, and its
        own answer comes)."""
        with self._lock:
            due = [(request_id, entry) for request_id, entry in self._unanswered.items()
                   if now - entry[1] >= self._resend_after_s * 2 ** entry[2]]  # fmt: skip
            for _, entry in due:
                entry[1], entry[2] = now, entry[2] + 1
        for _, entry in due:
            self.stats["resent"] += 1
            try:
                self._producer.send_async(entry[0], None)
            except Exception:  # closing: nothing more to send
                return

    def future(self, request_id: str) -> concurrent.futures.Future:
        """The answer to ``request_id`` as a future (a :class:`Reply`)."""
        return self._futures[request_id]

    def result(self, request_id: str, timeout_s: float | None = None) -> Reply:
        """The answer to ``request_id``; ``TimeoutError`` when none came within ``timeout_s``."""
        return self._futures[request_id].result(timeout=timeout_s)

    def results(self, timeout_s: float | None = None) -> Iterator[Reply]:
        """Every answer as it comes, until each request submitted so far has one (``TimeoutError`` after ``timeout_s``)."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while any(not f.done() for f in list(self._futures.values())) or not self._answers.empty():
            wait_s = None if deadline is None else deadline - time.monotonic()
            if wait_s is not None and wait_s <= 0:
                raise TimeoutError(f"{sum(not f.done() for f in self._futures.values())} requests without an answer")
            try:
                yield self._answers.get(timeout=wait_s)
            except queue.Empty:
                continue

    # -- answers ------------------------------------------------------------------------
    def _on_reply(self, consumer, msg) -> None:
        try:
            message = decode(msg.data(), key=self.key)
        except DecodeError:
            message = None
            self.stats["unverified"] += 1  # not from this run's gateway under this client's key: ignored
        now = time.monotonic()
        if message is None:
            pass
        elif message.kind is Kind.RESULT:
            self._results(message, now)
        elif message.op is ControlOp.DROP:
            self._drop(message, now)
        else:
            self.stats["unknown"] += 1
        try:
            consumer.acknowledge(msg)
        except Exception:  # closing: the broker delivers it again to this client's next connection
            pass

    def _results(self, message: Message, now: float) -> None:
        outputs = message.payloads()
        for k, request_id in enumerate(message.ids):
            stamps = message.req_ts[k] if message.req_ts is not None else {}
            gateway_latency_s = stamps.get("completed_s", math.nan) - stamps.get("arrival_s", math.nan)
            self._answer(Reply(request_id=request_id, ok=True, label=message.labels[k] if message.labels is not None else None,
                               output_bytes=outputs[k], latency_s=self._latency_s(request_id, now), gateway_latency_s=gateway_latency_s,
                               batch_id=message.batch_id, batch_size=len(message.ids) if "batch_size" not in message.meta
                               else int(message.meta["batch_size"])))  # fmt: skip

    def _drop(self, message: Message, now: float) -> None:
        reason = str(message.meta.get("reason", ""))
        rejected = message.meta.get("rejected") is True
        for request_id in message.ids:
            if rejected and reason.startswith("duplicate_id") and request_id in self._futures:
                self.stats["duplicates_rejected"] += 1  # a copy of one this client sent once: its own answer comes
                continue
            self._answer(Reply(request_id=request_id, ok=False, reason=reason, rejected=rejected, latency_s=self._latency_s(request_id, now)))

    def _latency_s(self, request_id: str, now: float) -> float:
        submitted = self._submitted_at.get(request_id)
        return math.nan if submitted is None else now - submitted

    def _answer(self, reply: Reply) -> None:
        future = self._futures.get(reply.request_id)
        if future is None or future.done():
            self.stats["unknown"] += 1  # not submitted by this client object, or answered already
            return
        self.stats["answered"] += 1
        with self._lock:
            self._unanswered.pop(reply.request_id, None)
        self._answers.put(reply)  # before the future: results() ends once every future is done
        future.set_result(reply)

    # -- the end --------------------------------------------------------------------------
    def close(self) -> None:
        """Flush what is being sent and disconnect (the broker client too, when ``connect`` made it)."""
        self._closing.set()
        try:
            self._producer.flush()
            self._producer.close()
            self._consumer.close()
        finally:
            if self._owns:
                self._pulsar.close()

    def __enter__(self) -> EdgebatchClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
