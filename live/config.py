"""The live harness's view of a run config: checking it, building it, and naming its topics.

A live run reads the same mapping as the simulator (``seed``, ``workload``,
``cluster``, ``policy``) plus a ``live`` section, all optional::

    live:
      broker: {url: null, auth_token: null, tls_trust_certs_file: null, keep_data: false}
      model: mlp                      # default PyTorch model of every executor (live.models)
      executors:                      # per executor, all optional
        edge: {model: cnn, threads: 1, replicas: 2}       # a server: worker processes
                                                          # (inline: true: one edge device run on a thread of
                                                          # its gateway's process, no worker; see
                                                          # live.roles.inline_executor)
                                                          # (external: [names] of workers run by someone else,
                                                          # which the run waits for; replicas may then be 0)
        lambda: {threads: null, mb_per_thread: 1024}      # a serverless pool
      timeout_s: 120                  # the run's own time limit, from its start
      startup_timeout_s: 60           # for every role to connect and say it is ready
      emulate_links: true             # hold batches for the link's delay and bandwidth
      telemetry_period_s: null        # default: sim.telemetry_period_s, else 1.0
      event_log: false                # each gateway logs its scheduler's events and actions (live.eventlog)
      recovery_log: true              # ...and, without event_log, keeps that log only to replay it after a crash
                                      # (live.roles.gateway_replay; removed when the gateway ends normally)
      redeliver_after_s: 30           # a gateway publishes a batch again when no result came back this long
                                      # after it was published (doubling each time); null: never
      max_restarts: 3                 # a worker or pool process that dies during the run is restarted up to
                                      # this many times (each); 0: a crash ends the run (LiveRunError)
      stall_detection: {p99_multiple: 5, floor_s: 0.5, initial_s: 5}
                                      # an executor silent, with batches out, for p99_multiple x the p99 of its
                                      # batches' busy time + floor_s (initial_s before its first result) is taken
                                      # for lost: its batches go again (live.roles.gateway_flights); null: only
                                      # redeliver_after_s
      device: auto                    # where workers run the model and the whole batch: auto (cuda if there
                                      # is one), cpu or cuda
      authenticate: true              # every message carries an HMAC-SHA256 tag under the run's key
                                      # (live.wire.messages; the key is in EDGEBATCH_RUN_KEY, never in a file)
      limits: {}                      # live.wire.messages.WireLimits: max_header_bytes, max_ids,
                                      # max_payload_bytes, max_reason_chars
      ingress: {mode: replay}         # replay the workload (experiments), or open: serve registered
                                      # clients on reply topics of their own (live.ingress, docs/PROTOCOL.md)

``url: null`` means: start an embedded pulsar-lite broker; its data lives in a
temporary folder removed at the end unless ``keep_data: true`` (then in
``<out>/broker/data``; its log is in ``<out>/broker`` either way). A server's
``replicas`` defaults to its ``slots``; a serverless instance gets
``threads`` threads, or ``memory_mb / mb_per_thread`` (at least 1, at most
the machine's cores). Every role process reads the whole config and checks
it the same way, so that a bad setting fails before anything runs, with the
field's full path.

This module imports neither torch nor ``sim``: the gateway, source and sink
do not need torch, and ``live`` never imports ``sim`` (DESIGN.md).
"""

from __future__ import annotations

import copy
import json
import math
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from live.ingress import IngressSettings, ingress_settings
from live.roles.gateway_flights import StallDetection
from live.wire.messages import WireLimits
from live.wire.topics import Topics
from policies.factory import make_scheduler_factory
from policies.run_spec import RunSpec, build_run_spec
from spec.topology import ServerlessSpec
from spec.validation import ConfigError, check_choice, check_int_at_least, check_positive

__all__ = [
    "LIVE_DEFAULTS",
    "ExecutorSettings",
    "LiveSettings",
    "RunSpec",
    "RunClock",
    "build_run",
    "live_settings",
    "load_config",
    "load_run",
    "make_scheduler_factory",
    "Topics",
]


LIVE_DEFAULTS: dict[str, Any] = {
    "broker": {"url": None, "auth_token": None, "tls_trust_certs_file": None, "keep_data": False},
    "model": "mlp",
    "executors": {},
    "timeout_s": 120.0,
    "startup_timeout_s": 60.0,
    "emulate_links": True,
    "telemetry_period_s": None,
    "event_log": False,
    "recovery_log": True,
    "max_restarts": 3,
    "redeliver_after_s": 30.0,
    "authenticate": True,
    "device": "auto",
    "limits": {},
    "stall_detection": {},
    "ingress": {},
}
_BROKER_KEYS = ("url", "auth_token", "tls_trust_certs_file", "keep_data")
_SERVER_KEYS = ("model", "threads", "replicas", "external", "inline")
_SERVERLESS_KEYS = ("model", "threads", "mb_per_thread")


