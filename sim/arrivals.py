"""Replaying a workload's arrival arrays into the gateways, on the SimPy clock."""

from __future__ import annotations

import math

import numpy as np

from policies.events import Request
from sim.bulk_driver import BulkDriver
from sim.fleet_bulk_driver import FleetBulkDriver
from spec.noise import EmpiricalDelay

__all__ = ["ArrivalFeed", "request_hops"]

_CHUNK = 4096  # arrivals converted to Python floats this many at a time


class ArrivalFeed:
    """Hands each request to its source's gateway at its arrival time.

    The environment (``sim.environment.FeedEnvironment``) resumes the feed
    at each arrival's time, with no SimPy event per request; the arrays are
    read a chunk at a time so that a long run never holds a Python object
    per request. ``on_done`` runs after the last one.
    """

    def __init__(self, sim, *, on_done, progress: bool = False):
        self.sim = sim
        self.env = sim.env
        self.arrivals = sim.arrivals
        self.count = len(sim.arrivals)
        self.drivers = sim._source_gateway
        self.arrived_since = sim._arrived_since
        #: arrival counts feed the rate telemetry; skipped when no planner listens
        self.count_arrivals = sim._telemetry
        self.on_done = on_done
        self.hops = [s.hop_s for s in sim.arrivals.sources]
        #: each request's hop to its gateway: measured samples resampled per request, else its source's hop_s
        self.request_hops = sim._request_hops
        # gateways see requests after their source's hop; with unequal hops that reorders them
        self._order = None
        if self.request_hops is not None:
            self._order = np.argsort(self.arrivals.arrival_s + self.request_hops, kind="stable")
        elif any(self.hops) and len(set(self.hops)) > 1:
            seen_s = self.arrivals.arrival_s + np.asarray(self.hops)[self.arrivals.source_index]
            self._order = np.argsort(seen_s, kind="stable")
        self._bar = None
        if progress:
            from tqdm import tqdm

            # disable=None: a bar on a terminal, silence in logs and CI
            self._bar = tqdm(total=self.count, unit="req", desc="simulating", mininterval=1.0, disable=None)

    def start(self) -> None:
        """Hand the environment the first arrival's time and the feed that takes it from there.

        A run that the bulk path can take (``sim.bulk_driver.BulkDriver``)
        takes it; ``sim.feed_path`` then says "bulk", else why not. A fleet
        of gateways that share nothing takes ``sim.fleet_bulk_driver``'s
        ("bulk: N gateways ...").
        """
        if self.count == 0:
            self.sim.feed_path = "per request: no arrivals"
            self.on_done()
            return
        reason = BulkDriver.unsupported(self.sim)
        self.sim.feed_path = "bulk" if reason is None else f"per request: {reason}"
        if reason is None:
            BulkDriver(self.sim, on_done=self.on_done, bar=self._bar).start()
            return
        if reason == "several gateways receive requests":  # a fleet: its gateways may share nothing
            split = FleetBulkDriver.unsupported(self.sim)
            if split is None:
                gateways = len({id(d) for d in self.drivers})
                self.sim.feed_path = f"bulk: {gateways} gateways that share nothing, each on its own"
                FleetBulkDriver(self.sim, on_done=self.on_done, bar=self._bar).start()
                return
            self.sim.feed_path = f"per request: several gateways receive requests, and {split}"
        replay = self._replay()
        self.env.feed(next(replay), replay.__next__)

    def _chunks(self):
        """(request ids, arrival times, source indices, hops) as Python lists, a chunk at a time, in gateway order."""
        arrivals = self.arrivals
        # each request's hop, a chunk at a time (a whole run's array would be 8 bytes a request: issue 23's fleets)
        per_source = np.asarray(self.hops, dtype=float)
        request_hops = self.request_hops

        def hops(chunk):
            return (request_hops[chunk] if request_hops is not None else per_source[arrivals.source_index[chunk]]).tolist()

        for start in range(0, self.count, _CHUNK):
            stop = min(start + _CHUNK, self.count)
            if self._order is None:
                ids = range(start, stop)
                chunk = slice(start, stop)
                yield ids, arrivals.arrival_s[chunk].tolist(), arrivals.source_index[chunk].tolist(), hops(chunk)
            else:
                order = self._order[start:stop]
                yield order.tolist(), arrivals.arrival_s[order].tolist(), arrivals.source_index[order].tolist(), hops(order)
            if self._bar is not None:
                self._bar.update(stop - self._bar.n)

    def _replay(self):
        """A generator: yields when the next request is due, hands it over when resumed at that time.

        The hot path of a run, one resumption per request: a generator keeps
        its locals between arrivals, where a method would reload a dozen
        attributes for each.
        """
        env, drivers = self.env, self.drivers
        sources = self.arrivals.sources
        names = [s.name for s in sources]
        sizes = [s.size_bytes for s in sources]
        slos = [s.slo_s for s in sources]
        # each source's scheduler and its driver's action table: the driver's ``handle``, inlined, and
        # the scheduler's ``handle_arrival`` (the driver's, which charges the harness's CPU on hosts) (no event object unless a planner reads it)
        handles = [d.handle_arrival for d in drivers]
        acts = [d._act for d in drivers]
        arrived_since = self.arrived_since if self.count_arrivals else None
        # positional ``make``: the keyword constructors cost a third of a run (policies/positional.py)
        make_request = Request.make
        for ids, times, source_indices, hops in self._chunks():
            for request_id, arrival_s, source, hop_s in zip(ids, times, source_indices, hops):
                due_s = arrival_s + hop_s
                now_s = env.now_s
                yield due_s if due_s > now_s else now_s
                if arrived_since is not None:
                    arrived_since[drivers[source].name] += 1
                request = make_request(request_id, names[source], arrival_s, sizes[source], arrival_s + slos[source])
                actions = handles[source](env.now_s, request)
                if actions:
                    act = acts[source]
                    for action in actions:
                        act[type(action)](action)
        if self._bar is not None:
            self._bar.close()
        self.on_done()
        yield math.inf


def request_hops(arrivals, seed: int) -> np.ndarray | None:
    """Each request's hop to its gateway when some source has measured ``hop_samples_s`` (else None).

    Drawn once per run, per source from a stream of its own under the run's
    seed; sources without samples keep their constant ``hop_s``.
    """
    sources = arrivals.sources
    if all(s.hop_samples_s is None for s in sources):
        return None
    hops = np.asarray([s.hop_s for s in sources], dtype=float)[arrivals.source_index]
    for index, source in enumerate(sources):
        if source.hop_samples_s is not None:
            mine = arrivals.source_index == index
            rng = np.random.default_rng(np.random.SeedSequence([int(seed), 0x1A6E57, index]))
            hops[mine] = EmpiricalDelay(samples_s=source.hop_samples_s).sample(int(mine.sum()), rng)
    return hops
