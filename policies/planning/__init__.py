"""Planners: re-tuning batch sizes, memory sizes and the traffic split from telemetry."""

from policies.planning.changepoint import ChangepointDetector
from policies.planning.edge_first import EdgeFirstAlgorithm, EdgeFirstDecision, EdgeFirstPlanner
from policies.planning.tail_aware import TailAwareDecision, TailAwarePlanner
from policies.planning.replanning import TRIGGERS, ReplanningPlanner

__all__ = [
    "ChangepointDetector",
    "EdgeFirstAlgorithm",
    "EdgeFirstDecision",
    "EdgeFirstPlanner",
    "TailAwareDecision",
    "TailAwarePlanner",
    "ReplanningPlanner",
    "TRIGGERS",
]
