"""Adaptive batch size by additive increase, multiplicative decrease (Clipper)."""

from __future__ import annotations

import math

from policies.batching.base import NOTHING, BatchingPolicy, Decision
from spec.validation import ConfigError, check_int_at_least, check_positive

__all__ = ["AIMDBatching"]


class AIMDBatching(BatchingPolicy):
    """Clipper's adaptive batching (Crankshaw et al., NSDI 2017, section 4.3).

    The batch size grows by ``increase`` after every batch whose measured
    service time stayed within ``slo_s`` (the latency objective for one
    batch's execution) and is cut to ``decrease`` times its value after a
    batch that overran it, within [1, ``max_batch_size``]. Clipper found a
    small multiplicative back-off of 10 % worked best, hence ``decrease=0.9``;
    ``increase`` is 1 request per batch.

    Two refinements, both documented choices: the size only grows after a
    batch that filled the current size (a partial batch that ran fast says
    nothing about a larger one, like TCP's congestion-window validation), and
    a cut starts from the smaller of the current size and the overrunning
    batch's size. The size is kept as a real number; batches use its floor.

    A batch is dispatched when ``batch_size`` requests are queued, or when
    the oldest queued request has waited ``max_wait_s`` since its arrival.
    A plan's ``batch_size`` replaces ``max_batch_size`` (the current size is
    clipped to it). With ``max_inflight`` set, no batch is formed while that
    many are running, as in Clipper, where a batch is taken from the queue
    when the model container is free (``max_inflight=1``); the requests
    wait in the queue meanwhile, beyond ``max_wait_s`` if need be.

    Parameters: ``slo_s`` (seconds, > 0), ``max_batch_size`` (>= 1),
    ``initial_batch_size`` (>= 1, <= max_batch_size), ``increase`` (requests,
    > 0), ``decrease`` (factor in (0, 1)), ``max_wait_s`` (seconds, > 0),
    ``max_inflight`` (>= 1, or None for unbounded), ``max_queue`` (base class).
    """

    def __init__(
        self,
        *,
        slo_s: float = 0.1,
        max_batch_size: int = 64,
        initial_batch_size: int = 1,
        increase: float = 1.0,
        decrease: float = 0.9,
        max_wait_s: float = 0.01,
        max_inflight: int | None = None,
        max_queue: int | None = None,
    ):
        super().__init__(max_queue=max_queue)
        self.slo_s = check_positive("batching.slo_s", slo_s)
        self.max_batch_size = check_int_at_least("batching.max_batch_size", max_batch_size, 1)
        initial = check_int_at_least("batching.initial_batch_size", initial_batch_size, 1)
        if initial > self.max_batch_size:
            raise ConfigError("batching.initial_batch_size", initial, f"an integer in [1, max_batch_size={self.max_batch_size}]")
        self.increase = check_positive("batching.increase", increase)
        self.decrease = check_positive("batching.decrease", decrease)
        if self.decrease >= 1.0:
            raise ConfigError("batching.decrease", decrease, "a factor in (0, 1)")
        self.max_wait_s = check_positive("batching.max_wait_s", max_wait_s)
        self.max_inflight = None if max_inflight is None else check_int_at_least("batching.max_inflight", max_inflight, 1)
        self.size = float(initial)
        #: how many times the size was cut and grown
        self.cuts = 0
        self.increases = 0

    @property
    def batch_size(self) -> int:
        """The batch size in use now."""
        return max(1, min(self.max_batch_size, int(math.floor(self.size + 1e-9))))

    def observe_finished(self, now_s: float, size: int, service_s: float) -> None:
        if service_s > self.slo_s:
            self.size = max(1.0, min(self.size, float(size)) * self.decrease)
            self.cuts += 1
        elif size >= self.batch_size:
            self.size = min(float(self.max_batch_size), self.size + self.increase)
            self.increases += 1

    def apply_plan(self, *, batch_size: int | None = None, memory_mb: int | None = None) -> None:
        super().apply_plan(memory_mb=memory_mb)
        if batch_size is not None:
            self.max_batch_size = check_int_at_least("plan.batch_size", batch_size, 1)
            self.size = min(self.size, float(self.max_batch_size))

    def decide(self, now_s: float) -> Decision:
        queue = self.queue
        queued = len(queue)
        if not queued:
            return NOTHING
        slots = None if self.max_inflight is None else self.max_inflight - self.batches_in_flight
        if slots is not None and slots <= 0:
            return NOTHING  # the next finished batch calls decide again
        size = self.batch_size
        full = queued // size
        if slots is not None:
            full = min(full, slots)
            slots -= full
        sizes = [size] * full
        rest = queued - full * size
        if not rest or (slots is not None and slots <= 0):
            return Decision(batches=tuple(sizes))
        due_s = queue[full * size].arrival_s + self.max_wait_s
        if now_s >= due_s:
            sizes.append(min(rest, size))
            return Decision(batches=tuple(sizes))
        return Decision(batches=tuple(sizes), wake_at_s=due_s)
