"""Topology: executors (edge devices, cloud servers, serverless pools) and links.

Gateways are the edge nodes whose schedulers receive requests; every source
names one. An executor either sits at a gateway (no link) or is remote, and
each gateway reaches a remote executor over its own uplink.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from spec.host_spec import ALL_EXECUTORS, HostSpec, RoleCpu
from spec.links import Link
from spec.noise import Delay, NoiseModel, NoNoise
from spec.pricing import FreePricing, Pricing
from spec.profiles import LatencyProfile
from spec.validation import ConfigError, check_choice, check_int_at_least, check_non_negative, check_positive, check_probability

__all__ = ["ExecutorSpec", "ServerSpec", "ServerlessSpec", "Cluster", "EXECUTOR_KINDS"]

EXECUTOR_KINDS = ("edge", "cloud", "serverless")


@dataclass(frozen=True, kw_only=True)
class ExecutorSpec:
    """What every executor has: a name, a kind, a latency profile, noise and a price."""

    name: str
    kind: str
    profile: LatencyProfile
    noise: NoiseModel = field(default_factory=NoNoise)
    pricing: Pricing = field(default_factory=FreePricing)
    #: the gateway an edge executor sits at; None for remote executors
    gateway: str | None = None
    #: one-way message hop between the gateway and this executor outside any link
    #: emulation (broker, (de)serialization), paid on the way there and back;
    #: 0 in a pure model, measured by ``experiments.calibrate`` for live runs
    hop_s: float = 0.0
    #: time an executor stays busy per batch beyond the model's service time
    #: (receiving and decoding the batch, publishing its result); its slot or
    #: instance frees this long after the service ends
    overhead_s: float = 0.0
    #: rate at which a batch's payload crosses that hop (broker, serialization, decoding),
    #: in MB/s; None: the payload adds nothing to the hop
    hop_MBps: float | None = None
    #: measured one-way hops (seconds, e.g. quantiles from calibration), resampled per message
    #: with the run's seeded generator in place of the constant ``hop_s`` (which becomes
    #: their mean when left at 0: the value policies plan with)
    hop_samples_s: Sequence[float] | None = None
    #: measured per-batch overheads (seconds), resampled per batch in place of ``overhead_s``
    #: (which becomes their mean when left at 0)
    overhead_samples_s: Sequence[float] | None = None

    def __post_init__(self):
        if not isinstance(self.name, str) or not self.name or "/" in self.name:
            raise ConfigError("executor.name", self.name, "a non-empty string without '/'")
        check_choice(f"executors.{self.name}.kind", self.kind, EXECUTOR_KINDS)
        if not isinstance(self.profile, LatencyProfile):
            raise ConfigError(f"executors.{self.name}.profile", type(self.profile).__name__, "a LatencyProfile")
        if not isinstance(self.noise, NoiseModel):
            raise ConfigError(f"executors.{self.name}.noise", type(self.noise).__name__, "a NoiseModel")
        check_non_negative(f"executors.{self.name}.hop_s", self.hop_s)
        check_non_negative(f"executors.{self.name}.overhead_s", self.overhead_s)
        if self.hop_MBps is not None:
            check_positive(f"executors.{self.name}.hop_MBps", self.hop_MBps)
        if not isinstance(self.pricing, Pricing):
            raise ConfigError(f"executors.{self.name}.pricing", type(self.pricing).__name__, "a Pricing")
        for field_name, mean_field in (("hop_samples_s", "hop_s"), ("overhead_samples_s", "overhead_s")):
            samples = getattr(self, field_name)
            if samples is None:
                continue
            samples = _samples(f"executors.{self.name}.{field_name}", samples)
            object.__setattr__(self, field_name, samples)
            if getattr(self, mean_field) == 0.0:
                object.__setattr__(self, mean_field, sum(samples) / len(samples))

    @property
    def remote(self) -> bool:
        """True when requests reach it over a link."""
        return self.gateway is None

    def mean_service_s(self, batch_size: int, memory_mb: int | None = None) -> float:
        """The profile's mean for this executor."""
        return self.profile.mean_s(batch_size, memory_mb)


