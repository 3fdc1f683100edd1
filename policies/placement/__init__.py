"""Placement policies: which executor gets a request."""

from policies.placement.latency_aware import LatencyAwarePlacement
from policies.placement.least_loaded import LeastLoadedPlacement
from policies.placement.round_robin import RoundRobinPlacement
from policies.placement.static import StaticPlacement
from policies.placement.weighted import WeightedPlacement

__all__ = ["StaticPlacement", "RoundRobinPlacement", "LeastLoadedPlacement", "LatencyAwarePlacement", "WeightedPlacement"]
