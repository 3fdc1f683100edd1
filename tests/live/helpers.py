"""Policies for live-harness tests, importable by the role processes (plain data in, no pytest)."""

from __future__ import annotations

from policies.errors import PolicyError
from policies.placement.static import StaticPlacement

__all__ = ["ExplodingPlacement"]


class ExplodingPlacement(StaticPlacement):
    """Static placement that raises on the ``after``-th request: a gateway that crashes mid-run."""

    def __init__(self, *, after: int = 3, executor: str | None = None):
        super().__init__(executor=executor)
        self.after = after
        self.seen = 0

    def choose(self, now_s, request):
        self.seen += 1
        if self.seen >= self.after:
            raise PolicyError(f"exploding placement: request {request.request_id}")
        return super().choose(now_s, request)
