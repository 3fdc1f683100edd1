"""Round-robin placement."""

from __future__ import annotations

from collections.abc import Sequence

from policies.events import Request
from policies.placement_base import ClusterView, PlacementPolicy
from spec.validation import ConfigError

__all__ = ["RoundRobinPlacement"]


class RoundRobinPlacement(PlacementPolicy):
    """Cycle through ``executors`` (default: all the gateway reaches), in order."""

    def __init__(self, *, executors: Sequence[str] | None = None):
        super().__init__()
        self.executors = None if executors is None else list(executors)
        self._next = 0

    def bind(self, view: ClusterView) -> None:
        super().bind(view)
        names = list(view.executors)
        if self.executors is None:
            self.executors = names
        for name in self.executors:
            if name not in names:
                raise ConfigError("placement.executors", name, ", ".join(names))
        if not self.executors:
            raise ConfigError("placement.executors", [], "at least one of " + ", ".join(names))

    def choose(self, now_s: float, request: Request) -> str | None:
        name = self.executors[self._next]
        self._next = (self._next + 1) % len(self.executors)
        return name
