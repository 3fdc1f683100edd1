"""Re-plan triggers shared by the planners: periodic, changepoint, none."""

from __future__ import annotations

import numpy as np
import pytest

from policies.timer_id import TimerId

from policies import ArrivalRateMeasured, BandwidthMeasured, DriverError, NotePlan, Scheduler, TimerFired
from policies.batching import FixedBatching
from policies.placement import WeightedPlacement
from policies.planning import EdgeFirstPlanner, TailAwarePlanner
from tests.policies import harness as H


def scheduler(planner, with_cloud=False) -> Scheduler:
    return Scheduler(
        cluster=H.seed_cluster(with_cloud=with_cloud), placement=WeightedPlacement(), batching=FixedBatching(), planner=planner
    )


def plans(actions):
    return [a.plan for a in actions if isinstance(a, NotePlan)]


@pytest.mark.parametrize("cls", [EdgeFirstPlanner, TailAwarePlanner])
def test_periodic_replans_every_period(cls):
    planner = cls(slo_s=0.8, nominal_rate_rps=50.0, trigger="periodic", period_s=5.0)
    s = scheduler(planner)
    result = H.run(s, rate_rps=50.0, duration_s=21.0, rate_period_s=1.0)
    assert [p.trigger for p in result.plans] == ["initial", "periodic", "periodic", "periodic", "periodic"]
    fired = [t for name, t in result.timers_fired if name == TimerId.plan()]
    first = result.events[0].now_s
    assert fired == pytest.approx([first + 5 * k for k in range(1, 5)])


def test_none_plans_once():
    planner = EdgeFirstPlanner(slo_s=0.8, nominal_rate_rps=50.0, trigger="none")
    result = H.run(scheduler(planner), rate_rps=50.0, duration_s=12.0, rate_period_s=1.0, bandwidth=lambda t: 4.0 if t < 6 else 1.0)
    assert [p.trigger for p in result.plans] == ["initial"]
    assert not [t for name, t in result.timers_fired if name == TimerId.plan()]


def feed_rates(s, values, start=0.0):
    out = []
    for k, v in enumerate(values):
        out.append((k, plans(s.handle(ArrivalRateMeasured(now_s=start + k, rate_rps=float(v))))))
    return [(k, p) for k, ps in out for p in ps]


def test_changepoint_replans_on_a_load_change_only():
    planner = EdgeFirstPlanner(slo_s=0.8, nominal_rate_rps=50.0, trigger="changepoint", estimate_window=5)
    s = scheduler(planner)
    rng = np.random.default_rng(0)
    values = np.concatenate([rng.poisson(50, 60), rng.poisson(150, 60)])
    got = feed_rates(s, values)
    triggers = [(k, p.trigger) for k, p in got]
    assert triggers[0] == (0, "initial")
    assert triggers[1] == (4, "warmup")  # the 5th sample replaces the nominal rate
    changes = [k for k, t in triggers if t == "changepoint"]
    assert len(changes) == 1 and 60 <= changes[0] <= 70
    after = [p for k, p in got if p.trigger == "changepoint"][0]
    # the estimate follows the new level at once: the plan splits (R > R* = 100)
    assert after.detail["rate_rps"] > 120 and after.batch_size.get("serverless")
    assert planner.wake_at_s is None


def test_changepoint_replans_on_a_bandwidth_change_of_its_uplink():
    planner = EdgeFirstPlanner(slo_s=0.8, nominal_rate_rps=150.0, trigger="changepoint")
    s = scheduler(planner, with_cloud=True)
    rng = np.random.default_rng(1)
    seen = []
    for k in range(80):
        bw = (4.0 if k < 40 else 1.0) + 0.1 * rng.standard_normal()
        seen += [(k, p) for p in plans(s.handle(BandwidthMeasured(now_s=float(k), executor="serverless", bandwidth_MBps=bw)))]
        # another executor's link is none of its business
        seen += [(k, p) for p in plans(s.handle(BandwidthMeasured(now_s=float(k), executor="cloud", bandwidth_MBps=50.0 * (k % 2))))]
    changes = [(k, p) for k, p in seen if p.trigger == "changepoint"]
    assert len(changes) == 1 and 40 <= changes[0][0] <= 50
    assert changes[0][1].detail["bandwidth_MBps"] < 1.5


def test_rate_estimate_is_a_moving_average():
    planner = EdgeFirstPlanner(slo_s=0.8, nominal_rate_rps=50.0, estimate_window=3, trigger="none")
    s = scheduler(planner)
    assert planner.rate_rps == 50.0
    for k, v in enumerate([10, 20, 30, 40]):
        s.handle(ArrivalRateMeasured(now_s=float(k), rate_rps=float(v)))
    assert planner.rate_rps == pytest.approx(30.0)
    assert planner.bandwidth_MBps == 4.26  # the link's mean until a sample comes


def test_broken_telemetry_is_a_driver_error():
    s = scheduler(EdgeFirstPlanner(slo_s=0.8, nominal_rate_rps=50.0))
    with pytest.raises(DriverError):
        s.handle(ArrivalRateMeasured(now_s=0.0, rate_rps=-1.0))


def test_plan_timer_is_a_driver_contract():
    planner = EdgeFirstPlanner(slo_s=0.8, nominal_rate_rps=50.0, period_s=1.0)
    s = scheduler(planner)
    s.handle(ArrivalRateMeasured(now_s=0.0, rate_rps=50.0))
    with pytest.raises(DriverError):
        s.handle(TimerFired(now_s=0.5, timer_id=TimerId.plan()))  # early
    s = scheduler(EdgeFirstPlanner(slo_s=0.8, nominal_rate_rps=50.0, period_s=1.0))
    s.handle(ArrivalRateMeasured(now_s=0.0, rate_rps=50.0))
    assert [p.trigger for p in plans(s.handle(TimerFired(now_s=1.0, timer_id=TimerId.plan())))] == ["periodic"]
