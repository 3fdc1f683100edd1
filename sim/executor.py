"""Executors in the simulation: the shared base of servers and serverless pools."""

from __future__ import annotations

import abc
import math
from collections.abc import Callable

import numpy as np
import simpy

from sim.batch import SimBatch
from spec.noise import BlockSampler, EmpiricalDelay, NoNoise
from spec.pricing import FreePricing, HourlyPricing
from spec.topology import ExecutorSpec

__all__ = ["SimExecutor", "resampler"]


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
        #: measured overheads resampled per batch (``spec.overhead_samples_s``), on a stream of their own
        self._overheads = resampler(spec.overhead_samples_s, rng)
        #: the host whose cores this executor's batches share (``sim.host``); None: unconstrained
        self.host = None
        self.batch_cores = 1.0
        #: the worker process's CPU outside the model (``spec.host_spec.RoleCpu``), run during the overhead
        self.worker_cpu = None
        #: extra service after a slot idled (``spec.warmup.WarmupTable``), and when each free slot was freed (latest last)
        self.warmup = None
        self._freed_at_s: list[float] = []

    def warm_up(self, table) -> None:
        """Add ``table``'s extra service time to each batch after its slot's idle time (None: none)."""
        self.warmup = table
        self._freed_at_s = [-math.inf] * int(getattr(self.spec, "slots", 1) or 1)  # never used: cold

    def service_s(self, size: int, memory_mb: int | None) -> float:
        """Draw one service time for a batch of ``size`` at ``memory_mb``."""
        key = (size, memory_mb)
        mean_s = self._means.get(key)
        if mean_s is None:
            mean_s = self._means[key] = self.spec.profile.mean_s(size, memory_mb)
        return mean_s if self._noise is None else mean_s * self._noise()

    def service_bulk(self, sizes: np.ndarray, memory_mb: int | None) -> np.ndarray:
        """``service_s`` for batches of ``sizes`` in that order: the same means, the same noise draws, in the same order."""
        sizes = np.asarray(sizes)
        if not len(sizes):
            return np.zeros(0)
        means = np.zeros(int(sizes.max()) + 1)
        for size in np.unique(sizes).tolist():
            key = (size, memory_mb)
            mean_s = self._means.get(key)
            if mean_s is None:
                mean_s = self._means[key] = self.spec.profile.mean_s(size, memory_mb)
            means[size] = mean_s
        service_s = means[sizes]
        if self._noise is not None:
            noise = self._noise
            service_s *= np.array([noise() for _ in range(len(sizes))])  # one product per batch, as service_s
        return service_s

    def batch_costs(self, duration_s: np.ndarray, memory_mb: int | None) -> np.ndarray:
        """``batch_cost`` of batches that held the executor ``duration_s`` each (the pricings of servers, as arrays)."""
        pricing = self.spec.pricing
        if type(pricing) is FreePricing:
            return np.zeros(len(duration_s))
        if type(pricing) is HourlyPricing:
            return pricing.price_per_hour * duration_s / 3600.0  # the same operations, in the same order, per element
        return np.array([pricing.batch_cost(duration_s=d, memory_mb=memory_mb) for d in duration_s.tolist()])

    @abc.abstractmethod
    def submit(self, batch: SimBatch) -> None:
        """A batch has arrived at the executor."""

    def run(self, batch: SimBatch, cold_start_s: float = 0.0) -> None:
        """Start ``batch`` now (after ``cold_start_s``); finish it after its service time."""
        if self.host is not None:
            self._run_on_host(batch, cold_start_s)
            return
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
        if self._overheads is not None:
            env.call_in(cold_start_s + service_s + self._overheads(), self._freed, batch)
        elif self.overhead_s > 0:
            # the result leaves at the end of service; the slot stays busy a little longer
            env.call_in(cold_start_s + service_s + self.overhead_s, self._freed, batch)

    def _run_on_host(self, batch: SimBatch, cold_start_s: float) -> None:
        """Start ``batch`` now (its cold start, if any, is over) as CPU work on the host's shared cores.

        The profile's service time is the batch's duration alone on its
        ``batch_cores`` cores: that many times as many CPU-seconds, done at
        the rate the host gives it. A failing batch dies after a drawn share
        of that work.
        """
        service_s = self.service_s(batch.size, batch.memory_mb)
        if self.warmup is not None:
            # the warmest free slot takes it (the one freed last): its idle time decides the warm-up
            freed_s = self._freed_at_s.pop() if self._freed_at_s else -math.inf
            service_s += self.warmup.extra_for(batch.size, self.env.now_s - freed_s)
        batch.cold_start_s = cold_start_s
        batch.start_s = self.env.now_s
        failing = self._uniform is not None and self._uniform() < self.failure_probability
        share = self._uniform() if failing else 1.0

        def done(now_s: float) -> None:
            batch.end_s = now_s
            if failing:
                self._failed(_Done(batch))
                return
            self._finished(_Done(batch))
            overhead_s = self._overheads() if self._overheads is not None else self.overhead_s
            if self.worker_cpu is not None:
                self._overhead_on_host(batch, overhead_s)
            elif self._overheads is not None or overhead_s > 0:
                self.env.call_in(overhead_s, self._freed, batch)

        self.host.run(("batch", self.spec.name, batch.batch_id), cpu_s=service_s * share * self.batch_cores, cores=self.batch_cores, on_done=done)

    def _overhead_on_host(self, batch: SimBatch, overhead_s: float) -> None:
        """The worker's own CPU for ``batch`` (at one core, sharing the host), then the rest of the overhead as a delay."""
        cpu_s = self.worker_cpu.cpu_s_per_batch + self.worker_cpu.cpu_s_per_request * batch.size
        rest_s = max(0.0, overhead_s - cpu_s)
        self.host.run(("overhead", self.spec.name, batch.batch_id), cpu_s=cpu_s,
                      on_done=lambda now_s: self.env.call_in(rest_s, self._freed, batch))  # fmt: skip

    def _finished(self, event) -> None:
        batch: SimBatch = event.value
        self.batches_run += 1
        duration_s = batch.end_s - batch.start_s
        batch.cost = self.batch_cost(batch, duration_s)
        if self.overhead_s <= 0 and self._overheads is None and self.worker_cpu is None:
            self._slot_freed()
            self.release(batch)
        self.on_done(batch)

    def _freed(self, event) -> None:
        self._slot_freed()
        self.release(event.value)

    def _slot_freed(self) -> None:
        if self.warmup is not None:
            self._freed_at_s.append(self.env.now_s)

    def _failed(self, event) -> None:
        batch: SimBatch = event.value
        self.batches_failed += 1
        started_s = min(batch.start_s, batch.end_s)
        batch.cost = self.batch_cost(batch, max(0.0, batch.end_s - started_s))
        self._slot_freed()
        self.release(batch, failed=True)
        self.on_failed(batch)

    def batch_cost(self, batch: SimBatch, duration_s: float) -> float:
        """What one batch costs (pricing hook)."""
        return self.spec.pricing.batch_cost(duration_s=duration_s, memory_mb=batch.memory_mb)

    @abc.abstractmethod
    def release(self, batch: SimBatch, failed: bool = False) -> None:
        """``batch`` has left the executor (``failed``: its instance died): free its place."""


class _Done:
    """What ``_finished`` and ``_failed`` read of a scheduled call: its ``value``."""

    __slots__ = ("value",)

    def __init__(self, value):
        self.value = value


def resampler(samples, rng: np.random.Generator) -> BlockSampler | None:
    """Draws from measured ``samples`` on a stream spawned from ``rng`` (None: no samples)."""
    if samples is None:
        return None
    return BlockSampler(EmpiricalDelay(samples_s=samples).sample, rng.spawn(1)[0])
