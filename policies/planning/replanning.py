"""When to re-plan: periodically, on a detected change of load or link, or never.

``ReplanningPlanner`` holds the machinery every planner of this package
shares: estimates of the arrival rate and of one uplink's bandwidth from
telemetry events, and the re-plan triggers. A subclass fills ``make_plan``
(and may set ``bandwidth_executor`` in ``bind``).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Mapping

from policies.errors import DriverError
from policies.events import ArrivalRateMeasured, BandwidthMeasured, Event
from policies.plan import Plan
from policies.planning.base import Planner
from policies.planning.changepoint import ChangepointDetector
from spec.validation import ConfigError, check_choice, check_int_at_least, check_positive

__all__ = ["ReplanningPlanner", "TRIGGERS"]

TRIGGERS = ("periodic", "changepoint", "none")


class ReplanningPlanner(Planner):
    """Base of planners that re-plan from telemetry, with a choice of trigger.

    - ``trigger="periodic"``: a plan at the start, then ``period_s`` seconds
      after the last plan (through ``wake_at_s`` / ``on_wake``), as most
      autoscalers do; a plan made early (a subclass's ``"overload"``)
      restarts the period, so it is never followed by a periodic one moments
      later.
    - ``trigger="changepoint"``: a plan at the start, then only when Bayesian
      online changepoint detection (``ChangepointDetector``, Adams & MacKay
      2007, the serverless-edge-batching seed's method) fires on the series
      of ``ArrivalRateMeasured.rate_rps`` or of ``BandwidthMeasured`` for
      ``bandwidth_executor``; plus once ("warmup") when the first
      ``estimate_window`` rate samples are in, so that measured load replaces
      the nominal one (a detector cannot see a change at its very start).
    - ``trigger="none"``: the initial plan only.

    Estimates: the rate is the mean of the last ``estimate_window`` rate
    samples (``nominal_rate_rps`` before the first); the bandwidth the mean of
    the last ``estimate_window`` samples of ``bandwidth_executor``'s uplink
    (before the first: the scheduler's view, that is the link's mean; inf
    for an executor reached without a link). When a change is detected the
    window is cut to the samples of the new segment (the detector's most
    probable run length), so the plan follows the new level at once.

    Parameters: ``nominal_rate_rps`` (> 0), ``trigger`` (one of
    ``TRIGGERS``), ``period_s`` (seconds, > 0), ``estimate_window``
    (samples, >= 1), ``changepoint`` (keyword arguments of
    ``ChangepointDetector``, or null for its defaults).
    """

    def __init__(
        self,
        *,
        nominal_rate_rps: float,
        trigger: str = "periodic",
        period_s: float = 5.0,
        estimate_window: int = 5,
        changepoint: Mapping[str, object] | None = None,
    ):
        super().__init__()
        self.nominal_rate_rps = check_positive("planner.nominal_rate_rps", nominal_rate_rps)
        self.trigger = check_choice("planner.trigger", trigger, TRIGGERS)
        self.period_s = check_positive("planner.period_s", period_s)
        self.estimate_window = check_int_at_least("planner.estimate_window", estimate_window, 1)
        if changepoint is not None and not isinstance(changepoint, Mapping):
            raise ConfigError("planner.changepoint", changepoint, "a mapping of ChangepointDetector settings, or null")
        self.changepoint = dict(changepoint or {})
        try:
            ChangepointDetector(**self.changepoint)
        except TypeError as err:
            raise ConfigError("planner.changepoint", self.changepoint, f"settings of ChangepointDetector ({err})") from None
        if self.trigger == "changepoint":
            self.rate_detector: ChangepointDetector | None = ChangepointDetector(**self.changepoint)
            self.bandwidth_detector: ChangepointDetector | None = ChangepointDetector(**self.changepoint)
        else:
            self.rate_detector = self.bandwidth_detector = None
        self.bandwidth_executor: str | None = None
        self._rates: deque[float] = deque(maxlen=self.estimate_window)
        self._bandwidths: deque[float] = deque(maxlen=self.estimate_window)
        self._warm = False
        self._next_wake_s: float | None = None
        #: plans made so far, by trigger
        self.plan_counts: dict[str, int] = {}
        self.last_plan: Plan | None = None

    # -- estimates -------------------------------------------------------------------
    @property
    def rate_rps(self) -> float:
        """The current arrival-rate estimate."""
        rates = self._rates
        return sum(rates) / len(rates) if rates else self.nominal_rate_rps

    @property
    def bandwidth_MBps(self) -> float:
        """The current bandwidth estimate for ``bandwidth_executor`` (inf when it has no link)."""
        samples = self._bandwidths
        if samples:
            return sum(samples) / len(samples)
        if self.view is None or self.bandwidth_executor is None:
            return math.inf
        return float(self.view.bandwidth_MBps.get(self.bandwidth_executor, math.inf))

    # -- the Planner hooks ---------------------------------------------------------------
    @property
    def wake_at_s(self) -> float | None:
        return self._next_wake_s

    def initial_plan(self, now_s: float) -> Plan | None:
        if self.trigger == "periodic":
            self._next_wake_s = now_s + self.period_s
        return self._replan(now_s, "initial")

    def on_wake(self, now_s: float) -> Plan | None:
        if self.trigger != "periodic":
            self._next_wake_s = None
            return None
        self._next_wake_s = now_s + self.period_s
        return self._replan(now_s, "periodic")

    def observe(self, event: Event) -> Plan | None:
        changed = None
        if isinstance(event, ArrivalRateMeasured):
            changed = self._sample(self._rates, self.rate_detector, event.rate_rps, "rate")
            if changed is None and self.trigger == "changepoint" and not self._warm and len(self._rates) >= self.estimate_window:
                self._warm = True
                changed = "warmup"
        elif isinstance(event, BandwidthMeasured) and event.executor == self.bandwidth_executor:
            changed = self._sample(self._bandwidths, self.bandwidth_detector, event.bandwidth_MBps, "bandwidth")
        self.observe_event(event)
        if changed is not None:
            return self._replan(event.now_s, "changepoint" if changed != "warmup" else "warmup")
        return None

    # -- for subclasses ----------------------------------------------------------------------
    def observe_event(self, event: Event) -> None:
        """See every event (after the estimates are updated); override to learn from others."""

    # -- helpers -------------------------------------------------------------------------------
    def _sample(self, samples: deque, detector: ChangepointDetector | None, value: float, what: str) -> str | None:
        value = float(value)
        if not math.isfinite(value) or value < 0:
            raise DriverError(f"telemetry sample of the {what} must be finite and >= 0, got {value!r}")
        samples.append(value)
        if detector is None or not detector.update(value):
            return None
        keep = max(1, min(len(samples), detector.run_length_map))
        while len(samples) > keep:
            samples.popleft()
        return what

    def _replan(self, now_s: float, trigger: str) -> Plan:
        if self.trigger == "periodic":
            # any plan restarts the period: a periodic plan right after an early one would count twice
            self._next_wake_s = now_s + self.period_s
        plan = self.make_plan(now_s, trigger)
        self.plan_counts[trigger] = self.plan_counts.get(trigger, 0) + 1
        self.last_plan = plan
        return plan
