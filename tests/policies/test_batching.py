"""Unit tests of the batching policies: fixed, timeout, AIMD and deadline-aware."""

from __future__ import annotations

import math

import pytest

from policies.timer_id import TimerId

from policies import (
    BatchFinished,
    CancelTimer,
    DispatchBatch,
    DropRequest,
    Request,
    RequestArrived,
    Scheduler,
    StartTimer,
    TimerFired,
)
from policies.batching import AIMDBatching, DeadlineAwareBatching, FixedBatching, TimeoutBatching
from policies.placement import StaticPlacement
from spec.links import MB
from spec.topology import Cluster, ServerlessSpec, ServerSpec
from tests.policies import harness as H

EDGE = ServerSpec(name="edge", kind="edge", profile=H.EDGE_PROFILE, gateway="edge")


def edge_only() -> Cluster:
    return Cluster(executors=[EDGE])


def req(i: int, t: float, deadline: float = math.inf, size: int = 1000) -> Request:
    return Request(request_id=i, source="s", arrival_s=t, size_bytes=size, deadline_s=deadline)


def bound(policy, executor=EDGE):
    policy.bind(executor)
    return policy


def of(actions, kind):
    return [a for a in actions if isinstance(a, kind)]


# -- FixedBatching -------------------------------------------------------------------------------
def test_fixed_waits_for_a_full_batch():
    s = Scheduler(cluster=edge_only(), placement=StaticPlacement(), batching=FixedBatching(batch_size=3, max_wait_s=1.0))
    a1 = s.handle(RequestArrived(now_s=0.0, request=req(1, 0.0)))
    assert not of(a1, DispatchBatch)
    assert of(a1, StartTimer) == [StartTimer(timer_id=TimerId.batch("edge"), at_s=1.0)]
    assert not of(s.handle(RequestArrived(now_s=0.1, request=req(2, 0.1))), DispatchBatch)
    a3 = s.handle(RequestArrived(now_s=0.2, request=req(3, 0.2)))
    assert of(a3, DispatchBatch)[0].request_ids == (1, 2, 3)
    assert of(a3, CancelTimer) == [CancelTimer(timer_id=TimerId.batch("edge"))]


def test_fixed_dispatches_a_partial_batch_at_the_safety_bound():
    s = Scheduler(cluster=edge_only(), placement=StaticPlacement(), batching=FixedBatching(batch_size=3, max_wait_s=0.5))
    s.handle(RequestArrived(now_s=0.0, request=req(1, 0.0)))
    s.handle(RequestArrived(now_s=0.3, request=req(2, 0.3)))
    fired = s.handle(TimerFired(now_s=0.5, timer_id=TimerId.batch("edge")))
    assert of(fired, DispatchBatch)[0].request_ids == (1, 2)


def test_fixed_several_full_batches_at_once_and_plan_resizes():
    p = bound(FixedBatching(batch_size=2, max_wait_s=1.0))
    for i in range(5):
        p.admit(req(i, 0.0))
    d = p.decide(0.0)
    assert d.batches == (2, 2) and d.wake_at_s == 1.0
    p.take(2), p.take(2)
    p.apply_plan(batch_size=5)
    assert p.decide(0.1).batches == ()
    with pytest.raises(ValueError, match="batch_size"):
        p.apply_plan(batch_size=0)


# -- TimeoutBatching (review) -----------------------------------------------------------------------
def test_timeout_cuts_to_preferred_size_and_rearms_for_the_rest():
    p = bound(TimeoutBatching(max_batch_size=8, max_wait_s=0.1, preferred_batch_sizes=[4]))
    for i, t in enumerate([0.0, 0.01, 0.02, 0.03, 0.04, 0.05]):
        p.admit(req(i, t))
    waiting = p.decide(0.05)
    assert waiting.batches == () and waiting.wake_at_s == 0.1
    d = p.decide(0.1)
    assert d.batches == (4,)
    assert d.wake_at_s == pytest.approx(0.04 + 0.1)


def test_timeout_full_batches_then_the_remainders_own_deadline():
    p = bound(TimeoutBatching(max_batch_size=2, max_wait_s=0.1))
    for i, t in enumerate([0.0, 0.01, 0.02]):
        p.admit(req(i, t))
    d = p.decide(0.02)
    assert d.batches == (2,) and d.wake_at_s == pytest.approx(0.12)


