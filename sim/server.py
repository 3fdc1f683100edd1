"""Slot-based servers: edge devices and cloud servers."""

from __future__ import annotations

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

    def submit(self, batch: SimBatch) -> None:
        if self.queue.submit(batch) is not None:
            self.run(batch)

    def release(self, batch: SimBatch, failed: bool = False) -> None:
        nxt = self.queue.release()
        if nxt is not None:
            self.run(nxt)
