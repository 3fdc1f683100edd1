"""Least-loaded placement: join the shortest queue."""

from __future__ import annotations

from collections.abc import Sequence

from policies.events import Request
from policies.placement.base import ClusterView, PlacementPolicy, bind_executor_subset, executor_subset

__all__ = ["LeastLoadedPlacement"]


class LeastLoadedPlacement(PlacementPolicy):
    """Join-the-shortest-queue (JSQ; Winston 1977, the classic load balancer).

    Each request goes to the executor with the fewest outstanding requests
    (queued at the scheduler plus running, ``ClusterView.outstanding``);
    ties go to the executor listed first. ``executors`` restricts the choice
    (default: every executor the gateway reaches, in the cluster's order).
    """

    def __init__(self, *, executors: Sequence[str] | None = None):
        super().__init__()
        self.executors = executor_subset(executors)

    def bind(self, view: ClusterView) -> None:
        super().bind(view)
        self.executors = bind_executor_subset(self.executors, view)

    def choose(self, now_s: float, request: Request) -> str | None:
        view = self.view
        best = None
        best_load = None
        for name in self.executors:
            load = view.outstanding(name)
            if best_load is None or load < best_load:
                best, best_load = name, load
        return best

    def bulk_choice(self) -> str | None:
        # one executor to choose from: every request goes there, and the state after any number of choices is the same
        return self.executors[0] if len(self.executors) == 1 and type(self).choose is LeastLoadedPlacement.choose else None
