"""Cascade placement: a task's first pass to the cheap model's executor, an escalated one to the big model's."""

from __future__ import annotations

from policies.events import Request
from policies.placement.base import ClusterView, PlacementPolicy
from spec.cascade import ESCALATED_SUFFIX
from spec.validation import ConfigError

__all__ = ["CascadePlacement"]


class CascadePlacement(PlacementPolicy):
    """``cheap`` for new work; ``big`` for work the pipeline escalated (source ending in ``/escalated``).

    The pipeline stage (``spec.pipeline_stage``) marks escalated tasks on the
    request itself, so this stays a pure function of the request.
    """

    def __init__(self, *, cheap: str, big: str):
        super().__init__()
        self.cheap, self.big = cheap, big

    def bind(self, view: ClusterView) -> None:
        super().bind(view)
        for field_name, name in (("cheap", self.cheap), ("big", self.big)):
            if name not in view.executors:
                raise ConfigError(f"placement.{field_name}", name, "an executor this gateway reaches: " + ", ".join(view.executors))

    def choose(self, now_s: float, request: Request) -> str | None:
        return self.big if request.source.endswith(ESCALATED_SUFFIX) else self.cheap
