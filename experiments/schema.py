"""Structured-config schemas: a typo or a wrong type fails at composition, naming the field.

Registered in Hydra's ConfigStore as ``schema``; ``conf/config.yaml`` lists it
first in its defaults, so every composed config is checked against it.
Policy and profile parameters are open mappings (a user's class has its own);
those are checked against the class's signature before the run starts.
"""

from __future__ import annotations

import copy
import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, OmegaConf

from live.config import LIVE_DEFAULTS  # plain data, no torch or Pulsar
from spec.validation import ConfigError

__all__ = ["ExperimentConf", "register_schema", "check_known_keys"]



@dataclass
class SourceConf:
    """One edge device's request stream."""

    arrivals: Dict[str, Any] = MISSING
    gateway: str = "edge"
    size_bytes: int = 200 * 1024
    slo_s: float = math.inf
    hop_s: float = 0.0
    #: measured hops to the gateway (seconds), resampled per request (spec.workload.Source)
    hop_samples_s: Optional[List[float]] = None


@dataclass
class WorkloadConf:
    sources: Dict[str, SourceConf] = MISSING
    num_requests: Optional[int] = None
    duration_s: Optional[float] = None


@dataclass
class ExecutorConf:
    """A server (edge/cloud, ``slots``) or a serverless pool; unset fields take the class defaults."""

    kind: str = MISSING
    profile: Dict[str, Any] = MISSING
    gateway: Optional[str] = None
    slots: Optional[int] = None
    # not Optional: OmegaConf would resolve an interpolation into an Optional
    # node while merging its file alone; empty means "the class default"
    noise: Dict[str, Any] = field(default_factory=dict)
    pricing: Dict[str, Any] = field(default_factory=dict)
    cold_start: Dict[str, Any] = field(default_factory=dict)
    keep_alive_s: Optional[float] = None
    max_instances: Optional[int] = None
    memory_mb: Optional[int] = None
    memory_options_mb: Optional[List[int]] = None
    failure_probability: Optional[float] = None
    hop_s: Optional[float] = None
    overhead_s: Optional[float] = None
    hop_MBps: Optional[float] = None
    #: measured hops and per-batch overheads (seconds), resampled per message (spec.topology.ExecutorSpec)
    hop_samples_s: Optional[List[float]] = None
    overhead_samples_s: Optional[List[float]] = None


@dataclass
class LinkConf:
    delay_s: float = 0.0
    bandwidth_MBps: Optional[float] = None
    bandwidth_trace: Optional[str] = None
    bandwidth_scale: float = 1.0
    trace_offset_s: int = 0


@dataclass
class ClusterConf:
    executors: Dict[str, ExecutorConf] = MISSING
    links: Dict[str, LinkConf] = field(default_factory=dict)
    #: machines, their cores, and which executors and roles run on each (spec.host_spec.HostSpec); null: none
    hosts: Optional[Dict[str, Any]] = None
    #: a fleet (spec.fleet): this many copies of the gateway ``site``, varied per device (``vary``) under ``fleet_seed``
    devices: Optional[int] = None
    site: str = "edge"
    fleet_seed: int = 0
    vary: Dict[str, Any] = field(default_factory=dict)


@dataclass
class PolicyConf:
    placement: Dict[str, Any] = MISSING
    batching: Dict[str, Any] = MISSING
    planner: Optional[Dict[str, Any]] = None
    batching_per_executor: Dict[str, Any] = field(default_factory=dict)
    #: a failed batch is dispatched again up to this many times, then dropped as retries_exhausted (null: 0)
    max_retries: Optional[int] = None


@dataclass
class SimConf:
    telemetry_period_s: float = 1.0
    horizon_s: Optional[float] = None
    progress: bool = False
    #: one scheduler for every gateway (central) instead of one per gateway (EdgeServe's decentralized placement)
    central_scheduler: bool = False
    #: a folder: the record tables streamed there in Parquet row groups (spec.streaming_recorder); null: in memory
    stream_records_to: Optional[str] = None
    #: beyond this many requests a run streams its records (to its results folder) and its percentiles come from a sketch
    max_records_in_memory: int = 5_000_000


@dataclass
class BackendConf:
    kind: str = "sim"


