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
  bandwidth (``spec.link_queue.LinkQueue``, the model the simulator drives too)
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

One thread runs the scheduler; a receiving thread (requests,
``live.roles.gateway_receiver``) and the Pulsar client's listener (results)
only put messages on a queue, results taken before requests
(``live.roles.gateway_inbox``)::

    python -m live.roles.gateway --broker URL --run-id RUN --config run.json --gateway edge
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from collections.abc import Callable

from live.config import RunSpec, Topics
from spec.topology import ServerlessSpec
from live.wire.messages import ControlOp, DecodeError, Kind, Message, dead_letter, decode, encode_batch, encode_control, wire_settings
from live.roles.gateway_agenda import Agenda, Due
from live.roles.gateway_flights import Flight, Flights
from live.roles.gateway_marks import GatewayMarks
from live.roles.held_sweep import subscribe_anew
from live.roles.gateway_inbox import Inbox
from live.roles.gateway_intake import RequestIntake
from live.roles.gateway_ingress import OpenIngress
from live.roles.gateway_metrics import GatewayMetrics
from live.roles.gateway_receiver import BATCH_POLICY, RequestReceiver
from live.roles.gateway_records import RecordWriter, plain, record_meta
from live.roles.gateway_recovery import EndedLog, ResendAsks
from live.roles.gateway_telemetry import PlannerTelemetry
from policies.actions import CancelTimer, DispatchBatch, DropRequest, NotePlan, StartTimer
from policies.events import (
    BatchFailed,
    BatchFinished,
    Event,
    InstanceStateChanged,
    Request,
    RequestArrived,
    RequestsArrived,
    TimerFired,
)
from spec.link_queue import LinkQueue
from spec.records import DropReason

__all__ = ["Gateway", "main"]

log = logging.getLogger("edgebatch.live")

#: seconds of silence from the executors, with batches in flight, before nudging the broker (see Gateway._nudge)
NUDGE_S = 0.02


class _TopicProducer:
    """A producer-like object (``send(content, properties=...)``) for one topic of a send function."""

    def __init__(self, send, topic: str):
        self._send, self._topic = send, topic

    def send(self, content: bytes, properties=None) -> None:
        self._send(self._topic, content, properties)


def _busy_s(result: Message) -> float | None:
    """The time a batch kept its executor busy, as the result tells (service plus any cold start)."""
    service_s, cold_s = result.ts.get("service_s"), result.meta.get("cold_start_s", 0.0)  # a pool's result says its cold start
    if not isinstance(service_s, (int, float)) or isinstance(service_s, bool):
        return None
    return float(service_s) + (float(cold_s) if isinstance(cold_s, (int, float)) and not isinstance(cold_s, bool) else 0.0)


#: at most this many queued requests go to the scheduler together (as many as the intake takes at once)
_BUNCH_MAX = 64


