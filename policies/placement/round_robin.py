"""Round-robin placement."""

from __future__ import annotations

from collections.abc import Sequence

from policies.events import Request
from policies.placement.base import ClusterView, PlacementPolicy, bind_executor_subset, executor_subset

__all__ = ["RoundRobinPlacement"]


class RoundRobinPlacement(PlacementPolicy):
    """Cycle through ``executors`` (default: all the gateway reaches), in order."""

    def __init__(self, *, executors: Sequence[str] | None = None):
        super().__init__()
        self.executors = executor_subset(executors)
        self._next = 0

    def bind(self, view: ClusterView) -> None:
        super().bind(view)
        self.executors = bind_executor_subset(self.executors, view)

    def choose(self, now_s: float, request: Request) -> str | None:
        name = self.executors[self._next]
        self._next = (self._next + 1) % len(self.executors)
        return name

    def bulk_choice(self) -> str | None:
        # one executor to choose from: every request goes there, and the state after any number of choices is the same
        return self.executors[0] if len(self.executors) == 1 and type(self).choose is RoundRobinPlacement.choose else None
