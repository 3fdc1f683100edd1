"""The gateway role: drives one gateway's scheduler in real time.

The very ``policies.scheduler.Scheduler`` the simulator builds (same config,
same factory) is fed events with ``now_s`` = seconds since the run's start,
and its actions are carried out the way ``sim/gateway.py`` carries them out:

- ``RequestArrived`` for each request message on ``requests-<gateway>``
  (duplicates from at-least-once delivery are dropped by request id);
- timers on a heap, each delivered as ``TimerFired`` as soon as it is due
  (never early), its lateness recorded;
- ``DispatchBatch`` becomes one BATCH message (payloads concatenated) on
  ``batches-<executor>``; to a remote executor it first crosses an emulated
  uplink: FIFO per link, held for the serialization time at the link's
  bandwidth (constant or trace, ``spec.links.Link.serialization_end_s``)
  plus its delay, then published;
- a RESULT on ``results-<gateway>`` becomes ``BatchFinished`` (or
  ``BatchFailed``) once it has come back over the link (its delay again);
  duplicate results are ignored; a failed batch is retried by the scheduler
  (``policy.max_retries``: the same requests, dispatched again), so the
  payloads are kept until each request has ended;
- a batch whose result has not come back ``live.redeliver_after_s`` after it
  was published is published again (then after twice that, and so on): the
  broker redelivers what a dead worker held, and this covers a broker that
  does not (the first result wins, later ones are duplicates);
- a message on either topic that does not decode, or is not what that topic
  carries (a result for a batch never dispatched, a request of another
  gateway), goes to the dead-letter topic with the reason;
- pool telemetry (CONTROL ``instances``) becomes ``InstanceStateChanged``;
  a scheduler with a planner gets ``ArrivalRateMeasured`` and
  ``BandwidthMeasured`` every telemetry period, as in the simulator;
- the sink hears every request's end on ``records``: a completion record
  (RESULT with the batch's timestamps), a drop record, a failed batch, and
  adopted plans.

One thread runs the scheduler; the Pulsar client's listener threads only
put messages on a queue::

    python -m live.roles.gateway --broker URL --run-id RUN --config run.json --gateway edge
"""

from __future__ import annotations

import heapq
import json
import logging
import math
import os
import queue
from collections.abc import Callable
from dataclasses import dataclass

from live.config import RunSpec, Topics
from live.wire.messages import DecodeError, Kind, Message, dead_letter, decode, encode, encode_batch, encode_control, encode_drop, encode_result
from live.roles.role import percentiles
from policies.actions import CancelTimer, DispatchBatch, DropRequest, NotePlan, StartTimer
from policies.events import (
    ArrivalRateMeasured,
    BandwidthMeasured,
    BatchFailed,
    BatchFinished,
    Event,
    InstanceStateChanged,
    Request,
    RequestArrived,
    TimerFired,
)
from spec.links import Link
from spec.records import DropReason

__all__ = ["LinkEmulator", "Gateway", "main"]

log = logging.getLogger("edgebatch.live")

_TIMER, _UPLINK, _RETURN, _TELEMETRY, _REDELIVER = 0, 1, 2, 3, 4
#: seconds of silence from the executors, with batches in flight, before nudging the broker (see Gateway._nudge)
NUDGE_S = 0.02


class LinkEmulator:
    """An uplink in user space: transfers leave in FIFO order, one at a time.

    ``send(now_s, size_bytes)`` returns when the transfer has arrived: it
    starts when the previous one has left, serializes at the link's
    bandwidth (waiting out outages of a trace), then takes ``delay_s``;
    exactly ``sim.link.LinkChannel``'s arithmetic.
    """

    def __init__(self, link: Link):
        self.link = link
        self.free_at_s = 0.0
        self.bytes_sent = 0

    def send(self, now_s: float, size_bytes: float) -> float:
        start_s = self.free_at_s if self.free_at_s > now_s else now_s
        sent_s = self.link.serialization_end_s(start_s, size_bytes)
        self.free_at_s = sent_s
        self.bytes_sent += size_bytes
        return sent_s + self.link.delay_s


