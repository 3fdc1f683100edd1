"""Events: facts a driver reports to a policy, always in the past tense.

Every event carries ``now_s``, the driver's clock when the fact happened (the
simulator's clock, or seconds since the start of a live run). A policy never
reads a clock of its own; this is what lets one policy object run under both.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from policies.positional import positional_make
from policies.timer_id import TimerId

__all__ = [
    "Request",
    "Event",
    "RequestArrived",
    "RequestsArrived",
    "TimerFired",
    "BatchFinished",
    "BatchFailed",
    "BandwidthMeasured",
    "ArrivalRateMeasured",
    "InstanceStateChanged",
]


@positional_make
@dataclass(frozen=True, slots=True, kw_only=True)
class Request:
    """One inference request as a policy sees it.

    ``deadline_s`` is absolute (arrival plus the source's SLO), ``inf`` when the
    request has no deadline.
    """

    request_id: int
    source: str
    arrival_s: float
    size_bytes: int
    deadline_s: float = math.inf


@dataclass(frozen=True, slots=True, kw_only=True)
class Event:
    """Base of every event: ``now_s`` is when it happened."""

    now_s: float


@positional_make
@dataclass(frozen=True, slots=True, kw_only=True)
class RequestArrived(Event):
    """A request reached the scheduler."""

    request: Request


@positional_make
@dataclass(frozen=True, slots=True, kw_only=True)
class RequestsArrived(Event):
    """Several requests reached the scheduler together: a driver read a backlog in one go.

    The same as one ``RequestArrived`` per request at ``now_s``, in order,
    except that each batching policy decides once, after all of them are
    queued: a gateway that fell behind its input sees what it already holds
    (requests already past their wait would each leave alone otherwise).
    ``requests`` is a non-empty tuple.
    """

    requests: tuple[Request, ...]


@positional_make
@dataclass(frozen=True, slots=True, kw_only=True)
class TimerFired(Event):
    """A timer the policy started (with ``StartTimer``) is due.

    ``late_s`` is how far after its due time the driver delivered it: always 0
    in the simulator; measured in the live harness.
    """

    timer_id: TimerId
    late_s: float = 0.0


@positional_make
@dataclass(frozen=True, slots=True, kw_only=True)
class BatchFinished(Event):
    """An executor finished a batch the policy dispatched.

    ``service_s`` is the measured execution time, without queueing, transfer
    or cold start.
    """

    batch_id: int
    executor: str
    service_s: float


@positional_make
@dataclass(frozen=True, slots=True, kw_only=True)
class BatchFailed(Event):
    """An executor gave up on a batch the policy dispatched (crash, retries
    exhausted). Its requests are no longer in flight."""

    batch_id: int
    executor: str
    reason: str


@positional_make
@dataclass(frozen=True, slots=True, kw_only=True)
class BandwidthMeasured(Event):
    """A telemetry sample of the uplink to ``executor`` (0 means down)."""

    executor: str
    bandwidth_MBps: float


@positional_make
@dataclass(frozen=True, slots=True, kw_only=True)
class ArrivalRateMeasured(Event):
    """A telemetry sample of the offered load, in requests per second."""

    rate_rps: float


@positional_make
@dataclass(frozen=True, slots=True, kw_only=True)
class InstanceStateChanged(Event):
    """A serverless pool's number of warm instances changed."""

    executor: str
    warm_instances: int
