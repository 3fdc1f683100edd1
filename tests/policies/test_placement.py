"""Unit tests of the placement policies: least-loaded, latency-aware and weighted."""

from __future__ import annotations

import math

import numpy as np
import pytest

from policies import BandwidthMeasured, DispatchBatch, DropRequest, PolicyError, Request, RequestArrived, Scheduler
from policies.batching import FixedBatching, NoBatching
from policies.placement import LatencyAwarePlacement, LeastLoadedPlacement, WeightedPlacement
from spec.links import MB
from tests.policies import harness as H


def req(i: int, t: float = 0.0, deadline: float = math.inf, size: int = H.REQUEST_BYTES) -> Request:
    return Request(request_id=i, source="s", arrival_s=t, size_bytes=size, deadline_s=deadline)


def placed(actions) -> str | None:
    for a in actions:
        if isinstance(a, DispatchBatch):
            return a.executor
        if isinstance(a, DropRequest):
            return None
    raise AssertionError(f"neither dispatched nor dropped: {actions}")


# -- least loaded ---------------------------------------------------------------------------------
def test_least_loaded_joins_the_shortest_queue_ties_by_order():
    placement = LeastLoadedPlacement()
    s = Scheduler(cluster=H.seed_cluster(with_cloud=True), placement=placement, batching=FixedBatching(batch_size=100))
    assert placement.choose(0.0, req(0)) == "edge"  # all empty: the first listed
    order = []
    for i in range(6):
        s.handle(RequestArrived(now_s=0.0, request=req(i)))
        order.append(next(n for n, b in s.batchers.items() if any(r.request_id == i for r in b.queue)))
    assert order == ["edge", "serverless", "cloud"] * 2
    # load the edge: the next ones avoid it until the others catch up
    for i in range(6, 9):
        s.batchers["edge"].admit(req(100 + i))
    assert placement.choose(0.0, req(200)) == "serverless"


def test_least_loaded_counts_requests_in_flight():
    placement = LeastLoadedPlacement(executors=["edge", "cloud"])
    s = Scheduler(cluster=H.seed_cluster(with_cloud=True), placement=placement, batching=NoBatching())
    assert placed(s.handle(RequestArrived(now_s=0.0, request=req(1)))) == "edge"  # now running on the edge
    assert placed(s.handle(RequestArrived(now_s=0.0, request=req(2)))) == "cloud"
    assert placed(s.handle(RequestArrived(now_s=0.0, request=req(3)))) == "edge"


# -- latency aware ----------------------------------------------------------------------------------
def test_latency_aware_estimates_transfer_queue_and_service():
    placement = LatencyAwarePlacement()
    Scheduler(cluster=H.seed_cluster(with_cloud=True), placement=placement, batching=NoBatching())
    r = req(1)
    # cloud: 200 KiB at 20 MB/s + 10 ms delay + 0.012 s service
    assert placement.estimate_s("cloud", r) == pytest.approx(200 / 1024 / 20 + 0.01 + 0.012)
    # edge: local, l0(1)
    assert placement.estimate_s("edge", r) == pytest.approx(0.050505)
    # serverless: 200 KiB at 4.26 MB/s + ls(1, 2048)
    assert placement.estimate_s("serverless", r) == pytest.approx(200 / 1024 / 4.26 + 0.347965)


def test_latency_aware_picks_the_fastest_and_avoids_a_dead_link():
    placement = LatencyAwarePlacement(mode="fastest")
    s = Scheduler(cluster=H.seed_cluster(with_cloud=True), placement=placement, batching=NoBatching())
    assert placement.choose(0.0, req(1)) == "cloud"  # 0.0318 s against the edge's 0.0505 s
    s.handle(BandwidthMeasured(now_s=1.0, executor="cloud", bandwidth_MBps=0.0))
    assert placement.estimate_s("cloud", req(1)) == math.inf
    assert placement.choose(1.0, req(1)) == "edge"
    assert placed(s.handle(RequestArrived(now_s=1.0, request=req(2, 1.0)))) == "edge"
    s.handle(BandwidthMeasured(now_s=2.0, executor="cloud", bandwidth_MBps=20.0))
    assert placement.choose(2.0, req(3, 2.0)) == "cloud"


def test_latency_aware_counts_queued_work():
    placement = LatencyAwarePlacement(mode="fastest", executors=["edge", "cloud"], batch_size_estimate=1)
    s = Scheduler(cluster=H.seed_cluster(with_cloud=True), placement=placement, batching=FixedBatching(batch_size=1000))
    for i in range(3):
        s.batchers["cloud"].admit(req(100 + i))
    # cloud: 3 batches of one ahead, 4 * 0.012; the FIFO uplink carries those 3 before this one
    assert placement.estimate_s("cloud", req(1)) == pytest.approx(4 * 0.012 + 4 * 200 / 1024 / 20 + 0.01)
    assert placement.choose(0.0, req(1)) == "edge"