# ---------------------------------------------------------------------------
# Loading
# ---------------------------------------------------------------------------


def load_run(path: str | os.PathLike) -> RunSpec:
    """A role's one call: the run config file the orchestrator wrote, rebuilt as the checked run spec."""
    return build_run(load_config(path))


def load_config(path: str | os.PathLike) -> dict:
    """A run config from a JSON file (what every role's ``--config`` names)."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as error:
        raise ConfigError("--config", str(path), f"a readable JSON file ({error.strerror})") from None
    try:
        config = json.loads(text)
    except ValueError as error:
        raise ConfigError("--config", str(path), f"valid JSON ({error})") from None
    if not isinstance(config, dict):
        raise ConfigError("--config", str(path), "a JSON object at the top level")
    return config


# ---------------------------------------------------------------------------
# The scheduler factory (the same construction as the simulator's)
# ---------------------------------------------------------------------------


# ---------------------------------------------------------------------------
# The live section
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class ExecutorSettings:
    """How one executor runs live."""

    name: str
    kind: str
    model: str
    threads: int
    replicas: int  # worker processes of a server; 0 for a serverless pool (instances on demand)
    serverless: bool
    #: serverless: MB of memory per thread when ``threads`` is not set (0: threads is fixed)
    mb_per_thread: float = 0.0
    #: names of workers of this executor that someone else runs (docs/PROTOCOL.md): the run waits for their ready
    external: tuple[str, ...] = ()
    #: run in its gateway's process (``live.roles.inline_executor``): no worker, no broker hop to it and back
    inline: bool = False

    def threads_for(self, memory_mb: int | None) -> int:
        """Threads of an instance of ``memory_mb`` (``threads`` unless it follows memory)."""
        if not self.mb_per_thread or not memory_mb:
            return self.threads
        return max(1, min(os.cpu_count() or 1, int(memory_mb // self.mb_per_thread)))


@dataclass(frozen=True)
class LiveSettings:
    broker_url: str | None
    auth_token: str | None
    tls_trust_certs_file: str | None
    model: str
    executors: dict[str, ExecutorSettings]
    timeout_s: float
    startup_timeout_s: float
    emulate_links: bool
    telemetry_period_s: float
    #: each gateway writes <out>/eventlog/gateway-<name>.jsonl (live.eventlog)
    event_log: bool = False
    #: a gateway writes that log anyway, to replay it when it is restarted after a crash (removed at its normal end)
    recovery_log: bool = True
    #: restarts of each worker or pool process that dies during a run (0: a crash ends the run)
    max_restarts: int = 3
    #: a gateway publishes a batch again when no result came back this long after publication (None: never)
    redeliver_after_s: float | None = 30.0
    #: the embedded broker's data stays in ``<out>/broker/data`` (else a temporary folder, removed at the end)
    keep_broker_data: bool = False
    #: every message is signed and checked with the run's key (``EDGEBATCH_RUN_KEY``)
    authenticate: bool = True
    #: where workers run the model: auto (cuda when a worker's machine has one), cpu or cuda
    device: str = "auto"
    #: the most a decoded message may declare
    limits: WireLimits = field(default_factory=WireLimits)
    #: when a silent executor's batches go again before ``redeliver_after_s`` (None: only at that cap)
    stall_detection: StallDetection | None = field(default_factory=StallDetection)
    #: replay the workload (the default) or serve registered clients (``live.ingress``)
    ingress: IngressSettings = field(default_factory=IngressSettings)


def _mapping(field_name: str, value: Any) -> dict:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ConfigError(field_name, value, "a mapping")
    return dict(value)


def _optional_str(field_name: str, value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise ConfigError(field_name, value, "a non-empty string or null")
    return value


def _positive_or_null(field_name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise ConfigError(field_name, value, "a number > 0 (finite), or null for never")
    return float(value)


_MODEL_FORMS = ("a model name (live.models.MODEL_NAMES)", "{_target_: module.function, input_shape: [...]}",
                "{path: file.pt or file.pt2, input_shape: [...]}")


def _model_name(field_name: str, value: Any) -> str:
    """A model's key (``live.models``): a built-in name, or your own model's ``target:`` or ``file:`` key."""
    if isinstance(value, str) and value:
        return value
    if isinstance(value, Mapping) and ("_target_" in value) != ("path" in value) and set(value) <= {"_target_", "path", "input_shape"}:
        shape = value.get("input_shape")
        if not isinstance(shape, (list, tuple)) or not shape or not all(isinstance(d, int) and not isinstance(d, bool) and d > 0 for d in shape):
            raise ConfigError(f"{field_name}.input_shape", shape, "a list of positive integers (one input, no batch dimension)")
        kind, where = ("target", value["_target_"]) if "_target_" in value else ("file", value["path"])
        if not isinstance(where, str) or not where or ";" in where:
            raise ConfigError(f"{field_name}.{'_target_' if kind == 'target' else 'path'}", where, "a non-empty string without ';'")
        return f"{kind}:{where};shape={','.join(str(d) for d in shape)}"
    raise ConfigError(field_name, value, "one of: " + "; ".join(_MODEL_FORMS))


def live_settings(run: RunSpec) -> LiveSettings:
    """The ``live`` section of ``run.config`` with defaults filled in, checked against its cluster."""
    config, cluster = run.config, run.cluster
    raw = _mapping("live", config.get("live"))
    unknown = set(raw) - set(LIVE_DEFAULTS)
    if unknown:
        raise ConfigError(f"live.{sorted(unknown)[0]}", raw[sorted(unknown)[0]], "a setting of the live section: one of " + ", ".join(LIVE_DEFAULTS))
    merged = {**copy.deepcopy(LIVE_DEFAULTS), **raw}
    broker = _mapping("live.broker", merged["broker"])
    if set(broker) - set(_BROKER_KEYS):
        key = sorted(set(broker) - set(_BROKER_KEYS))[0]
        raise ConfigError(f"live.broker.{key}", broker[key], "one of " + ", ".join(_BROKER_KEYS))
    url = _optional_str("live.broker.url", broker.get("url"))
    if url is not None and not url.startswith(("pulsar://", "pulsar+ssl://")):
        raise ConfigError("live.broker.url", url, "a pulsar:// or pulsar+ssl:// service URL, or null for an embedded broker")
    model = _model_name("live.model", merged["model"])
    per_executor = _mapping("live.executors", merged["executors"])
    for name in per_executor:
        if name not in cluster.executors:
            raise ConfigError(f"live.executors.{name}", name, "an executor of the cluster: " + ", ".join(cluster.executors))
    executors = {name: _executor_settings(name, spec, _mapping(f"live.executors.{name}", per_executor.get(name)), model)
                 for name, spec in cluster.executors.items()}  # fmt: skip
    telemetry = merged["telemetry_period_s"]
    if telemetry is None:
        telemetry = run.sim.telemetry_period_s
    else:
        telemetry = check_positive("live.telemetry_period_s", telemetry)
    emulate = _flag("live.emulate_links", merged["emulate_links"])
    event_log = _flag("live.event_log", merged["event_log"])
    keep_data = _flag("live.broker.keep_data", broker.get("keep_data", False))
    return LiveSettings(
        broker_url=url,
        auth_token=_optional_str("live.broker.auth_token", broker.get("auth_token")),
        tls_trust_certs_file=_optional_str("live.broker.tls_trust_certs_file", broker.get("tls_trust_certs_file")),
        model=model,
        executors=executors,
        timeout_s=check_positive("live.timeout_s", merged["timeout_s"]),
        startup_timeout_s=check_positive("live.startup_timeout_s", merged["startup_timeout_s"]),
        emulate_links=emulate,
        telemetry_period_s=telemetry,
        event_log=event_log,
        recovery_log=_flag("live.recovery_log", merged["recovery_log"]),
        max_restarts=check_int_at_least("live.max_restarts", merged["max_restarts"], 0),
        redeliver_after_s=None if merged["redeliver_after_s"] is None else _positive_or_null("live.redeliver_after_s", merged["redeliver_after_s"]),
        keep_broker_data=keep_data,
        authenticate=_flag("live.authenticate", merged["authenticate"]),
        device=check_choice("live.device", merged["device"], ("auto", "cpu", "cuda")),
        limits=_limits(_mapping("live.limits", merged["limits"])),
        stall_detection=_stall_detection(merged["stall_detection"]),
        ingress=ingress_settings(merged["ingress"], run.gateways),
    )


def _flag(where: str, value) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(where, value, "true or false")
    return value


def _executor_settings(name: str, spec, entry: dict, model: str) -> ExecutorSettings:
    """How executor ``name`` runs live, from its ``live.executors.<name>`` entry."""
    where = f"live.executors.{name}"
    serverless = isinstance(spec, ServerlessSpec)
    allowed = _SERVERLESS_KEYS if serverless else _SERVER_KEYS
    extra = set(entry) - set(allowed)
    if extra:
        key = sorted(extra)[0]
        raise ConfigError(f"{where}.{key}", entry[key], f"one of {', '.join(allowed)} for a {spec.kind} executor")
    exec_model = _model_name(f"{where}.model", entry.get("model", model))
    threads = entry.get("threads")
    mb_per_thread, external = 0.0, ()
    if serverless:
        mb_per_thread = check_positive(f"{where}.mb_per_thread", entry.get("mb_per_thread", 1024))
        if threads is None:
            threads = max(1, min(os.cpu_count() or 1, int(spec.memory_mb // mb_per_thread)))
        else:
            mb_per_thread = 0.0
        replicas = 0
    else:
        external = _external(f"{where}.external", entry.get("external"))
        replicas = check_int_at_least(f"{where}.replicas", entry.get("replicas", 0 if external else spec.slots), 0 if external else 1)
    threads = check_int_at_least(f"{where}.threads", 1 if threads is None else threads, 1)
    inline = _inline(where, spec, entry, replicas, external)
    return ExecutorSettings(name, spec.kind, exec_model, threads, replicas, serverless, mb_per_thread, external, inline)


def _inline(where: str, spec, entry: dict, replicas: int, external: tuple) -> bool:
    """``inline``: only for one edge device at its gateway (one slot, one replica, none external)."""
    inline = _flag(f"{where}.inline", entry.get("inline", False))
    if inline and (spec.gateway is None or spec.kind != "edge"):
        raise ConfigError(f"{where}.inline", True, "false for a remote or non-edge executor (inline runs an edge device in its gateway's process)")
    if inline and (replicas != 1 or external or getattr(spec, "slots", 1) != 1):
        raise ConfigError(f"{where}.inline", True, "false unless the executor has one slot, one replica and no external workers")
    return inline


def _stall_detection(raw) -> StallDetection | None:
    if raw is None:
        return None
    raw = _mapping("live.stall_detection", raw)
    known = [f.name for f in fields(StallDetection)]
    for key, value in raw.items():
        if key not in known:
            raise ConfigError(f"live.stall_detection.{key}", value, "one of " + ", ".join(known))
    values = {k: check_positive(f"live.stall_detection.{k}", v) for k, v in raw.items() if k != "window"}
    if "window" in raw:
        values["window"] = check_int_at_least("live.stall_detection.window", raw["window"], 1)
    return StallDetection(**values)


def _external(where: str, value) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) and v and "/" not in v for v in value):
        raise ConfigError(where, value, "a list of worker names (non-empty, no '/')")
    return tuple(value)


def _limits(raw: dict) -> WireLimits:
    known = [f.name for f in fields(WireLimits)]
    for key, value in raw.items():
        if key not in known:
            raise ConfigError(f"live.limits.{key}", value, "one of " + ", ".join(known))
        check_int_at_least(f"live.limits.{key}", value, 1)
    return WireLimits(**raw)


# ---------------------------------------------------------------------------
# Topics
# ---------------------------------------------------------------------------


def _name_part(field_name: str, value: str) -> str:
    if not value or "/" in value or any(c.isspace() for c in value):
        raise ConfigError(field_name, value, "a name without '/' or whitespace (it becomes part of a topic name)")
    return value


# ---------------------------------------------------------------------------
# Everything built
# ---------------------------------------------------------------------------


def build_run(config: Mapping | RunSpec) -> RunSpec:
    """The run spec with the live settings attached (``ConfigError`` naming the field).

    The shared part is checked once, by ``policies.run_spec.build_run_spec``
    (or was, by the entry point that passes a spec); only what the live
    harness adds is checked here: names that become topic names, and the
    ``live`` section.
    """
    spec = config if isinstance(config, RunSpec) else build_run_spec(config)
    if spec.sim.central_scheduler:
        raise ConfigError("sim.central_scheduler", True, "false for the live harness (it runs a gateway per edge node)")
    for source in spec.workload.sources:
        _name_part(f"workload.sources.{source.name}.name", source.name)
        _name_part(f"workload.sources.{source.name}.gateway", source.gateway)
    for name in spec.cluster.executors:
        _name_part(f"cluster.executors.{name}.name", name)
    return spec.with_settings(live_settings(spec))


# ---------------------------------------------------------------------------
# The run's clock
# ---------------------------------------------------------------------------


class RunClock:
    """Seconds since the run's start (``epoch_unix``, a wall-clock time shared by every role).

    Read from the monotonic clock, aligned once with the wall clock at
    construction, so that it never goes backwards within a process. Roles on
    different machines need synchronized wall clocks (NTP/PTP) for their
    timestamps to compare.
    """

    def __init__(self, epoch_unix: float):
        if not math.isfinite(epoch_unix):
            raise ValueError(f"epoch must be finite, got {epoch_unix!r}")
        self.epoch_unix = float(epoch_unix)
        self._base = time.monotonic() - (time.time() - self.epoch_unix)

    def now(self) -> float:
        return time.monotonic() - self._base

    def __repr__(self) -> str:
        return f"RunClock(epoch_unix={self.epoch_unix!r}, now={self.now():.3f})"
