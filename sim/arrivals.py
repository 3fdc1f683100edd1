"""Replaying a workload's arrival arrays into the gateways, on the SimPy clock."""

from __future__ import annotations

import math

from policies.events import Request, RequestArrived

__all__ = ["ArrivalFeed"]

_CHUNK = 4096  # arrivals converted to Python floats this many at a time


class ArrivalFeed:
    """Hands each request to its source's gateway at its arrival time.

    The environment (``sim.environment.FeedEnvironment``) calls ``_arrive``
    at each arrival's time, with no SimPy event per request; the arrays are
    read a chunk at a time so that a long run never holds a Python object
    per request. ``on_done`` runs after the last one.
    """

    def __init__(self, sim, *, on_done, progress: bool = False):
        self.env = sim.env
        self.arrivals = sim.arrivals
        self.count = len(sim.arrivals)
        self.drivers = sim._source_gateway
        self.names = [s.name for s in sim.arrivals.sources]
        self.sizes = [s.size_bytes for s in sim.arrivals.sources]
        self.slos = [s.slo_s for s in sim.arrivals.sources]
        self.arrived_since = sim._arrived_since
        #: arrival counts feed the rate telemetry; skipped when no planner listens
        self.count_arrivals = sim._telemetry
        self.on_done = on_done
        self.hops = [s.hop_s for s in sim.arrivals.sources]
        # gateways see requests after their source's hop; with unequal hops that reorders them
        self._order = None
        self._ids: list[int] = []
        if any(self.hops) and len(set(self.hops)) > 1:
            import numpy as np

            seen_s = self.arrivals.arrival_s + np.asarray(self.hops)[self.arrivals.source_index]
            self._order = np.argsort(seen_s, kind="stable")
        self.next_id = 0
        self._times: list[float] = []
        self._sources: list[int] = []
        self._offset = 0
        self._bar = None
        if progress:
            from tqdm import tqdm

            # disable=None: a bar on a terminal, silence in logs and CI
            self._bar = tqdm(total=self.count, unit="req", desc="simulating", mininterval=1.0, disable=None)

    def start(self) -> None:
        if self.count == 0:
            self.on_done()
            return
        self._load()
        self._schedule()

    def _load(self) -> None:
        start = self.next_id
        stop = min(start + _CHUNK, self.count)
        self._times = self.arrivals.arrival_s[start:stop].tolist()
        self._sources = self.arrivals.source_index[start:stop].tolist()
        if self._order is not None:
            self._ids = self._order[start:stop].tolist()
            self._times = self.arrivals.arrival_s[self._ids].tolist()
            self._sources = self.arrivals.source_index[self._ids].tolist()
        self._offset = start
        if self._bar is not None and start:
            self._bar.update(start - self._bar.n)

    def _schedule(self) -> None:
        env = self.env
        index = self.next_id - self._offset
        env.feed(max(self._times[index] + self.hops[self._sources[index]], env.now), self._arrive)

    def _arrive(self) -> float:
        """Hand the next request to its gateway; return when the one after it is due."""
        # the hot path of a run: one call per request, so locals over attributes
        env = self.env
        times, sources, drivers, hops = self._times, self._sources, self.drivers, self.hops
        names, sizes, slos = self.names, self.sizes, self.slos
        count = self.count
        next_id = self.next_id
        index = next_id - self._offset
        request_id = next_id if self._order is None else self._ids[index]
        arrival_s = times[index]
        source = sources[index]
        driver = drivers[source]
        if self.count_arrivals:
            self.arrived_since[driver.name] += 1
        # positional ``make``: the keyword constructors cost a third of a run (policies/positional.py)
        request = Request.make(request_id, names[source], arrival_s, sizes[source], arrival_s + slos[source])
        next_id += 1
        self.next_id = next_id
        driver.handle(RequestArrived.make(env.now, request))
        if next_id >= count:
            if self._bar is not None:
                self._bar.update(count - self._bar.n)
                self._bar.close()
            self.on_done()
            return math.inf
        index += 1
        if index >= len(times):
            self._load()
            index = 0
            times, sources = self._times, self._sources
        due_s = times[index] + hops[sources[index]]
        now_s = env.now
        return due_s if due_s > now_s else now_s