def test_timeout_max_inflight_holds_until_a_batch_finishes():
    s = Scheduler(
        cluster=edge_only(), placement=StaticPlacement(), batching=TimeoutBatching(max_batch_size=2, max_wait_s=0.01, max_inflight=1)
    )
    s.handle(RequestArrived(now_s=0.0, request=req(1, 0.0)))
    s.handle(RequestArrived(now_s=0.001, request=req(2, 0.001)))  # full batch goes
    s.handle(RequestArrived(now_s=0.002, request=req(3, 0.002)))
    s.handle(RequestArrived(now_s=0.003, request=req(4, 0.003)))  # full, but one batch is running
    assert len(s.batchers["edge"].queue) == 2
    done = s.handle(BatchFinished(now_s=0.06, batch_id=0, executor="edge", service_s=0.059))
    assert of(done, DispatchBatch)[0].request_ids == (3, 4)


# -- AIMDBatching ------------------------------------------------------------------------------------
def test_aimd_grows_additively_and_cuts_multiplicatively():
    p = bound(AIMDBatching(slo_s=0.2, max_batch_size=64, initial_batch_size=1, increase=1, decrease=0.9))
    for expected in range(2, 12):
        p.observe_finished(0.0, p.batch_size, 0.1)
        assert p.batch_size == expected
    p.observe_finished(0.0, 11, 0.25)  # over the objective: 11 * 0.9 = 9.9
    assert p.batch_size == 9
    p.observe_finished(0.0, 3, 0.01)  # a partial batch says nothing about larger ones
    assert p.batch_size == 9
    p.observe_finished(0.0, 3, 0.5)  # a small batch overran: cut from its size
    assert p.batch_size == 2  # 3 * 0.9 = 2.7
    for _ in range(5):
        p.observe_finished(0.0, 1, 1.0)
    assert p.batch_size == 1  # never below 1
    assert p.cuts == 7 and p.increases == 10


def test_aimd_bounded_above_and_by_plan():
    p = bound(AIMDBatching(slo_s=1.0, max_batch_size=4))
    for _ in range(10):
        p.observe_finished(0.0, p.batch_size, 0.1)
    assert p.batch_size == 4
    p.apply_plan(batch_size=2)
    assert p.batch_size == 2 and p.max_batch_size == 2


def test_aimd_converges_near_the_largest_batch_within_the_objective():
    # edge l0(b) = 0.008165 b + 0.04234 <= 0.2  <=>  b <= 19.3: grows to 20, is cut, grows again
    # one batch at a time, as Clipper takes a batch when the container is free
    policy = AIMDBatching(slo_s=0.2, max_batch_size=64, max_wait_s=0.05, max_inflight=1)
    s = Scheduler(cluster=edge_only(), placement=StaticPlacement(), batching=policy)
    result = H.run(s, rate_rps=150.0, duration_s=20.0, seed=1)
    H.check_accounting(result)
    batcher = s.batchers["edge"]
    sizes = [len(ids) for _, ids, _, _ in result.batches.values()]
    # +1 per full batch from 1 to 20; l0(20) = 0.2057 > 0.2 cuts to floor(20 * 0.9) = 18; and again
    assert sizes[:23] == list(range(1, 21)) + [18, 19, 20]
    assert set(sizes[20:]) <= {18, 19, 20}
    assert batcher.cuts > 0 and batcher.increases > 0


# -- DeadlineAwareBatching ------------------------------------------------------------------------------
L1, L2 = H.EDGE_PROFILE.mean_s(1), H.EDGE_PROFILE.mean_s(2)


