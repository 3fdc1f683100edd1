"""A serverless pool's instances: a sans-I/O model both backends drive.

The simulator (``sim/serverless.py``) feeds it SimPy times and draws cold
starts; the live pool (``live/roles/pool.py``) feeds it the wall clock and
runs instances as worker processes. Both only carry out the actions it
returns, in order.
"""

from __future__ import annotations

import numbers
from collections import deque
from dataclasses import dataclass
from typing import Any, Union

from spec.pricing import Pricing

__all__ = [
    "InstancePool",
    "InstancePoolError",
    "StartInstance",
    "RunOnInstance",
    "RetireInstance",
    "WarmCountChanged",
    "ExpireAt",
    "JobFailed",
    "PoolAction",
]


# -- actions ---------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True, slots=True)
class StartInstance:
    """Start a new instance of ``memory_mb`` (a cold start) for ``job``.

    The job is the instance's: it runs as soon as the instance is ready, and
    its cold start counts toward it. The driver reports the end of the cold
    start with ``instance_started`` (unless ``failed`` comes first).
    """

    instance_id: int
    memory_mb: int
    job: Any


@dataclass(frozen=True, kw_only=True, slots=True)
class RunOnInstance:
    """Hand ``job`` to the warm instance ``instance_id`` now."""

    instance_id: int
    job: Any


@dataclass(frozen=True, kw_only=True, slots=True)
class RetireInstance:
    """Stop the instance ``instance_id``; the model has forgotten it."""

    instance_id: int


@dataclass(frozen=True, kw_only=True, slots=True)
class WarmCountChanged:
    """The number of warm (started: busy or idle) instances is now ``warm``."""

    warm: int


@dataclass(frozen=True, kw_only=True, slots=True)
class ExpireAt:
    """The instance went idle: unless reused, it expires at ``at_s`` (``after_s`` from now).

    A driver with timers calls ``expire(at_s, instance_id=..., generation=...)``
    then (a stale one does nothing); a driver that polls calls
    ``expire(now_s)`` by ``next_expiry_s`` instead and may ignore this.
    """

    instance_id: int
    generation: int
    at_s: float
    after_s: float


@dataclass(frozen=True, kw_only=True, slots=True)
class JobFailed:
    """The instance ``instance_id`` died with ``job`` in hand: the job failed."""

    instance_id: int
    job: Any


PoolAction = Union[StartInstance, RunOnInstance, RetireInstance, WarmCountChanged, ExpireAt, JobFailed]


class InstancePoolError(RuntimeError):
    """The driver fed the pool an event that is impossible in its state."""


# -- the model -------------------------------------------------------------------------------

_STARTING, _BUSY, _IDLE = "starting", "busy", "idle"


class _Instance:
    __slots__ = ("memory_mb", "state", "job", "warm", "generation", "idle_until_s")

    def __init__(self, memory_mb: int, job: Any):
        self.memory_mb = memory_mb
        self.state = _STARTING
        self.job = job
        self.warm = False
        self.generation = 0  # bumped each time it goes idle: tells a stale expiry apart
        self.idle_until_s = 0.0


