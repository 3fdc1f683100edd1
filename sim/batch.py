"""A batch on its way through the simulated world."""

from __future__ import annotations

__all__ = ["SimBatch"]


class SimBatch:
    """One dispatched batch: who sent it, where it runs, and its timestamps.

    ``batch_id`` is global (the recorder's); ``local_id`` is the id the
    sending gateway's scheduler gave it. ``arrived_s`` is when it came off
    its link (when sent, for a local executor); the hops outside the link
    (``hop_there_s``, ``hop_back_s``) are recorded apart (``spec.records``).
    """

    __slots__ = (
        "batch_id", "local_id", "gateway", "executor", "size", "size_bytes", "memory_mb",
        "dispatched_s", "arrived_s", "start_s", "end_s", "cold_start_s", "cost", "return_delay_s", "hop_there_s", "hop_back_s",
    )  # fmt: skip

    def __init__(self, batch_id, local_id, gateway, executor, size, size_bytes, memory_mb, dispatched_s, return_delay_s, hop_back_s=0.0):
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
        self.return_delay_s = return_delay_s  # the link's delay back plus hop_back_s
        self.hop_there_s = 0.0  # the message hop to the executor after any link
        self.hop_back_s = hop_back_s  # the message hop back, before any link
