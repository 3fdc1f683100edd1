"""Fixed-size batching with a safety bound on the wait."""

from __future__ import annotations

import math

from policies.batching.base import NOTHING, BatchingPolicy, Decision
from policies.batching.timeout_cuts import timeout_cuts
from spec.validation import check_int_at_least, check_positive

__all__ = ["FixedBatching"]


class FixedBatching(BatchingPolicy):
    """Wait until ``batch_size`` requests are queued, then dispatch them as one batch.

    The serverless-edge-batching seed's planner assumes this policy: a batch
    of exactly the planned size. ``max_wait_s`` is a safety bound, not a
    tuning knob: a partial batch whose oldest request has waited that long
    (from its ``arrival_s``) is dispatched as it is, so a lull in arrivals
    never strands requests. A plan's ``batch_size`` replaces ``batch_size``.

    Parameters: ``batch_size`` (requests per batch, >= 1), ``max_wait_s``
    (seconds, > 0, finite), ``max_queue`` (base class: reject arrivals to a
    full queue; None for unbounded).
    """

    def __init__(self, *, batch_size: int = 8, max_wait_s: float = 1.0, max_queue: int | None = None):
        super().__init__(max_queue=max_queue)
        self.batch_size = check_int_at_least("batching.batch_size", batch_size, 1)
        self.max_wait_s = check_positive("batching.max_wait_s", max_wait_s)

    def apply_plan(self, *, batch_size: int | None = None, memory_mb: int | None = None) -> None:
        super().apply_plan(memory_mb=memory_mb)
        if batch_size is not None:
            self.batch_size = check_int_at_least("plan.batch_size", batch_size, 1)

    @property
    def supports_bulk(self) -> bool:
        """Bulk without ``max_queue``: the batches are timeout batching's, ``batch_size`` or ``max_wait_s`` after the oldest."""
        return self.max_queue is None and math.isfinite(self.max_wait_s) and type(self).decide is FixedBatching.decide and self._bulk_hooks_intact()

    def bulk_cuts(self, arrival_s, until_s):
        if not self.supports_bulk:
            return None
        # one arrival at a time, a queue of batch_size leaves at once: the same cuts as timeout batching
        return timeout_cuts(arrival_s, self.batch_size, self.max_wait_s, until_s)

    def decide(self, now_s: float) -> Decision:
        queue = self.queue
        queued = len(queue)
        if not queued:
            return NOTHING
        size = self.batch_size
        full = queued // size
        sizes = [size] * full
        rest = queued - full * size
        if not rest:
            return Decision(batches=tuple(sizes))
        due_s = queue[full * size].arrival_s + self.max_wait_s
        if now_s >= due_s:
            sizes.append(rest)
            return Decision(batches=tuple(sizes))
        return Decision(batches=tuple(sizes), wake_at_s=due_s)
