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

from policies.scheduler import Scheduler
from sim.simulation import Simulation, SimResult
from spec.build import build_cluster, build_workload, instantiate
from spec.topology import Cluster
from spec.validation import ConfigError, check_int_at_least

__all__ = ["simulate", "build_simulation", "make_scheduler_factory"]

_TOP_LEVEL = ("seed", "workload", "cluster", "policy", "sim", "live")  # "live" is read by the live harness only
_POLICY_KEYS = ("placement", "batching", "planner", "batching_per_executor")


def make_scheduler_factory(policy: Mapping):
    """A function building a fresh scheduler per gateway from the ``policy`` section."""
    if not isinstance(policy, Mapping):
        raise ConfigError("policy", type(policy).__name__, "a mapping with placement, batching and planner")
    unknown = set(policy) - set(_POLICY_KEYS)
    if unknown:
        raise ConfigError(f"policy.{sorted(unknown)[0]}", None, "one of " + ", ".join(_POLICY_KEYS))
    for key in ("placement", "batching"):
        if not isinstance(policy.get(key), Mapping) or "_target_" not in policy[key]:
            raise ConfigError(f"policy.{key}", policy.get(key), "a mapping with a _target_ class")
    # build once now so that bad settings fail before the run
    instantiate("policy.placement", policy["placement"])
    instantiate("policy.batching", policy["batching"])
    if policy.get("planner") is not None:
        instantiate("policy.planner", policy["planner"])
    per_executor = dict(policy.get("batching_per_executor") or {})

    def factory(gateway: str, cluster: Cluster) -> Scheduler:
        batching = instantiate("policy.batching", policy["batching"])
        if per_executor:
            reachable = cluster.reachable(gateway)
            batching = {
                name: instantiate(f"policy.batching_per_executor.{name}", per_executor[name]) if name in per_executor else batching
                for name in reachable
            }
        planner = policy.get("planner")
        return Scheduler(
            cluster=cluster,
            placement=instantiate("policy.placement", policy["placement"]),
            batching=batching,
            planner=None if planner is None else instantiate("policy.planner", planner),
            gateway=gateway,
        )

    return factory


def build_simulation(config: Mapping) -> Simulation:
    """Check and build everything in ``config``; the returned simulation has not run."""
    if not isinstance(config, Mapping):
        raise ConfigError("config", type(config).__name__, "a mapping")
    unknown = set(config) - set(_TOP_LEVEL)
    if unknown:
        raise ConfigError(sorted(unknown)[0], None, "a top-level key among " + ", ".join(_TOP_LEVEL))
    seed = check_int_at_least("seed", config.get("seed", 0), 0)
    workload = build_workload(config.get("workload"))
    cluster = build_cluster(config.get("cluster"))
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