class Gateway:
    """One gateway's scheduler in real time; the broker is outside (``send(topic, data, properties=None)``).

    ``now()`` is the run's clock. Feed messages with ``on_request`` and
    ``on_result``; call ``poll()`` often: it delivers what is due and
    returns when it next needs to be called (None: only on a message).
    Its collaborators: ``intake`` (which requests it takes), ``agenda``
    (what is due when), ``flights`` (batches in flight, redelivery),
    ``records`` (what the sink hears), ``telemetry`` (what the planner
    hears), ``metrics`` (what it measures about itself).
    """

    #: ``on_requests`` hands a backlog to the scheduler as one ``RequestsArrived``
    bunches_arrivals = True

    def __init__(self, spec: RunSpec, name: str, topics: Topics, send: Callable[..., None], now: Callable[[], float],
                 incarnation: int = 0):  # fmt: skip
        self.spec = spec
        self.name = name
        #: batch keys are ``<prefix>:<n>``; a gateway restarted after a crash numbers its batches apart
        self.batch_prefix = name if incarnation == 0 else f"{name}#{incarnation}"
        #: requests that ended (completed or dropped) since the loop last looked: it acknowledges them then
        self.ended_requests: list[int] = []
        self.topics = topics
        self.send = send
        self.now = now
        cluster = spec.cluster
        self.scheduler = spec.make_scheduler(name, cluster)
        self.reachable = cluster.reachable(name)
        self.links = {n: cluster.link(name, n) for n in self.reachable}
        self.links = {n: link for n, link in self.links.items() if link is not None}
        self.emulators = {n: LinkQueue(link) for n, link in self.links.items()} if spec.settings.emulate_links else {}
        self.expected = spec.expected_at(name)
        self.payloads: dict[int, bytes] = {}
        self.intake = RequestIntake(name, spec.arrivals)
        self.agenda = Agenda()
        servers = frozenset(n for n in self.reachable if not isinstance(cluster.executors[n], ServerlessSpec))
        self.flights = Flights(spec.settings.redeliver_after_s, spec.settings.stall_detection, servers)
        self.records = RecordWriter(name, topics.records, send)
        self.metrics = GatewayMetrics()
        self.telemetry = PlannerTelemetry(spec.settings.telemetry_period_s, self.links)
        self.arrivals_seen = 0
        self.ended = 0
        self.plans: list[dict] = []
        self.redeliver_after_s = spec.settings.redeliver_after_s
        #: a live.eventlog.EventLog recording every event and the actions it gave (live.event_log), or None
        self.event_log = None
        #: open ingress (live.ingress.mode: open): a live.roles.gateway_ingress.OpenIngress installs itself here
        self.ingress = None
        #: a gateway restarted after a crash that replayed its predecessor's event log (live.roles.gateway_replay), or None
        self.replay = None
        self._bunch: list | None = None  # (now_s, Request) of the requests on_requests is taking
        self._act = {
            DispatchBatch: self._dispatch,
            StartTimer: lambda action: self.agenda.start_timer(action.timer_id, action.at_s),
            CancelTimer: lambda action: self.agenda.cancel_timer(action.timer_id),
            DropRequest: self._drop,
            NotePlan: self._note_plan,
        }
        self._due = {Due.TIMER: self._timer, Due.UPLINK: self._arrive, Due.RETURN: self._complete, Due.REDELIVER: self._redeliver,
                     Due.TELEMETRY: self._telemetry}  # fmt: skip
        if self.scheduler.planner is not None:
            self.agenda.push(self.telemetry.period_s, Due.TELEMETRY)

    def restore_ended(self, request_ids) -> None:
        """Requests its predecessor finished (a restarted gateway): ended, and any copy of them is a duplicate."""
        new = self.intake.mark_seen(request_ids)
        self.arrivals_seen += new
        self.ended += new

    def missing_due(self, by_s: float) -> list[int]:
        """Due requests of this gateway's sources that it has neither seen nor finished (after a restart)."""
        return self.intake.unseen_due(self.spec.arrivals.arrival_s, by_s)

    @property
    def done(self) -> bool:
        """Every request of this gateway arrived and ended (completed or dropped)."""
        return self.arrivals_seen >= self.expected and self.ended >= self.expected

    @property
    def counts(self) -> dict[str, int]:
        return self.metrics.counts

    @property
    def timer_late_s(self) -> list[float]:
        return self.metrics.timer_late_s

    # -- the loop's side ---------------------------------------------------------
    def poll(self) -> float | None:
        """Deliver everything due now; return the next due time (None: nothing scheduled)."""
        nudge_at_s = self._nudge()
        while True:
            now_s = self.now()
            entry = self.agenda.pop_due(now_s)
            if entry is None:
                break
            kind, item = entry
            self._due[kind](item, now_s)
        due_s = self.agenda.next_due_s()
        if due_s is None or nudge_at_s is None:
            return nudge_at_s if due_s is None else due_s
        return min(due_s, nudge_at_s)

    def _nudge(self) -> float | None:
        # pulsar-lite (0.2) sometimes leaves a message published on a quiet topic
        # undispatched until the next publish on it (with one batch in flight and
        # nothing else moving, a result then waited for redeliver_after_s); a tiny
        # message on our own results topic after NUDGE_S of silence wakes it.
        # Harmless on a real Pulsar: the gateway ignores these.
        # returns when to look again (None: nothing in flight)
        quiet_since_s = self.flights.quiet_since_s()
        if quiet_since_s is None:
            return None
        now_s = self.now()
        if now_s - quiet_since_s < NUDGE_S:
            return quiet_since_s + NUDGE_S
        self.flights.nudged(now_s)
        self.metrics.counts["nudges"] += 1
        self.send(self.topics.results(self.name), encode_control(ControlOp.NUDGE, source=self.name))
        return now_s + NUDGE_S

    def handle(self, event: Event) -> None:
        """Give ``event`` to the scheduler and carry out what it asks."""
        act = self._act
        actions = self.scheduler.handle(event)
        if self.event_log is not None:
            self.event_log.record(event, actions)
        for action in actions:
            act[type(action)](action)

    def _timer(self, item, now_s: float) -> None:
        timer_id, at_s = item
        self.metrics.timer_late_s.append(now_s - at_s)
        self.handle(TimerFired(now_s=now_s, timer_id=timer_id, late_s=now_s - at_s))

    def _dead(self, raw: bytes, reason: str, topic: str) -> None:
        self.metrics.counts["dead_letters"] += 1
        dead_letter(_TopicProducer(self.send, self.topics.dead_letter), raw, reason, topic)

    # -- requests ------------------------------------------------------------------
    def on_request(self, raw: bytes) -> int | None:
        """Take one request message; its id when it is taken (the loop acknowledges it once it ended), else None."""
        topic = self.topics.requests(self.name)
        if self.ingress is not None:
            return self.ingress.on_request(raw, topic)  # open ingress: a registered client's (live.roles.gateway_ingress)
        try:
            message = decode(raw)
        except DecodeError as error:
            self._dead(raw, str(error), topic)
            return None
        request_id, problem = self.intake.check(message)
        if problem is not None:
            self._dead(raw, problem, topic)
            return None
        if not self.intake.first_time(request_id):
            if self.replay is not None:  # seen by the replayed state: held (its payload kept) or ended, never taken twice
                return self.replay.redelivered(request_id, message.payload)
            self.metrics.counts["duplicate_requests"] += 1
            return None
        now_s = self.now()
        source = self.intake.source_of(message)
        arrival_s = float(message.ts.get("arrival_s", now_s))
        return self.admit(request_id, source.name, arrival_s, source.slo_s, message.payload, now_s)

    def on_requests(self, raws: list[bytes]) -> list[int | None]:
        """Take request messages read together (a backlog): ``on_request`` each, one ``RequestsArrived`` for those taken.

        Handed one at a time, a backlog's requests already past their wait
        would each leave as a batch of one while the rest sit unread in the
        gateway's own inbox. An open ingress, or a subclass that takes
        requests its own way (``bunches_arrivals`` False), takes them one by one.
        """
        if len(raws) == 1 or self.ingress is not None or not self.bunches_arrivals:
            return [self.on_request(raw) for raw in raws]
        self._bunch = []
        try:
            taken = [self.on_request(raw) for raw in raws]
            bunch = self._bunch
        finally:
            self._bunch = None
        if len(bunch) == 1:
            self.handle(RequestArrived(now_s=bunch[0][0], request=bunch[0][1]))
        elif bunch:
            self.handle(RequestsArrived(now_s=bunch[-1][0], requests=tuple(r for _, r in bunch)))
        return taken

    def admit(self, request_id: int, source: str, arrival_s: float, slo_s: float, payload: bytes, now_s: float) -> int:
        """A request taken (replayed, or an open-ingress client's): to the scheduler; returns its id."""
        self.arrivals_seen += 1
        self.telemetry.arrived()
        self.metrics.ingest_lag_s.append(now_s - arrival_s)
        self.payloads[request_id] = payload
        request = Request(request_id=request_id, source=source, arrival_s=arrival_s, size_bytes=len(payload), deadline_s=arrival_s + slo_s)
        if self._bunch is not None:  # on_requests hands the bunch over at once
            self._bunch.append((now_s, request))
            return request_id
        self.handle(RequestArrived(now_s=now_s, request=request))
        self.metrics.pending(len(self.payloads))
        if self.arrivals_seen % 1000 == 0:  # a read of /proc: it lets the listener threads take the GIL (~2 ms at 4,000 req/s)
            self.metrics.sample_rss()
        return request_id

    # -- results ---------------------------------------------------------------------
    def on_result(self, raw: bytes) -> None:
        topic = self.topics.results(self.name)
        try:
            message = decode(raw)
        except DecodeError as error:
            self._dead(raw, str(error), topic)
            return
        if message.op is ControlOp.NUDGE:
            return  # our own wake-up call for the broker (see _nudge)
        if message.op is ControlOp.INSTANCES:
            executor, warm = message.meta.get("executor"), message.meta.get("warm")
            if executor in self.scheduler.batchers and isinstance(warm, int):
                self.handle(InstanceStateChanged(now_s=self.now(), executor=executor, warm_instances=warm))
            return
        local_id = None
        if message.kind is Kind.RESULT:
            prefix, _, local = (message.batch_id or "").rpartition(":")
            if prefix == self.batch_prefix and local.isdigit():
                local_id = int(local)
            elif self.replay is not None and self.replay.owns(prefix, local):
                local_id = int(local)  # a batch in flight when its predecessor was killed: the first result wins
            elif prefix == self.name or prefix.startswith(f"{self.name}#"):
                self.metrics.counts["stale_results"] += 1  # of a batch this gateway sent before it was restarted
                return
        if local_id is None:
            self._dead(raw, f"unexpected: {message.kind.name} {message.batch_id!r} on {self.name}'s results topic", topic)
            return
        if local_id >= self.metrics.counts["batches"]:  # batch ids count up from 0, one per dispatch (retries included)
            self._dead(raw, f"unexpected: a result for batch {message.batch_id!r}, which {self.name} never dispatched", topic)
            return
        flight = self.flights.get(local_id)
        if flight is None or flight.state != "sent":
            self.metrics.counts["duplicate_results"] += 1  # at-least-once: a result seen before
            return
        self.flights.result_came(flight, self.now(), _busy_s(message))
        link = self.links.get(flight.executor) if self.emulators else None
        if link is not None and link.delay_s > 0:
            self.agenda.push(self.now() + link.delay_s, Due.RETURN, (local_id, message))
        else:
            self._complete((local_id, message), self.now())

    def _complete(self, item: tuple[int, Message], now_s: float) -> None:
        local_id, message = item
        flight = self.flights.pop(local_id)
        key = f"{self.batch_prefix}:{local_id}"
        meta = message.meta
        # over a real link (a testbed, no emulation) the batch arrived when its worker received it
        arrived_s = flight.arrival_s(message, real_link=not self.emulators and flight.executor in self.links)
        ts = {"dispatched_s": flight.dispatched_s, "arrived_s": arrived_s, "completed_s": now_s}
        ids = [str(i) for i in flight.ids]
        if meta.get("failed"):
            reason = str(meta.get("reason") or DropReason.EXECUTOR_FAILED)
            self.records.batch_failed(key, ids, reason=reason, ts=ts, meta=record_meta(self.name, flight, message))
            self.handle(BatchFailed(now_s=now_s, batch_id=local_id, executor=flight.executor, reason=reason))
            return
        stamps = {k: v for k, v in message.ts.items() if k in ("received_s", "start_s", "end_s", "service_s")}
        service_s = float(stamps.get("service_s", stamps.get("end_s", 0.0) - stamps.get("start_s", 0.0)))
        labels = message.labels if message.labels is not None and len(message.labels) == len(ids) else None
        self.records.completed(key, ids, labels=labels, ts={**stamps, **ts}, meta=record_meta(self.name, flight, message),
                               result=message)  # fmt: skip
        self.ended += len(ids)
        self.ended_requests.extend(flight.ids)
        payloads = self.payloads
        for request_id in flight.ids:
            payloads.pop(request_id, None)
        self.handle(BatchFinished(now_s=now_s, batch_id=local_id, executor=flight.executor, service_s=service_s))

    # -- telemetry -------------------------------------------------------------------
    def _telemetry(self, item, now_s: float) -> None:
        if self.done:
            return
        self.agenda.push(now_s + self.telemetry.period_s, Due.TELEMETRY)
        for event in self.telemetry.events(now_s, self.now):
            self.handle(event)

    # -- actions -----------------------------------------------------------------------
    def _dispatch(self, action: DispatchBatch) -> None:
        if self.replay is not None and self.replay.park(action):
            return  # replayed after a restart: dispatched once the broker has given its payloads back
        now_s = self.now()
        executor = action.executor
        ids = action.request_ids
        payloads = [self.payloads[r] for r in ids]  # kept until the requests end: a failed batch may be retried
        size_bytes = sum(len(p) for p in payloads)
        key = f"{self.batch_prefix}:{action.batch_id}"
        data = encode_batch(
            key, [str(r) for r in ids], payloads, source=self.name, ts={"dispatched_s": now_s},
            meta={"executor": executor, "memory_mb": action.memory_mb, "local_id": action.batch_id, "attempt": action.attempt},
        )  # fmt: skip
        self.metrics.counts["batches"] += 1
        if action.attempt:
            self.metrics.counts["retries"] += 1
        emulator = self.emulators.get(executor)
        planned_s = now_s if emulator is None else emulator.send(now_s, size_bytes)
        self.flights.add(Flight(action.batch_id, executor, tuple(ids), now_s, action.memory_mb, size_bytes, planned_s, attempt=action.attempt))
        if emulator is None:
            self._arrive((action.batch_id, data), now_s)
        else:
            self.agenda.push(planned_s, Due.UPLINK, (action.batch_id, data))

    def _arrive(self, item, now_s: float) -> None:
        local_id, data = item
        flight = self.flights.published(local_id, now_s, data)
        self.metrics.uplink_late_s.append(now_s - flight.planned_arrival_s)
        self.send(self.topics.batches(flight.executor), data)
        if self.redeliver_after_s is not None:
            self.agenda.push(now_s + self.flights.patience_s(flight.executor), Due.REDELIVER, (local_id, 0))

    def _redeliver(self, item: tuple[int, int], now_s: float) -> None:
        """No result yet for a published batch: publish it again (at-least-once; the first result wins).

        The broker redelivers what a dead worker held; this covers what it
        cannot (pulsar-lite keeps the consumers of a reset connection, and
        with them their unacknowledged messages). Only a stranded batch goes
        again (``Flights.stranded``); one that merely waits behind others in
        a backlog does not (that would only add to the load). The wait
        doubles with each publication.
        """
        local_id, resends = item
        flight = self.flights.get(local_id)
        if flight is None or flight.state != "sent" or flight.resends != resends or flight.data is None:
            return
        patience_s = self.flights.patience_s(flight.executor)
        if not self.flights.stranded(flight, now_s):
            self.agenda.push(now_s + patience_s, Due.REDELIVER, (local_id, resends))  # look again later
            return
        flight.resends += 1
        self.metrics.counts["redelivered"] += 1
        log.warning("%s: no result for batch %s:%d and its executor silent for %.2fs; publishing it again", self.name,
                    self.name, local_id, patience_s)  # fmt: skip
        self.send(self.topics.batches(flight.executor), flight.data)
        backoff_s = min(self.redeliver_after_s, patience_s * 2 ** flight.resends)
        self.agenda.push(self.now() + backoff_s, Due.REDELIVER, (local_id, flight.resends))

    def _drop(self, action: DropRequest) -> None:
        self.payloads.pop(action.request_id, None)
        self.metrics.counts["drops"] += 1
        self.ended += 1
        self.ended_requests.append(action.request_id)
        self.records.dropped(action.request_id, action.reason, self.now())

    def _note_plan(self, action: NotePlan) -> None:
        plan = plain({"at_s": action.at_s, "gateway": self.name, **action.plan.as_dict()})
        plan.setdefault("trigger", action.trigger)
        self.plans.append(plan)
        self.records.plan(action.at_s, plan)

    def close(self) -> None:
        """End of run before every request ended: queued requests are dropped (``run_ended``)."""
        now_s = self.now()
        actions = self.scheduler.close(now_s)
        if self.event_log is not None:
            self.event_log.record_close(now_s, actions)
        for action in actions:
            self._act[type(action)](action)

    def stats(self) -> dict:
        return {
            "gateway": self.name,
            "expected": self.expected,
            "arrived": self.arrivals_seen,
            "ended": self.ended,
            "in_flight": len(self.flights),
            "plans": len(self.plans),
            "link_bytes": {n: e.bytes_sent for n, e in self.emulators.items()},
            **self.metrics.as_dict(),
        }


