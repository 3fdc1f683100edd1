"""``RequestsArrived``: a backlog handed over at once is batched as what it is, not one request at a time."""

from __future__ import annotations

import pytest

from policies import DispatchBatch, DriverError, Request, RequestArrived, RequestsArrived, Scheduler
from policies.batching import NoBatching, TimeoutBatching
from policies.placement import LeastLoadedPlacement, StaticPlacement
from spec.topology import Cluster, ServerSpec
from tests.policies import harness as H

EDGE = ServerSpec(name="edge", kind="edge", profile=H.EDGE_PROFILE, gateway="edge")


def _req(i: int, t: float) -> Request:
    return Request(request_id=i, source="s", arrival_s=t, size_bytes=1000)


def _sizes(actions) -> list[int]:
    return [len(a.request_ids) for a in actions if isinstance(a, DispatchBatch)]


def _timeout() -> Scheduler:
    return Scheduler(cluster=Cluster(executors=[EDGE]), placement=StaticPlacement(),
                     batching=TimeoutBatching(max_batch_size=8, max_wait_s=0.005))  # fmt: skip


def test_a_late_backlog_goes_as_full_batches_not_one_by_one():
    # six requests that arrived 100 ms ago, read by a gateway that fell behind: each is past its 5 ms wait
    backlog = tuple(_req(i, 0.9 + 0.001 * i) for i in range(11))
    one_by_one = _timeout()
    sizes = [s for r in backlog for s in _sizes(one_by_one.handle(RequestArrived(now_s=1.0, request=r)))]
    assert sizes == [1] * 11  # the collapse: every request alone
    together = _timeout().handle(RequestsArrived(now_s=1.0, requests=backlog))
    assert _sizes(together) == [8, 3]
    assert [a.request_ids for a in together if isinstance(a, DispatchBatch)] == [tuple(range(8)), tuple(range(8, 11))]


def test_without_batching_a_bunch_places_and_sends_each_request_as_one_at_a_time_would():
    def fresh():
        return Scheduler(cluster=Cluster(executors=[EDGE, ServerSpec(name="e2", kind="edge", profile=H.EDGE_PROFILE, gateway="edge")]),
                         placement=LeastLoadedPlacement(), batching=NoBatching())  # fmt: skip
    requests = tuple(_req(i, 0.5) for i in range(5))
    each = fresh()
    expected = [a for r in requests for a in each.handle(RequestArrived(now_s=0.5, request=r))]
    got = fresh().handle(RequestsArrived(now_s=0.5, requests=requests))

    def placed(actions):
        return sorted((a.request_ids, a.executor) for a in actions if isinstance(a, DispatchBatch))

    # the same batches on the same executors; they are numbered executor by executor (each decides once)
    assert placed(got) == placed(expected) and {a.executor for a in got} == {"edge", "e2"}
    assert [a.batch_id for a in got] == list(range(5))


@pytest.mark.parametrize("requests", [(), [_req(1, 0.0)], (_req(1, 0.0), "not a request")])
def test_a_bunch_must_be_a_non_empty_tuple_of_requests(requests):
    with pytest.raises(DriverError, match="non-empty tuple of Request"):
        _timeout().handle(RequestsArrived(now_s=0.0, requests=requests))


def test_a_request_twice_in_a_bunch_is_the_drivers_error():
    with pytest.raises(DriverError, match="arrived twice"):
        _timeout().handle(RequestsArrived(now_s=0.0, requests=(_req(1, 0.0), _req(1, 0.0))))
