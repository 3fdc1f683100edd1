"""A fleet: N copies of one template site (its edge devices, their sources and uplinks), each varied.

A cluster config with ``devices: N`` is a fleet. Its ``site`` (a gateway,
``edge`` by default) is the template: every executor at that gateway, every
source of the workload sent to it, and every link from it (or shared by all
gateways, to a remote executor) is copied once per device, ``i`` in
``0..N-1``, renamed ``<name>-<i>`` (zero-padded) at gateway ``<site>-<i>``.
Executors at other gateways, remote executors and their other links are kept
once, shared by the whole fleet.

Each device draws one factor from each variation (``spec.variation``) under
``fleet_seed`` (fixed by default, so repeats over the run's seed vary the
traffic and not the fleet):

- ``vary.rate_scale`` multiplies its sources' rates (every arrival field
  ending in ``_rps``; a trace's ``time_scale`` is divided instead);
- ``vary.speed_scale`` is its executors' speed: every field of their latency
  profile ending in ``_s`` is divided by it (2: twice as fast);
- ``vary.bandwidth_scale`` multiplies its uplinks' ``bandwidth_scale``;
- ``vary.delay_scale`` multiplies its uplinks' ``delay_s``.

The expansion is plain data, mappings in and mappings out, before the
workload and the cluster are built and checked as any other, so every error
names the field. Pure: no clock, no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from spec.validation import ConfigError, check_int_at_least
from spec.variation import Variation

__all__ = ["Fleet", "FLEET_KEYS", "VARY_KEYS", "MAX_FLEET_ENTRIES"]

#: the keys of a cluster config that describe a fleet (beside executors, links and hosts)
FLEET_KEYS = ("devices", "site", "fleet_seed", "vary")
#: the per-device variations, in the order their streams are drawn
VARY_KEYS = ("rate_scale", "speed_scale", "bandwidth_scale", "delay_scale")
#: the records keep executor and source indices as int16
MAX_FLEET_ENTRIES = int(np.iinfo(np.int16).max)


def _named_list(field_name: str, raw: Any) -> list[dict]:
    """A list or a mapping by name of entries, as a list of dicts with ``name``."""
    if isinstance(raw, Mapping):
        return [{"name": name, **dict(entry or {})} for name, entry in raw.items()]
    if isinstance(raw, Sequence) and not isinstance(raw, str):
        return [dict(entry) if isinstance(entry, Mapping) else entry for entry in raw]
    raise ConfigError(field_name, raw, "a non-empty list (or mapping by name)")


def _divide_times(value: Any, factor: float) -> Any:
    """Every number in ``value`` (a number or nested lists) divided by ``factor``."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return value / factor
    if isinstance(value, Sequence) and not isinstance(value, str):
        return [_divide_times(v, factor) for v in value]
    return value


