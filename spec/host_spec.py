"""Hosts: the machines of a topology, their cores, and what runs on each.

A host names its ``cores``, the executors on it, and the harness roles on it
with the CPU each spends (``RoleCpu``). Work on one host shares its cores
(``spec.host_cpu.HostCpu``): every batch an executor runs needs its service
time at ``batch_cores`` cores (the threads it uses, at their measured
parallelism), a serverless instance's cold start needs its duration at
``cold_start_cores`` cores, and each role spends CPU-seconds per request and per batch it handles.
``background_cores`` is work outside the model on the machine (other
tenants, the orchestrator): one job demanding that many cores all run long.
Two per-run random effects stand for what varies from one live run to the
next and a single simulated run cannot show: ``run_cv``, the machine's speed
(every CPU-second on the host takes a factor drawn once per run, lognormal
with mean 1 and that coefficient of variation: calibration's spread of the
service time between its rounds, less the within-round noise), and
``background_cores_sd``, the other work's level (drawn once per run around
``background_cores``: the spread between calibration's live runs).
All of these are measured by ``experiments.calibrate`` in CPU-seconds and
cores. Executors and roles on no host run unconstrained (the model without
hosts).

A role is ``broker``, ``sink``, ``gateway``, ``source`` or ``worker``;
``gateway/<name>``, ``source/<name>`` or ``worker/<executor>`` places one
instance, the plain name every one not placed by name. ``worker`` is the
CPU an executor's worker process spends outside the model, per batch and per
request (receiving, decoding, publishing): it runs on the executor's host
during the batch's overhead (``overhead_s``), which lasts at least that long. ``executors: "*"`` puts every executor of the cluster on
the host (``roles`` too: ``"*"`` is not allowed there, each role has its own CPU).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from spec.validation import ConfigError, check_non_negative
from spec.warmup import WarmupTable

__all__ = ["HostSpec", "RoleCpu", "HARNESS_ROLES", "NAMED_ROLES", "ALL_EXECUTORS"]

#: the harness's own processes, each one single-threaded process per instance; ``worker`` is
#: an executor's worker process outside the model (receiving, decoding, publishing, acknowledging)
HARNESS_ROLES = ("broker", "gateway", "source", "sink", "worker")
#: roles that may be placed one instance at a time (``gateway/<name>``)
NAMED_ROLES = ("gateway", "source", "worker")
#: ``executors`` value that puts every executor of the cluster on the host
ALL_EXECUTORS = "*"


@dataclass(frozen=True, kw_only=True, slots=True)
class RoleCpu:
    """CPU-seconds a harness role spends per request and per batch it handles (at one core).

    Per request: the source publishes it, the broker routes it, the gateway
    receives and schedules it. Per batch: the gateway publishes it and
    receives its result, the broker routes both and the record, the sink
    records it. A message that finds the process idle (its backlog empty)
    costs ``cpu_s_per_wakeup`` more: the process is woken, returns from its
    poll and is scheduled; messages that arrive while it works are handled
    in the same pass. So a role's CPU per request falls as its rate rises.
    Besides, ``idle_cores`` of a core for as long as the run lasts.
    ``experiments.calibrate`` fits the four from the roles' process CPU
    times in short live runs whose requests, batches, wake-ups and durations
    come in different proportions (unbatched, batched, slower, faster).

    A role that stores what passes through it (the broker persists every
    message) may cost more per message once the run has stored
    ``step_after_MB`` megabytes (requests' and batches' payloads): then every
    message costs ``step_factor`` times its CPU. Measured for the embedded
    broker by calibration's storage run (its CPU per request stepped up
    1.6-2.0x after 0.6-1.4 GB, about 1,400-3,300 requests of 200 KB); none by default.
    """

    cpu_s_per_request: float = 0.0
    cpu_s_per_batch: float = 0.0
    #: CPU-seconds more for a message that finds the process idle (waking it)
    cpu_s_per_wakeup: float = 0.0
    #: cores the process keeps busy whatever it handles (its polling and timer loops), for the whole run
    idle_cores: float = 0.0
    #: megabytes stored in the run after which every message costs ``step_factor`` times as much (inf: never)
    step_after_MB: float = math.inf
    step_factor: float = 1.0

    def __post_init__(self):
        check_non_negative("role.step_after_MB", self.step_after_MB, finite=False)
        if isinstance(self.step_factor, bool) or not isinstance(self.step_factor, (int, float)) or not 1 <= self.step_factor < 10:
            raise ConfigError("role.step_factor", self.step_factor, "a factor in [1, 10) (1: no step)")
        check_non_negative("role.cpu_s_per_request", self.cpu_s_per_request)
        check_non_negative("role.cpu_s_per_batch", self.cpu_s_per_batch)
        check_non_negative("role.cpu_s_per_wakeup", self.cpu_s_per_wakeup)
        check_non_negative("role.idle_cores", self.idle_cores)
        if self.idle_cores > 1:
            raise ConfigError("role.idle_cores", self.idle_cores, "a number of cores in [0, 1] (a role is one single-threaded process)")


@dataclass(frozen=True, kw_only=True)
class HostSpec:
    """One machine: ``cores``, the executors on it, and its harness roles with their CPU."""

    name: str
    cores: float
    executors: Sequence[str] | str = ()
    roles: Mapping[str, RoleCpu] = field(default_factory=dict)
    #: cores one batch keeps busy, by executor name or kind (default 1.0: one thread)
    batch_cores: Mapping[str, float] = field(default_factory=dict)
    #: extra service time after a slot idled (``spec.warmup.WarmupTable``), by executor name or kind; none: no warm-up
    warmup: Mapping[str, WarmupTable] = field(default_factory=dict)
    #: cores a serverless instance's cold start keeps busy (process start, imports, model load)
    cold_start_cores: float = 1.0
    #: cores kept busy by work outside the model (other tenants, the orchestrator), as calibration measured it
    background_cores: float = 0.0
    #: run-to-run coefficient of variation of the machine's speed (a per-run factor on every CPU-second)
    run_cv: float = 0.0
    #: run-to-run standard deviation of ``background_cores`` (a per-run draw, kept in [0, cores))
    background_cores_sd: float = 0.0

    def __post_init__(self):
        field_name = f"cluster.hosts.{self.name}"
        if isinstance(self.cores, bool) or not isinstance(self.cores, (int, float)) or not math.isfinite(self.cores) or self.cores <= 0:
            raise ConfigError(f"{field_name}.cores", self.cores, "a number of cores > 0 (finite)")
        if self.executors != ALL_EXECUTORS and (isinstance(self.executors, str) or not isinstance(self.executors, Sequence)):
            raise ConfigError(f"{field_name}.executors", self.executors, f"a list of executor names, or {ALL_EXECUTORS!r} for all")
        if not isinstance(self.roles, Mapping):
            raise ConfigError(f"{field_name}.roles", self.roles, "a mapping of role to {cpu_s_per_request, cpu_s_per_batch}")
        for role, cpu in self.roles.items():
            kind = str(role).split("/")[0]
            if kind not in HARNESS_ROLES or ("/" in str(role) and kind not in NAMED_ROLES):
                raise ConfigError(f"{field_name}.roles.{role}", role, "one of " + ", ".join(HARNESS_ROLES) + ", or <" + "|".join(NAMED_ROLES) + ">/<name>")
            if not isinstance(cpu, RoleCpu):
                raise ConfigError(f"{field_name}.roles.{role}", cpu, "a RoleCpu (cpu_s_per_request, cpu_s_per_batch)")
        if isinstance(self.background_cores, bool) or not isinstance(self.background_cores, (int, float)) \
                or not 0 <= self.background_cores < self.cores:
            raise ConfigError(f"{field_name}.background_cores", self.background_cores, f"a number of cores in [0, cores={self.cores})")
        for key, value, top in (("run_cv", self.run_cv, 1.0), ("background_cores_sd", self.background_cores_sd, float(self.cores))):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < top:
                raise ConfigError(f"{field_name}.{key}", value, f"a number in [0, {top:g})")
        for key, value in {**dict(self.batch_cores), "cold_start_cores": self.cold_start_cores}.items():
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
                raise ConfigError(f"{field_name}.{'' if key == 'cold_start_cores' else 'batch_cores.'}{key}", value, "a number of cores > 0 (finite)")

    def holds(self, executor: str) -> bool:
        """True when ``executor`` runs on this host."""
        return self.executors == ALL_EXECUTORS or executor in self.executors

    def cores_of_batch(self, executor: str, kind: str) -> float:
        """Cores one batch of ``executor`` (of ``kind``) keeps busy."""
        return float(self.batch_cores.get(executor, self.batch_cores.get(kind, 1.0)))

    def warmup_of(self, executor: str, kind: str) -> WarmupTable | None:
        """The warm-up table of ``executor`` (by name, else by kind), or None."""
        return self.warmup.get(executor, self.warmup.get(kind))

    @classmethod
    def from_config(cls, name: str, raw: Any) -> HostSpec:
        """A host from its config mapping (roles as plain mappings), every field checked."""
        field_name = f"cluster.hosts.{name}"
        if isinstance(raw, HostSpec):
            return raw
        if not isinstance(raw, Mapping):
            raise ConfigError(field_name, raw, "a mapping with cores, executors, roles, batch_cores")
        keys = ("cores", "executors", "roles", "batch_cores", "cold_start_cores", "background_cores", "run_cv", "background_cores_sd",
                "warmup")  # fmt: skip
        unknown = sorted(set(raw) - set(keys))
        if unknown:
            raise ConfigError(f"{field_name}.{unknown[0]}", raw[unknown[0]], "one of " + ", ".join(keys))
        if "cores" not in raw:
            raise ConfigError(f"{field_name}.cores", None, "a number of cores > 0 (required)")
        roles = {}
        for role, cpu in dict(raw.get("roles") or {}).items():
            if isinstance(cpu, RoleCpu):
                roles[role] = cpu
                continue
            if not isinstance(cpu, Mapping) or set(cpu) - {"cpu_s_per_request", "cpu_s_per_batch", "cpu_s_per_wakeup", "idle_cores",
                                                          "step_after_MB", "step_factor"}:  # fmt: skip
                raise ConfigError(f"{field_name}.roles.{role}", cpu, "a mapping with cpu_s_per_request, cpu_s_per_batch, "
                                  "cpu_s_per_wakeup (CPU-seconds), idle_cores, step_after_MB, step_factor")  # fmt: skip
            try:
                roles[role] = RoleCpu(**dict(cpu))
            except ConfigError as error:
                raise ConfigError(f"{field_name}.roles.{role}.{error.field.split('.')[-1]}", error.value, error.allowed) from None
        executors = raw.get("executors") or ()
        executors = executors if executors == ALL_EXECUTORS else list(executors) if isinstance(executors, Sequence) and not isinstance(executors, str) else executors
        warmup = {key: WarmupTable.from_config(table, f"{field_name}.warmup.{key}") for key, table in dict(raw.get("warmup") or {}).items()}
        return cls(name=name, cores=raw["cores"], executors=executors, roles=roles, batch_cores=dict(raw.get("batch_cores") or {}), warmup=warmup,
                   cold_start_cores=raw.get("cold_start_cores", 1.0), background_cores=raw.get("background_cores", 0.0),
                   run_cv=raw.get("run_cv", 0.0), background_cores_sd=raw.get("background_cores_sd", 0.0))  # fmt: skip