def _field_type(value: Any) -> Any:
    if isinstance(value, bool):
        return bool
    if isinstance(value, int):
        return Optional[int]
    if isinstance(value, float):
        return Optional[float]
    if isinstance(value, str):
        return str
    return Any  # a null default: whatever the live harness accepts there


def _from_defaults(name: str, defaults: Dict[str, Any], doc: str, nested: Dict[str, type] | None = None,
                   loose: tuple[str, ...] = ()) -> type:  # fmt: skip
    """A structured-config class with a field per key of ``defaults`` (their values the defaults), so that the
    schema follows ``live.config.LIVE_DEFAULTS`` as it grows: every key it knows is settable without ``+``."""
    nested = nested or {}
    fields = []
    for key, value in defaults.items():
        if key in nested:
            fields.append((key, nested[key], field(default_factory=nested[key])))
        elif key in loose:  # more than one form (a name or a mapping): checked by the live harness itself
            fields.append((key, Any, field(default=value)))
        elif isinstance(value, (dict, list)):
            fields.append((key, Dict[str, Any] if isinstance(value, dict) else List[Any], field(default_factory=lambda v=value: copy.deepcopy(v))))
        else:
            fields.append((key, _field_type(value), field(default=value)))
    made = dataclasses.make_dataclass(name, fields)
    made.__doc__ = doc
    made.__module__ = __name__
    return made


#: the live run's broker (``url: null``: an embedded pulsar-lite on a free local port)
BrokerConf = _from_defaults("BrokerConf", LIVE_DEFAULTS["broker"], "The live run's broker (url null: an embedded pulsar-lite).")
#: the live harness's section (``live.config``, whose defaults these are); the simulator ignores it
LiveConf = _from_defaults("LiveConf", LIVE_DEFAULTS, "The live harness's section (live.config's defaults); the simulator ignores it.",
                          nested={"broker": BrokerConf}, loose=("model",))  # fmt: skip


@dataclass
class ProgressConf:
    """When a run shows its progress (``experiments.progress``): after ``after_s``, a log line every ``period_s``."""

    after_s: float = 2.0
    period_s: float = 5.0


@dataclass
class ExperimentConf:
    """The whole composed configuration of one run."""

    name: str = "run"
    seed: int = 0
    #: run each configuration this many times (an integer >= 1), with seeds seed, ..., seed+repeats-1
    repeats: int = 1
    #: knobs the workload and policy files interpolate, so that sweeps name them plainly
    rate_rps: float = 50.0
    slo_s: float = 0.8
    num_requests: int = 10_000
    backend: BackendConf = field(default_factory=BackendConf)
    workload: WorkloadConf = MISSING
    cluster: ClusterConf = MISSING
    policy: PolicyConf = MISSING
    profile: Dict[str, Any] = field(default_factory=dict)
    cost: Dict[str, Any] = field(default_factory=dict)
    sim: SimConf = field(default_factory=SimConf)
    live: LiveConf = field(default_factory=LiveConf)
    progress: ProgressConf = field(default_factory=ProgressConf)
    #: EdgeServe's pipeline stages (joins, cascade, lazy routing, stale drops), checked by spec.pipeline; null: none
    pipeline: Optional[Dict[str, Any]] = None
    #: free-form labels copied into the summary (for collect and plot)
    tags: Dict[str, Any] = field(default_factory=dict)


def _unknown_keys(node: DictConfig, path: str):
    kind = OmegaConf.get_type(node)
    known = [f.name for f in dataclasses.fields(kind)] if dataclasses.is_dataclass(kind) else None
    for key in node.keys():
        where = f"{path}.{key}" if path else str(key)
        if known is not None and key not in known:
            yield where, node._get_node(key)._value(), kind.__name__, known
            continue
        child = node._get_node(key)
        if isinstance(child, DictConfig) and not child._is_missing() and not child._is_none():
            yield from _unknown_keys(child, where)


def check_known_keys(cfg: DictConfig) -> None:
    """``ConfigError`` for the first key the schema does not know, also one added with ``+key=value``."""
    for where, value, kind, known in _unknown_keys(cfg, ""):
        key = where.rpartition(".")[2]
        raise ConfigError(where, value, f"not a setting of {kind}, whose keys are " + ", ".join(known), choices=known, near=key)


def register_schema() -> None:
    ConfigStore.instance().store(name="schema", node=ExperimentConf)


register_schema()