@dataclass(frozen=True, slots=True, kw_only=True)
class Fleet:
    """``devices`` copies of the gateway ``site`` with per-device factors drawn under ``fleet_seed``."""

    devices: int
    site: str = "edge"
    fleet_seed: int = 0
    variations: dict[str, Variation] = field(default_factory=dict)

    @classmethod
    def from_config(cls, cluster: Any) -> Fleet | None:
        """The fleet a cluster config describes (None: ``devices`` unset, not a fleet)."""
        if not isinstance(cluster, Mapping) or cluster.get("devices") is None:
            return None
        devices = check_int_at_least("cluster.devices", cluster["devices"], 1)
        site = cluster.get("site", "edge")
        if not isinstance(site, str) or not site or "/" in site:
            raise ConfigError("cluster.site", site, "a gateway name (a non-empty string without '/')")
        seed = check_int_at_least("cluster.fleet_seed", cluster.get("fleet_seed", 0) or 0, 0)
        vary = cluster.get("vary") or {}
        if not isinstance(vary, Mapping):
            raise ConfigError("cluster.vary", vary, "a mapping with " + ", ".join(VARY_KEYS))
        unknown = sorted(set(vary) - set(VARY_KEYS))
        if unknown:
            raise ConfigError(f"cluster.vary.{unknown[0]}", vary[unknown[0]], "one of " + ", ".join(VARY_KEYS),
                              choices=VARY_KEYS, near=unknown[0])  # fmt: skip
        variations = {key: Variation.from_config(f"cluster.vary.{key}", vary.get(key)) for key in VARY_KEYS}
        return cls(devices=devices, site=site, fleet_seed=seed, variations=variations)

    def suffixes(self) -> list[str]:
        """Each device's suffix: its index, zero-padded to one width."""
        width = len(str(self.devices - 1))
        return [f"{i:0{width}d}" for i in range(self.devices)]

    def factors(self) -> dict[str, np.ndarray]:
        """Each variation's factor per device: one stream each under ``fleet_seed`` (adding one keeps the others)."""
        streams = np.random.SeedSequence([self.fleet_seed, 0xF1EE7]).spawn(len(VARY_KEYS))
        return {key: self.variations[key].sample(np.random.default_rng(stream), self.devices) for key, stream in zip(VARY_KEYS, streams)}

    def expand(self, cluster: Mapping, workload: Any) -> tuple[dict, Any]:
        """The cluster and workload configs with the site copied per device (``FLEET_KEYS`` removed)."""
        factors = self.factors()
        suffixes = self.suffixes()
        cluster_out = self._expand_cluster(cluster, suffixes, factors)
        return cluster_out, self._expand_workload(workload, suffixes, factors["rate_scale"])

    def _expand_cluster(self, cluster: Mapping, suffixes: list[str], factors: dict[str, np.ndarray]) -> dict:
        executors = _named_list("cluster.executors", cluster.get("executors"))
        site = [e for e in executors if isinstance(e, dict) and e.get("gateway") == self.site]
        if not site:
            gateways = sorted({str(e.get("gateway")) for e in executors if isinstance(e, dict) and e.get("gateway")})
            raise ConfigError("cluster.site", self.site, "a gateway of some executor (the template device): " + ", ".join(gateways),
                              choices=gateways)  # fmt: skip
        if cluster.get("hosts"):
            raise ConfigError("cluster.hosts", "...", "no hosts in a fleet (cluster.devices set): hosts name single executors")
        if len(executors) + (len(suffixes) - 1) * len(site) > MAX_FLEET_ENTRIES:
            raise ConfigError("cluster.devices", self.devices, f"at most {MAX_FLEET_ENTRIES // len(site)} devices of {len(site)} executors")
        for entry in site:
            if not isinstance(entry.get("profile"), Mapping):
                raise ConfigError(f"cluster.executors.{entry['name']}.profile", type(entry.get("profile")).__name__,
                                  "a mapping (kind or _target_) whose *_s fields vary.speed_scale divides")  # fmt: skip
        speed = factors["speed_scale"].tolist()
        copies = []
        for i, suffix in enumerate(suffixes):
            for entry in site:
                profile = {k: (_divide_times(v, speed[i]) if k.endswith("_s") else v) for k, v in entry["profile"].items()}
                copies.append({**entry, "name": f"{entry['name']}-{suffix}", "gateway": f"{self.site}-{suffix}", "profile": profile})
        # the copies where the site's first executor was: the order of a gateway's executors is what a
        # placement without a named executor goes by (StaticPlacement takes the first)
        first = next(i for i, e in enumerate(executors) if e is site[0])
        rest = [e for e in executors if not (isinstance(e, dict) and e.get("gateway") == self.site)]
        before = sum(1 for e in executors[:first] if not (isinstance(e, dict) and e.get("gateway") == self.site))
        out = rest[:before] + copies + rest[before:]
        return {"executors": out, "links": self._expand_links(cluster, executors, suffixes, factors)}

    def _expand_links(self, cluster: Mapping, executors: list, suffixes: list[str], factors: dict[str, np.ndarray]) -> dict:
        links = dict(cluster.get("links") or {})
        remote = {e.get("name") for e in executors if isinstance(e, dict) and e.get("gateway") is None}
        # the site's own uplinks, and a shared one to a remote executor the site has no own link to
        templates = {key.split("/", 1)[1]: raw for key, raw in links.items() if key.startswith(self.site + "/")}
        for key, raw in links.items():
            if "/" not in key and key in remote:
                templates.setdefault(key, raw)
        out = {key: raw for key, raw in links.items() if not key.startswith(self.site + "/")}
        bandwidth, delay = factors["bandwidth_scale"].tolist(), factors["delay_scale"].tolist()
        for executor, raw in templates.items():
            if not isinstance(raw, Mapping):
                raise ConfigError(f"cluster.links.{executor}", type(raw).__name__, "a mapping (delay_s, bandwidth_MBps or bandwidth_trace)")
            base_scale, base_delay = raw.get("bandwidth_scale", 1.0) or 1.0, raw.get("delay_s", 0.0) or 0.0
            for i, suffix in enumerate(suffixes):
                out[f"{self.site}-{suffix}/{executor}"] = {**raw, "bandwidth_scale": base_scale * bandwidth[i], "delay_s": base_delay * delay[i]}
        return out

    def _expand_workload(self, workload: Any, suffixes: list[str], rate: np.ndarray) -> Any:
        if not isinstance(workload, Mapping):
            return workload  # build_workload names what is wrong
        sources = _named_list("workload.sources", workload.get("sources"))
        site = [s for s in sources if isinstance(s, dict) and s.get("gateway", "edge") == self.site]
        if not site:
            raise ConfigError("workload.sources", [s.get("name") for s in sources if isinstance(s, dict)],
                              f"a source at gateway {self.site!r} (cluster.site: the fleet's template device)")  # fmt: skip
        if len(sources) + (len(suffixes) - 1) * len(site) > MAX_FLEET_ENTRIES:
            raise ConfigError("cluster.devices", self.devices, f"at most {MAX_FLEET_ENTRIES // len(site)} devices of {len(site)} sources")
        out = [s for s in sources if not (isinstance(s, dict) and s.get("gateway", "edge") == self.site)]
        factors = rate.tolist()
        for i, suffix in enumerate(suffixes):
            for entry in site:
                arrivals = _scaled_arrivals(f"workload.sources.{entry['name']}.arrivals", entry.get("arrivals"), factors[i])
                out.append({**entry, "name": f"{entry['name']}-{suffix}", "gateway": f"{self.site}-{suffix}", "arrivals": arrivals})
        return {**workload, "sources": out}


def _scaled_arrivals(field_name: str, arrivals: Any, factor: float) -> Any:
    """An arrival process's config at ``factor`` times its rate (``_rps`` fields; a trace's ``time_scale``)."""
    if not isinstance(arrivals, Mapping):
        raise ConfigError(field_name, type(arrivals).__name__, "a mapping (kind or _target_) for a fleet's template source")
    rates = [k for k in arrivals if k.endswith("_rps")]
    if rates:
        return {**arrivals, **{k: arrivals[k] * factor for k in rates if isinstance(arrivals[k], (int, float))}}
    if arrivals.get("kind") == "trace" or str(arrivals.get("_target_", "")).endswith("TraceArrivals"):
        return {**arrivals, "time_scale": (arrivals.get("time_scale") or 1.0) / factor}
    if factor == 1.0:
        return arrivals
    raise ConfigError(field_name, dict(arrivals), "an arrival process with *_rps fields or a trace (vary.rate_scale scales them)")