def _samples(field_name: str, values) -> tuple[float, ...]:
    """Measured delays: a non-empty list of finite numbers >= 0."""
    if isinstance(values, (str, bytes)) or not isinstance(values, Sequence) or not values:
        raise ConfigError(field_name, values, "a non-empty list of measured delays in seconds (>= 0)")
    return tuple(check_non_negative(field_name, v) for v in values)


@dataclass(frozen=True, kw_only=True)
class ServerSpec(ExecutorSpec):
    """An edge device or cloud server running up to ``slots`` batches at once."""

    slots: int = 1

    def __post_init__(self):
        ExecutorSpec.__post_init__(self)
        check_int_at_least(f"executors.{self.name}.slots", self.slots, 1)
        if self.kind == "serverless":
            raise ConfigError(f"executors.{self.name}.kind", self.kind, "'edge' or 'cloud' for a server")


@dataclass(frozen=True, kw_only=True)
class ServerlessSpec(ExecutorSpec):
    """A pool of function instances.

    Each instance runs one batch at a time. An instance starts cold (a
    ``cold_start`` delay), stays warm for ``keep_alive_s`` after its last
    batch, then is reclaimed (scale to zero). At most ``max_instances`` exist;
    batches beyond that wait in FIFO order. ``memory_mb`` is the default
    configured memory; a dispatch may name another, which selects the profile.
    """

    kind: str = "serverless"
    cold_start: Delay | None = None
    keep_alive_s: float = 600.0
    max_instances: int = 1000
    memory_mb: int = 1024
    memory_options_mb: Sequence[int] = ()
    #: chance that a batch's instance fails (during cold start or execution)
    failure_probability: float = 0.0

    def __post_init__(self):
        ExecutorSpec.__post_init__(self)
        if self.kind != "serverless":
            raise ConfigError(f"executors.{self.name}.kind", self.kind, "'serverless' for a serverless pool")
        if self.cold_start is not None and not isinstance(self.cold_start, Delay):
            raise ConfigError(f"executors.{self.name}.cold_start", type(self.cold_start).__name__, "a Delay")
        check_non_negative(f"executors.{self.name}.keep_alive_s", self.keep_alive_s)
        check_int_at_least(f"executors.{self.name}.max_instances", self.max_instances, 1)
        check_int_at_least(f"executors.{self.name}.memory_mb", self.memory_mb, 1)
        check_probability(f"executors.{self.name}.failure_probability", self.failure_probability)
        for value in self.memory_options_mb:
            check_int_at_least(f"executors.{self.name}.memory_options_mb", value, 1)


