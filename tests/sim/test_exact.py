"""The simulator checked request by request against independent recursions.

The queueing-theory tests (``test_queueing_theory.py``) check means, which a
wrong order of service or a late timer can leave intact. These replay every
request of a run through recursions written here from the queue's
definition, fed only the run's own arrival times and the service time each
batch drew (read from the batch records, in dispatch order), and require
every request's start, end, completion and wait to agree to 1e-9 s:

* one slot, no batching: Lindley's recursion for the wait of request n,
  ``W_n = max(0, W_{n-1} + S_{n-1} - (a_n - a_{n-1}))``;
* c slots, no batching: the Kiefer-Wolfowitz form, each request in arrival
  order starting at ``max(a_n, earliest free slot)``;
* timeout batching: batches formed here from the arrivals alone (a batch
  opens at its oldest request and leaves when it holds ``max_batch_size``
  requests or ``max_wait_s`` after that oldest arrival, whichever is first),
  then Lindley over batches, ``start_k = max(dispatch_k, end_{k-1})``
  (and the c-slot form for several slots).

A second check reads each batch's timer off the records: a batch that left
before it was full left exactly ``max_wait_s`` after its oldest request
arrived, and a full one no later than that (and, at one slot, batches
start in the order they left).

Every check runs on both of the simulator's paths: one request at a time,
and the bulk path (``sim.bulk_driver``, whole chunks of arrivals per call).

Both catch the two bugs they were written against (checked by planting each
and running these tests): a last-in-first-out waiting queue in
``spec.slots.Slots`` and a batch timer started from the newest queued
request instead of the oldest.
"""

from __future__ import annotations

import heapq

import numpy as np
import pytest

from sim import build_simulation
from tests.sim.configs import timeout_batching

TOL_S = 1e-9
MAX_BATCH = 8
MAX_WAIT_S = 0.005


def config(*, rate_rps: float, slots: int, batching: dict | None = None, num_requests: int = 20_000, seed: int = 3) -> dict:
    """One source, one edge server with noisy service (so that order matters); no hops, no overheads."""
    return {
        "seed": seed,
        "workload": {"num_requests": num_requests, "sources": [{"name": "src", "arrivals": {"kind": "poisson", "rate_rps": rate_rps}}]},
        "cluster": {
            "executors": [
                {"name": "edge", "kind": "edge", "gateway": "edge", "slots": slots,
                 "profile": {"kind": "linear", "per_item_s": 0.0005, "base_s": 0.002},
                 "noise": {"kind": "gamma", "cv": 0.7}},
            ]
        },
        "policy": {"placement": {"_target_": "policies.placement.StaticPlacement"},
                   "batching": batching or {"_target_": "policies.batching.NoBatching"}},
    }  # fmt: skip


@pytest.fixture(params=[False, True], ids=["per_request", "bulk"])
def simulate(request):
    """``sim.simulate`` on the per-request path, then on the bulk path (each must take the one asked for)."""

    def run(config):
        sim = build_simulation(config)
        sim.bulk = request.param
        result = sim.run()
        assert (sim.feed_path == "bulk") == request.param, sim.feed_path
        return result

    return run


def records(result):
    """Per request (in id = arrival order): arrival, batch id; per batch (in dispatch order): service, start, end."""
    requests, batches = result.requests, result.batches
    assert not requests["dropped"].any()
    assert (batches["batch_id"].to_numpy() == np.arange(len(batches))).all()
    service = (batches["end_s"] - batches["start_s"]).to_numpy()
    return requests, batches, service


def fifo_starts(dispatch_s: np.ndarray, service_s: np.ndarray, slots: int) -> np.ndarray:
    """Start times of jobs served first-in-first-out by ``slots`` servers (Lindley for one slot)."""
    starts = np.empty(len(dispatch_s))
    if slots == 1:
        wait = 0.0
        for k in range(len(dispatch_s)):
            if k:
                wait = max(0.0, wait + service_s[k - 1] - (dispatch_s[k] - dispatch_s[k - 1]))
            starts[k] = dispatch_s[k] + wait
        return starts
    free = [0.0] * slots  # when each slot is next free
    for k in range(len(dispatch_s)):
        start = max(dispatch_s[k], heapq.heappop(free))
        starts[k] = start
        heapq.heappush(free, start + service_s[k])
    return starts


def timeout_batches(arrival_s: np.ndarray, max_batch: int, max_wait_s: float) -> tuple[np.ndarray, np.ndarray]:
    """Timeout batching from the arrivals alone: (each request's batch index, each batch's dispatch time).

    A batch opens at its oldest request and leaves at the arrival that fills
    it, or ``max_wait_s`` after its oldest arrival; an arrival at exactly
    that time joins the next batch (the timer fires first).
    """
    batch_of = np.empty(len(arrival_s), dtype=np.int64)
    dispatch: list[float] = []
    i, n = 0, len(arrival_s)
    while i < n:
        due_s = arrival_s[i] + max_wait_s
        j = i + 1
        while j < n and j - i < max_batch and arrival_s[j] < due_s:
            j += 1
        batch_of[i:j] = len(dispatch)
        dispatch.append(arrival_s[j - 1] if j - i == max_batch else due_s)
        i = j
    return batch_of, np.array(dispatch)


