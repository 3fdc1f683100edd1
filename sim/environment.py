"""The simulation's SimPy environment: SimPy's, plus a replayed arrival stream."""

from __future__ import annotations

import math
from collections.abc import Callable

import simpy

__all__ = ["FeedEnvironment"]


class FeedEnvironment(simpy.Environment):
    """A SimPy environment that also replays one time-ordered stream of arrivals.

    A workload's arrival times are all known before a run starts, so they need
    not be SimPy events: ``step`` takes the next arrival itself whenever it is
    due before the next scheduled event, moves the clock to it and calls the
    feed, which handles it and returns when the next one is due. That saves
    an event object, a heap push and a pop per request, the largest share of
    the simulator's own work per request. Everything else (timers, links,
    executors, processes) is ordinary SimPy events, and ``run(until=...)``
    works as in SimPy. At a tie, scheduled events go first, as the old
    one-timeout-per-arrival feed ordered them.

    Like SimPy's own ``RealtimeEnvironment``, it fills one hook: ``step``.
    """

    def __init__(self, initial_time: float = 0.0):
        super().__init__(initial_time)
        self._feed: Callable[[], float] | None = None
        self._feed_due_s = math.inf

    def feed(self, first_due_s: float, on_due: Callable[[], float]) -> None:
        """Replay arrivals: call ``on_due()`` at ``first_due_s``; it returns the next due time (``inf``: done)."""
        if first_due_s < self._now:
            raise ValueError(f"first_due_s={first_due_s} is before now={self._now}")
        self._feed = on_due
        self._feed_due_s = first_due_s

    def peek(self) -> float:
        """The time of the next scheduled event or arrival (``inf`` when there is none)."""
        queue = self._queue
        return min(self._feed_due_s, queue[0][0] if queue else math.inf)

    def step(self) -> None:
        """Process the next arrival or the next scheduled event, whichever is earlier."""
        due_s = self._feed_due_s
        queue = self._queue
        if due_s < (queue[0][0] if queue else math.inf):
            self._now = due_s
            self._feed_due_s = self._feed()
        else:
            simpy.Environment.step(self)
