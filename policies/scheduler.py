"""The scheduler: placement, per-executor batching and planning composed into one policy."""

from __future__ import annotations

import copy
import math
from collections import deque
from collections.abc import Callable, Mapping
from typing import Union

import numpy as np

from policies.actions import Action, CancelTimer, DispatchBatch, DropRequest, NotePlan, StartTimer
from policies.batching.base import BatchingPolicy
from policies.dispatch_batches import DispatchBatches
from policies.errors import DriverError, PolicyError
from policies.events import (
    ArrivalRateMeasured,
    BandwidthMeasured,
    BatchFailed,
    BatchFinished,
    Event,
    InstanceStateChanged,
    Request,
    RequestArrived,
    RequestsArrived,
    TimerFired,
)
from policies.placement.base import ClusterView, PlacementPolicy
from policies.plan import Plan
from policies.planning.base import Planner
from policies.timer_id import TimerId
from spec.records import DropReason
from spec.topology import Cluster
from spec.validation import ConfigError, check_int_at_least

__all__ = ["Scheduler", "BatchingFactory"]

BatchingFactory = Union[BatchingPolicy, Callable[[], BatchingPolicy]]

_PLAN_TIMER = TimerId.plan()
# the simulator delivers timers exactly; a live driver may be late, never early
_EARLY_TOLERANCE_S = 1e-9


def _make_batcher(factory: BatchingFactory, executor: str) -> BatchingPolicy:
    if isinstance(factory, BatchingPolicy):
        if factory.executor is not None:
            raise ConfigError(f"batching.{executor}", repr(factory), "an unbound policy (used as a prototype)")
        return copy.deepcopy(factory)
    if callable(factory):
        policy = factory()
        if isinstance(policy, BatchingPolicy):
            return policy
    raise ConfigError(f"batching.{executor}", type(factory).__name__, "a BatchingPolicy or a callable returning one")


