"""Build workloads, clusters and policies from plain config mappings.

A component is given by ``_target_`` (the dotted path of any class, the
Hydra convention, so a user's own class plugs in without editing a
registry), or by ``kind``: a shorthand for the ``_target_`` of a built-in
class, spelled out below and resolved by the very same path (``locate``). Every error names the
full field path and what is allowed, before any simulation starts.
"""

from __future__ import annotations

import functools
import importlib
import inspect
from collections.abc import Mapping, Sequence
from typing import Any

from spec.fleet import FLEET_KEYS, Fleet
from spec.host_spec import HostSpec
from spec.links import Link
from spec.pipeline import check_pipeline
from spec.topology import Cluster
from spec.validation import ConfigError, check_int_at_least
from spec.workload import CONFLICTING_LENGTH, CONFLICTING_LENGTH_ALLOWED, Source, Workload

__all__ = ["instantiate", "build_workload", "build_cluster", "build_component", "locate", "build_run_basics", "RUN_KEYS"]

#: the top-level keys of a run config; "sim" and "live" are each read by one backend only
RUN_KEYS = ("seed", "workload", "cluster", "policy", "sim", "live", "pipeline")

#: ``kind`` shorthands: each names the ``_target_`` it stands for
ARRIVAL_KINDS = {"poisson": "spec.workload.PoissonArrivals", "gamma": "spec.workload.GammaArrivals",
                 "mmpp": "spec.workload.MMPPArrivals", "trace": "spec.workload.TraceArrivals"}  # fmt: skip
PROFILE_KINDS = {"linear": "spec.profiles.LinearProfile", "linear_memory": "spec.profiles.LinearMemoryProfile",
                 "table": "spec.profiles.TableProfile"}  # fmt: skip
NOISE_KINDS = {"none": "spec.noise.NoNoise", "lognormal": "spec.noise.LognormalNoise", "gamma": "spec.noise.GammaNoise",
               "residual": "spec.noise.ResidualNoise"}  # fmt: skip
DELAY_KINDS = {"constant": "spec.noise.ConstantDelay", "lognormal": "spec.noise.LognormalDelay", "empirical": "spec.noise.EmpiricalDelay"}
PRICING_KINDS = {"free": "spec.pricing.FreePricing", "hourly": "spec.pricing.HourlyPricing", "serverless": "spec.pricing.ServerlessPricing"}
EXECUTOR_CLASSES = {"edge": "spec.topology.ServerSpec", "cloud": "spec.topology.ServerSpec", "serverless": "spec.topology.ServerlessSpec"}


def locate(field: str, path: Any) -> Any:
    """Import the object named by a dotted ``path`` ("package.module.Name")."""
    if not isinstance(path, str) or "." not in path:
        raise ConfigError(f"{field}._target_", path, "a dotted path 'package.module.Class'")
    module_name, _, attr = path.rpartition(".")
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise ConfigError(f"{field}._target_", path, f"an importable module ({error})") from None
    try:
        return getattr(module, attr)
    except AttributeError:
        public = sorted(n for n in dir(module) if not n.startswith("_"))
        raise ConfigError(f"{field}._target_", path, f"a name in {module_name}: " + ", ".join(public)) from None


@functools.lru_cache(maxsize=256)
def _signature(factory: Any) -> inspect.Signature | None:
    """``factory``'s signature, once per class (a fleet builds thousands of components of a few classes)."""
    try:
        return inspect.signature(factory)
    except (TypeError, ValueError):
        return None


def _call(field: str, factory: Any, params: dict) -> Any:
    try:
        signature = _signature(factory)
    except TypeError:  # an unhashable factory
        signature = None
    if signature is not None and not any(p.kind is p.VAR_KEYWORD for p in signature.parameters.values()):
        accepted = [n for n, p in signature.parameters.items() if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)]
        for name in params:
            if name not in accepted:
                raise ConfigError(f"{field}.{name}", params[name], "a parameter of " + _name(factory) + ": " + ", ".join(accepted),
                                  choices=accepted, near=name)  # fmt: skip
        missing = [
            n for n, p in signature.parameters.items()
            if p.default is p.empty and p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD) and n not in params
        ]  # fmt: skip
        if missing:
            raise ConfigError(f"{field}.{missing[0]}", None, "a value (required by " + _name(factory) + ")")
    try:
        return factory(**params)
    except ConfigError as error:
        # constructors name their own field ("arrivals.rate_rps"); give the full path
        leaf = error.field.split(".")[-1]
        raise ConfigError(f"{field}.{leaf}", error.value, error.allowed) from None


