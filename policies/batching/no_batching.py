"""No batching: every request is dispatched alone, at once."""

from __future__ import annotations

import numpy as np

from policies.batching.base import NOTHING, BatchingPolicy, Decision
from spec.validation import check_int_at_least

__all__ = ["NoBatching"]


class NoBatching(BatchingPolicy):
    """Dispatch each request as a batch of one the moment it is queued.

    The baseline every batching policy is compared against. By default
    requests never wait in the scheduler; they queue at the executor instead.
    ``max_inflight`` holds them in the scheduler's queue (bounded by
    ``max_queue``, which rejects the excess) while that many are running.
    """

    def __init__(self, *, max_queue: int | None = None, max_inflight: int | None = None):
        super().__init__(max_queue=max_queue)
        self.max_inflight = None if max_inflight is None else check_int_at_least("batching.max_inflight", max_inflight, 1)

    @property
    def supports_bulk(self) -> bool:
        """Bulk without ``max_queue`` or ``max_inflight``: every request leaves alone as it arrives."""
        return self.max_queue is None and self.max_inflight is None and type(self).decide is NoBatching.decide and self._bulk_hooks_intact()

    def bulk_cuts(self, arrival_s, until_s):
        if not self.supports_bulk:
            return None
        return np.arange(1, len(arrival_s) + 1, dtype=np.int64), np.array(arrival_s, dtype=np.float64)

    def decide(self, now_s: float) -> Decision:
        queued = len(self.queue)
        if not queued:
            return NOTHING
        if self.max_inflight is not None:
            queued = min(queued, self.max_inflight - self.batches_in_flight)
            if queued <= 0:
                return NOTHING  # the next BatchFinished re-runs decide
        return Decision(batches=(1,) * queued)
