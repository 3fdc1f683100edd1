"""The live gateway's planner telemetry reports only the past, with the simulator's reading.

A bandwidth trace steps from 1 to 8 MB/s at t = 10 s and the arrivals from 20 to 80 per second:
no event at or before 10 s may show the new level (reading the coming second's sample did).
"""

from __future__ import annotations

import json

import pytest

from live.roles.gateway_telemetry import PlannerTelemetry
from policies.events import ArrivalRateMeasured, BandwidthMeasured
from spec.links import Link


def stepped_link(tmp_path) -> Link:
    (tmp_path / "bw.json").write_text(json.dumps([1.0] * 10 + [8.0] * 10))
    return Link(delay_s=0.01, bandwidth_trace=str(tmp_path / "bw.json"))


def tick(telemetry: PlannerTelemetry, now_s: float, arrivals: int) -> dict:
    for _ in range(arrivals):
        telemetry.arrived()
    events = list(telemetry.events(now_s, lambda: now_s + 0.002))
    return {type(e): e for e in events}


def test_live_telemetry_never_shows_a_step_before_it_happens(tmp_path):
    link = stepped_link(tmp_path)
    telemetry = PlannerTelemetry(1.0, {"fn": link})
    for second in range(1, 20):
        arrivals = 20 if second <= 10 else 80
        events = tick(telemetry, float(second), arrivals)
        bandwidth = events[BandwidthMeasured]
        rate = events[ArrivalRateMeasured]
        assert bandwidth.executor == "fn"
        # the mean over the second that just ended: old through t = 10, new after
        assert bandwidth.bandwidth_MBps == (1.0 if second <= 10 else 8.0), second
        assert rate.rate_rps == arrivals, second
        # the same reading the simulator takes
        assert bandwidth.bandwidth_MBps == link.measured_bandwidth_MBps(float(second), 1.0)


def test_live_telemetry_averages_over_its_period(tmp_path):
    telemetry = PlannerTelemetry(2.0, {"fn": stepped_link(tmp_path)})
    events = tick(telemetry, 11.0, 10)
    assert events[BandwidthMeasured].bandwidth_MBps == pytest.approx(4.5)  # seconds 9 (1 MB/s) and 10 (8 MB/s)
    assert events[ArrivalRateMeasured].rate_rps == 5.0