def _name(factory: Any) -> str:
    return getattr(factory, "__qualname__", repr(factory))


def build_component(field: str, config: Any, kinds: Mapping[str, Any] | None = None, **extra) -> Any:
    """Build one component from ``{"kind": ..., ...}`` or ``{"_target_": ..., ...}``.

    Anything that is not a mapping is returned as is (already built).
    """
    if not isinstance(config, Mapping):
        return config
    params = dict(config)
    target = params.pop("_target_", None)
    kind = params.pop("kind", None)
    if target is None and kinds is not None and kind is not None:
        if kind not in kinds:
            raise ConfigError(f"{field}.kind", kind, "one of " + ", ".join(map(repr, kinds)) + " (or a _target_ class)")
        target = kinds[kind]
    if target is not None:
        factory = locate(field, target)
    else:
        allowed = ("'kind' (one of " + ", ".join(map(repr, kinds)) + ") or ") if kinds else ""
        raise ConfigError(field, dict(config), allowed + "'_target_' naming a class")
    params.update(extra)
    return _call(field, factory, params)


def instantiate(field: str, config: Any) -> Any:
    """Build a ``_target_`` object, recursively (nested ``_target_`` mappings first).

    Mappings without ``_target_`` are plain data; None stays None.
    """
    if isinstance(config, Mapping):
        built = {k: instantiate(f"{field}.{k}", v) for k, v in config.items() if k != "_target_"}
        if "_target_" in config:
            return _call(field, locate(field, config["_target_"]), built)
        return built
    if isinstance(config, (list, tuple)):
        return [instantiate(f"{field}[{i}]", v) for i, v in enumerate(config)]
    return config


def build_workload(config: Mapping) -> Workload:
    """``{"sources": [...], "num_requests": N | "duration_s": D}`` to a ``Workload``."""
    if not isinstance(config, Mapping):
        raise ConfigError("workload", type(config).__name__, "a mapping with sources and num_requests or duration_s")
    params = dict(config)
    if params.get("num_requests") is not None and params.get("duration_s") is not None:
        # checked here too, before the sources are built: Workload's own check would lose a field in _call's renaming
        raise ConfigError(CONFLICTING_LENGTH, {"num_requests": params["num_requests"], "duration_s": params["duration_s"]},
                          CONFLICTING_LENGTH_ALLOWED)
    raw_sources = params.pop("sources", None)
    if isinstance(raw_sources, Mapping):  # Hydra-friendly: sources keyed by name
        raw_sources = [{"name": name, **dict(s)} for name, s in raw_sources.items()]
    if not isinstance(raw_sources, Sequence) or isinstance(raw_sources, str) or not raw_sources:
        raise ConfigError("workload.sources", raw_sources, "a non-empty list (or mapping by name) of sources")
    sources = []
    for i, raw in enumerate(raw_sources):
        field = f"workload.sources[{i}]"
        if not isinstance(raw, Mapping):
            raise ConfigError(field, raw, "a mapping with name, arrivals, size_bytes, slo_s, gateway")
        raw = dict(raw)
        arrivals = build_component(f"{field}.arrivals", raw.pop("arrivals", None), ARRIVAL_KINDS)
        sources.append(_call(field, Source, {**raw, "arrivals": arrivals}))
    return _call("workload", Workload, {**params, "sources": sources})