class Cluster:
    """Executors and the uplinks from each gateway to each remote executor.

    ``links`` maps ``"gateway/executor"`` (or just ``"executor"``, for the
    same link from every gateway) to a ``Link``. A remote executor with no
    link is reached instantly (a zero-delay, infinite-bandwidth link).
    ``hosts`` maps a machine's name to a ``spec.host_spec.HostSpec``: its
    cores, the executors and harness roles on it, which share those cores
    in the simulator; none: every executor and role unconstrained.
    """

    def __init__(self, *, executors: Sequence[ExecutorSpec], links: Mapping[str, Link] | None = None,
                 hosts: Mapping[str, HostSpec] | None = None):
        if not executors:
            raise ConfigError("cluster.executors", [], "at least one executor")
        names = [e.name for e in executors]
        if len(set(names)) != len(names):
            raise ConfigError("cluster.executors", names, "executors with distinct names")
        for e in executors:
            if not isinstance(e, ExecutorSpec):
                raise ConfigError("cluster.executors", type(e).__name__, "ServerSpec or ServerlessSpec entries")
        self.executors: dict[str, ExecutorSpec] = {e.name: e for e in executors}
        self.links: dict[str, Link] = dict(links or {})
        for key, link in self.links.items():
            executor = key.split("/")[-1]
            if executor not in self.executors:
                raise ConfigError(f"cluster.links.{key}", key, "'executor' or 'gateway/executor' naming one of " + ", ".join(names))
            if not isinstance(link, Link):
                raise ConfigError(f"cluster.links.{key}", type(link).__name__, "a spec.links.Link")
            if not self.executors[executor].remote:
                raise ConfigError(f"cluster.links.{key}", key, "a link only to a remote executor (gateway unset)")
        self.hosts: dict[str, HostSpec] = dict(hosts or {})
        self._check_hosts(names)

    def _check_hosts(self, names: list[str]) -> None:
        """Every host named by its key, each executor and role on at most one host, named executors exist."""
        placed: dict[str, str] = {}
        roles: dict[str, str] = {}
        for key, host in self.hosts.items():
            if not isinstance(host, HostSpec) or host.name != key:
                raise ConfigError(f"cluster.hosts.{key}", type(host).__name__, "a spec.host_spec.HostSpec named by its key")
            on_host = names if host.executors == ALL_EXECUTORS else list(host.executors)
            for executor in on_host:
                if executor not in self.executors:
                    raise ConfigError(f"cluster.hosts.{key}.executors", executor, "names of executors: " + ", ".join(names))
                if executor in placed:
                    raise ConfigError(f"cluster.hosts.{key}.executors", executor, f"an executor on one host only (it is on {placed[executor]!r})")
                placed[executor] = key
            for role in host.roles:
                if role in roles and role != "worker":  # "worker": the workers of the executors on each host
                    raise ConfigError(f"cluster.hosts.{key}.roles.{role}", role, f"a role on one host only (it is on {roles[role]!r})")
                roles[role] = key

    def host_of(self, executor: str) -> HostSpec | None:
        """The host ``executor`` runs on (None: on no host, unconstrained)."""
        for host in self.hosts.values():
            if host.holds(executor):
                return host
        return None

    def host_of_role(self, role: str, name: str | None = None) -> tuple[HostSpec, RoleCpu] | None:
        """The host of one role instance (``gateway`` ``edge``: ``gateway/edge``, else ``gateway``) and its CPU."""
        keys = ([f"{role}/{name}"] if name is not None else []) + [role]
        for key in keys:
            for host in self.hosts.values():
                if key in host.roles:
                    return host, host.roles[key]
        return None

    def link(self, gateway: str, executor: str) -> Link | None:
        """The uplink from ``gateway`` to ``executor``; None when local or unlinked."""
        spec = self.executors[executor]
        if not spec.remote:
            return None
        return self.links.get(f"{gateway}/{executor}", self.links.get(executor))

    #: the gateway name of a central scheduler, which reaches every executor
    CENTRAL = "central"

    def reachable(self, gateway: str) -> list[str]:
        """Executors a gateway can use: its own edge devices and every remote one.

        The central scheduler (``Cluster.CENTRAL``) reaches every executor; it
        places requests from all gateways, with no coordination delay (the
        idealized centralized baseline that EdgeServe's decentralized
        placement is compared with).
        """
        if gateway == self.CENTRAL:
            return list(self.executors)
        by_gateway = self.__dict__.get("_reachable")
        if by_gateway is None:
            by_gateway = self._reachable = self._reachable_by_gateway()
        found = by_gateway.get(gateway)
        return list(found if found is not None else by_gateway[None])

    def _reachable_by_gateway(self) -> dict[str | None, list[str]]:
        """Each gateway's executors in the cluster's order, built in one pass (a fleet has thousands of gateways;
        a scan of every executor per gateway would be quadratic); ``None``: a gateway with only the remote ones."""
        remote: list[str] = []
        by_gateway: dict[str | None, list[str]] = {}
        for name, e in self.executors.items():
            if e.remote:
                remote.append(name)
                for names in by_gateway.values():
                    names.append(name)
            else:
                by_gateway.setdefault(e.gateway, list(remote)).append(name)
        by_gateway[None] = remote
        return by_gateway

    @property
    def gateways(self) -> list[str]:
        """Gateways named by edge executors."""
        return sorted({e.gateway for e in self.executors.values() if e.gateway is not None})
