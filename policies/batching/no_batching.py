"""No batching: every request is dispatched alone, at once."""

from __future__ import annotations

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

    def decide(self, now_s: float) -> Decision:
        queued = len(self.queue)
        if not queued:
            return NOTHING
        if self.max_inflight is not None:
            queued = min(queued, self.max_inflight - self.batches_in_flight)
            if queued <= 0:
                return NOTHING  # the next BatchFinished re-runs decide
        return Decision(batches=(1,) * queued)
