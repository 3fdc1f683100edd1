"""An EdgeServe-style streaming API on the live harness's pieces.

Three iterators that are also context managers, as in EdgeServe
(https://github.com/swjz/EdgeServe): each ``next()`` does one step.

- ``DataSource(stream, url, source_id=..., topic=...)``: ``next()`` sends one
  item of ``stream``. With ``lazy=True`` it keeps the bytes in a local
  ``PayloadStore`` and sends only a reference; the payload crosses the network
  only if the task reads it (lazy routing).
- ``Compute(task, url, worker_id=..., topic_in=..., topic_out=...)``:
  ``next()`` consumes one message and, when it can, runs ``task`` and publishes
  its result. With ``sources=[...]`` the task gets the latest message of each
  source, joined only when their send times lie within ``max_skew_s`` (the rule of
  ``spec.join_buffer.JoinBuffer``, which the pipelines of both backends use: a
  join consumes its inputs; an input too far from the others expires). With
  ``cascade_topic`` the task returns ``(result, confidence)`` and an
  unconfident result's input is sent on to a more expensive model's topic
  instead. Messages older than ``max_age_s`` are dropped and counted
  (``spec.stale_filter.StaleFilter``). A
  message that fails to decode goes to ``<topic_in>-dlq`` with its reason.
- ``Materialize(fn, url, topic=...)``: ``next()`` consumes one result and
  calls ``fn`` on it.

Payloads are raw bytes (results: bytes, or JSON for other values). Send times
are wall-clock (``time.time()``): joins and age limits across machines need
synchronized clocks (NTP is enough for limits of tens of milliseconds).
"""

from __future__ import annotations

import http.server
import json
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections import OrderedDict
from dataclasses import dataclass
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

from live.wire.broker import connect
from spec.join_buffer import JOIN_SKEW, InputExpired, JoinBuffer
from spec.stale_filter import StaleFilter
from live.wire.messages import DecodeError, Kind, Message, dead_letter, decode, encode, encode_request

__all__ = ["DataSource", "Compute", "Materialize", "PayloadStore", "LazyPayload", "RefPolicy", "Stats"]

_RECEIVE_TIMEOUT_MS = 200


class Stats:
    """Counters of one endpoint: sent, received, computed, forwarded, stale, dead-lettered, fetched."""

    def __init__(self) -> None:
        self.sent = self.received = self.computed = self.forwarded = 0
        self.stale = self.dead_lettered = self.fetched = self.skew_waits = 0

    def as_dict(self) -> dict:
        return dict(vars(self))


