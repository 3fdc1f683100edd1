"""What a gateway's planner hears every telemetry period, as in the simulator.

Only the past: the arrival rate over the period just ended, and each
link's bandwidth averaged over that period (``Link.measured_bandwidth_MBps``,
the same reading as the simulator's).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping

from policies.events import ArrivalRateMeasured, BandwidthMeasured, Event
from spec.links import Link

__all__ = ["PlannerTelemetry"]


class PlannerTelemetry:
    """Counts a gateway's arrivals and, each period, reports the period just ended to its planner."""

    def __init__(self, period_s: float, links: Mapping[str, Link]):
        self.period_s = period_s
        self.links = links
        self._arrived_since = 0

    def arrived(self) -> None:
        self._arrived_since += 1

    def events(self, now_s: float, now: Callable[[], float]) -> Iterator[Event]:
        """The period's events, one at a time (each bandwidth sample stamped ``now()`` when it is taken)."""
        rate = self._arrived_since / self.period_s
        self._arrived_since = 0
        yield ArrivalRateMeasured(now_s=now_s, rate_rps=rate)
        for executor, link in self.links.items():
            yield BandwidthMeasured(now_s=now(), executor=executor, bandwidth_MBps=link.measured_bandwidth_MBps(now_s, self.period_s))
