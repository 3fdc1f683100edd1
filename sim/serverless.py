"""Serverless pools: instances that start cold, stay warm a while, and scale to zero."""

from __future__ import annotations

from collections.abc import Callable

from sim.batch import SimBatch
from sim.executor import SimExecutor
from spec.instance_pool import ExpireAt, InstancePool, RunOnInstance, StartInstance, WarmCountChanged
from spec.noise import BlockSampler

__all__ = ["ServerlessPool"]


class ServerlessPool(SimExecutor):
    """A pool of function instances, as AWS Lambda runs them, on the SimPy clock.

    The decisions (warm reuse, cold starts, reclaiming at ``max_instances``,
    FIFO waiting, keep-alive and scale to zero, crashes, billing) are
    ``spec.instance_pool.InstancePool``'s; this driver draws each cold start
    from ``spec.cold_start``, runs batches, and turns the model's timers into
    SimPy timeouts. ``on_instances(executor, now_s, count)`` is told whenever
    the number of warm (started) instances changes.
    """

    def __init__(self, *args, on_instances: Callable[[str, float, int], None] | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.model = InstancePool.from_spec(self.spec)
        self._cold = None if self.spec.cold_start is None else BlockSampler(self.spec.cold_start.sample, self.rng)
        self._instance_of: dict[int, int] = {}  # batch id -> the instance it runs on
        self._on_instances = on_instances

    def submit(self, batch: SimBatch) -> None:
        if batch.memory_mb is None:
            batch.memory_mb = self.spec.memory_mb
        self._apply(self.model.submit(self.env.now, batch, batch.memory_mb))

    def release(self, batch: SimBatch, failed: bool = False) -> None:
        instance_id = self._instance_of.pop(batch.batch_id)
        event = self.model.failed if failed else self.model.finished
        self._apply(event(self.env.now, instance_id))  # a failed batch is reported by SimExecutor

    def batch_cost(self, batch: SimBatch, duration_s: float) -> float:
        return self.model.batch_cost(duration_s=duration_s, cold_start_s=batch.cold_start_s, memory_mb=batch.memory_mb)

    def _apply(self, actions) -> None:
        env = self.env
        for action in actions:
            if isinstance(action, StartInstance):
                self._instance_of[action.job.batch_id] = action.instance_id
                cold_s = 0.0 if self._cold is None else self._cold()
                if self.host is not None:
                    self._cold_start_on_host(action, cold_s)
                    continue
                # the instance counts as warm once its cold start is over (scheduled
                # first, so it is warm before a zero-length batch can end)
                event = env.timeout(cold_s, action.instance_id)
                event.callbacks.append(self._started)
                self.run(action.job, cold_start_s=cold_s)
            elif isinstance(action, RunOnInstance):
                self._instance_of[action.job.batch_id] = action.instance_id
                self.run(action.job)
            elif isinstance(action, WarmCountChanged):
                if self._on_instances is not None:
                    self._on_instances(self.spec.name, env.now, action.warm)
            elif isinstance(action, ExpireAt):
                event = env.timeout(action.after_s, action)
                event.callbacks.append(self._expire)
            # RetireInstance: nothing to stop; JobFailed: SimExecutor reports the batch

    def _cold_start_on_host(self, action: StartInstance, cold_s: float) -> None:
        """The drawn cold start is CPU work on the host at its ``cold_start_cores`` (process start, imports, model load):
        instances starting together share the cores; the instance is warm, and runs its batch, when it is done."""
        started_s = self.env.now_s

        def warm(now_s: float) -> None:
            self._apply(self.model.instance_started(now_s, action.instance_id))
            self.run(action.job, cold_start_s=now_s - started_s)

        cores = self.host.spec.cold_start_cores
        self.host.run(("cold_start", self.spec.name, action.instance_id), cpu_s=cold_s * cores, cores=cores, on_done=warm)

    def _started(self, event) -> None:
        self._apply(self.model.instance_started(self.env.now, event.value))

    def _expire(self, event) -> None:
        expiry: ExpireAt = event.value
        self._apply(self.model.expire(self.env.now, instance_id=expiry.instance_id, generation=expiry.generation))
