"""Timer ids: which of a scheduler's timers a StartTimer, CancelTimer or TimerFired means."""

from __future__ import annotations

import enum
from typing import NamedTuple

__all__ = ["TimerId", "TimerPurpose"]


class TimerPurpose(enum.StrEnum):
    """What a timer wakes the scheduler for."""

    #: the batching policy of one executor's queue asked to be woken (a batch timeout)
    BATCH = "batch"
    #: the planner asked to be woken (periodic re-planning)
    PLAN = "plan"


class TimerId(NamedTuple):
    """A typed timer id: its purpose, and the executor for a batching timer.

    A named tuple, so that it is immutable, hashable and cheap as a dict key
    on the simulator's hot path. ``str(timer_id)`` is its text form
    (``batch/edge``, ``plan``), which ``parse`` reads back (event logs).
    """

    purpose: TimerPurpose
    executor: str | None = None

    @classmethod
    def batch(cls, executor: str) -> TimerId:
        """The batching timer of ``executor``'s queue."""
        return cls(TimerPurpose.BATCH, executor)

    @classmethod
    def plan(cls) -> TimerId:
        """The planner's timer."""
        return cls(TimerPurpose.PLAN, None)

    @classmethod
    def parse(cls, text: str) -> TimerId:
        """The timer id whose text form is ``text`` (``batch/<executor>`` or ``plan``)."""
        purpose, _, executor = str(text).partition("/")
        try:
            purpose = TimerPurpose(purpose)
        except ValueError:
            raise ValueError(f"timer id {text!r}: the purpose must be one of {', '.join(TimerPurpose)}") from None
        if (purpose is TimerPurpose.BATCH) != bool(executor):
            raise ValueError(f"timer id {text!r}: 'batch/<executor>' or 'plan'")
        return cls(purpose, executor or None)

    def __str__(self) -> str:
        return self.purpose.value if self.executor is None else f"{self.purpose.value}/{self.executor}"