def test_deadline_waits_exactly_as_long_as_the_slack_allows():
    s = Scheduler(
        cluster=edge_only(), placement=StaticPlacement(), batching=DeadlineAwareBatching(max_batch_size=8, safety_s=0.01)
    )
    a = s.handle(RequestArrived(now_s=0.0, request=req(1, 0.0, deadline=0.3)))
    # l0(1) = 0.050505: latest dispatch 0.3 - 0.050505 - 0.01
    assert of(a, StartTimer) == [StartTimer(timer_id=TimerId.batch("edge"), at_s=pytest.approx(0.3 - L1 - 0.01))]
    b = s.handle(RequestArrived(now_s=0.1, request=req(2, 0.1, deadline=0.2)))
    # the tighter deadline and a batch of 2 (l0(2) = 0.05867): 0.2 - 0.05867 - 0.01 = 0.13133
    due = 0.2 - L2 - 0.01
    assert of(b, StartTimer)[0].at_s == pytest.approx(due)
    assert not of(b, DispatchBatch)
    fired = s.handle(TimerFired(now_s=of(b, StartTimer)[0].at_s, timer_id=TimerId.batch("edge")))
    assert of(fired, DispatchBatch)[0].request_ids == (1, 2)


def test_deadline_dispatches_at_once_when_the_slack_is_gone_or_the_batch_is_full():
    p = bound(DeadlineAwareBatching(max_batch_size=3))
    p.admit(req(1, 0.0, deadline=0.05 + L1))  # due at 0.05
    assert p.decide(0.049).batches == ()
    assert p.decide(0.0501).batches == (1,)
    p = bound(DeadlineAwareBatching(max_batch_size=3))
    for i in range(3):
        p.admit(req(i, 0.0, deadline=10.0))
    assert p.decide(0.0).batches == (3,)


def test_deadline_without_deadlines_falls_back_to_max_wait():
    p = bound(DeadlineAwareBatching(max_batch_size=8, max_wait_s=0.04))
    p.admit(req(1, 0.01))
    assert p.decide(0.01).wake_at_s == pytest.approx(0.05)
    assert p.decide(0.05).batches == (1,)


def test_deadline_sheds_requests_that_cannot_make_it_even_alone():
    s = Scheduler(cluster=edge_only(), placement=StaticPlacement(), batching=DeadlineAwareBatching(max_batch_size=8, shed=True))
    hopeless = s.handle(RequestArrived(now_s=0.0, request=req(1, 0.0, deadline=0.04)))  # l0(1) = 0.0505 > 0.04
    assert hopeless == [DropRequest(request_id=1, reason="deadline")]
    ok = s.handle(RequestArrived(now_s=0.0, request=req(2, 0.0, deadline=0.06)))  # 0.0505 <= 0.06: kept
    assert of(ok, StartTimer)[0].at_s == pytest.approx(0.06 - L1)
    late = s.handle(RequestArrived(now_s=0.005, request=req(3, 0.005, deadline=0.05)))  # 0.005 + 0.0505 > 0.05
    assert late == [DropRequest(request_id=3, reason="deadline")]
    assert s.batchers["edge"].shed_count == 2
    # without shedding it is dispatched anyway
    s = Scheduler(cluster=edge_only(), placement=StaticPlacement(), batching=DeadlineAwareBatching(max_batch_size=8))
    assert of(s.handle(RequestArrived(now_s=0.0, request=req(1, 0.0, deadline=0.04))), DispatchBatch)


def test_deadline_sheds_in_a_run_with_reason_deadline():
    s = Scheduler(cluster=edge_only(), placement=StaticPlacement(), batching=DeadlineAwareBatching(max_batch_size=4, shed=True))
    result = H.run(s, rate_rps=100.0, duration_s=3.0, seed=2, slo_s=lambda i: 0.03 if i % 5 == 0 else 0.5)
    H.check_accounting(result)
    shed = {rid for rid, reason in result.dropped.items() if reason == "deadline"}
    assert shed == {rid for rid in result.requests if rid % 5 == 0}


def test_deadline_counts_the_upload_to_a_remote_executor():
    remote = ServerlessSpec(name="serverless", profile=H.SERVERLESS_PROFILE, memory_mb=2048)
    p = DeadlineAwareBatching(max_batch_size=8, uplink_MBps=1.0, uplink_delay_s=0.02)
    p.bind(remote)
    service = H.SERVERLESS_PROFILE.mean_s(1, 2048)
    assert p.predict_s(1, MB) == pytest.approx(service + 1.0 + 0.02)
    p.admit(req(1, 0.0, deadline=3.0, size=MB))
    assert p.decide(0.0).wake_at_s == pytest.approx(3.0 - service - 1.02)
    local = bound(DeadlineAwareBatching(uplink_MBps=1.0))
    assert local.predict_s(1, MB) == pytest.approx(L1)  # a local executor has no upload
