"""The simulator's bulk path: a gateway's arrivals handed to its scheduler a chunk at a time."""

from __future__ import annotations

import math
from collections import deque

import numpy as np

from policies.dispatch_batches import DispatchBatches
from policies.events import Request
from sim.gateway import GatewayDriver
from sim.server import SlotServer

__all__ = ["BulkDriver", "run_unsupported", "driver_unsupported", "arrivals_unsupported"]


class BulkDriver:
    """Replays a run's arrivals through ``Scheduler.handle_arrivals``, many per call, with identical results.

    Where a run has nothing between arrivals that a policy could react to
    (one gateway receives requests, no planner or telemetry, no horizon, no
    source hops) and its policies cut batches from arrival times alone
    (``Scheduler.bulk_executor``), the arrivals need not be handled one by
    one: each chunk goes to the scheduler in one call, which returns the
    batches (``DispatchBatches``) the per-request path would have formed,
    with the same ids and times. The executor, a server that needs nothing
    but its service (``SlotServer.run_bulk``: local, no hops, overheads,
    host or failures), serves them first in first out in one pass, the
    recorder takes whole columns, and the scheduler hears the batches
    finished (``handle_finished_bulk``) once the clock has passed them. No
    SimPy event is scheduled on this path (it checks), so nothing else
    could have happened in between.

    ``unsupported(sim)`` says why a run takes the per-request path (None:
    it takes this one); ``Simulation.bulk = False`` forces that path.
    """

    #: arrivals per call: large enough that the per-call work vanishes, small enough to bound the arrays
    chunk = 1 << 15

    @staticmethod
    def unsupported(sim) -> str | None:
        """Why ``sim`` cannot run on the bulk path (None: it can)."""
        reason = run_unsupported(sim)
        if reason is not None:
            return reason
        drivers = {id(d): d for d in sim._source_gateway}
        if len(drivers) != 1:
            return "several gateways receive requests"
        reason = driver_unsupported(next(iter(drivers.values())))
        if reason is not None or hasattr(sim.arrivals, "rolling"):
            return reason  # a long run's are merged in time order by construction (spec.streamed_arrivals): not read in full
        return arrivals_unsupported(sim.arrivals.arrival_s)

    def __init__(self, sim, *, on_done, bar=None):
        self.sim = sim
        self.env = sim.env
        self.driver = driver = sim._source_gateway[0]
        self.scheduler = driver.scheduler
        self.executor_name = self.scheduler.bulk_executor()
        self.executor = driver.executors[self.executor_name]
        self.executor_index = sim.executor_names.index(self.executor_name)
        arrivals = sim.arrivals
        self._rolling = None
        if hasattr(arrivals, "rolling") and hasattr(sim.recorder, "oldest_unwritten_id"):
            # a long run streamed: its arrivals generated as the chunks go, and forgotten once written (spec.streamed_arrivals)
            arrivals = self._rolling = sim.recorder.arrivals = arrivals.rolling()
        self.arrival_s = arrivals.arrival_s
        self.count = len(arrivals)
        self.on_done = on_done
        self.bar = bar
        sources = arrivals.sources
        self._source_index = arrivals.source_index
        self._names = [s.name for s in sources]
        self._sizes = [s.size_bytes for s in sources]
        self._slos = [s.slo_s for s in sources]
        self._next = 0
        self._chunk_start = 0
        #: batches served and not yet reported to the scheduler, in id order: [end times, sizes, reported]
        self._unreported: deque[list] = deque()
        self._last_end_s = -math.inf

    def start(self) -> None:
        """Hand the environment the first arrival's time and this feed."""
        self.env.feed(float(self.arrival_s[0]), self._step)

    def _step(self) -> float:
        """One chunk of arrivals, at the first one's time: returns the next chunk's (``inf``: done)."""
        if self.env.scheduled:
            raise RuntimeError("the bulk path found an event scheduled: something other than arrivals happens in this run")
        start = self._chunk_start = self._next
        stop = self._next = min(start + self.chunk, self.count)
        if self._rolling is not None:
            self._rolling.trim(self._oldest_needed(start))
        until_s = float(self.arrival_s[stop]) if stop < self.count else math.inf
        ids = np.arange(start, stop, dtype=np.int64)
        for action in self.scheduler.handle_arrivals(self.arrival_s[start:stop], ids, until_s=until_s, make_request=self._make_request):
            if type(action) is not DispatchBatches:
                raise RuntimeError(f"the bulk path got {type(action).__name__} from handle_arrivals")
            self._dispatch(action)
        self._report(until_s)
        return end_of_chunk(self, stop, until_s)

    def _oldest_needed(self, start: int) -> int:
        """The oldest request id whose arrival is still read: by the recorder, or queued at the gateway."""
        oldest = min(start, self.sim.recorder.oldest_unwritten_id)
        queue = self.scheduler.batchers[self.executor_name].queue
        return min(oldest, min(r.request_id for r in queue)) if queue else oldest

    def _make_request(self, k: int) -> Request:
        """The ``Request`` the per-request feed builds for the k-th arrival of the current chunk."""
        request_id = self._chunk_start + k
        source = int(self._source_index[request_id])
        arrival_s = float(self.arrival_s[request_id])
        return Request.make(request_id, self._names[source], arrival_s, self._sizes[source], arrival_s + self._slos[source])

    def _dispatch(self, action: DispatchBatches) -> None:
        """Record the batches, serve them, record their ends; the scheduler hears of them in ``_report``."""
        sizes = action.sizes
        recorder = self.sim.recorder
        first = recorder.batches_dispatched_bulk(action.dispatched_s, self.executor_index, sizes, action.request_ids, action.memory_mb)
        start_s, end_s, cost = self.executor.run_bulk(action.dispatched_s, sizes, action.memory_mb)
        count = len(sizes)
        # a local executor: the batch is there when sent, its result back when it ends
        recorder.batches_finished_bulk(np.arange(first, first + count), action.dispatched_s, start_s, end_s, end_s, np.zeros(count), cost)
        self._unreported.append([end_s, sizes, 0])
        self._last_end_s = max(self._last_end_s, float(end_s.max()))

    def _report(self, until_s: float) -> None:
        """Tell the scheduler of the batches (oldest first) that ended by ``until_s``; they have ended for the run."""
        batches = requests = 0
        while self._unreported:
            entry = self._unreported[0]
            end_s, sizes, done = entry
            later = np.flatnonzero(end_s[done:] > until_s)
            ended = len(end_s) - done if not len(later) else int(later[0])
            batches += ended
            requests += int(sizes[done : done + ended].sum())
            entry[2] = done + ended
            if entry[2] < len(end_s):
                break
            self._unreported.popleft()
        if batches:
            now_s = until_s if math.isfinite(until_s) else self._last_end_s
            self.scheduler.handle_finished_bulk(self.executor_name, batches, now_s=now_s)
            self.sim.requests_ended(requests)


