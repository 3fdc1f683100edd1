"""Placement policies: which executor gets a request."""

from policies.placement.round_robin import RoundRobinPlacement
from policies.placement.static import StaticPlacement

__all__ = ["StaticPlacement", "RoundRobinPlacement"]