def check_requests(requests, batch_of, start_s, end_s) -> None:
    """Every request's start, end, completion and wait against the recursion's."""
    arrival = requests["arrival_s"].to_numpy()
    expected_start = start_s[batch_of]
    expected_end = end_s[batch_of]
    got_start = requests["completed_s"].to_numpy() - requests["service_s"].to_numpy()
    np.testing.assert_allclose(got_start, expected_start, rtol=0, atol=TOL_S)
    np.testing.assert_allclose(requests["completed_s"].to_numpy(), expected_end, rtol=0, atol=TOL_S)
    np.testing.assert_allclose(requests["queue_s"].to_numpy(), expected_start - arrival, rtol=0, atol=TOL_S)
    np.testing.assert_allclose(requests["latency_s"].to_numpy(), expected_end - arrival, rtol=0, atol=TOL_S)


@pytest.mark.parametrize("slots", [1, 3])
def test_unbatched_requests_follow_the_fifo_recursion(slots, simulate):
    # utilisation about 0.8 per slot: long busy periods, so order of service matters
    rate = 0.8 * slots / 0.0025
    result = simulate(config(rate_rps=rate, slots=slots))
    requests, batches, service = records(result)
    assert (batches["size"] == 1).all()
    arrival = requests["arrival_s"].to_numpy()
    # request n is batch n: no batching, one request per batch in arrival order
    batch_of = np.arange(len(arrival))
    np.testing.assert_array_equal(requests["batch_id"].to_numpy(), batch_of)
    start = fifo_starts(arrival, service, slots)
    end = start + service
    np.testing.assert_allclose(batches["start_s"].to_numpy(), start, rtol=0, atol=TOL_S)
    check_requests(requests, batch_of, start, end)
    assert float(requests["queue_s"].mean()) > 0.001  # a real queue formed


@pytest.mark.parametrize("slots", [1, 2])
def test_timeout_batches_follow_the_fifo_recursion(slots, simulate):
    # heavy enough that batches both fill up and time out, and queue at the server
    rate = 900.0 * slots
    result = simulate(config(rate_rps=rate, slots=slots, batching=timeout_batching(MAX_BATCH, MAX_WAIT_S)))
    requests, batches, service = records(result)
    arrival = requests["arrival_s"].to_numpy()
    batch_of, dispatch = timeout_batches(arrival, MAX_BATCH, MAX_WAIT_S)
    np.testing.assert_array_equal(requests["batch_id"].to_numpy(), batch_of)
    np.testing.assert_allclose(requests["dispatched_s"].to_numpy(), dispatch[batch_of], rtol=0, atol=TOL_S)
    assert len(batches) == len(dispatch)
    start = fifo_starts(dispatch, service, slots)
    end = start + service
    np.testing.assert_allclose(batches["start_s"].to_numpy(), start, rtol=0, atol=TOL_S)
    check_requests(requests, batch_of, start, end)
    sizes = batches["size"].to_numpy()
    assert (sizes == MAX_BATCH).any() and (sizes < MAX_BATCH).any()  # both ways of leaving occurred
    assert float((batches["start_s"] - dispatch).max()) > 0.001  # batches waited for the server


@pytest.mark.parametrize("rate_rps", [300.0, 1500.0])
def test_each_batch_timer_runs_from_its_oldest_request(rate_rps, simulate):
    result = simulate(config(rate_rps=rate_rps, slots=1, batching=timeout_batching(MAX_BATCH, MAX_WAIT_S)))
    requests, batches, _ = records(result)
    oldest = requests.groupby("batch_id")["arrival_s"].min().to_numpy()
    newest = requests.groupby("batch_id")["arrival_s"].max().to_numpy()
    dispatched = requests.groupby("batch_id")["dispatched_s"].first().to_numpy()
    size = batches["size"].to_numpy()
    due = oldest + MAX_WAIT_S
    timed_out = size < MAX_BATCH
    assert timed_out.any()
    # a batch that left before it was full left exactly when its oldest request's wait ran out
    np.testing.assert_allclose(dispatched[timed_out], due[timed_out], rtol=0, atol=TOL_S)
    # a full batch left when its last request arrived, no later than the oldest one's bound
    np.testing.assert_allclose(dispatched[~timed_out], newest[~timed_out], rtol=0, atol=TOL_S)
    assert (dispatched[~timed_out] <= due[~timed_out] + TOL_S).all()
    # so no request waited for its batch longer than max_wait_s
    assert float((requests["dispatched_s"] - requests["arrival_s"]).max()) <= MAX_WAIT_S + TOL_S
    # and once dispatched, no batch overtook an earlier one at the one slot
    assert (np.diff(batches["start_s"].to_numpy()) >= 0).all()

