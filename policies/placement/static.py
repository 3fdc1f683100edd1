"""Static placement: every request to one executor."""

from __future__ import annotations

from policies.events import Request
from policies.placement.base import ClusterView, PlacementPolicy
from spec.validation import ConfigError

__all__ = ["StaticPlacement"]


class StaticPlacement(PlacementPolicy):
    """Send every request to ``executor``; None means the first one the gateway reaches."""

    def __init__(self, *, executor: str | None = None):
        super().__init__()
        self.executor = executor

    def bind(self, view: ClusterView) -> None:
        super().bind(view)
        names = list(view.executors)
        if self.executor is None:
            self.executor = names[0]
        elif self.executor not in names:
            raise ConfigError("placement.executor", self.executor, "one of the executors " + ", ".join(names))

    def choose(self, now_s: float, request: Request) -> str | None:
        return self.executor

    def bulk_choice(self) -> str | None:
        return self.executor if type(self).choose is StaticPlacement.choose else None
