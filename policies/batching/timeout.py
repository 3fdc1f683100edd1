"""Timeout batching, as Ray Serve's ``@serve.batch`` and Triton's dynamic batcher."""

from __future__ import annotations

import math
from collections.abc import Sequence

from policies.batching.base import NOTHING, BatchingPolicy, Decision
from policies.batching.timeout_cuts import timeout_cuts
from spec.validation import ConfigError, check_int_at_least, check_non_negative

__all__ = ["TimeoutBatching"]


class TimeoutBatching(BatchingPolicy):
    """Dispatch when ``max_batch_size`` requests are queued, or ``max_wait_s``
    after the oldest queued request arrived, whichever comes first.

    ``max_wait_s`` is timed from the first queued request's arrival, as in
    Ray Serve's ``batch_wait_timeout_s`` and Triton's
    ``max_queue_delay_microseconds``. With ``preferred_batch_sizes`` (Triton),
    a timed-out queue is cut to the largest preferred size it can fill, and
    the rest waits on. ``max_queue`` (base class) rejects arrivals to a full
    queue. A plan's ``batch_size`` replaces ``max_batch_size``.

    ``max_inflight`` (default unbounded) stops forming batches while that many
    are running, so requests keep accumulating into larger batches, as
    Triton forms a batch only when a model instance is free; ``"executor"``
    sets it to the executor's parallelism (a server's ``slots``, a pool's
    ``max_instances``). While it holds, a request may wait past ``max_wait_s``.
    """

    def __init__(
        self,
        *,
        max_batch_size: int = 8,
        max_wait_s: float = 0.005,
        preferred_batch_sizes: Sequence[int] = (),
        max_queue: int | None = None,
        max_inflight: int | None = None,
    ):
        super().__init__(max_queue=max_queue)
        self.max_batch_size = check_int_at_least("batching.max_batch_size", max_batch_size, 1)
        self.max_wait_s = check_non_negative("batching.max_wait_s", max_wait_s)
        preferred = sorted({check_int_at_least("batching.preferred_batch_sizes", b, 1) for b in preferred_batch_sizes})
        if preferred and preferred[-1] > self.max_batch_size:
            raise ConfigError("batching.preferred_batch_sizes", preferred, f"sizes all <= max_batch_size={self.max_batch_size}")
        self.preferred_batch_sizes = tuple(preferred)
        self._waiting = NOTHING
        if max_inflight is None or max_inflight == "executor":
            self.max_inflight = max_inflight
        else:
            self.max_inflight = check_int_at_least("batching.max_inflight", max_inflight, 1)

    def bind(self, executor) -> None:
        super().bind(executor)
        if self.max_inflight == "executor":
            self.max_inflight = getattr(executor, "slots", None) or getattr(executor, "max_instances", None)

    def apply_plan(self, *, batch_size: int | None = None, memory_mb: int | None = None) -> None:
        super().apply_plan(memory_mb=memory_mb)
        if batch_size is not None:
            self.max_batch_size = check_int_at_least("plan.batch_size", batch_size, 1)

    @property
    def supports_bulk(self) -> bool:
        """Bulk when nothing but arrival times decides: no ``max_queue``, ``max_inflight`` or preferred sizes, a finite wait."""
        return (self.max_queue is None and self.max_inflight is None and not self.preferred_batch_sizes and math.isfinite(self.max_wait_s)
                and type(self).decide is TimeoutBatching.decide and self._bulk_hooks_intact())  # fmt: skip

    def bulk_cuts(self, arrival_s, until_s):
        if not self.supports_bulk:
            return None
        return timeout_cuts(arrival_s, self.max_batch_size, self.max_wait_s, until_s)

    def decide(self, now_s: float) -> Decision:
        queue = self.queue
        queued = len(queue)
        if not queued:
            return NOTHING
        limit = self.max_batch_size
        if queued < limit and self.max_inflight is None:
            # the common case: a partial batch waits for its oldest request's bound
            due_s = queue[0].arrival_s + self.max_wait_s
            if now_s < due_s:
                # the same answer for every arrival until the head leaves: reuse it (one per request otherwise)
                waiting = self._waiting
                if waiting.wake_at_s != due_s:
                    waiting = self._waiting = Decision((), due_s, ())
                return waiting
        slots = None if self.max_inflight is None else self.max_inflight - self.batches_in_flight
        sizes: list[int] = []
        # full batches go at once
        while queued >= limit and (slots is None or slots > 0):
            sizes.append(limit)
            queued -= limit
            if slots is not None:
                slots -= 1
        if not queued or (slots is not None and slots <= 0):
            return Decision(batches=tuple(sizes), wake_at_s=None if not queued else self._blocked_wake())
        oldest_s = queue[len(sizes) * limit].arrival_s if sizes else queue[0].arrival_s
        due_s = oldest_s + self.max_wait_s
        if now_s >= due_s:
            size = queued
            if self.preferred_batch_sizes:
                fitting = [b for b in self.preferred_batch_sizes if b <= queued]
                size = fitting[-1] if fitting else queued
            sizes.append(size)
            queued -= size
            if queued:
                # the remainder's own timer: its oldest request is now at the head
                next_oldest = queue[sum(sizes)].arrival_s
                return Decision(batches=tuple(sizes), wake_at_s=max(now_s, next_oldest + self.max_wait_s))
            return Decision(batches=tuple(sizes))
        return Decision(batches=tuple(sizes), wake_at_s=due_s)

    def _blocked_wake(self) -> float | None:
        # waiting on max_inflight: the next BatchFinished re-runs decide
        return None
