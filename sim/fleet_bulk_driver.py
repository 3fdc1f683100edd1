"""The bulk path for a fleet: many gateways that share nothing, each fed its own arrivals a chunk at a time."""

from __future__ import annotations

import math

import numpy as np

from policies.batching.segmented_cuts import segmented_timeout_cuts, timeout_settings
from policies.dispatch_batches import DispatchBatches
from policies.events import Request
from sim.bulk_driver import arrivals_unsupported, driver_unsupported, end_of_chunk, run_unsupported
from sim.fleet_service import FleetServers

__all__ = ["FleetBulkDriver"]


class FleetBulkDriver:
    """``BulkDriver`` for several gateways that share nothing: the same tables as the per-request path.

    A fleet's gateways (``spec.fleet``: one camera and one edge device each)
    are independent simulations when each sends every request to an
    executor of its own (``Scheduler.bulk_executor``, a server only it
    uses, as ``BulkDriver`` requires of one gateway) and nothing couples
    them (no planner, telemetry, hosts, hops or horizon: ``run_unsupported``).
    Then the run goes a chunk of the global arrival order at a time.

    Where every gateway's batching cuts as timeout batching does (timeout,
    fixed or no batching: ``timeout_settings``) and the fleet has at least
    ``vectorized_from`` gateways, the chunk is handled for all gateways at
    once, in a few numpy passes: the queues are arrays here (each gateway's
    requests still queued, as ids), the chunk's arrivals and those are
    sorted by (gateway, time) and cut in one ``segmented_timeout_cuts``, the
    servers serve all gateways' batches together (``sim.fleet_service``:
    the same sums as ``run_bulk``; a server with noise draws its stream in
    one call per chunk, in its batches' order), and the schedulers, which
    hold nothing meanwhile, hear of their batches once, at the end
    (``Scheduler.bulk_ran``). No Python call per gateway per chunk.

    Otherwise (a few gateways, or a batching whose ``bulk_cuts`` is its
    own): the chunk's arrivals are split by gateway, each gateway's
    scheduler gets its own in one ``handle_arrivals`` call (a gateway with
    requests still queued and none arriving is called too, for a batch its
    timer sends before the chunk ends), its server serves its batches
    (``SlotServer.run_bulk``: its own noise stream, in its own order).

    Either way the chunk's batches of all gateways
    are then recorded in the order the per-request path dispatches them:
    by time, and at a tie (``FeedEnvironment``: scheduled events before
    arrivals) those a timer sent first, in the order the timers started (at
    each batch's first arrival), then those an arrival sent, in arrival
    order. So the request and batch tables are the same, row for row (ids
    included). No Python object per request.

    ``unsupported(sim)`` says why not (None: it applies).
    """

    #: arrivals per chunk per gateway (at least ``min_chunk`` a chunk): enough that each gateway's calls amortize
    per_gateway = 128
    #: the same, vectorized: nothing per gateway to amortize, and a smaller chunk's arrays stay in cache (at 10,000
    #: gateways 4 against 128: the same CPU time or less, peak RSS 420 MB against 790 MB at 3,000,000 requests)
    vectorized_per_gateway = 4
    min_chunk = 1 << 15
    max_chunk = 1 << 21
    #: fewer gateways than this: one call per gateway per chunk (what the vectorized passes save is small there)
    vectorized_from = 64

    @staticmethod
    def unsupported(sim) -> str | None:
        """Why ``sim`` cannot run on this path (None: it can)."""
        reason = run_unsupported(sim)
        if reason is not None:
            return reason
        drivers = list({id(d): d for d in sim._source_gateway}.values())
        if len(drivers) < 2:
            return "one gateway receives requests (sim.bulk_driver.BulkDriver's case)"
        used: dict[str, str] = {}
        for driver in drivers:
            reason = driver_unsupported(driver)
            if reason is not None:
                return f"gateway {driver.name!r}: {reason}"
            executor = driver.scheduler.bulk_executor()
            if executor in used:
                return f"gateways {used[executor]!r} and {driver.name!r} share executor {executor!r}"
            used[executor] = driver.name
        if hasattr(sim.arrivals, "rolling"):
            return None  # merged in time order by construction (spec.streamed_arrivals): not read in full to check it
        return arrivals_unsupported(sim.arrivals.arrival_s)

    def __init__(self, sim, *, on_done, bar=None):
        self.sim = sim
        self.env = sim.env
        self.on_done = on_done
        self.bar = bar
        self.drivers = list({id(d): d for d in sim._source_gateway}.values())
        number = {id(d): g for g, d in enumerate(self.drivers)}
        #: each source's gateway, as the drivers' position
        # int16 where it fits: a stable sort of the chunk by gateway is then a radix sort
        gateway_type = np.int16 if len(self.drivers) < 1 << 15 else np.int32
        self.gateway_of_source = np.array([number[id(d)] for d in sim._source_gateway], dtype=gateway_type)
        self.schedulers = [d.scheduler for d in self.drivers]
        self.executor_names = [s.bulk_executor() for s in self.schedulers]
        self.servers = [d.executors[n] for d, n in zip(self.drivers, self.executor_names)]
        self.executor_index = np.array([sim.executor_number[n] for n in self.executor_names], dtype=np.int16)
        self.batchers = [s.batchers[n] for s, n in zip(self.schedulers, self.executor_names)]
        arrivals = sim.arrivals
        self._rolling = None
        if hasattr(arrivals, "rolling") and hasattr(sim.recorder, "oldest_unwritten_id"):
            # a long run streamed: its arrivals generated as the chunks go, and forgotten once written (spec.streamed_arrivals)
            arrivals = self._rolling = sim.recorder.arrivals = arrivals.rolling()
        self.arrival_s, self.source_index, self.count = arrivals.arrival_s, arrivals.source_index, len(arrivals)
        self._names = [s.name for s in arrivals.sources]
        self._sizes = [s.size_bytes for s in arrivals.sources]
        self._slos = [s.slo_s for s in arrivals.sources]
        self._next = 0
        #: per gateway, its batches served and not yet reported to its scheduler: end times and sizes, oldest first
        self._unreported: list[list[tuple[np.ndarray, np.ndarray]]] = [[] for _ in self.drivers]
        self._last_end_s = -math.inf
        self._fleet = self._vectorized()
        per_gateway = self.per_gateway if self._fleet is None else self.vectorized_per_gateway
        self.chunk = int(min(max(self.min_chunk, per_gateway * len(self.drivers)), self.max_chunk))

    def _vectorized(self) -> FleetServers | None:
        """The fleet's queues as arrays and its servers as one (None: a call per gateway, see the class)."""
        settings = [timeout_settings(b) for b in self.batchers]
        if len(self.drivers) < self.vectorized_from or None in settings:
            return None
        if any(s.pending_requests or b.queue or b.batches_in_flight for s, b in zip(self.schedulers, self.batchers)):
            return None  # not a fresh run: its queues are the schedulers'
        self._max_size = np.array([s[0] for s in settings], dtype=np.int64)
        self._max_wait_s = np.array([s[1] for s in settings], dtype=np.float64)
        self._memory = [b.memory_mb for b in self.batchers]
        self._memory_mb = np.array([m or 0 for m in self._memory], dtype=np.int32)
        #: the requests queued at the gateways, as (gateway, id), sorted by both
        self._queued_ids = np.zeros(0, np.int64)
        self._queued_gateway = np.zeros(0, self.gateway_of_source.dtype)
        #: batches served whose end was not yet reported: end times and sizes, a pair of arrays per chunk
        self._ending: list[tuple[np.ndarray, np.ndarray]] = []
        self._batches = np.zeros(len(self.drivers), dtype=np.int64)
        fleet = FleetServers(self.servers, self._memory, int(self._max_size.max()))
        fleet.start()
        return fleet

    def start(self) -> None:
        """Hand the environment the first arrival's time and this feed."""
        self.env.feed(float(self.arrival_s[0]), self._step)

    def _step(self) -> float:
        """One chunk of arrivals: returns the next chunk's first time (``inf``: done)."""
        if self.env.scheduled:
            raise RuntimeError("the fleet bulk path found an event scheduled: something other than arrivals happens in this run")
        start = self._next
        stop = self._next = min(start + self.chunk, self.count)
        if self._rolling is not None:
            self._rolling.trim(self._oldest_needed(start))
        until_s = float(self.arrival_s[stop]) if stop < self.count else math.inf
        if self._fleet is not None:
            self._cut_all(start, stop, until_s)
            self._report_ended(until_s)
            if stop == self.count:
                self._hand_back()
            return end_of_chunk(self, stop, until_s)
        gateway = self.gateway_of_source[self.source_index[start:stop]]
        order = np.argsort(gateway, kind="stable")  # each gateway's arrivals, still in time order
        present, first = np.unique(gateway[order], return_index=True)
        bounds = dict(zip(present.tolist(), zip(first.tolist(), [*first[1:].tolist(), stop - start])))
        called = set(bounds) | {g for g, b in enumerate(self.batchers) if b.queue}
        batches = [self._arrivals_at(g, start, order, bounds.get(g), until_s) for g in sorted(called)]
        batches = [b for b in batches if b is not None]
        if batches:
            self._record(batches)
        self._report(until_s)
        return end_of_chunk(self, stop, until_s)

    def _oldest_needed(self, start: int) -> int:
        """The oldest request id whose arrival is still read: by the recorder, or queued at a gateway."""
        oldest = min(start, self.sim.recorder.oldest_unwritten_id)
        if self._fleet is not None:
            return min(oldest, int(self._queued_ids.min())) if len(self._queued_ids) else oldest
        for batcher in self.batchers:
            if batcher.queue:
                oldest = min(oldest, batcher.queue[0].request_id)
        return oldest

    def _cut_all(self, start: int, stop: int, until_s: float) -> None:
        """The chunk for every gateway at once: its arrivals and the queued requests cut, served and recorded."""
        ids = np.arange(start, stop, dtype=np.int64)
        gateway = self.gateway_of_source[self.source_index[start:stop]]
        if len(self._queued_ids):  # queued earlier, so older: first in each gateway's run after the stable sort
            ids = np.concatenate([self._queued_ids, ids])
            gateway = np.concatenate([self._queued_gateway, gateway])
        order = np.argsort(gateway, kind="stable")  # each gateway's requests, still in id (so time) order
        ids, gateway = ids[order], gateway[order]
        first = np.flatnonzero(np.concatenate([[True], gateway[1:] != gateway[:-1]]))
        length = np.diff(np.append(first, len(ids)))
        segment_end = np.repeat(first + length, length)
        heads, ends, dispatched_s = segmented_timeout_cuts(self.arrival_s[ids], segment_end, self._max_size[gateway],
                                                           self._max_wait_s[gateway], until_s)  # fmt: skip
        # a segment's batches cover a prefix of it; the rest stays queued
        mark = np.zeros(len(ids) + 1, dtype=np.int8)
        mark[heads] = 1
        mark[ends] -= 1
        covered = np.cumsum(mark[:-1]) > 0
        self._queued_ids, self._queued_gateway = ids[~covered], gateway[~covered]
        if not len(heads):
            return
        sizes = ends - heads
        owner = gateway[heads]
        start_s, end_s, cost = self._fleet.serve(owner, dispatched_s, sizes)
        self._batches += np.bincount(owner, minlength=len(self._batches))
        self._ending.append((end_s, sizes))
        self._record_columns(owner, dispatched_s, sizes, ids[covered], self._memory_mb[owner], start_s, end_s, cost)

    def _report_ended(self, until_s: float) -> None:
        """The requests whose batches ended by ``until_s`` have ended for the run (the schedulers hear at the end)."""
        requests = 0
        ending = []
        for end_s, sizes in self._ending:
            done = end_s <= until_s
            requests += int(sizes[done].sum())
            if not done.all():
                ending.append((end_s[~done], sizes[~done]))
        self._ending = ending
        if requests:
            self.sim.requests_ended(requests)

    def _hand_back(self) -> None:
        """The run's end: the servers' slots back to them, each scheduler told of its batches, all finished."""
        self._fleet.finish()
        for scheduler, executor, batches in zip(self.schedulers, self.executor_names, self._batches.tolist()):
            scheduler.bulk_ran(executor, batches, now_s=self._last_end_s)

    def _arrivals_at(self, g: int, start: int, order: np.ndarray, bound, until_s: float):
        """Gateway ``g``'s arrivals of the chunk to its scheduler, its batches served: (g, action, sizes, start_s, end_s, cost)."""
        if bound is None:
            ids = np.zeros(0, np.int64)
        else:
            ids = start + order[bound[0] : bound[1]].astype(np.int64)
        times = self.arrival_s[ids]
        make_request = self._request_maker(ids)
        actions = self.schedulers[g].handle_arrivals(times, ids, until_s=until_s, make_request=make_request)
        if not actions:
            return None
        (action,) = actions
        if type(action) is not DispatchBatches:
            raise RuntimeError(f"the fleet bulk path got {type(action).__name__} from handle_arrivals")
        sizes = action.sizes  # a property that computes them
        start_s, end_s, cost = self.servers[g].run_bulk(action.dispatched_s, sizes, action.memory_mb)
        self._unreported[g].append((end_s, sizes))
        return g, action, sizes, start_s, end_s, cost

    def _request_maker(self, ids: np.ndarray):
        """``make_request(k)``: the ``Request`` the per-request feed builds for the k-th of ``ids``."""
        names, sizes, slos, source_index, arrival_s = self._names, self._sizes, self._slos, self.source_index, self.arrival_s

        def make_request(k: int) -> Request:
            request_id = int(ids[k])
            source = int(source_index[request_id])
            at_s = float(arrival_s[request_id])
            return Request.make(request_id, names[source], at_s, sizes[source], at_s + slos[source])

        return make_request

    def _record(self, batches: list) -> None:
        """The chunk's batches of every gateway (one ``_arrivals_at`` each), recorded as ``_record_columns`` records them."""
        dispatched_s = np.concatenate([b[1].dispatched_s for b in batches])
        counts = [len(b[2]) for b in batches]
        sizes = np.concatenate([b[2] for b in batches])
        gateway = np.repeat(np.array([b[0] for b in batches], np.int32), counts)
        memory = np.repeat(np.array([b[1].memory_mb or 0 for b in batches], np.int32), counts)
        request_ids = np.concatenate([b[1].request_ids for b in batches])
        start_s, end_s, cost = (np.concatenate([b[k] for b in batches]) for k in (3, 4, 5))
        self._record_columns(gateway, dispatched_s, sizes, request_ids, memory, start_s, end_s, cost)

    def _record_columns(self, gateway, dispatched_s, sizes, request_ids, memory, start_s, end_s, cost) -> None:
        """The chunk's batches of every gateway (sorted by gateway, then time), recorded in dispatch-time order (the
        per-request path's batch ids)."""
        offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]])
        # the per-request path's order at a tie in time (FeedEnvironment): timers first, in the order they were
        # started (at their batch's first arrival), then arrivals in id order (a batch an arrival sends: its last)
        last = request_ids[offsets + sizes - 1]
        by_arrival = self.arrival_s[last] == dispatched_s
        order = np.argsort(dispatched_s)
        in_order = dispatched_s[order]
        if bool((in_order[1:] == in_order[:-1]).any()):  # a tie (else the order by time alone is the order)
            order = np.lexsort((np.where(by_arrival, last, request_ids[offsets]), by_arrival, dispatched_s))
        sizes_o = sizes[order]
        within = np.arange(len(request_ids)) - np.repeat(np.cumsum(sizes_o) - sizes_o, sizes_o)
        ids_o = request_ids[np.repeat(offsets[order], sizes_o) + within]
        recorder = self.sim.recorder
        first = recorder.batches_dispatched_bulk(dispatched_s[order], self.executor_index[gateway[order]], sizes_o, ids_o, memory[order])
        count = len(order)
        # local executors: each batch is there when sent, its result back when it ends
        recorder.batches_finished_bulk(np.arange(first, first + count), dispatched_s[order], start_s[order], end_s[order], end_s[order],
                                       np.zeros(count), cost[order])  # fmt: skip
        self._last_end_s = max(self._last_end_s, float(end_s.max()))

    def _report(self, until_s: float) -> None:
        """Tell each scheduler of its batches (oldest first) that ended by ``until_s``; they have ended for the run."""
        requests = 0
        now_s = until_s if math.isfinite(until_s) else self._last_end_s
        for g, pending in enumerate(self._unreported):
            if not pending:
                continue
            ended = 0
            while pending:
                end_s, sizes = pending[0]
                later = np.flatnonzero(end_s > until_s)
                done = len(end_s) if not len(later) else int(later[0])
                ended += done
                requests += int(sizes[:done].sum())
                if done < len(end_s):
                    pending[0] = (end_s[done:], sizes[done:])
                    break
                pending.pop(0)
            if ended:
                self.schedulers[g].handle_finished_bulk(self.executor_names[g], ended, now_s=now_s)
        if requests:
            self.sim.requests_ended(requests)
