"""Sans-I/O policies: pure state machines fed events, returning actions.

Nothing here reads a clock, sleeps, or does I/O; the simulator (``sim``) and
the live harness (``live``) drive the very same objects.
"""

from typing import Protocol, runtime_checkable

from policies.actions import Action, CancelTimer, DispatchBatch, DropRequest, NotePlan, StartTimer
from policies.batching.base import NOTHING, BatchingPolicy, Decision
from policies.errors import DriverError, PolicyError
from policies.events import (
    ArrivalRateMeasured,
    BandwidthMeasured,
    BatchFailed,
    BatchFinished,
    Event,
    InstanceStateChanged,
    Request,
    RequestArrived,
    RequestsArrived,
    TimerFired,
)
from policies.placement.base import ClusterView, PlacementPolicy
from policies.plan import Plan
from policies.timer_id import TimerId, TimerPurpose
from policies.planning.base import Planner
from policies.scheduler import Scheduler
from spec.validation import ConfigError


@runtime_checkable
class Policy(Protocol):
    """What a driver talks to: feed one event, get the actions to carry out."""

    def handle(self, event: Event) -> list[Action]: ...


__all__ = [
    "Policy", "Scheduler", "Action", "CancelTimer", "DispatchBatch", "DropRequest", "NotePlan", "StartTimer",
    "BatchingPolicy", "Decision", "NOTHING", "PlacementPolicy", "ClusterView", "Planner", "Plan",
    "DriverError", "ConfigError", "PolicyError", "Request", "Event", "RequestArrived", "RequestsArrived", "TimerFired",
    "BatchFinished", "BatchFailed", "BandwidthMeasured", "ArrivalRateMeasured", "InstanceStateChanged",
    "TimerId", "TimerPurpose",
]  # fmt: skip
