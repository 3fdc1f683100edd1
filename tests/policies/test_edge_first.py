"""The seed's edge-first planner against plans computed by hand.

Seed models (../shared/data/README.md):
  edge        l0(b)    = 0.008165 b + 0.04234 s
  serverless  ls(b, m) = 0.141 b - 8.806e-6 m + 0.225 s
  upload      200 KiB per request: t(b, B) = (200/1024) b / B s, B in MiB/s
  price       0.0000127 per GB-s, so c = 0.0000127 / 1024 per MB-s
"""

from __future__ import annotations

import math

import pytest

from policies import ArrivalRateMeasured, NotePlan, Scheduler
from policies.batching import FixedBatching
from policies.placement import WeightedPlacement
from policies.planning.edge_first import EdgeFirstAlgorithm, EdgeFirstPlanner
from spec.profiles import LinearProfile
from tests.policies import harness as H

C = 0.0000127 / 1024  # per MB-second


def algo(slo_s: float, **kwargs) -> EdgeFirstAlgorithm:
    kwargs.setdefault("serverless_profile", H.SERVERLESS_PROFILE)
    kwargs.setdefault("price_per_gb_s", H.PRICE_PER_GB_S)
    return EdgeFirstAlgorithm(slo_s=slo_s, edge_profile=H.EDGE_PROFILE, **kwargs)


def ls(b: int, m: int) -> float:
    return 0.141 * b - 8.806e-6 * m + 0.225


def test_step1_edge_capacity_for_T_0_8():
    # l0(b) <= T/2 = 0.4  <=>  b <= (0.4 - 0.04234) / 0.008165 = 43.8: the grid's 40
    # (l0(40) = 0.36894, l0(50) = 0.45059); R* = 2 * 40 / 0.8 = 100 rps
    assert algo(0.8).edge_capacity() == (40, pytest.approx(100.0))


def test_edge_only_at_50_rps():
    # R = 50 <= R* = 100. From the top: need l0(b) + b/50 <= 0.8, i.e. 0.028165 b <= 0.75766, b <= 26.9;
    # b = 30: 0.28729 + 0.6 = 0.887 > 0.8; b = 20: 0.2057 + 0.4 = 0.6057 <= 0.8 and 0.2057 <= 20/50 = 0.4
    d = algo(0.8).plan(rate_rps=50.0, bandwidth_MBps=4.26)
    assert (d.feasible, d.edge_batch_size, d.serverless_batch_size, d.serverless_memory_mb) == (True, 20, 0, 0)
    assert d.edge_only and d.cost_per_s == 0.0 and d.reason == "edge_only"


def test_edge_only_at_exactly_R_star():
    # R = 100: l0(b) + b/100 <= 0.8  <=>  b <= 41.7; b = 40: 0.36894 + 0.4 = 0.76894, and 0.36894 <= 0.4
    d = algo(0.8).plan(rate_rps=100.0, bandwidth_MBps=4.26)
    assert (d.edge_batch_size, d.serverless_batch_size) == (40, 0)


def test_edge_only_at_zero_rate_takes_batch_one():
    # b/R is infinite for every b > 1; b = 1: l0(1) = 0.050505 <= 0.8
    d = algo(0.8).plan(rate_rps=0.0, bandwidth_MBps=4.26)
    assert d.feasible and d.edge_batch_size == 1


def test_split_at_150_rps():
    # R1 = 150 - 100 = 50 rps. Cost c * m * ls(b, m) * ceil(50 / b); m = 1024 is cheapest for each b:
    #   b=10: 1024 * 1.625983 * 5 = 8325   b=20: 1024 * 3.035983 * 3 = 9327   b=5: 1024 * 0.920983 * 10 = 9431
    #   b=15: 1024 * 2.330983 * 4 = 9548   b=4: 1024 * 0.779983 * 13 = 10383  b=3: 1024 * 0.638983 * 17 = 11123
    #   b=2:  1024 * 0.497983 * 25 = 12748 ...
    # SLO (t(b, 4.26) = 0.045848 b): b >= 4 has ls alone near or above 0.8;
    #   b=3: 0.638983 + 3/50 + 0.137544 = 0.8365 > 0.8;  b=2: 0.497983 + 0.04 + 0.091696 = 0.6297 <= 0.8
    d = algo(0.8).plan(rate_rps=150.0, bandwidth_MBps=4.26)
    assert d.feasible and d.reason == "split"
    assert (d.edge_batch_size, d.serverless_batch_size, d.serverless_memory_mb) == (40, 2, 1024)
    assert d.edge_rate_rps == pytest.approx(100.0) and d.serverless_rate_rps == pytest.approx(50.0)
    assert d.cost_per_s == pytest.approx(C * 1024 * ls(2, 1024) * 25)


