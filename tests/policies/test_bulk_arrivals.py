"""The policies' bulk hooks and ``Scheduler.handle_arrivals``: hand-computed cuts, the same checks as per request.

``tests/sim/test_bulk_path.py`` checks whole runs against the per-request
path; here the cuts of ``timeout_cuts`` are checked against batches worked
out by hand (ties included), and the scheduler's bulk entry against the
errors its per-request entry raises.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from policies.batching import FixedBatching, NoBatching, TimeoutBatching
from policies.batching.timeout_cuts import timeout_cuts
from policies.dispatch_batches import DispatchBatches
from policies.errors import DriverError, PolicyError
from policies.events import Request
from policies.placement import LeastLoadedPlacement, RoundRobinPlacement, StaticPlacement
from policies.scheduler import Scheduler
from spec.build import build_cluster


def cluster(executors=("edge",)):
    return build_cluster({"executors": [{"name": n, "kind": "edge", "gateway": "edge",
                                         "profile": {"kind": "linear", "per_item_s": 0.001, "base_s": 0.0}} for n in executors]})  # fmt: skip


def scheduler(batching=None, placement=None, executors=("edge",)) -> Scheduler:
    return Scheduler(cluster=cluster(executors), placement=placement or StaticPlacement(),
                     batching=batching or TimeoutBatching(max_batch_size=3, max_wait_s=5.0))  # fmt: skip


def maker(arrival_s, first_id=0):
    return lambda k: Request.make(first_id + k, "src", float(arrival_s[k]), 10, math.inf)


def test_timeout_cuts_by_hand():
    a = np.array([0.0, 1.0, 2.0, 10.0, 10.0, 11.0, 20.0])
    # size 3 fills at 2.0 and at 11.0; the last waits for its timer at 25.0
    ends, at_s = timeout_cuts(a, 3, 5.0, math.inf)
    assert ends.tolist() == [3, 6, 7] and at_s.tolist() == [2.0, 11.0, 25.0]
    # an arrival could still join the last one before 25.0: it stays queued
    ends, at_s = timeout_cuts(a, 3, 5.0, 22.0)
    assert ends.tolist() == [3, 6] and at_s.tolist() == [2.0, 11.0]
    # ... unless the next arrival comes at the timer's time exactly: the timer fires first
    assert timeout_cuts(a, 3, 5.0, 25.0)[0].tolist() == [3, 6, 7]


def test_timeout_cuts_ties_at_the_due_time_and_a_zero_wait():
    a = np.array([0.0, 0.5, 1.0])
    # each arrival lands exactly on the previous batch's due time: the timer goes first, the arrival opens the next batch
    ends, at_s = timeout_cuts(a, 8, 0.5, math.inf)
    assert ends.tolist() == [1, 2, 3] and at_s.tolist() == [0.5, 1.0, 1.5]
    # no wait: each request alone, when it arrives, also at equal times
    ends, at_s = timeout_cuts(np.array([1.0, 1.0, 2.0]), 8, 0.0, math.inf)
    assert ends.tolist() == [1, 2, 3] and at_s.tolist() == [1.0, 1.0, 2.0]
    # one request per batch: at arrival whatever the wait
    assert timeout_cuts(a, 1, 9.0, math.inf)[1].tolist() == [0.0, 0.5, 1.0]


def test_which_policies_offer_the_bulk_path():
    assert TimeoutBatching().supports_bulk and FixedBatching().supports_bulk and NoBatching().supports_bulk
    assert not TimeoutBatching(max_queue=4).supports_bulk
    assert not TimeoutBatching(max_inflight=1).supports_bulk
    assert not TimeoutBatching(preferred_batch_sizes=(2, 4)).supports_bulk
    assert not NoBatching(max_inflight=2).supports_bulk

    class Mine(TimeoutBatching):
        def decide(self, now_s):
            return super().decide(now_s)

    assert not Mine().supports_bulk  # a subclass that changes decide loses the bulk hook, not its behaviour
    assert scheduler().bulk_executor() == "edge"
    assert scheduler(placement=StaticPlacement(executor="b"), executors=("a", "b")).bulk_executor() == "b"
    assert scheduler(placement=RoundRobinPlacement(), executors=("a",)).bulk_executor() == "a"
    assert scheduler(placement=RoundRobinPlacement(), executors=("a", "b")).bulk_executor() is None
    assert scheduler(placement=LeastLoadedPlacement(), executors=("a", "b")).bulk_executor() is None


def test_handle_arrivals_returns_the_batches_and_keeps_the_open_one_queued():
    s = scheduler()
    a = np.array([0.0, 1.0, 2.0, 10.0])
    (action,) = s.handle_arrivals(a, np.arange(4), until_s=12.0, make_request=maker(a))
    assert isinstance(action, DispatchBatches)
    assert action.batches() == [(0, (0, 1, 2), 2.0)]
    assert [r.request_id for r in s.batchers["edge"].queue] == [3]
    assert s.pending_requests == 4
    # the next chunk joins the queued request: 10, 12, 13 fill a batch at 13
    b = np.array([12.0, 13.0])
    (action,) = s.handle_arrivals(b, np.array([4, 5]), until_s=math.inf, make_request=maker(b, 4))
    assert action.batches() == [(1, (3, 4, 5), 13.0)]
    assert s.batchers["edge"].batches_in_flight == 2
    s.handle_finished_bulk("edge", 2, now_s=20.0)
    assert s.pending_requests == 0 and s.batchers["edge"].batches_in_flight == 0


def test_handle_arrivals_raises_what_handle_raises():
    s = scheduler()
    a = np.array([0.0, 1.0])
    s.handle_arrivals(a, np.array([0, 1]), until_s=1.5, make_request=maker(a))
    with pytest.raises(DriverError, match="twice"):
        s.handle_arrivals(np.array([2.0]), np.array([1]), until_s=3.0, make_request=maker([2.0], 1))  # 1 is still queued
    with pytest.raises(DriverError, match="twice"):
        s.handle_arrivals(np.array([2.0, 2.5]), np.array([7, 7]), until_s=3.0, make_request=maker([2.0, 2.5], 7))
    with pytest.raises(DriverError, match="backwards"):
        s.handle_arrivals(np.array([0.5]), np.array([9]), until_s=3.0, make_request=maker([0.5], 9))
    with pytest.raises(DriverError, match="backwards"):
        s.handle_arrivals(np.array([3.0, 2.9]), np.array([9, 10]), until_s=4.0, make_request=maker([3.0, 2.9], 9))
    with pytest.raises(DriverError, match="in flight"):
        s.handle_finished_bulk("edge", 1, now_s=5.0)  # nothing was sent yet
    with pytest.raises(DriverError, match="does not apply"):
        scheduler(placement=RoundRobinPlacement(), executors=("a", "b")).handle_arrivals(a, np.array([0, 1]), until_s=2.0, make_request=maker(a))


def test_a_policy_cutting_impossible_batches_is_a_policy_error():
    class Broken(TimeoutBatching):
        def bulk_cuts(self, arrival_s, until_s):
            return np.array([2, 1]), np.array([0.0, 0.0])  # ends going backwards

    s = scheduler(batching=Broken())
    a = np.array([0.0, 1.0, 2.0])
    with pytest.raises(PolicyError, match="not increasing"):
        s.handle_arrivals(a, np.arange(3), until_s=math.inf, make_request=maker(a))

    class Early(TimeoutBatching):
        def bulk_cuts(self, arrival_s, until_s):
            return np.array([3]), np.array([1.0])  # leaves before its newest request (2.0) arrived

    with pytest.raises(PolicyError, match="before its newest"):
        scheduler(batching=Early()).handle_arrivals(a, np.arange(3), until_s=math.inf, make_request=maker(a))
