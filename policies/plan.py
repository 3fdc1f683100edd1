"""Plans: what a planner tells the scheduler to change."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

__all__ = ["Plan"]


def _frozen(mapping: Mapping | None) -> Mapping:
    return MappingProxyType(dict(mapping or {}))


@dataclass(frozen=True, slots=True, kw_only=True)
class Plan:
    """Settings per executor, as chosen by a planner.

    ``batch_size`` and ``memory_mb`` go to each executor's batching policy;
    ``weights`` (fractions of traffic) go to the placement policy. An
    executor left out keeps its current settings. ``feasible`` is False when
    the planner found no configuration meeting its target; the scheduler then
    applies the plan's best-effort settings, which the planner fills in.
    """

    batch_size: Mapping[str, int] = field(default_factory=dict)
    memory_mb: Mapping[str, int] = field(default_factory=dict)
    weights: Mapping[str, float] = field(default_factory=dict)
    feasible: bool = True
    #: what caused the plan: "initial", "periodic", "changepoint", ...
    trigger: str = ""
    detail: Mapping[str, object] = field(default_factory=dict)

    def __post_init__(self):
        for name in ("batch_size", "memory_mb", "weights", "detail"):
            object.__setattr__(self, name, _frozen(getattr(self, name)))

    def as_dict(self) -> dict:
        """A plain-data view, for records and JSON."""
        return {
            "batch_size": dict(self.batch_size),
            "memory_mb": dict(self.memory_mb),
            "weights": dict(self.weights),
            "feasible": self.feasible,
            "trigger": self.trigger,
            **{k: v for k, v in self.detail.items()},
        }