# ---------------------------------------------------------------------------
# The process
# ---------------------------------------------------------------------------


class _Acks:
    """A request is acknowledged only once it has ended, its record is with the broker and its id in the log.

    So a gateway that crashes leaves every request it had not finished unacknowledged: the broker
    delivers them again to the gateway restarted in its place (which numbers its batches apart), and
    the log tells that one which requests ended (``live.roles.gateway_recovery``).
    """

    def __init__(self, records_producer, ended_log, period_s: float = 0.05):
        self.records_producer = records_producer
        self.ended_log = ended_log
        self.period_s = period_s
        self.pending: dict[int, tuple] = {}  # request id -> (consumer, message)
        self._next_s = 0.0

    def settle(self, gateway: Gateway, now_s: float, *, force: bool = False) -> None:
        log = gateway.event_log
        if not (gateway.ended_requests or (log is not None and log.pending)) or (not force and now_s < self._next_s):
            return
        self._next_s = now_s + self.period_s
        self.records_producer.flush()  # the ended requests' records are stored by the broker from here on
        if log is not None:
            log.commit()  # after the records are stored: every end on disk is one the sink can have (gateway_replay)
        self.ended_log.append(gateway.ended_requests)
        for request_id in gateway.ended_requests:
            consumer, msg = self.pending.pop(request_id, (None, None))
            if consumer is not None:
                consumer.acknowledge(msg)
        gateway.ended_requests.clear()


