"""A server's parallel slots: a sans-I/O model both backends can drive."""

from __future__ import annotations

from collections import deque
from typing import Generic, TypeVar

__all__ = ["Slots"]

Job = TypeVar("Job")


class Slots(Generic[Job]):
    """Up to ``count`` jobs run at once; the rest wait in FIFO order.

    One slot is the M/G/1 server of queueing theory, ``count=c`` M/G/c.
    ``submit(job)`` returns the job when it starts now (else None: it
    waits); ``release()`` frees a slot and returns the waiting job that
    starts in it (else None). The driver runs what is returned.
    """

    __slots__ = ("count", "busy", "waiting")

    def __init__(self, count: int):
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            raise ValueError(f"slots: count must be an integer >= 1, got {count!r}")
        self.count = count
        self.busy = 0
        self.waiting: deque[Job] = deque()

    def submit(self, job: Job) -> Job | None:
        """A job arrived: it starts now (returned) or waits (None)."""
        if self.busy < self.count:
            self.busy += 1
            return job
        self.waiting.append(job)
        return None

    def release(self) -> Job | None:
        """A running job left its slot: return the next job to start in it (None: the slot is idle)."""
        if self.busy <= 0:
            raise RuntimeError("Slots.release: the driver released a slot that no job holds")
        if self.waiting:
            return self.waiting.popleft()
        self.busy -= 1
        return None
