"""The plain-Python entry point: one simulation from a config mapping.

The mapping has the shape Hydra composes from ``conf/`` (see the README)::

    seed: 0
    workload: {num_requests: 1000, sources: [{name, arrivals: {kind: poisson, rate_rps}, size_bytes, slo_s, gateway}]}
    cluster: {executors: [{name, kind, slots, profile: {kind: linear, ...}, noise, pricing}], links: {name: {...}}}
    policy: {placement: {_target_: ...}, batching: {_target_: ...}, planner: null | {_target_: ...}}
    sim: {telemetry_period_s: 1.0, horizon_s: null, progress: false, stream_records_to: null, max_records_in_memory: 5000000}

Everything is built and checked once (``policies.run_spec.build_run_spec``) before the clock starts;
an entry point that has built the spec already passes it instead of the mapping.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from policies.factory import make_scheduler_factory
from policies.run_spec import RunSpec, build_run_spec
from sim.simulation import Simulation
from spec.run_result import RunResult

__all__ = ["simulate", "build_simulation", "make_scheduler_factory"]


def build_simulation(config: Mapping | RunSpec, *, default_records_dir: str | Path | None = None) -> Simulation:
    """The simulation of a run spec (built and checked here from a plain ``config``); it has not run.

    ``default_records_dir``: where a run of more than ``sim.max_records_in_memory`` requests streams its
    tables when ``sim.stream_records_to`` is unset (``experiments.run``: the run's folder); None: in memory.
    """
    spec = config if isinstance(config, RunSpec) else build_run_spec(config)
    folder = spec.sim.stream_records_to
    if folder is None and default_records_dir is not None and len(spec.arrivals) > spec.sim.max_records_in_memory:
        folder = default_records_dir
    if spec.config.get("pipeline"):
        from sim.pipeline import PipelineSimulation  # EdgeServe's pipeline stages in front of the schedulers

        return PipelineSimulation(spec)
    return Simulation(spec, records_dir=folder)


def simulate(config: Mapping | RunSpec) -> RunResult:
    """Run one simulation described by ``config`` and return its records and summary."""
    return build_simulation(config).run()
