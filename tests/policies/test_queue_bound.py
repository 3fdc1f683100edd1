"""Every built-in batching policy's ``max_queue`` bounds the requests waiting for the executor, also where the
policy dispatches without waiting for a free slot (the requests then wait at the executor)."""

from __future__ import annotations

import numpy as np
import pytest

from sim import simulate
from tests.sim.configs import single_queue

BOUND = 40
POLICIES = {
    "none": {"_target_": "policies.batching.NoBatching"},
    "none, max_inflight 1": {"_target_": "policies.batching.NoBatching", "max_inflight": 1},
    "fixed 8": {"_target_": "policies.batching.FixedBatching", "batch_size": 8, "max_wait_s": 0.05},
    "timeout 8, no free slot": {"_target_": "policies.batching.TimeoutBatching", "max_batch_size": 8, "max_wait_s": 0.01, "max_inflight": None},
    "timeout 8, free slot": {"_target_": "policies.batching.TimeoutBatching", "max_batch_size": 8, "max_wait_s": 0.01, "max_inflight": "executor"},
    "aimd": {"_target_": "policies.batching.AIMDBatching", "slo_s": 0.05, "max_batch_size": 16},
    "deadline": {"_target_": "policies.batching.DeadlineAwareBatching", "max_batch_size": 16},
}  # fmt: skip


def most_waiting(result) -> int:
    """The most requests that had arrived and whose batch had not started, at any moment."""
    requests = result.requests[~result.requests["dropped"].astype(bool)]
    start_s = result.batches.set_index("batch_id")["start_s"].reindex(requests["batch_id"]).to_numpy()
    times = np.concatenate([requests["arrival_s"].to_numpy(), start_s])
    steps = np.concatenate([np.ones(len(requests)), -np.ones(len(requests))])
    order = np.lexsort((steps, times))
    return int(np.cumsum(steps[order]).max())


@pytest.mark.parametrize("slots", [1, 2])
@pytest.mark.parametrize("name", list(POLICIES))
def test_max_queue_bounds_what_waits_under_overload(name, slots):
    # a batch of b takes 2 ms + 2 ms per request: at most ~500 req/s per slot even in batches of 8; 1,500 req/s overloads it
    config = single_queue(rate_rps=1500 * slots, service_s=0.002, slots=slots, num_requests=6000, batching={**POLICIES[name], "max_queue": BOUND})
    config["cluster"]["executors"][0]["profile"]["base_s"] = 0.002
    config["workload"]["sources"][0]["slo_s"] = 0.2
    result = simulate(config)
    assert result.summary["drops_by_reason"].get("queue_full", 0) > 0, "overload with a bound sheds"
    assert most_waiting(result) <= BOUND
