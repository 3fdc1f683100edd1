"""Telemetry reports only the past (DESIGN.md): a step change of the uplink's bandwidth and of the
arrival rate at t = 10 s must reach no policy before it happens.

The uplink trace is 1 MB/s for seconds 0-9 and 8 MB/s from second 10; the request trace is
20 req/s until 10 s and 80 req/s after. A spy planner records every event the scheduler hands its
policies and the bandwidth the scheduler's view shows placement; a real edge-first planner
(re-planning every second) records its estimates in each plan. Reading the coming second's sample
(the old ``bandwidth_at(now)`` telemetry) reports 8 MB/s at t = 10 s, before the step, and fails.
"""

from __future__ import annotations

import json

import pytest

from policies.events import ArrivalRateMeasured, BandwidthMeasured, Event
from policies.plan import Plan
from policies.planning.base import Planner
from sim import simulate
from spec.links import Link
from tests.sim.configs import STATIC, timeout_batching

STEP_S = 10.0
OLD_MBPS, NEW_MBPS = 1.0, 8.0
OLD_RPS, NEW_RPS = 20.0, 80.0


class SpyPlanner(Planner):
    """Records what a planner and the scheduler's view see, and never plans."""

    seen: list[tuple[Event, dict]] = []

    def observe(self, event: Event) -> Plan | None:
        SpyPlanner.seen.append((event, dict(self.view.bandwidth_MBps)))
        return None

    def make_plan(self, now_s: float, trigger: str) -> Plan:
        return Plan(trigger=trigger)


def step_config(tmp_path, planner: dict) -> dict:
    gaps = [0.025] + [1.0 / OLD_RPS] * int(STEP_S * OLD_RPS - 1) + [0.5 / OLD_RPS + 0.5 / NEW_RPS] + [1.0 / NEW_RPS] * 800
    (tmp_path / "gaps.json").write_text(json.dumps(gaps))
    (tmp_path / "bw.json").write_text(json.dumps([OLD_MBPS] * int(STEP_S) + [NEW_MBPS] * 30))
    serverless = {"kind": "serverless", "profile": {"kind": "linear_memory", "per_item_s": 0.01, "per_mb_s": 0.0, "base_s": 0.05},
                  "cold_start": {"kind": "constant", "value_s": 0.1}, "keep_alive_s": 600.0, "max_instances": 50, "memory_mb": 1024,
                  "pricing": {"kind": "serverless", "price_per_gb_s": 0.0000166667}}  # fmt: skip
    return {
        "seed": 0,
        "workload": {"sources": [{"name": "cam", "size_bytes": 20_000, "slo_s": 0.8,
                                  "arrivals": {"kind": "trace", "path": str(tmp_path / "gaps.json"), "start_offset_s": 0}}]},  # fmt: skip
        "cluster": {
            "executors": [
                {"name": "edge", "kind": "edge", "gateway": "edge", "profile": {"kind": "linear", "per_item_s": 0.008, "base_s": 0.04}},
                {"name": "fn", **serverless},
            ],
            "links": {"fn": {"delay_s": 0.01, "bandwidth_trace": str(tmp_path / "bw.json")}},
        },
        "policy": {"placement": {"_target_": "policies.placement.WeightedPlacement"} if planner.get("weighted") else STATIC,
                   "batching": timeout_batching(8, 0.05), "planner": {k: v for k, v in planner.items() if k != "weighted"}},  # fmt: skip
    }


def test_no_policy_sees_the_step_before_it_happens(tmp_path):
    SpyPlanner.seen = []
    simulate(step_config(tmp_path, {"_target_": "tests.sim.test_telemetry_past.SpyPlanner"}))
    bandwidths = [(e.now_s, e.bandwidth_MBps) for e, _ in SpyPlanner.seen if isinstance(e, BandwidthMeasured)]
    rates = [(e.now_s, e.rate_rps) for e, _ in SpyPlanner.seen if isinstance(e, ArrivalRateMeasured)]
    assert len(bandwidths) >= 15 and len(rates) >= 15
    for now_s, value in bandwidths:
        # the mean over [now - 1, now): old up to the step, new a full second after it
        assert value == (OLD_MBPS if now_s <= STEP_S else NEW_MBPS), (now_s, value)
    for now_s, value in rates:
        if now_s <= STEP_S:
            assert value == pytest.approx(OLD_RPS, abs=1.0), (now_s, value)
    assert any(value == pytest.approx(NEW_RPS, abs=1.0) for now_s, value in rates if now_s > STEP_S + 1)
    # what placement reads (the scheduler's view): the link's nominal mean, then the last sample, never ahead
    nominal = Link(bandwidth_trace=str(tmp_path / "bw.json")).mean_bandwidth_MBps()
    for event, view in SpyPlanner.seen:
        if event.now_s <= STEP_S:
            assert view.get("fn") in (OLD_MBPS, nominal), (event.now_s, view)

def test_a_planner_plans_from_the_past_only(tmp_path):
    planner = {"_target_": "policies.planning.EdgeFirstPlanner", "slo_s": 0.8, "nominal_rate_rps": OLD_RPS, "request_size_bytes": 20_000,
               "period_s": 1.0, "estimate_window": 1, "weighted": True}  # fmt: skip
    result = simulate(step_config(tmp_path, planner))
    plans = result.plans
    measured = plans[plans["trigger"] == "periodic"]
    assert len(measured) >= 15
    for _, plan in measured.iterrows():
        # a full second of the new level is needed before a one-second measurement can show it
        if plan["at_s"] < STEP_S + 1.0:
            assert plan["bandwidth_MBps"] == OLD_MBPS, (plan["at_s"], plan["bandwidth_MBps"])
            assert plan["rate_rps"] == pytest.approx(OLD_RPS, abs=1.0), (plan["at_s"], plan["rate_rps"])
    late = measured[measured["at_s"] >= STEP_S + 1.5]
    assert (late["bandwidth_MBps"] == NEW_MBPS).all()


def test_a_measurement_is_the_mean_over_the_period_just_ended(tmp_path):
    (tmp_path / "bw.json").write_text(json.dumps([1.0, 3.0, 0.0, 5.0]))
    link = Link(bandwidth_trace=str(tmp_path / "bw.json"))
    assert link.measured_bandwidth_MBps(1.0, 1.0) == 1.0
    assert link.measured_bandwidth_MBps(2.0, 1.0) == 3.0
    assert link.measured_bandwidth_MBps(3.0, 2.0) == 1.5  # 3 then an outage
    assert link.measured_bandwidth_MBps(1.5, 1.0) == 2.0  # half of second 0, half of second 1
    assert link.measured_bandwidth_MBps(0.5, 1.0) == 1.0  # the window starts at the run's start
    assert link.measured_bandwidth_MBps(9.0, 4.0) == pytest.approx(9.0 / 4.0)  # the trace repeats
    assert Link(bandwidth_MBps=2.0).measured_bandwidth_MBps(5.0, 1.0) == 2.0
    with pytest.raises(ValueError):
        link.measured_bandwidth_MBps(0.0, 1.0)
