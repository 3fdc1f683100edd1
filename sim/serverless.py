"""Serverless pools: instances that start cold, stay warm a while, and scale to zero."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

from sim.batch import SimBatch
from sim.executor import SimExecutor
from spec.noise import BlockSampler

__all__ = ["ServerlessPool", "Instance"]


class Instance:
    """One function instance with a fixed memory size."""

    __slots__ = ("memory_mb", "idle_since_s", "generation", "alive")

    def __init__(self, memory_mb: int):
        self.memory_mb = memory_mb
        self.idle_since_s = 0.0
        self.generation = 0  # bumped when reused, so a stale expiry timer does nothing
        self.alive = True


class ServerlessPool(SimExecutor):
    """A pool of function instances, as AWS Lambda runs them.

    Each instance runs one batch at a time. A batch takes a warm idle
    instance of its memory size (the most recently used one, as Lambda
    does), else starts a new instance (cold start drawn from
    ``spec.cold_start``), else waits in FIFO order until an instance frees up.
    Instances have a fixed memory size; when the pool is at
    ``max_instances``, an idle instance of another size is reclaimed to make
    room. An idle instance is reclaimed after ``keep_alive_s`` (scale to
    zero). ``on_instances(count)`` is told whenever the number of warm
    (started) instances changes.
    """

    def __init__(self, *args, on_instances: Callable[[str, float, int], None] | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        spec = self.spec
        self.keep_alive_s = spec.keep_alive_s
        self.max_instances = spec.max_instances
        self._cold = None if spec.cold_start is None else BlockSampler(spec.cold_start.sample, self.rng)
        self.idle: dict[int, list[Instance]] = {}
        self.instances = 0  # alive: starting, busy or idle
        self.warm = 0  # started: busy or idle
        self.waiting: deque[SimBatch] = deque()
        self.cold_starts = 0
        self._running: dict[int, Instance] = {}
        self._on_instances = on_instances

    def _memory(self, batch: SimBatch) -> int:
        if batch.memory_mb is None:
            batch.memory_mb = self.spec.memory_mb
        return batch.memory_mb

    def submit(self, batch: SimBatch) -> None:
        memory_mb = self._memory(batch)
        idle = self.idle.get(memory_mb)
        if idle:
            self._run_warm(idle.pop(), batch)
        elif self.instances < self.max_instances:
            self._run_cold(batch)
        elif self._reclaim_other(memory_mb):
            self._run_cold(batch)
        else:
            self.waiting.append(batch)

    def _run_warm(self, instance: Instance, batch: SimBatch) -> None:
        instance.generation += 1
        self._running[batch.batch_id] = instance
        self.run(batch)

    def _run_cold(self, batch: SimBatch) -> None:
        instance = Instance(batch.memory_mb)
        self.instances += 1
        self.cold_starts += 1
        self._running[batch.batch_id] = instance
        cold_s = 0.0 if self._cold is None else self._cold()
        # the instance counts as warm once its cold start is over (scheduled
        # first, so it is warm before a zero-length batch can end)
        event = self.env.timeout(cold_s, instance)
        event.callbacks.append(self._started)
        self.run(batch, cold_start_s=cold_s)

    def _started(self, event) -> None:
        if event._value.alive:
            self._set_warm(self.warm + 1)

    def _reclaim_other(self, memory_mb: int) -> bool:
        for size, idle in self.idle.items():
            if size != memory_mb and idle:
                self._retire(idle.pop(0))  # the least recently used
                return True
        return False

    def _retire(self, instance: Instance) -> None:
        instance.alive = False
        self.instances -= 1
        self._set_warm(self.warm - 1)

    def _set_warm(self, count: int) -> None:
        self.warm = count
        if self._on_instances is not None:
            self._on_instances(self.spec.name, self.env.now, count)

    def batch_cost(self, batch: SimBatch, duration_s: float) -> float:
        pricing = self.spec.pricing
        if getattr(pricing, "bill_cold_start", False):
            duration_s += batch.cold_start_s
        return pricing.batch_cost(duration_s=duration_s, memory_mb=batch.memory_mb)

    def release(self, batch: SimBatch, failed: bool = False) -> None:
        instance = self._running.pop(batch.batch_id)
        if failed:
            # a crashed instance is gone; a waiting batch gets a fresh one
            if instance.alive and batch.cold_start_s and batch.end_s < batch.start_s:
                instance.alive = False  # died in its cold start: never became warm
                self.instances -= 1
            else:
                self._retire(instance)
            if self.waiting:
                self._run_cold(self.waiting.popleft())
            return
        while self.waiting:
            nxt = self.waiting.popleft()
            if self._memory(nxt) == instance.memory_mb:
                self._run_warm(instance, nxt)
                return
            # a different memory size cannot reuse this instance: replace it
            self._retire(instance)
            self._run_cold(nxt)
            return
        now_s = self.env.now
        if self.keep_alive_s <= 0:
            self._retire(instance)
            return
        instance.generation += 1
        instance.idle_since_s = now_s
        self.idle.setdefault(instance.memory_mb, []).append(instance)
        event = self.env.timeout(self.keep_alive_s, (instance, instance.generation))
        event.callbacks.append(self._expire)

    def _expire(self, event) -> None:
        instance, generation = event._value
        if instance.alive and instance.generation == generation:
            self.idle[instance.memory_mb].remove(instance)
            self._retire(instance)