def build_cluster(config: Mapping) -> Cluster:
    """``{"executors": [...], "links": {...}, "hosts": {...}}`` to a ``Cluster`` (hosts: ``spec.host_spec``)."""
    if not isinstance(config, Mapping):
        raise ConfigError("cluster", type(config).__name__, "a mapping with executors and links")
    raw_executors = config.get("executors")
    if isinstance(raw_executors, Mapping):
        raw_executors = [{"name": name, **dict(e)} for name, e in raw_executors.items()]
    if not isinstance(raw_executors, Sequence) or isinstance(raw_executors, str) or not raw_executors:
        raise ConfigError("cluster.executors", raw_executors, "a non-empty list (or mapping by name) of executors")
    executors = []
    for i, raw in enumerate(raw_executors):
        if not isinstance(raw, Mapping):
            raise ConfigError(f"cluster.executors[{i}]", raw, "a mapping with name, kind, profile, ...")
        raw = dict(raw)
        field = f"cluster.executors.{raw.get('name', i)}"
        kind = raw.get("kind")
        if kind not in EXECUTOR_CLASSES:
            raise ConfigError(f"{field}.kind", kind, "one of " + ", ".join(map(repr, EXECUTOR_CLASSES)))
        raw["profile"] = build_component(f"{field}.profile", raw.get("profile"), PROFILE_KINDS)
        if "noise" in raw:
            raw["noise"] = build_component(f"{field}.noise", raw["noise"] or {"kind": "none"}, NOISE_KINDS)
        if "pricing" in raw:
            raw["pricing"] = build_component(f"{field}.pricing", raw["pricing"] or {"kind": "free"}, PRICING_KINDS)
        if raw.get("cold_start") is not None:
            raw["cold_start"] = build_component(f"{field}.cold_start", raw["cold_start"], DELAY_KINDS)
        if "slots" in raw:
            check_int_at_least(f"{field}.slots", raw["slots"], 1)
        executors.append(_call(field, locate(field, EXECUTOR_CLASSES[kind]), raw))
    links = {}
    for key, raw in dict(config.get("links") or {}).items():
        links[key] = raw if isinstance(raw, Link) else _call(f"cluster.links.{key}", Link, dict(raw))
    extra = set(config) - {"executors", "links", "hosts"}
    if extra:
        raise ConfigError(f"cluster.{sorted(extra)[0]}", None, "only 'executors', 'links' and 'hosts' in cluster "
                          "(and a fleet's " + ", ".join(FLEET_KEYS) + ": spec.fleet, expanded by build_run_basics)")
    raw_hosts = config.get("hosts") or {}
    if not isinstance(raw_hosts, Mapping):
        raise ConfigError("cluster.hosts", raw_hosts, "a mapping of host name to {cores, executors, roles, batch_cores}")
    hosts = {str(name): HostSpec.from_config(str(name), raw) for name, raw in raw_hosts.items()}
    return Cluster(executors=executors, links=links, hosts=hosts)


def build_run_basics(config: Mapping) -> tuple[int, Workload, Cluster]:
    """A run config's top level checked, and its seed, workload and cluster built (both backends start here)."""
    if not isinstance(config, Mapping):
        raise ConfigError("config", type(config).__name__, "a mapping")
    unknown = set(config) - set(RUN_KEYS)
    if unknown:
        raise ConfigError(sorted(unknown)[0], None, "a top-level key among " + ", ".join(RUN_KEYS))
    seed = check_int_at_least("seed", config.get("seed", 0), 0)
    cluster, workload = config.get("cluster"), config.get("workload")
    fleet = Fleet.from_config(cluster)
    if fleet is not None:  # N copies of the template site, expanded as plain data before anything is built
        extra = sorted(set(cluster) - {"executors", "links", "hosts", *FLEET_KEYS})
        if extra:
            raise ConfigError(f"cluster.{extra[0]}", cluster[extra[0]], "a fleet's key: executors, links, hosts, " + ", ".join(FLEET_KEYS))
        cluster, workload = fleet.expand(cluster, workload)
    built_workload, built_cluster = build_workload(workload), build_cluster(cluster)
    check_pipeline(config, built_workload, built_cluster, seed)  # spec.pipeline: its fields named before any run
    return seed, built_workload, built_cluster
