"""The plain-Python entry point: one simulation from a config mapping.

The mapping has the shape Hydra composes from ``conf/`` (see the README)::

    seed: 0
    workload: {num_requests: 1000, sources: [{name, arrivals: {kind: poisson, rate_rps}, size_bytes, slo_s, gateway}]}
    cluster: {executors: [{name, kind, slots, profile: {kind: linear, ...}, noise, pricing}], links: {name: {...}}}
    policy: {placement: {_target_: ...}, batching: {_target_: ...}, planner: null | {_target_: ...}}
    sim: {telemetry_period_s: 1.0, horizon_s: null, progress: false}

Everything is built and checked before the clock starts.
"""

from __future__ import annotations

from collections.abc import Mapping

from policies.factory import make_scheduler_factory
from sim.simulation import Simulation, SimResult
from spec.build import build_run_basics
from spec.topology import Cluster
from spec.validation import ConfigError

__all__ = ["simulate", "build_simulation", "make_scheduler_factory"]



def build_simulation(config: Mapping) -> Simulation:
    """Check and build everything in ``config``; the returned simulation has not run."""
    seed, workload, cluster = build_run_basics(config)
    options = dict(config.get("sim") or {})
    central = bool(options.get("central_scheduler", False))
    for source in workload.sources:
        if not central and not cluster.reachable(source.gateway):
            raise ConfigError(
                f"workload.sources.{source.name}.gateway", source.gateway, "a gateway with executors: " + ", ".join(cluster.gateways)
            )
    factory = make_scheduler_factory(config.get("policy"))
    for gateway in [Cluster.CENTRAL] if central else sorted({s.gateway for s in workload.sources}):
        factory(gateway, cluster)  # a trial build: placement names, batching maps
    allowed = {"telemetry_period_s", "horizon_s", "progress", "central_scheduler"}
    if set(options) - allowed:
        raise ConfigError(f"sim.{sorted(set(options) - allowed)[0]}", None, "one of " + ", ".join(sorted(allowed)))
    arrivals = workload.generate(seed)
    return Simulation(arrivals=arrivals, cluster=cluster, make_scheduler=factory, seed=seed, **options)


def simulate(config: Mapping) -> SimResult:
    """Run one simulation described by ``config`` and return its records and summary."""
    return build_simulation(config).run()
