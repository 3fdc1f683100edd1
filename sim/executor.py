"""Executors in the simulation: the shared base of servers and serverless pools."""

from __future__ import annotations

import abc
from collections.abc import Callable

import numpy as np
import simpy

from sim.batch import SimBatch
from spec.noise import BlockSampler, NoNoise
from spec.topology import ExecutorSpec

__all__ = ["SimExecutor"]


class SimExecutor(abc.ABC):
    """Runs batches and reports each one finished to ``on_done(batch)``.

    Service time is the profile's mean for the batch size (and memory size)
    times a noise factor. A subclass fills one hook, ``submit``, which decides
    when and where a batch starts, and calls ``run`` to start it.
    """

    def __init__(
        self,
        env: simpy.Environment,
        spec: ExecutorSpec,
        rng: np.random.Generator,
        on_done: Callable[[SimBatch], None],
        on_failed: Callable[[SimBatch], None] | None = None,
    ):
        self.env = env
        self.spec = spec
        self.on_done = on_done
        self.on_failed = on_failed
        self.rng = rng
        self._noise = None if isinstance(spec.noise, NoNoise) else BlockSampler(spec.noise.factors, rng)
        self._means: dict[tuple[int, int | None], float] = {}
        self.failure_probability = getattr(spec, "failure_probability", 0.0)
        self._uniform = BlockSampler(lambda n, g: g.random(n), rng) if self.failure_probability > 0 else None
        self.batches_failed = 0
        self.overhead_s = getattr(spec, "overhead_s", 0.0)
        self.batches_run = 0

    def service_s(self, size: int, memory_mb: int | None) -> float:
        """Draw one service time for a batch of ``size`` at ``memory_mb``."""
        key = (size, memory_mb)
        mean_s = self._means.get(key)
        if mean_s is None:
            mean_s = self._means[key] = self.spec.profile.mean_s(size, memory_mb)
        return mean_s if self._noise is None else mean_s * self._noise()

    @abc.abstractmethod
    def submit(self, batch: SimBatch) -> None:
        """A batch has arrived at the executor."""

    def run(self, batch: SimBatch, cold_start_s: float = 0.0) -> None:
        """Start ``batch`` now (after ``cold_start_s``); finish it after its service time."""
        env = self.env
        service_s = self.service_s(batch.size, batch.memory_mb)
        batch.cold_start_s = cold_start_s
        batch.start_s = env.now + cold_start_s
        batch.end_s = batch.start_s + service_s
        if self._uniform is not None and self._uniform() < self.failure_probability:
            # the instance dies part-way through its cold start and service
            fail_after_s = (cold_start_s + service_s) * self._uniform()
            batch.end_s = env.now + fail_after_s
            env.call_in(fail_after_s, self._failed, batch)
            return
        env.call_in(cold_start_s + service_s, self._finished, batch)
        if self.overhead_s > 0:
            # the result leaves at the end of service; the slot stays busy a little longer
            env.call_in(cold_start_s + service_s + self.overhead_s, self._freed, batch)

    def _finished(self, event) -> None:
        batch: SimBatch = event.value
        self.batches_run += 1
        duration_s = batch.end_s - batch.start_s
        batch.cost = self.batch_cost(batch, duration_s)
        if self.overhead_s <= 0:
            self.release(batch)
        self.on_done(batch)

    def _freed(self, event) -> None:
        self.release(event.value)

    def _failed(self, event) -> None:
        batch: SimBatch = event.value
        self.batches_failed += 1
        started_s = min(batch.start_s, batch.end_s)
        batch.cost = self.batch_cost(batch, max(0.0, batch.end_s - started_s))
        self.release(batch, failed=True)
        self.on_failed(batch)

    def batch_cost(self, batch: SimBatch, duration_s: float) -> float:
        """What one batch costs (pricing hook)."""
        return self.spec.pricing.batch_cost(duration_s=duration_s, memory_mb=batch.memory_mb)

    @abc.abstractmethod
    def release(self, batch: SimBatch, failed: bool = False) -> None:
        """``batch`` has left the executor (``failed``: its instance died): free its place."""
