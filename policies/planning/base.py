"""The planning side of a scheduler: re-tuning batching and placement."""

from __future__ import annotations

import abc

from policies.events import Event
from policies.placement.base import ClusterView
from policies.plan import Plan

__all__ = ["Planner"]


class Planner(abc.ABC):
    """Watches events and, when it decides to, produces a new ``Plan``.

    The scheduler feeds it every event (``observe``; a finished batch also
    through ``observe_batch``, with the batch's size), asks for a plan at the
    start (``initial_plan``), wakes it at ``wake_at_s`` (``on_wake``) and
    applies any plan it returns. Subclasses decide what a plan is
    (``make_plan``) and when to make one (``on_wake``, ``observe``).
    """

    def __init__(self) -> None:
        self.view: ClusterView | None = None

    def bind(self, view: ClusterView) -> None:
        """Attach to the scheduler's view of the cluster."""
        self.view = view

    @property
    def wake_at_s(self) -> float | None:
        """When the planner next wants ``on_wake``; None for never."""
        return None

    def initial_plan(self, now_s: float) -> Plan | None:
        """The plan to start with, from configured nominal load and bandwidth."""
        return None

    def observe(self, event: Event) -> Plan | None:
        """See an event; return a plan to adopt now, or None."""
        return None

    def observe_batch(self, *, now_s: float, executor: str, batch_size: int, memory_mb: int | None, service_s: float) -> None:
        """A batch finished: its ``BatchFinished`` event with what the scheduler knows of the batch
        it dispatched (its size and memory size). Called before ``observe`` of that event."""

    def on_wake(self, now_s: float) -> Plan | None:
        """The wake-up time came; return a plan to adopt now, or None."""
        return None

    @abc.abstractmethod
    def make_plan(self, now_s: float, trigger: str) -> Plan:
        """Compute a plan from what the planner has observed so far."""