def test_split_with_a_tighter_slo_needs_batch_one():
    # T = 0.5: l0(b) <= 0.25  <=>  b <= 25.4: b* = 20, R* = 40 / 0.5 = 80. R = 200: R1 = 120.
    # b = 2 at best memory: ls(2, 4096) = 0.470931, + 2/120 + 0.091696 = 0.5793 > 0.5; larger b worse.
    # b = 1: ls(1, 1024) + t(1) = 0.356983 + 0.045848 = 0.4028 <= 0.5, and m = 1024 is the cheapest b = 1
    d = algo(0.5).plan(rate_rps=200.0, bandwidth_MBps=4.26)
    assert (d.feasible, d.edge_batch_size, d.serverless_batch_size, d.serverless_memory_mb) == (True, 20, 1, 1024)
    assert d.edge_rate_rps == pytest.approx(80.0)
    assert d.cost_per_s == pytest.approx(C * 1024 * ls(1, 1024) * 120)


def test_ties_go_to_the_smaller_batch_then_the_smaller_memory():
    # T = 2: l0(b) <= 1 <=> b <= 117.3: b* = 100, R* = 100. R = 110: R1 = 10.
    # A serverless profile of constant 0.1 s: cost c * m * 0.1 * ceil(10 / b) ties for b = 10, 15, 20 at m = 1024.
    # b = 10: 0.1 + 10/10 + 0 (no link) = 1.1 <= 2: the smallest of the tied batches
    flat = LinearProfile(per_item_s=0.0, base_s=0.1)
    d = algo(2.0, serverless_profile=flat).plan(rate_rps=110.0, bandwidth_MBps=math.inf)
    assert (d.serverless_batch_size, d.serverless_memory_mb) == (10, 1024)
    # free functions: everything costs 0, the first in (batch, memory) order that fits wins
    d = algo(2.0, serverless_profile=flat, price_per_gb_s=0.0).plan(rate_rps=110.0, bandwidth_MBps=math.inf)
    assert (d.serverless_batch_size, d.serverless_memory_mb) == (1, 1024)


def test_infeasible_when_the_edge_cannot_meet_half_the_slo():
    # T = 0.08: l0(1) = 0.0505 > 0.04: no b*. Best effort: fallback batch 1 on both sides, memory 4096,
    # edge share min(1, R*/R) with R* = 2 * 1 / 0.08 = 25: 25/100
    d = algo(0.08).plan(rate_rps=100.0, bandwidth_MBps=4.26)
    assert not d.feasible and "T/2" in d.reason
    assert (d.edge_batch_size, d.serverless_batch_size, d.serverless_memory_mb) == (1, 1, 4096)
    assert d.edge_rate_rps == pytest.approx(25.0) and d.serverless_rate_rps == pytest.approx(75.0)


def test_infeasible_when_the_uplink_is_too_slow():
    # B = 0.1 MB/s: t(1, B) = 0.1953 / 0.1 = 1.95 s > T for every (b, m)
    d = algo(0.8).plan(rate_rps=150.0, bandwidth_MBps=0.1)
    assert not d.feasible
    assert (d.edge_batch_size, d.serverless_batch_size, d.serverless_memory_mb) == (40, 1, 4096)
    assert d.edge_rate_rps == pytest.approx(100.0)


def test_infeasible_when_the_link_is_down_keeps_everything_on_the_edge():
    d = algo(0.8).plan(rate_rps=150.0, bandwidth_MBps=0.0)
    assert not d.feasible and d.edge_rate_rps == pytest.approx(150.0) and d.serverless_rate_rps == 0.0