def test_latency_aware_cheapest_in_time():
    placement = LatencyAwarePlacement(mode="cheapest")
    Scheduler(cluster=H.seed_cluster(with_cloud=True), placement=placement, batching=NoBatching())
    assert placement.cost_per_request("edge") == 0.0
    assert placement.cost_per_request("cloud") == pytest.approx(3.0 * 0.012 / 3600)
    assert placement.choose(0.0, req(1, deadline=1.0)) == "edge"  # free and in time
    assert placement.choose(0.0, req(2, deadline=0.04)) == "cloud"  # only the cloud (0.0318 s) makes it
    assert placement.choose(0.0, req(3, deadline=0.01)) == "cloud"  # nobody makes it: the fastest


def test_latency_aware_drops_when_nothing_is_reachable():
    placement = LatencyAwarePlacement(executors=["serverless", "cloud"])
    s = Scheduler(cluster=H.seed_cluster(with_cloud=True), placement=placement, batching=NoBatching())
    s.handle(BandwidthMeasured(now_s=0.0, executor="cloud", bandwidth_MBps=0.0))
    s.handle(BandwidthMeasured(now_s=0.0, executor="serverless", bandwidth_MBps=0.0))
    assert s.handle(RequestArrived(now_s=0.0, request=req(1))) == [DropRequest(request_id=1, reason="no_executor")]


def test_latency_aware_in_a_run_never_uses_the_dead_link():
    placement = LatencyAwarePlacement()
    s = Scheduler(cluster=H.seed_cluster(with_cloud=True), placement=placement, batching=NoBatching())
    result = H.run(s, rate_rps=50.0, duration_s=6.0, bandwidth=lambda t: 0.0 if 2 <= t < 4 else 20.0, bandwidth_executor="cloud")
    H.check_accounting(result)
    by_time = [(at, ex) for at, ex, _ in result.dispatched.values()]
    assert all(ex != "cloud" for at, ex in by_time if 2.0 <= at < 4.0)
    assert any(ex == "cloud" for at, ex in by_time if at < 2.0)


# -- weighted ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "weights",
    [
        {"edge": 0.5, "serverless": 0.3, "cloud": 0.2},
        {"edge": 2.0, "serverless": 1.0, "cloud": 1.0},
        {"edge": 0.123, "serverless": 0.456, "cloud": 0.421},
        {"edge": 1 / 3, "serverless": 2 / 3},
    ],
)
def test_weighted_split_matches_fractions_within_one(weights):
    placement = WeightedPlacement(weights=weights)
    Scheduler(cluster=H.seed_cluster(with_cloud=True), placement=placement, batching=NoBatching())
    total = sum(weights.values())
    counts = {name: 0 for name in ("edge", "serverless", "cloud")}
    for n in range(1, 1001):
        counts[placement.choose(0.0, req(n))] += 1
        for name in counts:
            assert abs(counts[name] - n * weights.get(name, 0.0) / total) <= 1.0
    assert counts["cloud"] == round(1000 * weights.get("cloud", 0.0) / total)


def test_weighted_random_weights_stay_within_one():
    rng = np.random.default_rng(5)
    for _ in range(30):
        w = dict(zip(("edge", "serverless", "cloud"), (rng.random(3) + 0.01).tolist()))
        placement = WeightedPlacement(weights=w)
        Scheduler(cluster=H.seed_cluster(with_cloud=True), placement=placement, batching=NoBatching())
        fractions = placement.fractions
        counts = dict.fromkeys(fractions, 0)
        for n in range(1, 1001):
            counts[placement.choose(0.0, req(n))] += 1
        assert all(abs(counts[k] - 1000 * fractions[k]) <= 1.0 for k in counts)


def test_weighted_is_interleaved_not_bursty():
    placement = WeightedPlacement(weights={"edge": 3, "serverless": 1})
    Scheduler(cluster=H.seed_cluster(), placement=placement, batching=NoBatching())
    picks = [placement.choose(0.0, req(i)) for i in range(8)]
    assert picks == ["edge", "edge", "serverless", "edge"] * 2


def test_weighted_plan_replaces_weights():
    placement = WeightedPlacement()
    s = Scheduler(cluster=H.seed_cluster(with_cloud=True), placement=placement, batching=NoBatching())
    assert placement.fractions == pytest.approx({"edge": 1 / 3, "serverless": 1 / 3, "cloud": 1 / 3})
    placement.apply_plan(weights={"serverless": 1.0})
    assert {placement.choose(0.0, req(i)) for i in range(10)} == {"serverless"}
    placement.apply_plan(weights={"edge": 0.75, "serverless": 0.25, "cloud": 0.0})
    picks = [placement.choose(0.0, req(i)) for i in range(100)]
    assert picks.count("edge") == 75 and picks.count("cloud") == 0
    with pytest.raises(ValueError, match="weights"):
        placement.apply_plan(weights={"edge": -1.0})
    with pytest.raises(PolicyError):
        placement.apply_plan(weights={"nope": 1.0})
    assert s.placement is placement


def test_request_size_matters_for_transfer():
    placement = LatencyAwarePlacement()
    Scheduler(cluster=H.seed_cluster(with_cloud=True), placement=placement, batching=NoBatching())
    assert placement.transfer_s("cloud", 20 * MB) == pytest.approx(1.0 + 0.01)
    assert placement.choose(0.0, req(1, size=20 * MB)) == "edge"