class InstancePool:
    """The lifecycle of a serverless pool's instances, as AWS Lambda runs them.

    Each instance has a fixed memory size and runs one job at a time. A job
    (opaque to the model) submitted with its memory size:

    - runs on an idle warm instance of that size, the most recently used;
    - else starts a new instance (a cold start) if fewer than
      ``max_instances`` are alive (starting, busy or idle);
    - else, at the cap, retires the least recently used idle instance of
      another size and starts one;
    - else waits, in FIFO order.

    When an instance finishes, the first waiting job runs on it if it has
    the instance's size; a waiting job of another size retires it and
    starts a cold one; with none waiting the instance stays idle for
    ``keep_alive_s`` and then is retired (scale to zero; ``keep_alive_s <= 0``
    retires it at once). A failed instance is gone (it is never retired):
    its job fails, and the first waiting job, if any, gets a new instance.
    ``WarmCountChanged`` tells every change of the number of warm instances
    (one that died in its cold start was never warm).

    Events come in with the time they happened (``now_s``); each returns the
    actions the driver carries out in order. An impossible event raises
    ``InstancePoolError`` naming the driver's mistake.
    """

    def __init__(self, *, max_instances: int, keep_alive_s: float, pricing: Pricing | None = None):
        if isinstance(max_instances, bool) or not isinstance(max_instances, numbers.Integral) or max_instances < 1:
            raise ValueError(f"InstancePool: max_instances must be an integer >= 1, got {max_instances!r}")
        if not isinstance(keep_alive_s, numbers.Real) or keep_alive_s != keep_alive_s:
            raise ValueError(f"InstancePool: keep_alive_s must be a number of seconds, got {keep_alive_s!r}")
        self.max_instances = int(max_instances)
        self.keep_alive_s = keep_alive_s
        self.pricing = pricing
        self.warm = 0  # started: busy or idle
        self.cold_starts = 0
        self.peak_instances = 0
        self.waiting: deque[tuple[Any, int]] = deque()  # (job, memory_mb)
        self._instances: dict[int, _Instance] = {}  # alive, in start order
        # idle instance ids by memory size, least recently used first (sizes stay as keys: a
        # reclaim scans them in the order they first appeared)
        self._idle: dict[int, list[int]] = {}
        self._next_id = 1
        self._died_starting: set[int] = set()
        self._closed = False

    @classmethod
    def from_spec(cls, spec) -> InstancePool:
        """The model of a ``ServerlessSpec``'s pool (cap, keep-alive, pricing)."""
        return cls(max_instances=spec.max_instances, keep_alive_s=spec.keep_alive_s, pricing=spec.pricing)

    # -- views -----------------------------------------------------------------------------
    @property
    def instances(self) -> int:
        """How many instances are alive: starting, busy or idle."""
        return len(self._instances)

    def state(self, instance_id: int) -> str | None:
        """``"starting"``, ``"busy"`` or ``"idle"``; None for an instance not alive."""
        instance = self._instances.get(instance_id)
        return None if instance is None else instance.state

    def job(self, instance_id: int) -> Any:
        """The job the instance holds (starting or busy); None when it holds none."""
        instance = self._instances.get(instance_id)
        return None if instance is None else instance.job

    def idle_ids(self, memory_mb: int) -> list[int]:
        """Idle instances of ``memory_mb``, least recently used first."""
        return list(self._idle.get(memory_mb, ()))

    @property
    def next_expiry_s(self) -> float | None:
        """When the next idle instance expires (None: none is idle)."""
        times = [self._instances[i].idle_until_s for ids in self._idle.values() for i in ids]
        return min(times) if times else None

    # -- billing ---------------------------------------------------------------------------
    def batch_cost(self, *, duration_s: float, cold_start_s: float, memory_mb: int | None) -> float:
        """What one job costs: its duration (plus its cold start where the pricing says ``bill_cold_start``)."""
        if self.pricing is None:
            raise InstancePoolError("InstancePool.batch_cost: the pool was built without a pricing")
        if getattr(self.pricing, "bill_cold_start", False):
            duration_s += cold_start_s
        return self.pricing.batch_cost(duration_s=duration_s, memory_mb=memory_mb)

    # -- events ----------------------------------------------------------------------------
    def submit(self, now_s: float, job: Any, memory_mb: int) -> tuple[PoolAction, ...]:
        """A job needs an instance of ``memory_mb``."""
        self._check_open("submit")
        if isinstance(memory_mb, bool) or not isinstance(memory_mb, numbers.Integral) or memory_mb <= 0:
            raise InstancePoolError(f"InstancePool.submit: the driver passed memory_mb={memory_mb!r}; a memory size is an integer > 0")
        idle = self._idle.get(memory_mb)
        if idle:
            return self._run(idle.pop(), job)  # the most recently used
        if len(self._instances) < self.max_instances:
            return self._start(job, memory_mb)
        reclaimed = self._reclaim_other(memory_mb)
        if reclaimed:
            return reclaimed + self._start(job, memory_mb)
        self.waiting.append((job, memory_mb))
        return ()

    def instance_started(self, now_s: float, instance_id: int) -> tuple[PoolAction, ...]:
        """The instance's cold start is over: it is warm (and runs its job)."""
        if instance_id in self._died_starting:  # a timer that outlived its instance
            self._died_starting.discard(instance_id)
            return ()
        instance = self._alive(instance_id, "instance_started")
        if instance.state != _STARTING:
            raise InstancePoolError(f"InstancePool.instance_started: instance {instance_id} is {instance.state}, not starting; the driver reported its start twice")
        instance.state = _BUSY
        instance.warm = True
        self.warm += 1
        return (WarmCountChanged(warm=self.warm),)

    def finished(self, now_s: float, instance_id: int) -> tuple[PoolAction, ...]:
        """The instance finished its job and is free."""
        instance = self._alive(instance_id, "finished")
        if instance.state != _BUSY:
            what = "still in its cold start (report instance_started first)" if instance.state == _STARTING else "idle: it holds no job"
            raise InstancePoolError(f"InstancePool.finished: instance {instance_id} is {what}")
        instance.job = None
        if self.waiting:
            job, memory_mb = self.waiting.popleft()
            if memory_mb == instance.memory_mb:
                return self._run(instance_id, job)
            # another memory size cannot reuse this instance: replace it
            return self._retire(instance_id) + self._start(job, memory_mb)
        if self.keep_alive_s <= 0:
            return self._retire(instance_id)
        instance.state = _IDLE
        instance.generation += 1
        instance.idle_until_s = now_s + self.keep_alive_s
        self._idle.setdefault(instance.memory_mb, []).append(instance_id)
        return (ExpireAt(instance_id=instance_id, generation=instance.generation, at_s=instance.idle_until_s, after_s=self.keep_alive_s),)

    def failed(self, now_s: float, instance_id: int) -> tuple[PoolAction, ...]:
        """The instance died (in its cold start, with a job, or idle); it is gone."""
        instance = self._alive(instance_id, "failed")
        del self._instances[instance_id]
        actions: list[PoolAction] = []
        if instance.state == _IDLE:
            self._idle[instance.memory_mb].remove(instance_id)
        if instance.warm:
            self.warm -= 1
            actions.append(WarmCountChanged(warm=self.warm))
        else:
            self._died_starting.add(instance_id)
        if instance.job is not None:
            actions.append(JobFailed(instance_id=instance_id, job=instance.job))
        if self.waiting and len(self._instances) < self.max_instances:
            job, memory_mb = self.waiting.popleft()
            actions.extend(self._start(job, memory_mb))
        return tuple(actions)

    def expire(self, now_s: float, *, instance_id: int | None = None, generation: int | None = None) -> tuple[PoolAction, ...]:
        """Retire idle instances whose keep-alive is over at ``now_s``.

        With ``instance_id`` and ``generation`` (from an ``ExpireAt``), only
        that instance, if it is still idle since then; else every one due.
        """
        if instance_id is None:
            actions: list[PoolAction] = []
            for idle in self._idle.values():
                for due in [i for i in idle if self._instances[i].idle_until_s <= now_s]:
                    idle.remove(due)
                    actions.extend(self._retire(due))
            return tuple(actions)
        instance = self._instances.get(instance_id)
        if instance is None or instance.state != _IDLE or instance.generation != generation:
            return ()  # reused (or gone) since: a stale timer
        if now_s < instance.idle_until_s:
            raise InstancePoolError(f"InstancePool.expire: instance {instance_id} is idle until {instance.idle_until_s!r}; the driver expired it early at {now_s!r}")
        self._idle[instance.memory_mb].remove(instance_id)
        return self._retire(instance_id)

    def close(self, now_s: float) -> tuple[PoolAction, ...]:
        """The pool shuts down: retire every instance, in start order; no event may follow."""
        self._check_open("close")
        self._closed = True
        actions: list[PoolAction] = []
        for instance_id in list(self._instances):
            instance = self._instances[instance_id]
            if instance.state == _IDLE:
                self._idle[instance.memory_mb].remove(instance_id)
            actions.extend(self._retire(instance_id))
        return tuple(actions)

    # -- internals -------------------------------------------------------------------------
    def _check_open(self, event: str) -> None:
        if self._closed:
            raise InstancePoolError(f"InstancePool.{event}: the driver used the pool after close()")

    def _alive(self, instance_id: int, event: str) -> _Instance:
        instance = self._instances.get(instance_id)
        if instance is None:
            raise InstancePoolError(f"InstancePool.{event}: instance {instance_id!r} is not alive (never started, retired or failed); the driver's event is stale or wrong")
        return instance

    def _run(self, instance_id: int, job: Any) -> tuple[PoolAction, ...]:
        instance = self._instances[instance_id]
        instance.state = _BUSY
        instance.job = job
        return (RunOnInstance(instance_id=instance_id, job=job),)

    def _start(self, job: Any, memory_mb: int) -> tuple[PoolAction, ...]:
        instance_id = self._next_id
        self._next_id += 1
        self._instances[instance_id] = _Instance(memory_mb, job)
        self.cold_starts += 1
        self.peak_instances = max(self.peak_instances, len(self._instances))
        return (StartInstance(instance_id=instance_id, memory_mb=memory_mb, job=job),)

    def _reclaim_other(self, memory_mb: int) -> tuple[PoolAction, ...]:
        for size, idle in self._idle.items():
            if size != memory_mb and idle:
                return self._retire(idle.pop(0))  # the least recently used
        return ()

    def _retire(self, instance_id: int) -> tuple[PoolAction, ...]:
        instance = self._instances.pop(instance_id)
        if not instance.warm:
            return (RetireInstance(instance_id=instance_id),)
        self.warm -= 1
        return (RetireInstance(instance_id=instance_id), WarmCountChanged(warm=self.warm))