def end_of_chunk(driver, stop: int, until_s: float) -> float:
    """A bulk driver's chunk ended at arrival ``stop``: the next chunk's time, or ``inf`` once the run is done."""
    if driver.bar is not None:
        driver.bar.update(stop - driver.bar.n)
    if stop < driver.count:
        return until_s
    driver.env.now_s = max(driver.env.now_s, driver._last_end_s)  # the run ends when its last result is back
    if driver.bar is not None:
        driver.bar.close()
    driver.on_done()
    return math.inf


def run_unsupported(sim) -> str | None:
    """Why nothing of ``sim`` can take a bulk path, whatever its gateways (None: its gateways decide)."""
    if not getattr(sim, "bulk", True):
        return "turned off (Simulation.bulk = False)"
    if sim.horizon_s is not None:
        return "a horizon (sim.horizon_s)"
    if sim._telemetry:
        return "a planner (it observes every event; telemetry comes between arrivals)"
    if sim._request_hops is not None or any(s.hop_s for s in sim.arrivals.sources):
        return "source hops (the gateway sees requests later than they arrive)"
    if sim.cluster.hosts:
        return "hosts (shared cores)"
    if not hasattr(sim.recorder, "batches_dispatched_bulk"):
        return f"a recorder without bulk columns ({type(sim.recorder).__name__})"
    return None


def driver_unsupported(driver) -> str | None:
    """Why one gateway's driver cannot take the bulk path (None: it can, to ``scheduler.bulk_executor()``)."""
    if type(driver) is not GatewayDriver or driver.handle_arrival != driver.scheduler.handle_arrival:
        return "a stage in front of the scheduler (a driver of its own, or one that wraps handle_arrival)"
    executor = driver.scheduler.bulk_executor()
    if executor is None:
        return "policies that take requests one at a time (no bulk_choice / supports_bulk, or a planner)"
    return _executor_unsupported(driver, executor)


def _executor_unsupported(driver, executor: str) -> str | None:
    server = driver.executors[executor]
    spec = server.spec
    if type(server) is not SlotServer:
        return f"executor {executor!r} is not a plain server ({type(server).__name__})"
    if driver.channels.get(executor) is not None or spec.hop_s or spec.hop_MBps or spec.hop_samples_s is not None:
        return f"executor {executor!r} is behind a link or a hop"
    if server.failure_probability > 0 or server.overhead_s > 0 or spec.overhead_samples_s is not None:
        return f"executor {executor!r} fails or has overheads"
    if server.host is not None or server.worker_cpu is not None or driver.harness is not None:
        return f"executor {executor!r} shares a host's cores"
    return None


def arrivals_unsupported(arrival_s: np.ndarray) -> str | None:
    if not len(arrival_s):
        return "no arrivals"
    if len(arrival_s) > 1 and bool((np.diff(arrival_s) < 0).any()):
        return "arrivals out of time order"
    return None
