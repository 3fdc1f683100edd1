"""Latency-aware placement: the executor predicted to finish a request first (or the cheapest in time)."""

from __future__ import annotations

import math
from collections.abc import Sequence

from policies.batching.base import BatchingPolicy
from policies.events import Request
from policies.placement.base import ClusterView, PlacementPolicy, bind_executor_subset, executor_subset
from spec.links import MB
from spec.topology import ServerlessSpec, ServerSpec
from spec.validation import check_choice, check_int_at_least

__all__ = ["LatencyAwarePlacement", "batch_size_of"]

MODES = ("fastest", "cheapest")


def batch_size_of(batcher: BatchingPolicy) -> int:
    """The batch size a batching policy is working towards (1 when it has none)."""
    for attr in ("batch_size", "max_batch_size"):
        value = getattr(batcher, attr, None)
        if isinstance(value, int) and not isinstance(value, bool) and value >= 1:
            return value
    return 1


class LatencyAwarePlacement(PlacementPolicy):
    """Place each request where it is predicted to complete first, as
    Neurosurgeon (Kang et al., ASPLOS 2017) chooses where to run from a
    latency model of each side and the measured uplink bandwidth.

    For each executor ``e`` the predicted completion is
    ``transfer + queued work + service`` where
    ``transfer = (1 + outstanding(e)) * size_bytes / (bandwidth_MBps[e] * MB) + link.delay_s``
    (0 for a local executor; a bandwidth of 0 means unreachable: infinite).
    The link is FIFO, so requests already sent its way may still hold it;
    counting all of them is conservative (some have crossed already) but
    keeps a slow uplink from being flooded when the executor behind it has
    many parallel instances.
    ``queued work = floor(outstanding(e) / b) / parallel * mean_s(b, memory)``
    rounded down to whole rounds (full batches ahead of this request, run
    ``parallel`` at a time: a server's ``slots``, a serverless pool's
    ``max_instances``), and ``service = mean_s(b, memory)``. ``b`` is
    ``batch_size_estimate`` or, when None, the batch size the executor's
    batching policy works towards (its ``batch_size`` or ``max_batch_size``).

    ``mode="fastest"`` picks the earliest predicted completion.
    ``mode="cheapest"`` picks, among executors predicted to meet the
    request's ``deadline_s``, the one with the lowest cost per request (its
    pricing's ``batch_cost`` of one batch divided by ``b``); when none meets
    it, the earliest. Ties go to the executor listed first. A request no
    executor can reach (every prediction infinite) is dropped
    (``no_executor``).

    Parameters: ``mode`` ("fastest" or "cheapest"), ``executors`` (names to
    choose from; null for all), ``batch_size_estimate`` (>= 1, or null).
    """

    def __init__(self, *, mode: str = "fastest", executors: Sequence[str] | None = None, batch_size_estimate: int | None = None):
        super().__init__()
        self.mode = check_choice("placement.mode", mode, MODES)
        self.executors = executor_subset(executors)
        self.batch_size_estimate = (
            None if batch_size_estimate is None else check_int_at_least("placement.batch_size_estimate", batch_size_estimate, 1)
        )

    def bind(self, view: ClusterView) -> None:
        super().bind(view)
        self.executors = bind_executor_subset(self.executors, view)

    # -- the model --------------------------------------------------------------
    def _batch(self, name: str) -> int:
        if self.batch_size_estimate is not None:
            return self.batch_size_estimate
        return batch_size_of(self.view.batchers[name])

    def transfer_s(self, name: str, size_bytes: float, ahead: int = 0) -> float:
        """Predicted upload time of ``size_bytes`` to ``name`` behind ``ahead`` requests of that size (inf when down)."""
        view = self.view
        link = view.links.get(name)
        if link is None:
            return 0.0
        bandwidth = view.bandwidth_MBps.get(name, link.mean_bandwidth_MBps())
        if not bandwidth > 0:
            return math.inf
        return (1 + ahead) * size_bytes / (bandwidth * MB) + link.delay_s

    def estimate_s(self, name: str, request: Request) -> float:
        """Predicted seconds from now until ``request`` completes on ``name``."""
        view = self.view
        transfer = self.transfer_s(name, request.size_bytes, view.outstanding(name))
        if math.isinf(transfer):
            return math.inf
        executor = view.executors[name]
        b = self._batch(name)
        service = executor.mean_service_s(b, view.batchers[name].memory_mb)
        if isinstance(executor, ServerSpec):
            parallel = executor.slots
        elif isinstance(executor, ServerlessSpec):
            parallel = executor.max_instances
        else:
            parallel = 1
        rounds = (view.outstanding(name) // b) // parallel
        return transfer + rounds * service + service

    def cost_per_request(self, name: str) -> float:
        """Predicted cost of serving one request on ``name`` in a batch of the estimated size."""
        view = self.view
        executor = view.executors[name]
        b = self._batch(name)
        memory = view.batchers[name].memory_mb
        return executor.pricing.batch_cost(duration_s=executor.mean_service_s(b, memory), memory_mb=memory) / b

    # -- the hook -------------------------------------------------------------------
    def choose(self, now_s: float, request: Request) -> str | None:
        estimates = [(self.estimate_s(name, request), i, name) for i, name in enumerate(self.executors)]
        fastest = min(estimates)
        if math.isinf(fastest[0]):
            return None
        if self.mode == "fastest":
            return fastest[2]
        in_time = [
            (self.cost_per_request(name), est, i, name)
            for est, i, name in estimates
            if math.isfinite(est) and now_s + est <= request.deadline_s
        ]
        if not in_time:
            return fastest[2]
        return min(in_time)[3]
