"""The simulation's SimPy environment: SimPy's, plus a replayed arrival stream."""

from __future__ import annotations

import math
from collections.abc import Callable
from heapq import heappop, heappush
from itertools import count

import simpy
from simpy.core import EmptySchedule, StopSimulation
from simpy.events import NORMAL, URGENT

__all__ = ["FeedEnvironment", "Call"]


class Call:
    """A scheduled call: the simulator's own timers, service ends and returns, lighter than a SimPy ``Timeout``.

    ``step`` runs ``fn(call)`` at its time (``call.value`` is the value given),
    ordered with SimPy's events exactly as a ``Timeout`` of the same delay
    would be (time, ``NORMAL`` priority, scheduling order): a ``Timeout``
    builds an ``Event`` (its environment, a callbacks list, a value, an ok
    flag, a delay check) that these calls never read.
    """

    __slots__ = ("fn", "value")

    def __init__(self, fn: Callable[[Call], None], value):
        self.fn = fn
        self.value = value


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

    It fills SimPy's environment hooks (``now``, ``schedule``, ``peek``,
    ``step``) over a clock and an event heap of its own, so that it reads
    none of SimPy's private attributes; events are ordered exactly as
    SimPy orders them (time, priority, then scheduling order).
    """

    def __init__(self, initial_time: float = 0.0):
        super().__init__(initial_time)
        self.now_s = float(initial_time)
        #: scheduled events: (time, priority, scheduling order, event)
        self.scheduled: list = []
        self._order = count()
        self._feed: Callable[[], float] | None = None
        self._feed_due_s = math.inf

    @property
    def now(self) -> float:
        """The current simulated time, in seconds."""
        return self.now_s

    def schedule(self, event: simpy.Event, priority=NORMAL, delay: float = 0) -> None:
        """Schedule ``event`` after ``delay`` with ``priority`` (SimPy's hook)."""
        heappush(self.scheduled, (self.now_s + delay, priority, next(self._order), event))

    def call_in(self, delay: float, fn: Callable[[Call], None], value=None) -> None:
        """Run ``fn(call)`` after ``delay`` (``call.value`` is ``value``), where ``env.timeout(delay, value)`` would fire."""
        heappush(self.scheduled, (self.now_s + delay, NORMAL, next(self._order), Call(fn, value)))

    def feed(self, first_due_s: float, on_due: Callable[[], float]) -> None:
        """Replay arrivals: call ``on_due()`` at ``first_due_s``; it returns the next due time (``inf``: done)."""
        if first_due_s < self.now_s:
            raise ValueError(f"first_due_s={first_due_s} is before now={self.now_s}")
        self._feed = on_due
        self._feed_due_s = first_due_s

    def peek(self) -> float:
        """The time of the next scheduled event or arrival (``inf`` when there is none)."""
        scheduled = self.scheduled
        return min(self._feed_due_s, scheduled[0][0] if scheduled else math.inf)

    def step(self) -> None:
        """Process the arrivals due before the next scheduled event, or else that event."""
        due_s = self._feed_due_s
        scheduled = self.scheduled
        if due_s < (scheduled[0][0] if scheduled else math.inf):
            # every arrival due before the next scheduled event, in one step (an arrival may schedule one)
            feed = self._feed
            while True:
                self.now_s = due_s
                due_s = feed()
                if not due_s < (scheduled[0][0] if scheduled else math.inf):
                    break
                self._feed_due_s = due_s
            self._feed_due_s = due_s
            return
        if not scheduled:
            raise EmptySchedule
        self.now_s, _, _, event = heappop(scheduled)
        if event.__class__ is Call:
            event.fn(event)
            return
        callbacks, event.callbacks = event.callbacks, None
        try:
            for callback in callbacks:
                callback(event)
        except StopSimulation:
            # as SimPy does: keep the remaining callbacks for when the run resumes
            event.callbacks = callbacks[callbacks.index(callback) + 1 :]
            self.schedule(event, URGENT - 1)
            raise
        if not event.ok and not event.defused:
            failure = event.value
            raise type(failure)(*failure.args) from failure