def _take_requests(gateway: Gateway, items: list[tuple], marks, acks) -> None:
    """The requests queued now, to the gateway together (``Gateway.on_requests``); each acknowledged once it ended."""
    kept = []
    for kind, consumer, msg in items:
        if marks.took(kind, msg):  # the sweep dead-lettered it
            consumer.acknowledge(msg)
        else:
            kept.append((consumer, msg))
    for (consumer, msg), taken in zip(kept, gateway.on_requests([msg.data() for _, msg in kept])):
        if taken is None:
            consumer.acknowledge(msg)
        else:
            acks.pending[taken] = (consumer, msg)


def _serve(gateway: Gateway, role, inbox: Inbox, clock, ended_log: EndedLog, restarted: bool) -> int:
    """The gateway's loop: messages in, timers due, acknowledgements once requests ended."""
    acks = _Acks(role.producer(role.topics.records), ended_log)
    marks = GatewayMarks.of(gateway, role)  # a bad message a killed predecessor held: dead-lettered (gateway_marks)
    flush_dead_letters, counts = role.producer(role.topics.dead_letter).flush, gateway.counts
    if restarted:
        gateway.restore_ended(ended_log.before)
    asks = ResendAsks(gateway, clock.now())
    while not role.should_stop():
        marks.settle(counts["dead_letters"], clock.now(), flush_dead_letters)  # after a dead letter: flushed, then marked
        next_due = gateway.poll()
        acks.settle(gateway, clock.now())
        asks.poll(clock.now())
        if gateway.done:
            break
        wait_s = 0.2 if next_due is None else min(0.2, max(0.0, next_due - clock.now()))
        item = inbox.get(wait_s)
        if item is None:
            acks.settle(gateway, clock.now(), force=True)
            continue
        kind, consumer, msg = item
        if kind == "request":
            _take_requests(gateway, [item, *inbox.requests_queued(_BUNCH_MAX - 1)], marks, acks)
            continue
        if marks.took(kind, msg):  # the sweep dead-lettered it
            consumer.acknowledge(msg)
            continue
        gateway.on_result(msg.data())
        consumer.acknowledge(msg)
    acks.settle(gateway, clock.now(), force=True)
    marks.close(remove=gateway.done)
    role.stats.update(marks.stats())
    return asks.asked


