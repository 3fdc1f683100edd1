"""Deadline-aware batching: wait as long as the deadlines allow, no longer."""

from __future__ import annotations

import math

from policies.batching.base import NOTHING, BatchingPolicy, Decision
from policies.events import Request
from spec.links import MB
from spec.records import DropReason
from spec.validation import ConfigError, check_int_at_least, check_non_negative, check_positive

__all__ = ["DeadlineAwareBatching"]


class DeadlineAwareBatching(BatchingPolicy):
    """Grow a batch until waiting longer would make a queued request miss its deadline.

    In the spirit of deadline-aware batching in Clockwork (Gujarati et al.,
    OSDI 2020) and Nexus (Shen et al., SOSP 2019), with the predicted
    completion time taken from the bound executor's latency profile:
    ``predict(b) = executor.mean_service_s(b, memory_mb)``, plus, for a remote
    executor when ``uplink_MBps`` is set, the batch's bytes over
    ``uplink_MBps`` (MB = 2**20 bytes) plus ``uplink_delay_s``.

    With ``n`` requests queued (fewer than ``max_batch_size``), the queue is
    dispatched as soon as ``now_s >= deadline_s - predict(n) - safety_s`` for
    the queued request with the least slack; a request without a deadline
    (``deadline_s`` infinite) instead contributes ``arrival_s + max_wait_s``.
    ``max_batch_size`` queued requests go at once. A plan's ``batch_size``
    replaces ``max_batch_size``. The prediction ignores queueing at the
    executor (batches already running).

    With ``shed=True``, a queued request that would miss its deadline even
    if dispatched alone right now (``now_s + predict(1) > deadline_s``) is
    dropped with reason ``deadline`` instead of wasting executor time.

    Parameters: ``max_batch_size`` (>= 1), ``safety_s`` (seconds, >= 0),
    ``shed`` (bool), ``max_wait_s`` (seconds, > 0; for requests without a
    deadline), ``uplink_MBps`` (MB/s > 0, or None to ignore transfer),
    ``uplink_delay_s`` (seconds, >= 0), ``max_queue`` (base class).
    """

    def __init__(
        self,
        *,
        max_batch_size: int = 32,
        safety_s: float = 0.0,
        shed: bool = False,
        max_wait_s: float = 0.05,
        uplink_MBps: float | None = None,
        uplink_delay_s: float = 0.0,
        max_queue: int | None = None,
    ):
        super().__init__(max_queue=max_queue)
        self.max_batch_size = check_int_at_least("batching.max_batch_size", max_batch_size, 1)
        self.safety_s = check_non_negative("batching.safety_s", safety_s)
        if not isinstance(shed, bool):
            raise ConfigError("batching.shed", shed, "true or false")
        self.shed = shed
        self.max_wait_s = check_positive("batching.max_wait_s", max_wait_s)
        self.uplink_MBps = None if uplink_MBps is None else check_positive("batching.uplink_MBps", uplink_MBps)
        self.uplink_delay_s = check_non_negative("batching.uplink_delay_s", uplink_delay_s)
        self.shed_count = 0

    def apply_plan(self, *, batch_size: int | None = None, memory_mb: int | None = None) -> None:
        super().apply_plan(memory_mb=memory_mb)
        if batch_size is not None:
            self.max_batch_size = check_int_at_least("plan.batch_size", batch_size, 1)

    def predict_s(self, batch_size: int, size_bytes: float = 0.0) -> float:
        """Predicted time from dispatch to the end of a batch of ``batch_size``
        requests totalling ``size_bytes``: transfer (when modelled) plus service."""
        executor = self.executor
        service_s = executor.mean_service_s(batch_size, self.memory_mb)
        if self.uplink_MBps is not None and executor.remote:
            service_s += size_bytes / (self.uplink_MBps * MB) + self.uplink_delay_s
        return service_s

    def _due_s(self, requests: list[Request]) -> float:
        """Latest dispatch time that keeps every request of ``requests`` (one batch) in time."""
        predicted_s = self.predict_s(len(requests), float(sum(r.size_bytes for r in requests)))
        due_s = math.inf
        for r in requests:
            if math.isinf(r.deadline_s):
                due = r.arrival_s + self.max_wait_s
            else:
                due = r.deadline_s - predicted_s - self.safety_s
            if due < due_s:
                due_s = due
        return due_s

    def decide(self, now_s: float) -> Decision:
        queue = self.queue
        if not queue:
            return NOTHING
        drops: tuple[tuple[Request, str], ...] = ()
        if self.shed:
            late = [r for r in queue if now_s + self.predict_s(1, r.size_bytes) > r.deadline_s]
            if late:
                self.shed_count += len(late)
                drops = tuple((r, DropReason.DEADLINE) for r in late)
                late_ids = {id(r) for r in late}
                remaining = [r for r in queue if id(r) not in late_ids]
            else:
                remaining = list(queue)
        else:
            remaining = list(queue)
        queued = len(remaining)
        if not queued:
            return Decision(drops=drops)
        size = self.max_batch_size
        full = queued // size
        sizes = [size] * full
        rest = remaining[full * size :]
        if not rest:
            return Decision(batches=tuple(sizes), drops=drops)
        due_s = self._due_s(rest)
        if now_s >= due_s:
            sizes.append(len(rest))
            return Decision(batches=tuple(sizes), drops=drops)
        return Decision(batches=tuple(sizes), wake_at_s=due_s, drops=drops)
