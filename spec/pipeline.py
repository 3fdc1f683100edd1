"""The ``pipeline:`` block of a run config: EdgeServe's stages in front of the scheduler, checked once.

    pipeline:
      join: {sources: [cam0, cam1], max_skew_s: 0.05}        # spec.join_buffer
      cascade: {cheap: edge, big: cloud, threshold: 0.6,       # spec.cascade (or escalate_share: 0.2)
                confidence_samples: [...]}
      lazy: {read_probability: 0.3, ref_size_bytes: 64}        # spec.lazy_payload (enabled: false: eager)
      stale: {max_age_s: 0.5}                                  # spec.stale_filter

Every part is optional. A bad field raises ``ConfigError`` naming it before
any run starts (``spec.build.build_run_basics`` calls ``check_pipeline``).
Each backend builds its own ``PipelineStage`` from the checked spec.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from spec.cascade import Cascade
from spec.join_buffer import JoinBuffer
from spec.lazy_payload import LazyPayload
from spec.stale_filter import StaleFilter
from spec.topology import Cluster
from spec.validation import ConfigError
from spec.workload import Workload

__all__ = ["PipelineSpec", "check_pipeline", "PIPELINE_KEYS", "CASCADE_PLACEMENT"]

PIPELINE_KEYS = ("join", "cascade", "lazy", "stale")
_PARTS = {
    "join": ("sources", "max_skew_s"),
    "cascade": ("cheap", "big", "escalate_share", "threshold", "confidence_samples"),
    "lazy": ("enabled", "read_probability", "read_sources", "ref_size_bytes"),
    "stale": ("max_age_s",),
}
#: the placement a cascade needs: cheap work to ``cheap``, escalated work to ``big``
CASCADE_PLACEMENT = "policies.placement.cascade.CascadePlacement"


def _part(raw: Mapping, key: str) -> dict | None:
    value = raw.get(key)
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise ConfigError(f"pipeline.{key}", value, "a mapping with " + ", ".join(_PARTS[key]))
    unknown = sorted(set(value) - set(_PARTS[key]))
    if unknown:
        raise ConfigError(f"pipeline.{key}.{unknown[0]}", value[unknown[0]], "one of " + ", ".join(_PARTS[key]),
                          choices=_PARTS[key], near=unknown[0])  # fmt: skip
    return dict(value)


@dataclass(frozen=True, kw_only=True, slots=True)
class PipelineSpec:
    """The checked ``pipeline`` block (plain data); ``stage_parts`` builds fresh models from it."""

    join: dict | None = None
    cascade: dict | None = None
    lazy: dict | None = None
    stale: dict | None = None
    seed: int = 0

    @classmethod
    def from_config(cls, raw: Any, *, seed: int = 0) -> PipelineSpec | None:
        """The block checked field by field (None: no pipeline)."""
        if raw is None or raw == {}:
            return None
        if not isinstance(raw, Mapping):
            raise ConfigError("pipeline", raw, "a mapping with " + ", ".join(PIPELINE_KEYS))
        unknown = sorted(set(raw) - set(PIPELINE_KEYS))
        if unknown:
            raise ConfigError(f"pipeline.{unknown[0]}", raw[unknown[0]], "one of " + ", ".join(PIPELINE_KEYS), choices=PIPELINE_KEYS,
                              near=unknown[0])  # fmt: skip
        spec = cls(**{k: _part(raw, k) for k in PIPELINE_KEYS}, seed=int(seed))
        spec.models()  # each model checks its own fields
        return spec

    def models(self) -> tuple[JoinBuffer | None, Cascade | None, LazyPayload | None, StaleFilter | None]:
        """Fresh models of this spec (each backend, each gateway builds its own)."""
        join = None if self.join is None else JoinBuffer(sources=self.join.get("sources"), max_skew_s=self.join.get("max_skew_s", math.inf))
        cascade = None if self.cascade is None else Cascade(**self.cascade, seed=self.seed)
        lazy = None if self.lazy is None else LazyPayload(**self.lazy, seed=self.seed)
        stale = None if self.stale is None else StaleFilter(**self.stale)
        return join, cascade, lazy, stale


def _check_join_sources(join: JoinBuffer, workload: Workload) -> None:
    by_name = {s.name: s for s in workload.sources}
    for name in join.sources:
        if name not in by_name:
            raise ConfigError("pipeline.join.sources", name, "names of sources: " + ", ".join(by_name), choices=by_name)
    gateways = {by_name[n].gateway for n in join.sources}
    if len(gateways) != 1:
        raise ConfigError("pipeline.join.sources", list(join.sources), "sources of one gateway (the join runs there)")


def _check_cascade(cascade: Cascade, cluster: Cluster, policy: Any) -> None:
    for field_name, name in (("cheap", cascade.cheap), ("big", cascade.big)):
        if name not in cluster.executors:
            raise ConfigError(f"pipeline.cascade.{field_name}", name, "an executor: " + ", ".join(cluster.executors),
                              choices=cluster.executors)  # fmt: skip
    placement = dict((policy or {}).get("placement") or {})
    if placement.get("_target_") != CASCADE_PLACEMENT or placement.get("cheap") != cascade.cheap or placement.get("big") != cascade.big:
        raise ConfigError("policy.placement", placement, f"{{_target_: {CASCADE_PLACEMENT}, cheap: {cascade.cheap}, big: {cascade.big}}} "
                          "(a cascade places cheap and escalated work apart)")  # fmt: skip


def check_pipeline(config: Mapping, workload: Workload, cluster: Cluster, seed: int) -> PipelineSpec | None:
    """The run config's ``pipeline`` block checked against its workload, cluster and placement (None: none)."""
    spec = PipelineSpec.from_config(config.get("pipeline"), seed=seed)
    if spec is None:
        return None
    join, cascade, _, _ = spec.models()
    if join is not None:
        _check_join_sources(join, workload)
    if cascade is not None:
        _check_cascade(cascade, cluster, config.get("policy"))
    return spec