def main(argv=None) -> int:
    from live.roles.role import Role, common_parser

    parser = common_parser("Run one gateway's scheduler in real time.")
    parser.add_argument("--gateway", help="the gateway's name (default: the only one)")
    parser.add_argument("--event-log", help="write the scheduler's events and actions here (JSON lines, live.eventlog); "
                        "default with live.event_log: eventlog/gateway-<name>.jsonl next to --config")
    args = parser.parse_args(argv)
    role = None
    event_log = None
    gateway = None
    try:
        role = Role(args, "gateway", f"gateway-{args.gateway or 'all'}")
        spec = role.spec
        name = args.gateway or (spec.gateways[0] if len(spec.gateways) == 1 else None)
        if name not in spec.gateways:
            raise SystemExit(f"--gateway must be one of {', '.join(spec.gateways)}")
        inbox = Inbox()  # results before requests (live.roles.gateway_inbox)

        def listener(kind):
            return lambda consumer, msg: inbox.put((kind, consumer, msg))

        topics = role.topics
        role.skip_consumer_ids(2 * args.incarnation)  # past its killed predecessors' two consumers (pulsar-lite)
        import pulsar

        requests = role.subscribe(topics.requests(name), f"gateway-{name}", receiver_queue_size=1000,
                                  batch_receive_policy=pulsar.ConsumerBatchReceivePolicy(*BATCH_POLICY))  # fmt: skip
        subscribe_anew(role, topics.results(name), f"gateway-{name}", restarted=args.incarnation > 0,  # not a dead one's (held_sweep)
                       message_listener=listener("result"), receiver_queue_size=1000)  # fmt: skip
        for executor in spec.cluster.reachable(name):
            role.producer(topics.batches(executor))
        role.producer(topics.records)
        role.producer(topics.dead_letter)
        for client in spec.settings.ingress.clients_of(name):
            role.producer(topics.replies(client))
        from live.roles.inline_executor import InlineExecutors  # live.executors.<name>.inline: its model runs in this process

        inline = InlineExecutors(spec, name, topics, role.producer(topics.dead_letter), inbox)
        role.announce_ready()
        clock = role.wait_start()
        if clock is None:
            return 0
        from live.roles.pipeline_gateway import gateway_class  # with a pipeline block: its stage before the scheduler

        intake = RequestReceiver(requests, inbox, name).start()  # a thread of its own, not a listener (live.roles.gateway_receiver)
        gateway = gateway_class(spec)(spec, name, topics, inline.route(role.send_async), clock.now, incarnation=args.incarnation)
        inline.start(clock.now)
        if spec.settings.ingress.open:
            OpenIngress(gateway, clock.epoch_unix, wire_settings().key)
        ended_log = EndedLog(Path(args.config).resolve().parent / f"gateway-{name}.ended", restarted=args.incarnation > 0)
        if spec.settings.event_log or spec.settings.recovery_log or args.event_log:
            from live.eventlog import log_path
            from live.roles.gateway_replay import open_event_log

            event_log, replayed = open_event_log(gateway, args.event_log or log_path(Path(args.config).resolve().parent, name),
                                                 args.incarnation, ended_log.before)  # fmt: skip
            gateway.event_log = event_log
            if replayed is not None:
                role.stats["replay"] = replayed
        loop_cpu_s = time.thread_time()
        resend_asked = _serve(gateway, role, inbox, clock, ended_log, args.incarnation > 0 and gateway.replay is None)
        role.stats["loop_cpu_s"] = round(time.thread_time() - loop_cpu_s, 6)  # the loop's thread alone (cpu_s: every thread)
        intake.stop()
        role.stats["request_bunches"] = intake.bunches
        role.stats.update(inline.close())
        ended_log.close(remove=gateway.done)
        if not gateway.done:
            gateway.close()
        if gateway.ingress is not None:
            gateway.ingress.close()
            role.stats.update(gateway.ingress.stats())
        role.stats.update(gateway.stats(), resend_asked=resend_asked)
        role.stats["plans_adopted"] = json.loads(json.dumps(gateway.plans[-20:], default=str))
        return 0
    finally:
        if event_log is not None:  # kept with live.event_log; a log kept only for recovery goes once the gateway is done
            event_log.close(remove=gateway is not None and gateway.done and not (spec.settings.event_log or args.event_log))
        if role is not None:
            role.close()


if __name__ == "__main__":
    raise SystemExit(main())
