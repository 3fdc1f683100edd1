"""Slot-based servers: edge devices and cloud servers."""

from __future__ import annotations

from collections import deque

from sim.batch import SimBatch
from sim.executor import SimExecutor

__all__ = ["SlotServer"]


class SlotServer(SimExecutor):
    """A server running up to ``spec.slots`` batches at once; the rest wait in FIFO order.

    One slot is the M/G/1 server of queueing theory; ``slots=c`` is M/G/c.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.slots = self.spec.slots
        self.busy = 0
        self.waiting: deque[SimBatch] = deque()

    def submit(self, batch: SimBatch) -> None:
        if self.busy < self.slots:
            self.busy += 1
            self.run(batch)
        else:
            self.waiting.append(batch)

    def release(self, batch: SimBatch, failed: bool = False) -> None:
        if self.waiting:
            self.run(self.waiting.popleft())
        else:
            self.busy -= 1

    def standing_cost(self, span_s: float) -> float:
        # paid for every slot over the whole span; batches already carry their busy share
        whole = self.spec.pricing.standing_cost(span_s=span_s, units=self.slots)
        busy = self.spec.pricing.standing_cost(span_s=self.busy_s, units=1)
        return max(0.0, whole - busy)
