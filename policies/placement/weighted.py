"""Weighted placement: split traffic by fractions, deterministically."""

from __future__ import annotations

import math
from collections.abc import Mapping

from policies.errors import PolicyError
from policies.events import Request
from policies.placement.base import ClusterView, PlacementPolicy
from spec.validation import ConfigError

__all__ = ["WeightedPlacement"]


def _check_weights(field: str, weights: Mapping[str, float]) -> dict[str, float]:
    if not isinstance(weights, Mapping) or not weights:
        raise ConfigError(field, weights, "a non-empty mapping from executor name to a weight >= 0")
    out: dict[str, float] = {}
    for name, value in weights.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
            raise ConfigError(f"{field}.{name}", value, "a finite weight >= 0")
        out[str(name)] = float(value)
    if sum(out.values()) <= 0:
        raise ConfigError(field, dict(weights), "weights with a positive sum")
    return out


class WeightedPlacement(PlacementPolicy):
    """Split requests among executors in proportion to ``weights``, by smooth
    weighted round robin (nginx's ``upstream`` balancer, 2012).

    Each pick adds every executor's weight to its running credit, takes the
    executor with the highest credit (ties: the one listed first) and takes
    the sum of all weights off its credit. The split is deterministic and
    evenly interleaved: after ``n`` picks each executor's count is within
    about one of ``n`` times its fraction.

    ``weights`` maps executor names to weights >= 0 (normalised; null: equal
    weights over every executor). A plan's ``weights`` replace them whole
    (executors the plan leaves out get 0) and restart the credits.
    """

    def __init__(self, *, weights: Mapping[str, float] | None = None):
        super().__init__()
        self.weights = None if weights is None else _check_weights("placement.weights", weights)
        self._names: list[str] = []
        self._weights: list[float] = []
        self._credit: list[float] = []
        self._total = 0.0

    def bind(self, view: ClusterView) -> None:
        super().bind(view)
        names = list(view.executors)
        if self.weights is None:
            self.weights = {name: 1.0 for name in names}
        for name in self.weights:
            if name not in names:
                raise ConfigError("placement.weights", name, "executor names among " + ", ".join(names))
        self._set(self.weights)

    def _set(self, weights: Mapping[str, float]) -> None:
        names = list(self.view.executors)
        self._names = [n for n in names if weights.get(n, 0.0) > 0]
        total = sum(weights.get(n, 0.0) for n in self._names)
        self._weights = [weights[n] / total for n in self._names]
        self._credit = [0.0] * len(self._names)
        self._total = 1.0

    @property
    def fractions(self) -> dict[str, float]:
        """The normalised split in use."""
        return dict(zip(self._names, self._weights))

    def apply_plan(self, *, weights: Mapping[str, float]) -> None:
        checked = _check_weights("plan.weights", weights)
        unknown = [n for n in checked if n not in self.view.executors]
        if unknown:
            raise PolicyError(f"plan weights name {unknown}, not among {list(self.view.executors)}")
        self.weights = checked
        self._set(checked)

    def choose(self, now_s: float, request: Request) -> str | None:
        credit = self._credit
        best = 0
        for i, w in enumerate(self._weights):
            credit[i] += w
            if credit[i] > credit[best]:
                best = i
        credit[best] -= self._total
        return self._names[best]