def test_bad_inputs_raise_value_error():
    with pytest.raises(ValueError, match="rate_rps"):
        algo(0.8).plan(rate_rps=-1.0, bandwidth_MBps=1.0)
    with pytest.raises(ValueError, match="bandwidth_MBps"):
        algo(0.8).plan(rate_rps=1.0, bandwidth_MBps=math.nan)


# -- the Planner ---------------------------------------------------------------------------------
def scheduler(planner) -> Scheduler:
    return Scheduler(cluster=H.seed_cluster(), placement=WeightedPlacement(), batching=FixedBatching(), planner=planner)


def first_plan(planner):
    s = scheduler(planner)
    actions = s.handle(ArrivalRateMeasured(now_s=0.0, rate_rps=planner.nominal_rate_rps))
    return [a.plan for a in actions if isinstance(a, NotePlan)][0], s


def test_planner_turns_a_split_into_a_plan():
    plan, s = first_plan(EdgeFirstPlanner(slo_s=0.8, nominal_rate_rps=150.0))
    assert plan.feasible and plan.trigger == "initial"
    assert dict(plan.batch_size) == {"edge": 40, "serverless": 2}
    assert dict(plan.memory_mb) == {"serverless": 1024}
    assert plan.weights["edge"] == pytest.approx(100 / 150) and plan.weights["serverless"] == pytest.approx(50 / 150)
    assert s.batchers["edge"].batch_size == 40 and s.batchers["serverless"].batch_size == 2
    assert s.batchers["serverless"].memory_mb == 1024
    assert s.placement.fractions == pytest.approx({"edge": 2 / 3, "serverless": 1 / 3})


def test_planner_edge_only_plan():
    plan, _ = first_plan(EdgeFirstPlanner(slo_s=0.8, nominal_rate_rps=50.0))
    assert dict(plan.batch_size) == {"edge": 20} and dict(plan.memory_mb) == {}
    assert dict(plan.weights) == {"edge": 1.0, "serverless": 0.0}


def test_planner_infeasible_plan_is_best_effort_not_a_crash():
    plan, _ = first_plan(EdgeFirstPlanner(slo_s=0.08, nominal_rate_rps=100.0, fallback_batch_size=2))
    assert not plan.feasible
    assert dict(plan.batch_size) == {"edge": 2, "serverless": 2} and dict(plan.memory_mb) == {"serverless": 4096}
    assert plan.detail["reason"]


def test_planner_plan_method_and_price_from_the_cluster():
    planner = EdgeFirstPlanner(slo_s=0.8, nominal_rate_rps=150.0)
    with pytest.raises(ValueError):
        planner.plan(rate_rps=150.0, bandwidth_MBps=4.26)  # nothing to plan with before binding
    scheduler(planner)
    assert planner.algorithm.price_per_gb_s == H.PRICE_PER_GB_S
    assert planner.plan(rate_rps=150.0, bandwidth_MBps=4.26) == algo(0.8).plan(rate_rps=150.0, bandwidth_MBps=4.26)
    standalone = EdgeFirstPlanner(
        slo_s=0.8,
        nominal_rate_rps=1.0,
        edge_profile=H.EDGE_PROFILE,
        serverless_profile=H.SERVERLESS_PROFILE,
        price_per_gb_s=H.PRICE_PER_GB_S,
    )
    assert standalone.plan(rate_rps=150.0, bandwidth_MBps=4.26).serverless_batch_size == 2


def test_planner_uses_the_links_mean_bandwidth_at_first():
    planner = EdgeFirstPlanner(slo_s=0.8, nominal_rate_rps=150.0)
    s = Scheduler(
        cluster=H.seed_cluster(bandwidth_MBps=1.0), placement=WeightedPlacement(), batching=FixedBatching(), planner=planner
    )
    plan = [a.plan for a in s.handle(ArrivalRateMeasured(now_s=0.0, rate_rps=150.0)) if isinstance(a, NotePlan)][0]
    assert plan.detail["bandwidth_MBps"] == 1.0
    # B = 1: t(1) = 0.1953; b = 2: 0.497983 + 0.04 + 0.390625 = 0.9286 > 0.8; b = 1: 0.356983 + 0.1953 = 0.5523
    assert dict(plan.batch_size) == {"edge": 40, "serverless": 1}
