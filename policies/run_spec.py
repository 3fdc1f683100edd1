"""The run spec: one run's config, checked and built once, for either backend.

It lives beside the scheduler factory it builds (``policies.factory``):
everything below the backends (workload, cluster, policies) and nothing of
either backend, so ``sim`` and ``live`` both start from it.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from policies.factory import make_scheduler_factory
from policies.scheduler import Scheduler
from spec.build import build_run_basics
from spec.topology import Cluster
from spec.validation import ConfigError, check_int_at_least, check_positive
from spec.workload import Arrivals, Workload

__all__ = ["RunSpec", "SimOptions", "build_run_spec"]

_SIM_KEYS = ("telemetry_period_s", "horizon_s", "progress", "central_scheduler", "stream_records_to", "max_records_in_memory")


@dataclass(frozen=True, kw_only=True, slots=True)
class SimOptions:
    """The ``sim`` section: what only the simulator reads (``telemetry_period_s`` the live harness too)."""

    telemetry_period_s: float = 1.0
    horizon_s: float | None = None
    progress: bool = False
    central_scheduler: bool = False
    #: a folder: the record tables are streamed there in Parquet row groups as the run goes (spec.streaming_recorder)
    stream_records_to: str | None = None
    #: the most requests a streamed run reads back into memory at the end (exact percentiles); beyond it the tables
    #: stay on disk and the percentiles come from a sketch; experiments.run streams a larger run to its folder
    max_records_in_memory: int = 5_000_000

    @classmethod
    def from_config(cls, raw: Any) -> SimOptions:
        """The checked ``sim`` section (unknown keys and bad values name the field)."""
        if raw is None:
            raw = {}
        if not isinstance(raw, Mapping):
            raise ConfigError("sim", raw, "a mapping with " + ", ".join(_SIM_KEYS))
        unknown = sorted(set(raw) - set(_SIM_KEYS))
        if unknown:
            raise ConfigError(f"sim.{unknown[0]}", raw[unknown[0]], "one of " + ", ".join(_SIM_KEYS))
        horizon_s = raw.get("horizon_s")
        return cls(
            telemetry_period_s=check_positive("sim.telemetry_period_s", raw.get("telemetry_period_s", 1.0)),
            horizon_s=None if horizon_s is None else check_positive("sim.horizon_s", horizon_s),
            progress=_flag("sim.progress", raw.get("progress", False)),
            central_scheduler=_flag("sim.central_scheduler", raw.get("central_scheduler", False)),
            stream_records_to=_folder("sim.stream_records_to", raw.get("stream_records_to")),
            max_records_in_memory=check_int_at_least("sim.max_records_in_memory", _or(raw.get("max_records_in_memory"), 5_000_000), 0),
        )


def _or(value: Any, default: Any) -> Any:
    return default if value is None else value


def _folder(field_name: str, value: Any) -> str | None:
    if value is None:
        return None
    if not (isinstance(value, str) or hasattr(value, "__fspath__")) or not str(value):
        raise ConfigError(field_name, value, "a folder path (text) or null")
    return str(value)


def _flag(field_name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(field_name, value, "true or false")
    return value


@dataclass(frozen=True, kw_only=True)
class RunSpec:
    """One run, checked and built once at the entry point; what a backend runs.

    ``config`` is the plain mapping it was built from: the live harness sends
    it to each role serialized (``to_json``) and each role rebuilds the spec
    with one call (``from_json``, which checks exactly what the entry point
    checked). ``settings`` carries a backend's own checked section (the live
    harness's ``LiveSettings``; None in the simulator).
    """

    config: Mapping
    seed: int
    workload: Workload
    cluster: Cluster
    arrivals: Arrivals
    make_scheduler: Callable[[str, Cluster], Scheduler]
    #: gateways that receive requests, in name order (``Cluster.CENTRAL`` alone with a central scheduler)
    gateways: list[str] = field(default_factory=list)
    sim: SimOptions = SimOptions()
    settings: Any = None

    def expected_at(self, gateway: str) -> int:
        """How many requests ``gateway`` receives in the run."""
        index = [i for i, s in enumerate(self.arrivals.sources) if s.gateway == gateway]
        if not index:
            return 0
        return int(sum(int((self.arrivals.source_index == i).sum()) for i in index))

    def with_settings(self, settings: Any) -> RunSpec:
        """This spec with a backend's checked settings attached."""
        return replace(self, settings=settings)

    def to_json(self) -> str:
        """The run config as JSON text (what live roles receive)."""
        return json.dumps(_plain(self.config), indent=1)

    @classmethod
    def from_json(cls, text: str) -> RunSpec:
        """The spec ``to_json`` wrote, rebuilt and checked (without a backend's settings)."""
        config = json.loads(text)
        if not isinstance(config, dict):
            raise ConfigError("config", type(config).__name__, "a JSON object at the top level")
        return build_run_spec(config)


def _plain(value: Any) -> Any:
    """JSON-safe plain data (inf as a string JSON can carry)."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, float) and math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return value


def build_run_spec(config: Mapping) -> RunSpec:
    """Check and build a run config (``ConfigError`` naming the field), arrivals generated."""
    seed, workload, cluster = build_run_basics(config)
    options = SimOptions.from_config(config.get("sim"))
    central = options.central_scheduler
    for source in workload.sources:
        if not central and not cluster.reachable(source.gateway):
            raise ConfigError(
                f"workload.sources.{source.name}.gateway", source.gateway, "a gateway with executors: " + ", ".join(cluster.gateways)
            )
    factory = make_scheduler_factory(config.get("policy"))
    gateways = [Cluster.CENTRAL] if central else sorted({s.gateway for s in workload.sources})
    # a trial build (placement names, batching maps), kept: the first scheduler asked for each gateway is its trial one
    # (a fleet's set-up built every scheduler twice), later ones are built afresh
    trial = {gateway: factory(gateway, cluster) for gateway in gateways}
    arrivals = workload.generate(seed)
    return RunSpec(config=dict(config), seed=seed, workload=workload, cluster=cluster, arrivals=arrivals,
                   make_scheduler=_first_trial_then_fresh(factory, trial, cluster), gateways=gateways, sim=options)  # fmt: skip


def _first_trial_then_fresh(factory: Callable[[str, Cluster], Scheduler], trial: dict[str, Scheduler],
                            cluster: Cluster) -> Callable[[str, Cluster], Scheduler]:  # fmt: skip
    """``factory``, but each gateway's first call for ``cluster`` gets its unused trial scheduler."""

    def make_scheduler(gateway: str, on: Cluster) -> Scheduler:
        scheduler = trial.pop(gateway, None) if on is cluster else None
        return scheduler if scheduler is not None else factory(gateway, on)

    return make_scheduler