@dataclass
class _Flight:
    local_id: int
    executor: str
    ids: tuple[int, ...]
    dispatched_s: float
    memory_mb: int | None
    size_bytes: int
    planned_arrival_s: float
    arrived_s: float = math.nan
    state: str = "uplink"  # uplink -> sent -> returning
    attempt: int = 0  # the scheduler's retry number of these requests (DispatchBatch.attempt)
    data: bytes | None = None  # the published batch, kept until its result is back (to publish it again)
    resends: int = 0  # times published again for want of a result (live.redeliver_after_s)
    published: int = -1  # publication order among this gateway's batches


def _plain(value):
    """JSON-safe plain data (numpy numbers to floats, non-finite to None)."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    kind = getattr(getattr(value, "dtype", None), "kind", "")
    if kind == "b":
        return bool(value)
    try:
        number = float(value)
    except (TypeError, ValueError):
        return str(value)
    if isinstance(value, int) or kind in ("i", "u"):
        return int(value)
    return number if math.isfinite(number) else None


class _TopicProducer:
    """A producer-like object (``send(content, properties=...)``) for one topic of a send function."""

    def __init__(self, send, topic: str):
        self._send, self._topic = send, topic

    def send(self, content: bytes, properties=None) -> None:
        self._send(self._topic, content, properties)


class Gateway:
    """One gateway's scheduler in real time; the broker is outside (``send(topic, data, properties=None)``).

    ``now()`` is the run's clock. Feed messages with ``on_request`` and
    ``on_result``; call ``poll()`` often: it delivers what is due and
    returns when it next needs to be called (None: only on a message).
    """

    def __init__(self, spec: RunSpec, name: str, topics: Topics, send: Callable[..., None], now: Callable[[], float]):
        self.spec = spec
        self.name = name
        self.topics = topics
        self.send = send
        self.now = now
        cluster = spec.cluster
        self.scheduler = spec.make_scheduler(name, cluster)
        self.reachable = cluster.reachable(name)
        self.links = {n: cluster.link(name, n) for n in self.reachable}
        self.links = {n: link for n, link in self.links.items() if link is not None}
        self.emulators = {n: LinkEmulator(link) for n, link in self.links.items()} if spec.settings.emulate_links else {}
        arrivals = spec.arrivals
        self.count = len(arrivals)
        self.source_index = arrivals.source_index
        self.sources = {s.name: (i, s) for i, s in enumerate(arrivals.sources) if s.gateway == name}
        self.expected = spec.expected_at(name)
        self.seen = bytearray(self.count)
        self.payloads: dict[int, bytes] = {}
        self.flights: dict[int, _Flight] = {}
        self.heap: list = []
        self._seq = 0
        self._timer_generation: dict[str, int] = {}
        self._generation = 0
        self.arrivals_seen = 0
        self.ended = 0
        self._arrived_since = 0
        self.period_s = spec.settings.telemetry_period_s
        self.plans: list[dict] = []
        self.timer_late_s: list[float] = []
        self.uplink_late_s: list[float] = []
        self.ingest_lag_s: list[float] = []
        self.counts = {"duplicate_requests": 0, "duplicate_results": 0, "dead_letters": 0, "batches": 0, "drops": 0, "retries": 0,
                       "redelivered": 0}
        self.redeliver_after_s = spec.settings.redeliver_after_s
        self._published = 0
        self._last_nudge_s = -math.inf
        #: per executor: when its last result came, and the latest publication among its batches with a result
        self._last_result_s: dict[str, float] = {}
        self._latest_done: dict[str, int] = {}
        #: most requests held at once (queued in the scheduler or in flight): bounded by the batching policy's
        #: max_queue and max_inflight, whatever the offered load
        self.peak_pending = 0
        #: most resident memory seen (sampled every 100 arrivals and at the end), MB
        self.peak_rss_mb: float | None = None
        #: a live.eventlog.EventLog recording every event and the actions it gave (live.event_log), or None
        self.event_log = None
        self._act = {
            DispatchBatch: self._dispatch,
            StartTimer: self._start_timer,
            CancelTimer: self._cancel_timer,
            DropRequest: self._drop,
            NotePlan: self._note_plan,
        }
        if self.scheduler.planner is not None:
            self._push(self.period_s, _TELEMETRY, None)

    @property
    def done(self) -> bool:
        """Every request of this gateway arrived and ended (completed or dropped)."""
        return self.arrivals_seen >= self.expected and self.ended >= self.expected

    # -- the loop's side ---------------------------------------------------------
    def _push(self, due_s: float, kind: int, item) -> None:
        self._seq += 1
        heapq.heappush(self.heap, (due_s, self._seq, kind, item))

    def poll(self) -> float | None:
        """Deliver everything due now; return the next due time (None: nothing scheduled)."""
        nudge_at_s = self._nudge()
        heap = self.heap
        while heap:
            now_s = self.now()
            due_s = heap[0][0]
            if due_s > now_s:
                return due_s if nudge_at_s is None else min(due_s, nudge_at_s)
            _, _, kind, item = heapq.heappop(heap)
            if kind == _TIMER:
                timer_id, generation, at_s = item
                if self._timer_generation.get(timer_id) != generation:
                    continue  # cancelled or restarted since
                del self._timer_generation[timer_id]
                self.timer_late_s.append(now_s - at_s)
                self.handle(TimerFired(now_s=now_s, timer_id=timer_id, late_s=now_s - at_s))
            elif kind == _UPLINK:
                self._arrive(item, now_s)
            elif kind == _RETURN:
                self._complete(*item)
            elif kind == _REDELIVER:
                self._redeliver(*item)
            else:
                self._telemetry(now_s)
        return nudge_at_s

    def _nudge(self) -> float | None:
        # pulsar-lite (0.2) sometimes leaves a message published on a quiet topic
        # undispatched until the next publish on it (with one batch in flight and
        # nothing else moving, a result then waited for redeliver_after_s); a tiny
        # message on our own results topic after NUDGE_S of silence wakes it.
        # Harmless on a real Pulsar: the gateway ignores these.
        # returns when to look again (None: nothing in flight)
        sent = [f.arrived_s for f in self.flights.values() if f.state == "sent"]
        if not sent:
            return None
        now_s = self.now()
        heard_s = max(self._last_result_s.values(), default=-math.inf)
        quiet_since_s = max(heard_s, self._last_nudge_s, max(sent))
        if now_s - quiet_since_s < NUDGE_S:
            return quiet_since_s + NUDGE_S
        self._last_nudge_s = now_s
        self.send(self.topics.results(self.name), encode_control("nudge", source=self.name))
        return now_s + NUDGE_S

    def handle(self, event: Event) -> None:
        """Give ``event`` to the scheduler and carry out what it asks."""
        act = self._act
        actions = self.scheduler.handle(event)
        if self.event_log is not None:
            self.event_log.record(event, actions)
        for action in actions:
            act[type(action)](action)

    def _dead(self, raw: bytes, reason: str, topic: str) -> None:
        self.counts["dead_letters"] += 1
        dead_letter(_TopicProducer(self.send, self.topics.dead_letter), raw, reason, topic)

    # -- requests ------------------------------------------------------------------
    def on_request(self, raw: bytes) -> None:
        topic = self.topics.requests(self.name)
        try:
            message = decode(raw)
        except DecodeError as error:
            self._dead(raw, str(error), topic)
            return
        problem = None
        request_id = -1
        if message.kind is not Kind.REQUEST:
            problem = f"unexpected: a {message.kind.name} message on a requests topic"
        elif message.source not in self.sources:
            problem = f"unexpected: request from unknown source {message.source!r} (sources of {self.name}: {sorted(self.sources)})"
        else:
            try:
                request_id = int(message.request_id)
            except ValueError:
                request_id = -1
            if not 0 <= request_id < self.count or self.source_index[request_id] != self.sources[message.source][0]:
                problem = f"unexpected: request id {message.request_id!r} is not one of {message.source}'s"
        if problem is not None:
            self._dead(raw, problem, topic)
            return
        if self.seen[request_id]:
            self.counts["duplicate_requests"] += 1
            return
        self.seen[request_id] = 1
        self.arrivals_seen += 1
        self._arrived_since += 1
        now_s = self.now()
        source = self.sources[message.source][1]
        arrival_s = float(message.ts.get("arrival_s", now_s))
        self.ingest_lag_s.append(now_s - arrival_s)
        self.payloads[request_id] = message.payload
        request = Request(
            request_id=request_id,
            source=source.name,
            arrival_s=arrival_s,
            size_bytes=len(message.payload),
            deadline_s=arrival_s + source.slo_s,
        )
        self.handle(RequestArrived(now_s=now_s, request=request))
        pending = len(self.payloads)
        if pending > self.peak_pending:
            self.peak_pending = pending
        if self.arrivals_seen % 100 == 0:
            self._sample_rss()

    def _sample_rss(self) -> None:
        rss = _rss_mb()
        if rss is not None and (self.peak_rss_mb is None or rss > self.peak_rss_mb):
            self.peak_rss_mb = rss

    # -- results ---------------------------------------------------------------------
    def on_result(self, raw: bytes) -> None:
        topic = self.topics.results(self.name)
        try:
            message = decode(raw)
        except DecodeError as error:
            self._dead(raw, str(error), topic)
            return
        if message.kind is Kind.CONTROL and message.meta.get("op") == "nudge":
            return  # our own wake-up call for the broker (see _nudge)
        if message.kind is Kind.CONTROL and message.meta.get("op") == "instances":
            executor, warm = message.meta.get("executor"), message.meta.get("warm")
            if executor in self.scheduler.batchers and isinstance(warm, int):
                self.handle(InstanceStateChanged(now_s=self.now(), executor=executor, warm_instances=warm))
            return
        local_id = None
        if message.kind is Kind.RESULT:
            gateway, _, local = (message.batch_id or "").rpartition(":")
            if gateway == self.name and local.isdigit():
                local_id = int(local)
        if local_id is None:
            self._dead(raw, f"unexpected: {message.kind.name} {message.batch_id!r} on {self.name}'s results topic", topic)
            return
        if local_id >= self.counts["batches"]:  # batch ids count up from 0, one per dispatch (retries included)
            self._dead(raw, f"unexpected: a result for batch {message.batch_id!r}, which {self.name} never dispatched", topic)
            return
        flight = self.flights.get(local_id)
        if flight is None or flight.state != "sent":
            self.counts["duplicate_results"] += 1  # at-least-once: a result seen before
            return
        self._last_result_s[flight.executor] = self.now()
        if flight.published > self._latest_done.get(flight.executor, -1):
            self._latest_done[flight.executor] = flight.published
        flight.state = "returning"
        link = self.links.get(flight.executor) if self.emulators else None
        if link is not None and link.delay_s > 0:
            self._push(self.now() + link.delay_s, _RETURN, (local_id, message))
        else:
            self._complete(local_id, message)

    def _complete(self, local_id: int, message: Message) -> None:
        now_s = self.now()
        flight = self.flights.pop(local_id)
        key = f"{self.name}:{local_id}"
        meta = message.meta
        redelivered = meta.get("redelivered", 0)
        redelivered = redelivered if isinstance(redelivered, int) and not isinstance(redelivered, bool) and redelivered > 0 else 0
        redelivered += flight.resends  # the broker's redeliveries plus this gateway's own
        common = {"executor": flight.executor, "gateway": self.name, "memory_mb": flight.memory_mb or 0,
                  "worker": message.source, "cost": float(meta.get("cost", 0.0) or 0.0),
                  "cold_start_s": float(meta.get("cold_start_s", 0.0) or 0.0),
                  "attempt": flight.attempt, "redelivered": redelivered}  # fmt: skip
        arrived_s = flight.arrived_s
        if not self.emulators and flight.executor in self.links:
            # a real link (a testbed): the batch arrived when its worker received it (the
            # worker's clock: synchronized clocks, docs/DEPLOY.md); with emulation the
            # gateway itself held it for the link's time
            received_s = message.ts.get("received_s")
            if isinstance(received_s, (int, float)) and not isinstance(received_s, bool) and received_s >= arrived_s:
                arrived_s = float(received_s)
        ts = {"dispatched_s": flight.dispatched_s, "arrived_s": arrived_s, "completed_s": now_s}
        ids = [str(i) for i in flight.ids]
        if meta.get("failed"):
            reason = str(meta.get("reason") or DropReason.EXECUTOR_FAILED)
            self.send(self.topics.records, encode(Message(
                kind=Kind.CONTROL, ids=tuple(ids), sizes=(0,) * len(ids), source=self.name, trace_id=key, ts=ts,
                meta={**common, "op": "batch_failed", "batch_id": key, "reason": reason},
            )))  # fmt: skip
            self.handle(BatchFailed(now_s=now_s, batch_id=local_id, executor=flight.executor, reason=reason))
            return
        stamps = {k: v for k, v in message.ts.items() if k in ("received_s", "start_s", "end_s", "service_s")}
        service_s = float(stamps.get("service_s", stamps.get("end_s", 0.0) - stamps.get("start_s", 0.0)))
        labels = message.labels if message.labels is not None and len(message.labels) == len(ids) else None
        self.send(self.topics.records, encode_result(key, ids, source=self.name, labels=labels, ts={**stamps, **ts}, meta=common))
        self.ended += len(ids)
        payloads = self.payloads
        for request_id in flight.ids:
            payloads.pop(request_id, None)
        self.handle(BatchFinished(now_s=now_s, batch_id=local_id, executor=flight.executor, service_s=service_s))

    # -- telemetry -------------------------------------------------------------------
    def _telemetry(self, now_s: float) -> None:
        if self.done:
            return
        self._push(now_s + self.period_s, _TELEMETRY, None)
        rate = self._arrived_since / self.period_s
        self._arrived_since = 0
        self.handle(ArrivalRateMeasured(now_s=now_s, rate_rps=rate))
        for executor, link in self.links.items():
            self.handle(BandwidthMeasured(now_s=self.now(), executor=executor, bandwidth_MBps=link.bandwidth_at(now_s)))

    # -- actions -----------------------------------------------------------------------
    def _dispatch(self, action: DispatchBatch) -> None:
        now_s = self.now()
        executor = action.executor
        ids = action.request_ids
        payloads = [self.payloads[r] for r in ids]  # kept until the requests end: a failed batch may be retried
        size_bytes = sum(len(p) for p in payloads)
        key = f"{self.name}:{action.batch_id}"
        data = encode_batch(
            key, [str(r) for r in ids], payloads, source=self.name, ts={"dispatched_s": now_s},
            meta={"executor": executor, "memory_mb": action.memory_mb, "local_id": action.batch_id, "attempt": action.attempt},
        )  # fmt: skip
        self.counts["batches"] += 1
        if action.attempt:
            self.counts["retries"] += 1
        emulator = self.emulators.get(executor)
        planned_s = now_s if emulator is None else emulator.send(now_s, size_bytes)
        flight = _Flight(action.batch_id, executor, tuple(ids), now_s, action.memory_mb, size_bytes, planned_s, attempt=action.attempt)
        self.flights[action.batch_id] = flight
        if emulator is None:
            self._arrive((action.batch_id, data), now_s)
        else:
            self._push(planned_s, _UPLINK, (action.batch_id, data))

    def _arrive(self, item, now_s: float) -> None:
        local_id, data = item
        flight = self.flights[local_id]
        flight.arrived_s = now_s
        flight.state = "sent"
        flight.published = self._published
        self._published += 1
        self.uplink_late_s.append(now_s - flight.planned_arrival_s)
        self.send(self.topics.batches(flight.executor), data)
        if self.redeliver_after_s is not None:
            flight.data = data
            self._push(now_s + self.redeliver_after_s, _REDELIVER, (local_id, 0))

    def _redeliver(self, local_id: int, resends: int) -> None:
        """No result yet for a published batch: publish it again (at-least-once; the first result wins).

        The broker redelivers what a dead worker held; this covers what it
        cannot (pulsar-lite keeps the consumers of a reset connection, and
        with them their unacknowledged messages). Only a batch that looks
        stranded goes again: a batch published after it to the same executor
        has its result already, or that executor sent no result at all for
        ``redeliver_after_s``; one that merely waits behind others in a
        backlog does not (that would only add to the load). The wait doubles
        with each publication.
        """
        flight = self.flights.get(local_id)
        if flight is None or flight.state != "sent" or flight.resends != resends or flight.data is None:
            return
        now_s = self.now()
        executor = flight.executor
        overtaken = self._latest_done.get(executor, -1) > flight.published
        silent = now_s - self._last_result_s.get(executor, flight.arrived_s) >= self.redeliver_after_s
        if not (overtaken or silent):
            self._push(now_s + self.redeliver_after_s, _REDELIVER, (local_id, resends))  # look again later
            return
        flight.resends += 1
        self.counts["redelivered"] += 1
        log.warning("%s: no result for batch %s:%d after %.1fs; publishing it again", self.name, self.name, local_id,
                    self.redeliver_after_s * 2**resends)  # fmt: skip
        self.send(self.topics.batches(flight.executor), flight.data)
        self._push(self.now() + self.redeliver_after_s * 2 ** flight.resends, _REDELIVER, (local_id, flight.resends))

    def _start_timer(self, action: StartTimer) -> None:
        self._generation += 1
        self._timer_generation[action.timer_id] = self._generation
        self._push(action.at_s, _TIMER, (action.timer_id, self._generation, action.at_s))

    def _cancel_timer(self, action: CancelTimer) -> None:
        self._timer_generation.pop(action.timer_id, None)

    def _drop(self, action: DropRequest) -> None:
        self.payloads.pop(action.request_id, None)
        self.counts["drops"] += 1
        self.ended += 1
        self.send(self.topics.records, encode_drop([str(action.request_id)], action.reason, source=self.name, ts={"dropped_s": self.now()}))

    def _note_plan(self, action: NotePlan) -> None:
        plan = _plain({"at_s": action.at_s, "gateway": self.name, **action.plan.as_dict()})
        plan.setdefault("trigger", action.trigger)
        self.plans.append(plan)
        self.send(self.topics.records, encode(Message(
            kind=Kind.CONTROL, ids=(), sizes=(), source=self.name, trace_id="", ts={"at_s": float(action.at_s)},
            meta={"op": "plan", "plan": plan},
        )))  # fmt: skip

    def close(self) -> None:
        """End of run before every request ended: queued requests are dropped (``run_ended``)."""
        now_s = self.now()
        actions = self.scheduler.close(now_s)
        if self.event_log is not None:
            self.event_log.record_close(now_s, actions)
        for action in actions:
            self._act[type(action)](action)

    def _final_rss(self) -> float | None:
        self._sample_rss()
        return self.peak_rss_mb

    def stats(self) -> dict:
        return {
            "gateway": self.name,
            "expected": self.expected,
            "arrived": self.arrivals_seen,
            "ended": self.ended,
            "in_flight": len(self.flights),
            "plans": len(self.plans),
            **self.counts,
            "timer_late_s": percentiles(self.timer_late_s),
            "uplink_late_s": percentiles(self.uplink_late_s),
            "ingest_lag_s": percentiles(self.ingest_lag_s),
            "link_bytes": {n: e.bytes_sent for n, e in self.emulators.items()},
            "peak_pending": self.peak_pending,
            "peak_rss_mb": self._final_rss(),
        }


def _rss_mb() -> float | None:
    """This process's resident memory now, in MB (None where /proc does not say).

    Not ``getrusage``'s peak: a process started by fork and exec inherits its
    parent's peak (the orchestrator's, with torch loaded in a test).
    """
    try:
        with open("/proc/self/statm") as fp:
            resident_pages = int(fp.read().split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return resident_pages * os.sysconf("SC_PAGE_SIZE") / (1024.0 * 1024.0)


# ---------------------------------------------------------------------------
# The process
# ---------------------------------------------------------------------------


def main(argv=None) -> int:
    from live.roles.role import Role, common_parser

    parser = common_parser("Run one gateway's scheduler in real time.")
    parser.add_argument("--gateway", help="the gateway's name (default: the only one)")
    parser.add_argument("--event-log", help="write the scheduler's events and actions here (JSON lines, live.eventlog); "
                        "default with live.event_log: eventlog/gateway-<name>.jsonl next to --config")
    args = parser.parse_args(argv)
    role = None
    event_log = None
    try:
        role = Role(args, "gateway", f"gateway-{args.gateway or 'all'}")
        spec = role.spec
        name = args.gateway or (spec.gateways[0] if len(spec.gateways) == 1 else None)
        if name not in spec.gateways:
            raise SystemExit(f"--gateway must be one of {', '.join(spec.gateways)}")
        inbox: queue.SimpleQueue = queue.SimpleQueue()

        def listener(kind):
            return lambda consumer, msg: inbox.put((kind, consumer, msg))

        topics = role.topics
        role.subscribe(topics.requests(name), f"gateway-{name}", message_listener=listener("request"), receiver_queue_size=1000)
        role.subscribe(topics.results(name), f"gateway-{name}", message_listener=listener("result"), receiver_queue_size=1000)
        for executor in spec.cluster.reachable(name):
            role.producer(topics.batches(executor))
        role.producer(topics.records)
        role.producer(topics.dead_letter)
        role.announce_ready()
        clock = role.wait_start()
        if clock is None:
            return 0
        gateway = Gateway(spec, name, topics, role.send_async, clock.now)
        if spec.settings.event_log or args.event_log:
            from pathlib import Path

            from live.eventlog import EventLog, log_path

            event_log = gateway.event_log = EventLog(args.event_log or log_path(Path(args.config).resolve().parent, name), name)
        while not role.should_stop():
            next_due = gateway.poll()
            if gateway.done:
                break
            wait_s = 0.2 if next_due is None else min(0.2, max(0.0, next_due - clock.now()))
            try:
                kind, consumer, msg = inbox.get(timeout=wait_s) if wait_s > 0 else inbox.get_nowait()
            except queue.Empty:
                continue
            if kind == "request":
                gateway.on_request(msg.data())
            else:
                gateway.on_result(msg.data())
            consumer.acknowledge(msg)
        if not gateway.done:
            gateway.close()
        role.stats.update(gateway.stats())
        role.stats["plans_adopted"] = json.loads(json.dumps(gateway.plans[-20:], default=str))
        return 0
    finally:
        if event_log is not None:
            event_log.close()
        if role is not None:
            role.close()


if __name__ == "__main__":
    raise SystemExit(main())