class PayloadStore:
    """Keeps payloads where they were produced and serves them by key over HTTP on 127.0.0.1.

    Holds at most ``capacity`` payloads (oldest evicted); counts fetches.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0, capacity: int = 10_000):
        self._items: OrderedDict[str, bytes] = OrderedDict()
        self._lock = threading.Lock()
        self.capacity = capacity
        self.fetches = 0
        store = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 (http.server's naming)
                key = self.path.lstrip("/")
                with store._lock:
                    data = store._items.get(key)
                    if data is not None:
                        store.fetches += 1
                if data is None:
                    self.send_error(404, "no such payload (evicted or never stored)")
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):  # quiet
                pass

        self._server = http.server.ThreadingHTTPServer((host, port), Handler)
        self.url = f"http://{host}:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, name="payload-store", daemon=True)
        self._thread.start()

    def put(self, data: bytes) -> str:
        key = uuid.uuid4().hex
        with self._lock:
            self._items[key] = bytes(data)
            while len(self._items) > self.capacity:
                self._items.popitem(last=False)
        return f"{self.url}/{key}"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@dataclass(frozen=True, kw_only=True, slots=True)
class RefPolicy:
    """Which lazy references a ``Compute`` node may fetch: schemes and hosts it names, a size cap and a timeout.

    A reference comes from a message, so from anyone who can publish: by default only ``http`` to the
    loopback address, where a ``PayloadStore`` serves; never ``file://`` unless a caller lists it. A
    reference outside the policy is dead-lettered without being opened; a fetch never follows a redirect
    and stops at ``max_bytes``.
    """

    schemes: tuple[str, ...] = ("http",)
    hosts: tuple[str, ...] = ("127.0.0.1", "localhost")
    max_bytes: int = 16 * 1024 * 1024
    timeout_s: float = 5.0

    def check(self, ref: str) -> str | None:
        """Why ``ref`` may not be fetched (None when it may)."""
        try:
            parts = urllib.parse.urlsplit(str(ref))
        except ValueError as error:
            return f"reference is not a URL: {error}"
        if parts.scheme not in self.schemes:
            return f"reference scheme {parts.scheme[:20]!r} is not allowed (allowed: {', '.join(self.schemes)})"
        if parts.scheme != "file" and (parts.hostname or "") not in self.hosts:
            return f"reference host {(parts.hostname or '')[:60]!r} is not allowed (allowed: {', '.join(self.hosts)})"
        return None


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, req, fp, code, msg, headers, newurl):
        raise urllib.error.HTTPError(req.full_url, code, "redirects are not followed for lazy references", headers, fp)


_OPENER = urllib.request.build_opener(_NoRedirect)


class LazyPayload:
    """A reference to a payload held by its source; ``bytes(p)`` or ``p.get()`` fetches it once, bounded."""

    def __init__(self, ref: str, size_bytes: int, stats: Stats, policy: RefPolicy | None = None):
        self.ref = ref
        self.size_bytes = size_bytes
        self._stats = stats
        self._policy = policy or RefPolicy()
        self._data: bytes | None = None
        problem = self._policy.check(ref)
        if problem is not None:
            raise ValueError(problem)

    def get(self) -> bytes:
        if self._data is None:
            cap = self._policy.max_bytes
            with _OPENER.open(self.ref, timeout=self._policy.timeout_s) as response:
                data = response.read(cap + 1)
            if len(data) > cap:
                raise ValueError(f"lazy payload over the {cap}-byte cap (RefPolicy.max_bytes)")
            self._data = data
            self._stats.fetched += 1
        return self._data

    def __bytes__(self) -> bytes:
        return self.get()

    def __len__(self) -> int:
        return self.size_bytes


class _Endpoint:
    """Shared life cycle: a Pulsar client (own, or given), closed on exit."""

    def __init__(self, url: str | None, client=None):
        self._url = url
        self._client = client
        self._own_client = client is None
        self.stats = Stats()

    def __enter__(self):
        if self._client is None:
            if self._url is None:
                raise ValueError("url: a Pulsar service URL (pulsar://host:6650), or pass client=")
            self._client, _ = connect(self._url)
        self._open()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __iter__(self) -> Iterator:
        return self

    def _open(self) -> None:
        raise NotImplementedError

    def close(self) -> None:
        if self._own_client and self._client is not None:
            self._client.close()
            self._client = None


def _to_bytes(value: Any) -> tuple[bytes, str]:
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value), "bytes"
    return json.dumps(value).encode(), "json"


def _from_bytes(data: bytes, encoding: str) -> Any:
    return json.loads(data) if encoding == "json" else data


class DataSource(_Endpoint):
    """Sends one item of ``stream`` per ``next()`` to ``topic``; returns the request id sent."""

    def __init__(self, stream: Iterable, url: str | None = None, *, source_id: str, topic: str, lazy: bool = False, client=None):
        super().__init__(url, client)
        self._stream = iter(stream)
        self.source_id = source_id
        self.topic = topic
        self.lazy = lazy
        self.store: PayloadStore | None = None
        self._count = 0

    def _open(self) -> None:
        self._producer = self._client.create_producer(self.topic)
        if self.lazy:
            self.store = PayloadStore()

    def __next__(self) -> str:
        item = next(self._stream)  # StopIteration ends the source
        data, encoding = _to_bytes(item)
        request_id = f"{self.source_id}-{self._count}"
        self._count += 1
        meta = {"encoding": encoding}
        if self.lazy:
            meta.update(ref=self.store.put(data), ref_size_bytes=len(data))
            data = b""
        self._producer.send(encode_request(request_id, data, source=self.source_id, sent_s=time.time(), meta=meta))
        self.stats.sent += 1
        return request_id

    def close(self) -> None:
        if self.store is not None:
            self.store.close()
            self.store = None
        super().close()


class Compute(_Endpoint):
    """Consumes ``topic_in`` (Shared subscription: replicas share it) and runs ``task``.

    ``next()`` handles one message and returns the task's result, or None when
    it computed nothing this step (waiting for a join partner, a stale or bad
    message, or no message within the receive timeout).
    """

    def __init__(
        self,
        task: Callable,
        url: str | None = None,
        *,
        worker_id: str,
        topic_in: str,
        topic_out: str,
        sources: Sequence[str] | None = None,
        max_skew_s: float = float("inf"),
        max_age_s: float = float("inf"),
        cascade_topic: str | None = None,
        confidence_threshold: float = 0.5,
        subscription: str | None = None,
        client=None,
        refs: RefPolicy | None = None,
    ):
        super().__init__(url, client)
        self.refs = refs or RefPolicy()
        if max_skew_s < 0 or max_age_s <= 0:
            raise ValueError(f"max_skew_s={max_skew_s} must be >= 0 and max_age_s={max_age_s} > 0")
        if not 0.0 <= confidence_threshold <= 1.0:
            raise ValueError(f"confidence_threshold={confidence_threshold} must be a probability in [0, 1]")
        self.task = task
        self.worker_id = worker_id
        self.topic_in = topic_in
        self.topic_out = topic_out
        self.sources = list(sources) if sources else None
        self.max_skew_s = max_skew_s
        self.max_age_s = max_age_s
        self.cascade_topic = cascade_topic
        self.confidence_threshold = confidence_threshold
        self.subscription = subscription or f"{topic_in}-compute"
        self._stale = StaleFilter(max_age_s=max_age_s)
        self._join = JoinBuffer(sources=self.sources, max_skew_s=max_skew_s) if self.sources else None
        self._held: dict[int, Message] = {}  # the join's inputs by the number it knows them by
        self._offered = 0

    def _open(self) -> None:
        import pulsar

        self._consumer = self._client.subscribe(
            self.topic_in, self.subscription, consumer_type=pulsar.ConsumerType.Shared, receiver_queue_size=100
        )
        self._out = self._client.create_producer(self.topic_out)
        self._dlq = self._client.create_producer(f"{self.topic_in}-dlq")
        self._cascade = self._client.create_producer(self.cascade_topic) if self.cascade_topic else None

    def _input(self, message: Message) -> Any:
        meta = message.meta
        if "ref" in meta:
            return LazyPayload(str(meta["ref"]), int(meta.get("ref_size_bytes", 0)), self.stats, self.refs)
        return _from_bytes(message.payload, meta.get("encoding", "bytes"))

    def _bad_ref(self, message: Message) -> str | None:
        ref = message.meta.get("ref")
        return None if ref is None else self.refs.check(str(ref))

    def _joined(self, message: Message, sent_s: float) -> list[Message] | None:
        """The messages of a join that ``message`` completes (one per source, in ``sources`` order), else None."""
        if message.source not in self._join:
            return None  # not a source of this join
        key = self._offered
        self._offered += 1
        self._held[key] = message
        fired = None
        for fact in self._join.offer(now_s=time.time(), request_id=key, source=message.source, made_s=sent_s):
            if isinstance(fact, InputExpired):
                self._held.pop(fact.request_id, None)
                self.stats.skew_waits += fact.reason == JOIN_SKEW
            else:
                fired = fact
        return None if fired is None else [self._held.pop(k) for k in fired.member_ids]

    def __next__(self) -> Any:
        try:
            raw = self._consumer.receive(timeout_millis=_RECEIVE_TIMEOUT_MS)
        except Exception:  # pulsar.Timeout: nothing arrived this step
            return None
        try:
            message = decode(raw.data())
        except DecodeError as error:
            dead_letter(self._dlq, raw.data(), str(error), self.topic_in)
            self._consumer.acknowledge(raw)
            self.stats.dead_lettered += 1
            return None
        self.stats.received += 1
        problem = self._bad_ref(message)
        if problem is not None:  # checked before anything is opened
            dead_letter(self._dlq, raw.data(), problem, self.topic_in)
            self._consumer.acknowledge(raw)
            self.stats.dead_lettered += 1
            return None
        sent_s = float(message.ts.get("sent_s", time.time()))
        if self._stale.check(now_s=time.time(), made_s=sent_s) is not None:
            self._consumer.acknowledge(raw)
            self.stats.stale += 1
            return None
        if self._join is None:
            parts = [message]
        else:
            parts = self._joined(message, sent_s)
            if parts is None:
                self._consumer.acknowledge(raw)
                return None
        inputs = [self._input(p) for p in parts]
        result = self.task(*inputs)
        self.stats.computed += 1
        if self._cascade is not None:
            result, confidence = result
            if confidence < self.confidence_threshold:
                self._cascade.send(raw.data())  # the expensive model gets the original input
                self.stats.forwarded += 1
                self._consumer.acknowledge(raw)
                return None
        data, encoding = _to_bytes(result)
        ids = tuple(i for p in parts for i in p.ids)
        self._out.send(
            encode(Message(kind=Kind.RESULT, ids=ids, sizes=(len(data),) + (0,) * (len(ids) - 1), source=self.worker_id,
                           trace_id=parts[0].trace_id, ts={"sent_s": time.time(), "input_sent_s": sent_s},
                           payload=data, batch_id=f"{self.worker_id}-{self.stats.computed}", meta={"encoding": encoding}))
        )  # fmt: skip
        self._consumer.acknowledge(raw)  # only after the result is published
        return result


class Materialize(_Endpoint):
    """Consumes results from ``topic`` and calls ``fn(result)``; ``next()`` returns fn's value or None."""

    def __init__(self, fn: Callable, url: str | None = None, *, topic: str, subscription: str | None = None, client=None):
        super().__init__(url, client)
        self.fn = fn
        self.topic = topic
        self.subscription = subscription or f"{topic}-materialize"

    def _open(self) -> None:
        import pulsar

        self._consumer = self._client.subscribe(self.topic, self.subscription, consumer_type=pulsar.ConsumerType.Shared)
        self._dlq = self._client.create_producer(f"{self.topic}-dlq")

    def __next__(self) -> Any:
        try:
            raw = self._consumer.receive(timeout_millis=_RECEIVE_TIMEOUT_MS)
        except Exception:
            return None
        try:
            message = decode(raw.data())
        except DecodeError as error:
            dead_letter(self._dlq, raw.data(), str(error), self.topic)
            self._consumer.acknowledge(raw)
            self.stats.dead_lettered += 1
            return None
        self.stats.received += 1
        value = self.fn(_from_bytes(message.payload[: message.sizes[0]], message.meta.get("encoding", "bytes")))
        self._consumer.acknowledge(raw)
        return value
