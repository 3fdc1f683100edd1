"""Slot-based servers: edge devices and cloud servers."""

from __future__ import annotations

from heapq import heappop, heappush

import numpy as np

from sim.batch import SimBatch
from sim.executor import SimExecutor
from spec.slots import Slots

__all__ = ["SlotServer"]


class SlotServer(SimExecutor):
    """A server running up to ``spec.slots`` batches at once; the rest wait in FIFO order.

    One slot is the M/G/1 server of queueing theory; ``slots=c`` is M/G/c.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.slots = self.spec.slots
        self.queue: Slots[SimBatch] = Slots(self.slots)
        #: when each slot is next free, for the bulk path (``run_bulk``)
        self._free_at_s = [-float("inf")] * self.slots

    def submit(self, batch: SimBatch) -> None:
        if self.queue.submit(batch) is not None:
            self.run(batch)

    def release(self, batch: SimBatch, failed: bool = False) -> None:
        nxt = self.queue.release()
        if nxt is not None:
            self.run(nxt)

    def run_bulk(self, dispatched_s: np.ndarray, sizes: np.ndarray, memory_mb: int | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Serve batches that arrive at ``dispatched_s`` (nondecreasing), first in first out: ``(start_s, end_s, cost)``.

        The bulk path's form of ``submit`` and ``release`` for a server whose
        batches need nothing but their service (no overhead, host, failure):
        a batch starts when it arrives or when the earliest slot frees,
        whichever is later, and ends its service time later, the same sums
        as the scheduled calls make (``run``). Service times are drawn in
        start order, as there.
        """
        service_s = self.service_bulk(sizes, memory_mb).tolist()
        starts: list[float] = []
        ends: list[float] = []
        free = self._free_at_s
        if self.slots == 1:
            free_s = free[0]
            for at_s, took_s in zip(dispatched_s.tolist(), service_s):
                start_s = free_s if free_s > at_s else at_s
                free_s = start_s + took_s
                starts.append(start_s)
                ends.append(free_s)
            free[0] = free_s
        else:
            for at_s, took_s in zip(dispatched_s.tolist(), service_s):
                free_s = heappop(free)
                start_s = free_s if free_s > at_s else at_s
                heappush(free, start_s + took_s)
                starts.append(start_s)
                ends.append(start_s + took_s)
        self.batches_run += len(starts)
        start, end = np.array(starts), np.array(ends)
        return start, end, self.batch_costs(end - start, memory_mb)

    @property
    def free_at_s(self) -> list[float]:
        """When each slot is next free on the bulk path (a copy; ``served_bulk`` sets them)."""
        return list(self._free_at_s)

    def served_bulk(self, free_at_s: list[float], batches: int) -> None:
        """``batches`` more of this server's were served as ``run_bulk`` serves them, by a driver that serves many
        servers at once (``sim.fleet_service``); its slots are next free at ``free_at_s``."""
        if len(free_at_s) != self.slots or batches < 0:
            raise ValueError(f"served_bulk: {len(free_at_s)} free times for {self.slots} slots, {batches} batches")
        self._free_at_s = sorted(free_at_s)  # sorted: a heap, as run_bulk keeps it
        self.batches_run += batches
