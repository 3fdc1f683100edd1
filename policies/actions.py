"""Actions: commands a policy returns to its driver."""

from __future__ import annotations

from dataclasses import dataclass

from policies.positional import positional_make
from policies.timer_id import TimerId

__all__ = ["Action", "DispatchBatch", "StartTimer", "CancelTimer", "DropRequest", "NotePlan"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Action:
    """Base of every action."""


@positional_make
@dataclass(frozen=True, slots=True, kw_only=True)
class DispatchBatch(Action):
    """Send these requests, as one batch, to ``executor``.

    ``memory_mb`` selects the instance size of a serverless executor; ``None``
    leaves the executor's configured default. ``attempt`` is 0 for a batch's
    first dispatch and k for its k-th retry after a ``BatchFailed`` (the
    scheduler's ``max_retries``); drivers record it per batch.
    """

    batch_id: int
    executor: str
    request_ids: tuple[int, ...]
    memory_mb: int | None = None
    attempt: int = 0


@positional_make
@dataclass(frozen=True, slots=True, kw_only=True)
class StartTimer(Action):
    """Deliver ``TimerFired(timer_id=...)`` at ``at_s`` (or as soon as possible
    after it). Starting a timer id that is running replaces it."""

    timer_id: TimerId
    at_s: float


@positional_make
@dataclass(frozen=True, slots=True, kw_only=True)
class CancelTimer(Action):
    """Do not deliver the timer ``timer_id``; a no-op if it already fired."""

    timer_id: TimerId


@positional_make
@dataclass(frozen=True, slots=True, kw_only=True)
class DropRequest(Action):
    """Give up on a request; ``reason`` is recorded with it."""

    request_id: int
    reason: str


@positional_make
@dataclass(frozen=True, slots=True, kw_only=True)
class NotePlan(Action):
    """Record that the planner adopted a new plan (for timelines and counts of
    re-plans). Drivers record it; it changes nothing outside the policy."""

    at_s: float
    plan: "object"
    trigger: str
