"""A batch on its way through the simulated world."""

from __future__ import annotations

__all__ = ["SimBatch"]


class SimBatch:
    """One dispatched batch: who sent it, where it runs, and its timestamps.

    ``batch_id`` is global (the recorder's); ``local_id`` is the id the
    sending gateway's scheduler gave it.
    """

    __slots__ = (
        "batch_id", "local_id", "gateway", "executor", "size", "size_bytes", "memory_mb",
        "dispatched_s", "arrived_s", "start_s", "end_s", "cold_start_s", "cost", "return_delay_s",
    )  # fmt: skip

    def __init__(self, batch_id, local_id, gateway, executor, size, size_bytes, memory_mb, dispatched_s, return_delay_s):
        self.batch_id = batch_id
        self.local_id = local_id
        self.gateway = gateway
        self.executor = executor
        self.size = size
        self.size_bytes = size_bytes
        self.memory_mb = memory_mb
        self.dispatched_s = dispatched_s
        self.arrived_s = dispatched_s
        self.start_s = dispatched_s
        self.end_s = dispatched_s
        self.cold_start_s = 0.0
        self.cost = 0.0
        self.return_delay_s = return_delay_s
