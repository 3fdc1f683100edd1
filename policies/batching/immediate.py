"""No batching: every request is dispatched alone, at once."""

from __future__ import annotations

from policies.batching_base import NOTHING, BatchingPolicy, Decision

__all__ = ["NoBatching"]


class NoBatching(BatchingPolicy):
    """Dispatch each request as a batch of one the moment it is queued.

    The baseline every batching policy is compared against. Requests never
    wait in the scheduler; they queue at the executor instead.
    """

    def decide(self, now_s: float) -> Decision:
        queued = len(self.queue)
        if not queued:
            return NOTHING
        return Decision(batches=(1,) * queued)