class Scheduler:
    """The policy a driver talks to: ``handle(event) -> list[Action]``.

    Composes one placement policy (which executor gets a request), one
    batching policy per executor queue (when a queue becomes a batch), and an
    optional planner (re-tuning both from telemetry). It is a pure state
    machine: deterministic for a given event sequence, with time only from
    the events' ``now_s``.

    ``batching`` is a policy object used as a prototype (copied for each
    executor), a callable returning a fresh policy (a Hydra ``_partial_``),
    or a mapping from executor name to either.

    A failed batch (``BatchFailed``) is retried up to ``max_retries`` times:
    its requests are dispatched again at once, as one new batch to the same
    executor with the same memory size (``DispatchBatch.attempt`` counts the
    tries; the batching policy keeps counting it as one batch in flight).
    When the tries are used up its requests are dropped with reason
    ``retries_exhausted``; with ``max_retries=0`` (the default) they are
    dropped at once with the failure's own reason (``executor_failed``). The
    simulator and the live harness drive this same object, so a failure is
    retried identically in both.

    A driver that knows many arrivals ahead (the simulator) may hand them
    over in bulk (``handle_arrivals``, where ``bulk_executor()`` says the
    policies allow it): the same batches, ids and times, from optional
    vectorized hooks of the same policy objects.

    Errors: ``DriverError`` when the driver reports something impossible (a
    batch never dispatched, a timer not running, time going backwards, a
    request id seen twice); ``PolicyError`` when a sub-policy misbehaves.
    """

    def __init__(
        self,
        *,
        cluster: Cluster,
        placement: PlacementPolicy,
        batching: BatchingFactory | Mapping[str, BatchingFactory],
        planner: Planner | None = None,
        gateway: str = "edge",
        max_retries: int = 0,
    ):
        self.max_retries = check_int_at_least("policy.max_retries", max_retries, 0)
        if not isinstance(cluster, Cluster):
            raise ConfigError("scheduler.cluster", type(cluster).__name__, "a spec.topology.Cluster")
        if not isinstance(placement, PlacementPolicy):
            raise ConfigError("scheduler.placement", type(placement).__name__, "a PlacementPolicy")
        if planner is not None and not isinstance(planner, Planner):
            raise ConfigError("scheduler.planner", type(planner).__name__, "a Planner or null")
        names = cluster.reachable(gateway)
        if not names:
            raise ConfigError("scheduler.gateway", gateway, "a gateway that reaches at least one executor")
        if isinstance(batching, Mapping):
            unknown = set(batching) - set(names)
            if unknown:
                raise ConfigError("batching", sorted(unknown), "executor names among " + ", ".join(names))
            missing = [n for n in names if n not in batching]
            if missing:
                raise ConfigError("batching", sorted(batching), "a policy for every executor, missing " + ", ".join(missing))
            factories = {n: batching[n] for n in names}
        else:
            factories = {n: batching for n in names}
        self.gateway = gateway
        self.cluster = cluster
        self.batchers: dict[str, BatchingPolicy] = {}
        for name in names:
            batcher = _make_batcher(factories[name], name)
            batcher.bind(cluster.executors[name])
            self.batchers[name] = batcher
        links = {n: cluster.link(gateway, n) for n in names}
        self.view = ClusterView(
            gateway=gateway,
            executors={n: cluster.executors[n] for n in names},
            links=links,
            batchers=self.batchers,
            bandwidth_MBps={n: link.mean_bandwidth_MBps() for n, link in links.items() if link is not None},
        )
        self._batch_timer_ids = {n: TimerId.batch(n) for n in names}
        self.placement = placement
        placement.bind(self.view)
        self.planner = planner
        if planner is not None:
            planner.bind(self.view)
        self.plan: Plan | None = None
        self._requests: dict[int, Request] = {}
        #: batch id -> (executor, requests, attempt, memory_mb)
        self._in_flight: dict[int, tuple[str, tuple[Request, ...], int, int | None]] = {}
        self.retries = 0
        #: batches sent by ``handle_arrivals`` and not reported finished, per executor: [first id, sizes, request ids, starts, done]
        self._bulk_flights: dict[str, deque[list]] = {n: deque() for n in names}
        self._bulk_pending = 0  # their requests
        self._timers: dict[str, float] = {}
        self._next_batch_id = 0
        self._now_s = -math.inf
        self._started = False
        self._handlers = {
            RequestArrived: self._on_arrived,
            RequestsArrived: self._on_arrived_together,
            TimerFired: self._on_timer,
            BatchFinished: self._on_finished,
            BatchFailed: self._on_failed,
            BandwidthMeasured: self._on_bandwidth,
            ArrivalRateMeasured: self._on_rate,
            InstanceStateChanged: self._on_instances,
        }

    # -- the one entry point ------------------------------------------------
    def handle(self, event: Event) -> list[Action]:
        """Feed one event; return the actions the driver must carry out, in order."""
        handler = self._handlers.get(type(event))
        if handler is None:
            raise DriverError(f"unknown event type {type(event).__name__}; expected one of policies.events")
        now_s = event.now_s
        if now_s < self._now_s:
            raise DriverError(f"time went backwards: {type(event).__name__} at now_s={now_s} after {self._now_s}")
        self._now_s = now_s
        actions: list[Action] = []
        if not self._started:
            self._started = True
            if self.planner is not None:
                self._adopt(self.planner.initial_plan(now_s), now_s, actions)
        handler(event, actions)
        planner = self.planner
        if planner is not None:
            self._adopt(planner.observe(event), now_s, actions)
            self._set_timer(_PLAN_TIMER, planner.wake_at_s, actions)
        return actions

    def handle_arrival(self, now_s: float, request: Request) -> list[Action]:
        """``handle(RequestArrived(now_s=now_s, request=request))``, for a driver on a hot path.

        The same checks, transitions and actions; the event object is built
        only where something reads it (a planner observes every event).
        """
        if self.planner is not None:
            return self.handle(RequestArrived.make(now_s, request))
        if now_s < self._now_s:
            raise DriverError(f"time went backwards: RequestArrived at now_s={now_s} after {self._now_s}")
        self._now_s = now_s
        self._started = True
        actions: list[Action] = []
        self._arrive(now_s, request, actions)
        return actions

    # -- the bulk path: many arrivals per call (the simulator's; the live harness has one request at a time) --
    def bulk_executor(self) -> str | None:
        """The executor ``handle_arrivals`` would send every arrival to now; None: the bulk path does not apply.

        It applies when no planner observes the events, the placement names
        one executor for every request (``PlacementPolicy.bulk_choice``) and
        that executor's batching policy cuts batches from arrival times alone
        (``BatchingPolicy.supports_bulk``). A policy without the optional
        hooks loses nothing: its driver feeds it one request at a time.
        """
        if self.planner is not None:
            return None
        executor = self.placement.bulk_choice()
        if executor is None or executor not in self.batchers or not self.batchers[executor].supports_bulk:
            return None
        return executor

    def handle_arrivals(self, arrival_s: np.ndarray, request_ids: np.ndarray, *, until_s: float,
                        make_request: Callable[[int], Request]) -> list[Action]:  # fmt: skip
        """``RequestArrived`` for many requests, each at its own ``arrival_s`` (the gateway sees it then), at once.

        ``until_s``: no other request arrives before it, and nothing but
        arrivals happens before it (no timer of this scheduler's is running:
        the bulk path keeps none). Returns one ``DispatchBatches`` with the
        batches the per-request path would dispatch before ``until_s``, in the
        same order, with the same ids and times (or nothing); the requests
        of a batch still open stay queued, as ``Request`` objects built by
        ``make_request(k)`` for the k-th of ``request_ids``. The same checks,
        vectorized: time order (``DriverError``), ids not pending twice
        (``DriverError``), batches the policy cuts (``PolicyError``).
        """
        executor = self.bulk_executor()
        if executor is None:
            raise DriverError("handle_arrivals: the bulk path does not apply to these policies (bulk_executor() is None)")
        arrival_s = np.asarray(arrival_s, dtype=np.float64)
        request_ids = np.asarray(request_ids, dtype=np.int64)
        batcher = self.batchers[executor]
        if not len(arrival_s):
            # no arrival, but the queue's batch may leave by its timer before until_s (a fleet's gateways, each fed
            # only the arrivals of a shared chunk of time that are its own)
            if not batcher.queue:
                return []
            if until_s < self._now_s:
                raise DriverError(f"time went backwards: handle_arrivals until {until_s} after {self._now_s}")
        else:
            self._check_bulk_arrivals(executor, arrival_s, request_ids, until_s)
        self._started = True
        queued = list(batcher.queue)
        times, ids = arrival_s, request_ids
        if queued:
            times = np.concatenate([np.array([r.arrival_s for r in queued]), arrival_s])
            ids = np.concatenate([np.array([r.request_id for r in queued], dtype=np.int64), request_ids])
        cuts = batcher.bulk_cuts(times, until_s)
        if cuts is None:
            raise PolicyError(f"{batcher!r} says supports_bulk but bulk_cuts returned None")
        ends, dispatched_s = self._check_cuts(batcher, cuts, times, until_s)
        taken = int(ends[-1]) if len(ends) else 0
        self._requeue(batcher, queued, taken, request_ids, make_request)
        self._now_s = max(float(arrival_s[-1]) if len(arrival_s) else self._now_s, float(dispatched_s[-1]) if len(ends) else -math.inf)
        if not len(ends):
            return []
        sizes = np.diff(ends, prepend=0)
        first = self._next_batch_id
        self._next_batch_id = first + len(ends)
        batcher.took_bulk(sizes.tolist())
        self._bulk_flights[executor].append([first, sizes.tolist(), ids[:taken], [0, *ends.tolist()], 0])
        self._bulk_pending += taken
        return [DispatchBatches(first_batch_id=first, executor=executor, request_ids=ids[:taken], ends=ends, dispatched_s=dispatched_s,
                                memory_mb=batcher.memory_mb)]  # fmt: skip

    def handle_finished_bulk(self, executor: str, count: int, *, now_s: float) -> list[Action]:
        """``BatchFinished`` for the oldest ``count`` batches ``handle_arrivals`` sent to ``executor`` (in id order), by ``now_s``.

        Only the accounting: a policy on the bulk path changes no decision
        when a batch finishes (``BatchingPolicy.supports_bulk``), so there is
        nothing to dispatch and no action.
        """
        if now_s < self._now_s:
            raise DriverError(f"time went backwards: batches finished at now_s={now_s} after {self._now_s}")
        flights = self._bulk_flights.get(executor)
        if flights is None:
            raise DriverError(f"handle_finished_bulk names executor {executor!r}, not one of {list(self.batchers)}")
        in_flight = sum(len(entry[1]) - entry[4] for entry in flights)
        if not 0 <= count <= in_flight:
            raise DriverError(f"{count} batches reported finished on {executor!r}; {in_flight} sent by handle_arrivals are in flight")
        self._now_s = now_s
        sizes: list[int] = []
        while len(sizes) < count:
            entry = flights[0]
            done = entry[4]
            take = min(count - len(sizes), len(entry[1]) - done)
            sizes.extend(entry[1][done : done + take])
            entry[4] = done + take
            if entry[4] == len(entry[1]):
                flights.popleft()
        self._bulk_pending -= sum(sizes)
        self.batchers[executor].finished_bulk(sizes)
        return []

    def bulk_ran(self, executor: str, batches: int, *, now_s: float) -> None:
        """``batches`` batches that this scheduler's policies cut for ``executor`` were sent, served and finished by
        ``now_s`` on a driver that holds the queues itself (the simulator's fleet path: many gateways' queues in arrays,
        cut as ``bulk_cuts`` cuts them): the accounting ``handle_arrivals`` and ``handle_finished_bulk`` would have left.

        Nothing may be queued or in flight here, before or after (``DriverError``: keep to one path).
        """
        if executor != self.bulk_executor():
            raise DriverError(f"bulk_ran names executor {executor!r}; the bulk path's is {self.bulk_executor()!r}")
        batcher = self.batchers[executor]
        if self.pending_requests or self._timers or batcher.queue or batcher.batches_in_flight:
            raise DriverError(f"bulk_ran: requests queued or in flight at {executor!r} (requests came another way): keep to one path")
        if batches < 0 or now_s < self._now_s:
            raise DriverError(f"bulk_ran: {batches} batches by now_s={now_s}, after {self._now_s}")
        self._now_s = now_s
        self._started = self._started or batches > 0
        self._next_batch_id += batches

    def _check_bulk_arrivals(self, executor: str, arrival_s: np.ndarray, request_ids: np.ndarray, until_s: float) -> None:
        if len(request_ids) != len(arrival_s):
            raise DriverError(f"handle_arrivals: {len(arrival_s)} arrival times for {len(request_ids)} request ids")
        if arrival_s[0] < self._now_s or (len(arrival_s) > 1 and bool((np.diff(arrival_s) < 0).any())) or until_s < arrival_s[-1]:
            raise DriverError(f"time went backwards: arrivals from {arrival_s[0]} (until {until_s}) after {self._now_s}, or not in time order")
        if self._batch_timer_ids[executor] in self._timers:
            raise DriverError(f"handle_arrivals: {executor!r}'s batch timer is running (requests came one at a time): keep to one path")
        increasing = len(request_ids) < 2 or bool((np.diff(request_ids) > 0).all())
        if increasing and request_ids[0] > max(self._requests, default=-1) and request_ids[0] > self._bulk_max_id():
            return  # the usual case, checked in two comparisons: new ids, larger than any pending
        pending = np.concatenate([np.fromiter(self._requests, np.int64, len(self._requests)),
                                  *[entry[2][entry[3][entry[4]]:] for flights in self._bulk_flights.values() for entry in flights]])  # fmt: skip
        unique, counts = np.unique(request_ids, return_counts=True)
        twice = unique[counts > 1].tolist() + request_ids[np.isin(request_ids, pending)].tolist()
        if twice:
            raise DriverError(f"request {twice[0]} arrived twice (still pending)")

    def _bulk_max_id(self) -> int:
        """The largest request id in a bulk batch still in flight (-1: none)."""
        flights = [entry[2] for queue in self._bulk_flights.values() for entry in queue]
        return max((int(ids.max()) for ids in flights if len(ids)), default=-1)

    def _check_cuts(self, batcher: BatchingPolicy, cuts, times: np.ndarray, until_s: float) -> tuple[np.ndarray, np.ndarray]:
        ends, dispatched_s = np.asarray(cuts[0], dtype=np.int64), np.asarray(cuts[1], dtype=np.float64)
        if len(ends) != len(dispatched_s):
            raise PolicyError(f"{batcher!r} cut {len(ends)} batches with {len(dispatched_s)} dispatch times")
        if len(ends) and (ends[0] < 1 or ends[-1] > len(times) or (np.diff(ends) < 1).any()):
            raise PolicyError(f"{batcher!r} cut batches ending at {ends[:5].tolist()}..., not increasing within 1..{len(times)}")
        if len(ends) and ((dispatched_s < times[ends - 1]).any() or (np.diff(dispatched_s) < 0).any() or dispatched_s[-1] > until_s):
            raise PolicyError(f"{batcher!r} dispatched a batch before its newest request, out of order, or after until_s={until_s}")
        return ends, dispatched_s

    def _requeue(self, batcher: BatchingPolicy, queued: list[Request], taken: int, request_ids: np.ndarray,
                 make_request: Callable[[int], Request]) -> None:  # fmt: skip
        """The queue after the bulk batches left: the requests from position ``taken`` on (queued ones first)."""
        requests = self._requests
        for request in queued[:taken]:
            del requests[request.request_id]
        queue = batcher.queue
        queue.clear()
        queue.extend(queued[taken:])
        for k in range(max(taken - len(queued), 0), len(request_ids)):
            request = make_request(k)
            if request.request_id != request_ids[k]:
                raise DriverError(f"make_request({k}) built request {request.request_id}, not {int(request_ids[k])}")
            requests[request.request_id] = request
            queue.append(request)

    def close(self, now_s: float) -> list[Action]:
        """End of run: drop whatever is still queued (reason ``run_ended``).

        Batches in flight are left to finish; the driver reports them.
        """
        actions: list[Action] = []
        for name, batcher in self.batchers.items():
            while batcher.queue:
                request = batcher.queue.popleft()
                del self._requests[request.request_id]
                actions.append(DropRequest(request_id=request.request_id, reason=DropReason.RUN_ENDED))
            self._set_timer(self._batch_timer_ids[name], None, actions)
        self._set_timer(_PLAN_TIMER, None, actions)
        return actions

    @property
    def pending_requests(self) -> int:
        """Requests queued or in flight: neither completed nor dropped yet."""
        return len(self._requests) + self._bulk_pending

    # -- one place per transition ---------------------------------------------
    def _on_arrived(self, event: RequestArrived, actions: list[Action]) -> None:
        self._arrive(event.now_s, event.request, actions)

    def _arrive(self, now_s: float, request: Request, actions: list[Action]) -> None:
        executor = self._enqueue(now_s, request, actions)
        if executor is not None:
            self._decide(executor, self.batchers[executor], now_s, actions)

    def _on_arrived_together(self, event: RequestsArrived, actions: list[Action]) -> None:
        requests = event.requests
        if not isinstance(requests, tuple) or not requests or not all(isinstance(r, Request) for r in requests):
            raise DriverError(f"RequestsArrived.requests must be a non-empty tuple of Request, got {requests!r}")
        touched: dict[str, None] = {}  # executors in the order first queued on
        for request in requests:
            executor = self._enqueue(event.now_s, request, actions)
            if executor is not None:
                touched[executor] = None
        for executor in touched:
            self._decide(executor, self.batchers[executor], event.now_s, actions)

    def _enqueue(self, now_s: float, request: Request, actions: list[Action]) -> str | None:
        """Place and queue ``request``; its executor, or None when it was dropped (the action says why)."""
        request_id = request.request_id
        if request_id in self._requests:
            raise DriverError(f"request {request_id} arrived twice (still pending)")
        executor = self.placement.choose(now_s, request)
        if executor is None:
            actions.append(DropRequest(request_id=request_id, reason=DropReason.NO_EXECUTOR))
            return None
        batcher = self.batchers.get(executor)
        if batcher is None:
            raise PolicyError(f"{type(self.placement).__name__} chose {executor!r}, not one of {list(self.batchers)}")
        if not batcher.admit(request):
            actions.append(DropRequest(request_id=request_id, reason=DropReason.QUEUE_FULL))
            return None
        self._requests[request_id] = request
        return executor

    def _on_timer(self, event: TimerFired, actions: list[Action]) -> None:
        timer_id = event.timer_id
        due_s = self._timers.get(timer_id)
        if due_s is None:
            raise DriverError(f"timer {timer_id!r} fired but is not running (never started, cancelled or fired)")
        if event.now_s < due_s - _EARLY_TOLERANCE_S:
            # the timer stays running: the driver may still deliver it on time
            raise DriverError(f"timer {timer_id!r} fired at {event.now_s}, before its time {due_s}")
        del self._timers[timer_id]
        if timer_id == _PLAN_TIMER:
            self._adopt(self.planner.on_wake(event.now_s), event.now_s, actions)
            return
        executor = timer_id.executor
        self._decide(executor, self.batchers[executor], event.now_s, actions)

    def _pop_entry(self, batch_id: int, executor: str) -> tuple[str, tuple[Request, ...], int, int | None]:
        entry = self._in_flight.pop(batch_id, None)
        if entry is None:
            raise DriverError(f"batch {batch_id} reported by {executor!r} was never dispatched or already ended")
        if entry[0] != executor:
            self._in_flight[batch_id] = entry
            raise DriverError(f"batch {batch_id} was dispatched to {entry[0]!r}, not {executor!r}")
        return entry

    def _on_finished(self, event: BatchFinished, actions: list[Action]) -> None:
        entry = self._pop_entry(event.batch_id, event.executor)
        batch = entry[1]
        requests = self._requests
        for request in batch:
            del requests[request.request_id]
        if self.planner is not None:
            # what a planner learns service times from: the measured time and the batch it was for
            self.planner.observe_batch(now_s=event.now_s, executor=event.executor, batch_size=len(batch), memory_mb=entry[3],
                                       service_s=event.service_s)  # fmt: skip
        batcher = self.batchers[event.executor]
        batcher.finished(event.now_s, len(batch), event.service_s)
        self._decide(event.executor, batcher, event.now_s, actions)

    def _on_failed(self, event: BatchFailed, actions: list[Action]) -> None:
        executor, batch, attempt, memory_mb = self._pop_entry(event.batch_id, event.executor)
        if attempt < self.max_retries:
            # the same requests again, as a new batch to the same executor: still one batch in flight for its batcher
            batch_id = self._next_batch_id
            self._next_batch_id = batch_id + 1
            self._in_flight[batch_id] = (executor, batch, attempt + 1, memory_mb)
            self.retries += 1
            actions.append(DispatchBatch(batch_id=batch_id, executor=executor, request_ids=tuple([r.request_id for r in batch]),
                                         memory_mb=memory_mb, attempt=attempt + 1))  # fmt: skip
            return
        reason = event.reason if self.max_retries == 0 else DropReason.RETRIES_EXHAUSTED
        requests = self._requests
        for request in batch:
            del requests[request.request_id]
            actions.append(DropRequest(request_id=request.request_id, reason=reason))
        batcher = self.batchers[event.executor]
        batcher.finished(event.now_s, len(batch), None)
        self._decide(event.executor, batcher, event.now_s, actions)

    def _check_executor(self, event: Event, executor: str) -> None:
        if executor not in self.batchers:
            raise DriverError(f"{type(event).__name__} names executor {executor!r}, not one of {list(self.batchers)}")

    def _on_bandwidth(self, event: BandwidthMeasured, actions: list[Action]) -> None:
        self._check_executor(event, event.executor)
        self.view.bandwidth_MBps[event.executor] = event.bandwidth_MBps

    def _on_rate(self, event: ArrivalRateMeasured, actions: list[Action]) -> None:
        pass  # only the planner uses it, and it sees every event

    def _on_instances(self, event: InstanceStateChanged, actions: list[Action]) -> None:
        self._check_executor(event, event.executor)
        self.view.warm_instances[event.executor] = event.warm_instances

    # -- helpers ---------------------------------------------------------------
    def _decide(self, executor: str, batcher: BatchingPolicy, now_s: float, actions: list[Action]) -> None:
        sizes, wake_at_s, drops = batcher.decide(now_s)
        if drops:
            for request, reason in drops:
                batcher.remove(request)
                del self._requests[request.request_id]
                actions.append(DropRequest(request_id=request.request_id, reason=reason))
        if sizes:
            for size in sizes:
                if not 1 <= size <= len(batcher.queue):
                    raise PolicyError(f"{batcher!r} asked for a batch of {size} with {len(batcher.queue)} queued")
                batch = batcher.take(size)
                batch_id = self._next_batch_id
                self._next_batch_id = batch_id + 1
                self._in_flight[batch_id] = (executor, batch, 0, batcher.memory_mb)
                # positional ``make``: this runs once per batch (policies/positional.py says why)
                actions.append(DispatchBatch.make(batch_id, executor, tuple([r.request_id for r in batch]), batcher.memory_mb, 0))
        if wake_at_s is None and batcher.queue and not batcher.batches_in_flight:
            # nothing would ever wake this queue again: its requests would be lost
            raise PolicyError(f"{batcher!r} holds {len(batcher.queue)} requests with no wake-up time and no batch in flight")
        timer_id = self._batch_timer_ids[executor]
        if self._timers.get(timer_id) != wake_at_s:
            self._set_timer(timer_id, wake_at_s, actions)

    def _set_timer(self, timer_id: TimerId, at_s: float | None, actions: list[Action]) -> None:
        current = self._timers.get(timer_id)
        if at_s == current:
            return
        if at_s is None:
            del self._timers[timer_id]
            actions.append(CancelTimer.make(timer_id))
        else:
            self._timers[timer_id] = at_s
            actions.append(StartTimer.make(timer_id, at_s))

    def _adopt(self, plan: Plan | None, now_s: float, actions: list[Action]) -> None:
        if plan is None:
            return
        if not isinstance(plan, Plan):
            raise PolicyError(f"{type(self.planner).__name__} returned {type(plan).__name__}, not a Plan")
        for name in set(plan.batch_size) | set(plan.memory_mb) | set(plan.weights):
            if name not in self.batchers:
                raise PolicyError(f"plan names executor {name!r}, not one of {list(self.batchers)}")
        self.plan = plan
        for name, batcher in self.batchers.items():
            if name in plan.batch_size or name in plan.memory_mb:
                batcher.apply_plan(batch_size=plan.batch_size.get(name), memory_mb=plan.memory_mb.get(name))
        if plan.weights:
            self.placement.apply_plan(weights=plan.weights)
        actions.append(NotePlan(at_s=now_s, plan=plan, trigger=plan.trigger))
        for name, batcher in self.batchers.items():
            self._decide(name, batcher, now_s, actions)
