"""The batching side of a scheduler: one policy object per executor queue."""

from __future__ import annotations

import abc
import itertools
from collections import deque
from typing import NamedTuple

import numpy as np

from policies.events import Request
from spec.topology import ExecutorSpec
from spec.validation import ConfigError, check_int_at_least

__all__ = ["BatchingPolicy", "Decision", "NOTHING"]


class Decision(NamedTuple):
    """What a batching policy wants done now.

    ``batches``: sizes of batches to form, each from the head of the queue, in
    order. ``wake_at_s``: when to call the policy again if nothing else
    happens (None: no wake-up needed). ``drops``: (request, reason) pairs to
    remove from the queue and drop.
    """

    batches: tuple[int, ...] = ()
    wake_at_s: float | None = None
    drops: tuple[tuple[Request, str], ...] = ()


NOTHING = Decision()


class BatchingPolicy(abc.ABC):
    """Decides when the requests queued for one executor become a batch.

    The base class owns the FIFO queue and the counts of batches in flight;
    a subclass fills one hook, ``decide(now_s)``, which looks at the queue and
    returns a ``Decision``. The scheduler calls ``decide`` after every change:
    a request queued, the policy's wake-up time reached, a batch finished, a
    plan applied. A new batching policy is one subclass and one YAML file.

    ``max_queue`` bounds the requests waiting for this executor: a request
    arriving when that many wait is rejected (dropped with reason
    ``queue_full``), as Triton's ``max_queue_size`` does. Those waiting are
    the ones queued here and those in batches dispatched beyond the
    executor's parallelism (a server's ``slots``, a pool's
    ``max_instances``), which wait at the executor for a free slot: so the
    bound bounds also a policy that dispatches without waiting for a free
    slot (``NoBatching``, ``FixedBatching``, ``max_inflight: null``).
    """

    #: settings a plan may change on this policy (see ``apply_plan``)
    def __init__(self, *, max_queue: int | None = None):
        self.max_queue = None if max_queue is None else check_int_at_least("batching.max_queue", max_queue, 1)
        self.queue: deque[Request] = deque()
        self.executor: ExecutorSpec | None = None
        self.batches_in_flight = 0
        self.requests_in_flight = 0
        self.memory_mb: int | None = None
        #: sizes of the batches in flight, oldest first (the executor starts them in that order)
        self._flight_sizes: deque[int] = deque()
        self._parallelism: int | None = None  # batches the executor runs at once (None: unbounded)

    # -- wiring -----------------------------------------------------------
    def bind(self, executor: ExecutorSpec) -> None:
        """Attach the policy to the executor whose queue it manages."""
        if self.executor is not None:
            raise ConfigError("batching", type(self).__name__, "a fresh policy object per executor (this one is bound)")
        self.executor = executor
        if getattr(executor, "memory_mb", None) is not None:
            self.memory_mb = executor.memory_mb
        self._parallelism = getattr(executor, "slots", None) or getattr(executor, "max_instances", None)

    # -- the hook ---------------------------------------------------------
    @abc.abstractmethod
    def decide(self, now_s: float) -> Decision:
        """Look at ``self.queue`` (oldest first) and say what to do now."""

    # -- the optional bulk hook (the simulator's fast path) ---------------------
    @property
    def supports_bulk(self) -> bool:
        """Whether ``bulk_cuts`` stands for ``admit`` and ``decide`` now (default False: one request at a time).

        A policy that says True promises that, while nothing but arrivals
        happens, its batches depend only on the arrival times of the requests
        it queues; that it admits every request; and that a batch finishing
        changes none of its decisions (it learns nothing from it). The
        scheduler then hands it many arrivals at once (``Scheduler.handle_arrivals``).
        """
        return False

    def bulk_cuts(self, arrival_s: np.ndarray, until_s: float) -> tuple[np.ndarray, np.ndarray] | None:
        """The batches ``decide`` would form from requests arriving at ``arrival_s`` (sorted; those queued first).

        Returns ``(ends, dispatched_s)``: batch k is requests
        ``ends[k-1]:ends[k]`` (``ends[-1]`` is 0), sent at ``dispatched_s[k]``,
        for the batches that leave before any arrival at ``until_s`` or later
        could join them (the rest stay queued). Arrivals are taken as handled
        at their ``arrival_s``, a timer as firing where the driver would fire
        it (``StartTimer`` at the head's arrival), a timer before an arrival
        at the same time. None: not supported (the default).
        """
        return None

    def _bulk_hooks_intact(self) -> bool:
        """True when a subclass overrides none of the base's queue and accounting hooks (``supports_bulk`` relies on them)."""
        cls = type(self)
        return all(getattr(cls, name) is getattr(BatchingPolicy, name) for name in ("admit", "take", "finished", "observe_finished", "remove"))

    def took_bulk(self, sizes: list[int]) -> None:
        """Account for batches of ``sizes`` formed on the bulk path (``take`` for each, the queue handled by the scheduler)."""
        self.batches_in_flight += len(sizes)
        self.requests_in_flight += sum(sizes)
        self._flight_sizes.extend(sizes)

    def finished_bulk(self, sizes: list[int]) -> None:
        """``finished`` for batches of ``sizes`` that ended served, in order (nothing is observed: see ``supports_bulk``)."""
        flights = self._flight_sizes
        count = len(sizes)
        if count <= len(flights) and list(itertools.islice(flights, count)) == sizes:  # the usual case: the oldest ended
            for _ in range(count):
                flights.popleft()
            self.batches_in_flight -= count
            self.requests_in_flight -= sum(sizes)
            return
        for size in sizes:
            self.finished(0.0, size, None)

    # -- observations subclasses may use -----------------------------------
    def observe_finished(self, now_s: float, size: int, service_s: float) -> None:
        """A batch of ``size`` this policy formed finished in ``service_s``.

        Override to learn from it (AIMD does); the base only counts.
        """

    def apply_plan(self, *, batch_size: int | None = None, memory_mb: int | None = None) -> None:
        """Adopt a planner's settings. Override when the policy has a batch size."""
        if memory_mb is not None:
            self.memory_mb = memory_mb

    # -- called by the scheduler -------------------------------------------
    @property
    def free_slots(self) -> int | None:
        """Batches the executor could start now: its parallelism less the batches in flight (None: unbounded)."""
        return None if self._parallelism is None else max(0, self._parallelism - self.batches_in_flight)

    @property
    def waiting_at_executor(self) -> int:
        """Requests in batches dispatched beyond the executor's parallelism: waiting there for a free slot."""
        parallelism = self._parallelism
        if parallelism is None or self.batches_in_flight <= parallelism:
            return 0
        running = sum(itertools.islice(self._flight_sizes, parallelism))
        return self.requests_in_flight - running

    def admit(self, request: Request) -> bool:
        """Queue ``request``; False when ``max_queue`` requests wait (here or at the executor): it is rejected."""
        if self.max_queue is not None and len(self.queue) + self.waiting_at_executor >= self.max_queue:
            return False
        self.queue.append(request)
        return True

    def take(self, count: int) -> tuple[Request, ...]:
        """Pop ``count`` requests from the head of the queue as one batch."""
        queue = self.queue
        if count == len(queue):  # the usual case, and three times cheaper than popping one by one
            batch = tuple(queue)
            queue.clear()
        else:
            pop = queue.popleft
            batch = tuple([pop() for _ in range(count)])
        self.batches_in_flight += 1
        self.requests_in_flight += count
        self._flight_sizes.append(count)
        return batch

    def finished(self, now_s: float, size: int, service_s: float | None) -> None:
        """Account for a batch that left the executor (``service_s`` None: failed)."""
        self.batches_in_flight -= 1
        self.requests_in_flight -= size
        flights = self._flight_sizes
        if flights and flights[0] == size:  # the usual case: the oldest finished
            flights.popleft()
        elif size in flights:
            flights.remove(size)
        if service_s is not None:
            self.observe_finished(now_s, size, service_s)

    def remove(self, request: Request) -> None:
        """Remove a queued request (to drop it)."""
        self.queue.remove(request)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(executor={getattr(self.executor, 'name', None)!r}, queued={len(self.queue)})"
