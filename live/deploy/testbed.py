"""Deploying a live run on a testbed: which machine runs which role.

A testbed file (YAML, see ``conf/testbed/example.yaml``) names the machines
(``hosts``), the broker every role connects to (``broker``: a Pulsar service
URL, or an embedded pulsar-lite on one of the hosts; token auth and TLS), and
where each role of a run config runs (``roles``)::

    hosts:
      ctrl:   {address: 10.0.0.10}
      edge1:  {address: 10.0.0.11}
      cloud1: {address: 10.0.0.21}
    broker: {embedded: {host: ctrl, port: 6650}}
    roles:
      sink: ctrl                          # the control host: it starts and stops the run's clock
      sources: {cam0: edge1}              # workload source -> host
      gateways: {edge: edge1}             # gateway -> host
      workers: {edge: edge1, cloud: {cloud1: 2}}   # server executor -> host, or host -> replicas
      pools: {lambda: cloud1}             # serverless executor -> host

Every role of the run config must be placed, on a host of ``hosts``; a
mistake raises ``spec.validation.ConfigError`` naming the testbed field
(``roles.sources.cam9``, ``roles.workers.cloud.cloud7``, ...). The replicas
of a server executor over all its hosts must equal the run config's
``live.executors.<name>.replicas`` (default: the executor's slots), which
the sink bills.

Commands::

    python -m live.deploy.testbed check --testbed conf/testbed/example.yaml --config run_config.json
    python -m live.deploy.testbed print --testbed conf/testbed/example.yaml --config run_config.json [--run-id R]
    python -m live.deploy.testbed run   --testbed T --config C --run-id R --host edge1 [--out DIR]
    python -m live.deploy.testbed broker --bind 10.0.0.10 --port 6650 [--http-port 8080] [--folder DIR]
    python -m live.deploy.testbed prepare --broker URL --run-id R
    python -m live.deploy.testbed start --broker URL --run-id R --expect sink,worker-cloud-0,... [--lead-s 1]
    python -m live.deploy.testbed stop  --broker URL --run-id R

``print`` writes, per host, ssh-ready lines: copy the run config there, then
start each role in the background (logs and statistics under
``<workdir>/results/testbed/<run id>/``), then the control commands; and, as
an alternative, one ``run`` line per host. ``run`` starts the roles of one
host (and the embedded broker, if it is on that host) and waits for them;
on the control host (the sink's) it also waits until every role of every
host has said it is ready, starts the clock (``CONTROL start`` with the
epoch, ``start_lead_s`` ahead), waits for the sink to finish, and stops the
run. The token never appears on a command line: roles read it from
``EDGEBATCH_PULSAR_TOKEN`` (see ``live.roles.role``); the testbed says where that
comes from on each host (``broker.auth.token_env`` or ``token_file``).

See docs/DEPLOY.md for ports, clocks and the start order.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from live.config import RunSpec, Topics, load_run
from live.roles.role import TOKEN_ENV
from live.roles.role import wire_settings_of
from live.wire.messages import KEY_ENV, WireSettings, configure, key_from_env
from live.deploy.processes import ControlChannel, Interrupts, RoleProc, StartError, Supervisor, child_env, close_connection
from live.deploy.processes import subscribe_ready, wait_ready
from live.wire.messages import ControlOp, DecodeError, decode
from spec.validation import (
    ConfigError,
    check_int_at_least,
    check_non_negative,
    check_positive,
)

__all__ = [
    "Host",
    "EmbeddedSpec",
    "Testbed",
    "RoleProcess",
    "Plan",
    "load_testbed",
    "parse_testbed",
    "make_plan",
    "print_commands",
    "run_host",
    "main",
]

_TOP_KEYS = ("name", "hosts", "broker", "roles", "start_lead_s", "stop_grace_s", "exit_after_s", "defaults")
_HOST_KEYS = ("address", "ssh", "user", "workdir", "python", "env")
_DEFAULT_KEYS = ("user", "workdir", "python", "env")
_BROKER_KEYS = ("url", "embedded", "auth", "tls")
_EMBEDDED_KEYS = ("host", "port", "http_port", "bind")
_AUTH_KEYS = ("token_env", "token_file")
_TLS_KEYS = ("trust_certs_file",)
_ROLE_KEYS = ("sink", "sources", "gateways", "workers", "pools")
_LOOPBACK = ("127.0.0.1", "localhost", "::1", "[::1]")


# ---------------------------------------------------------------------------
# The testbed file
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Host:
    name: str
    address: str
    ssh: str  # what ssh/scp are given: user@address, or an alias of ~/.ssh/config
    workdir: str  # the repository's checkout on that host
    python: str  # the interpreter there (relative to workdir, or absolute)
    env: dict = field(default_factory=dict)


@dataclass(frozen=True)
class EmbeddedSpec:
    host: str  # the testbed host that runs pulsar-lite
    bind: str  # the address it listens on (the host's address: never a wildcard)
    port: int
    http_port: int


@dataclass(frozen=True)
class Testbed:
    name: str
    hosts: dict[str, Host]
    broker_url: str
    embedded: EmbeddedSpec | None
    token_env: str | None
    token_file: str | None
    tls_trust_certs_file: str | None
    roles: dict
    start_lead_s: float = 1.0
    stop_grace_s: float = 3.0
    exit_after_s: float | None = None


def load_testbed(path: str | os.PathLike) -> Testbed:
    """Read and check a testbed file (YAML or JSON)."""
    import yaml

    path = Path(path)
    try:
        text = path.read_text()
    except OSError as error:
        raise ConfigError("--testbed", str(path), f"a readable YAML file ({error.strerror})") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise ConfigError("--testbed", str(path), f"valid YAML ({error})") from None
    return parse_testbed(raw)


def _mapping(field_name: str, value: Any, *, allowed: tuple[str, ...] | None = None) -> dict:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ConfigError(field_name, value, "a mapping")
    value = dict(value)
    if allowed is not None:
        for key in value:
            if key not in allowed:
                raise ConfigError(f"{field_name}.{key}" if field_name else str(key), value[key], "one of " + ", ".join(allowed))
    return value


def _string(field_name: str, value: Any, *, optional: bool = False) -> str | None:
    if value is None and optional:
        return None
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(field_name, value, "a non-empty string" + (" or null" if optional else ""))
    return value


def _port(field_name: str, value: Any) -> int:
    port = check_int_at_least(field_name, value, 1)
    if port > 65535:
        raise ConfigError(field_name, value, "a TCP port, 1 to 65535")
    return port


def parse_testbed(raw: Any) -> Testbed:
    """Check the structure of a testbed mapping (the roles are checked against a run config by ``make_plan``)."""
    top = _mapping("", raw, allowed=_TOP_KEYS)
    if not top:
        raise ConfigError("testbed", raw, "a mapping with hosts, broker and roles")
    defaults = _mapping("defaults", top.get("defaults"), allowed=_DEFAULT_KEYS)
    raw_hosts = _mapping("hosts", top.get("hosts"))
    if not raw_hosts:
        raise ConfigError("hosts", top.get("hosts"), "a mapping of host name -> {address: ...} with at least one host")
    hosts = {name: _parse_host(name, entry, defaults) for name, entry in raw_hosts.items()}
    broker = _mapping("broker", top.get("broker"), allowed=_BROKER_KEYS)
    embedded = _parse_embedded(broker, hosts)
    url = _parse_url(broker, embedded)
    token_env, token_file = _parse_auth(broker)
    tls = _mapping("broker.tls", broker.get("tls"), allowed=_TLS_KEYS)
    trust = _string("broker.tls.trust_certs_file", tls.get("trust_certs_file"), optional=True)
    exit_after = top.get("exit_after_s")
    return Testbed(
        name=str(top.get("name") or "testbed"),
        hosts=hosts,
        broker_url=url,
        embedded=embedded,
        token_env=token_env,
        token_file=token_file,
        tls_trust_certs_file=trust,
        roles=_mapping("roles", top.get("roles"), allowed=_ROLE_KEYS),
        start_lead_s=check_positive("start_lead_s", top.get("start_lead_s", 1.0)),
        stop_grace_s=check_non_negative("stop_grace_s", top.get("stop_grace_s", 3.0)),
        exit_after_s=None if exit_after is None else check_positive("exit_after_s", exit_after),
    )


def _parse_host(name: Any, entry: Any, defaults: dict) -> Host:
    where = f"hosts.{name}"
    if not isinstance(name, str) or not name or any(c.isspace() or c == "/" for c in name):
        raise ConfigError(where, name, "a host name without whitespace or '/'")
    if isinstance(entry, str):
        entry = {"address": entry}
    entry = {**defaults, **_mapping(where, entry, allowed=_HOST_KEYS)}
    address = _string(f"{where}.address", entry.get("address"))
    user = _string(f"{where}.user", entry.get("user"), optional=True)
    ssh = _string(f"{where}.ssh", entry.get("ssh"), optional=True) or (f"{user}@{address}" if user else address)
    env = _mapping(f"{where}.env", entry.get("env"))
    for key, value in env.items():
        if not isinstance(value, (str, int, float)) or isinstance(value, bool):
            raise ConfigError(f"{where}.env.{key}", value, "a string or number")
        if key == TOKEN_ENV:
            raise ConfigError(f"{where}.env.{key}", "***", "not the token itself: use broker.auth.token_env or token_file")
    return Host(
        name=name,
        address=address,
        ssh=ssh,
        workdir=_string(f"{where}.workdir", entry.get("workdir", "edgebatch")),
        python=_string(f"{where}.python", entry.get("python", ".venv/bin/python")),
        env={str(k): str(v) for k, v in env.items()},
    )


def _parse_embedded(broker: dict, hosts: dict[str, Host]) -> EmbeddedSpec | None:
    if broker.get("embedded") is None:
        return None
    entry = _mapping("broker.embedded", broker["embedded"], allowed=_EMBEDDED_KEYS)
    host = entry.get("host")
    if host not in hosts:
        raise ConfigError("broker.embedded.host", host, "a host of hosts: " + ", ".join(hosts))
    bind = _string("broker.embedded.bind", entry.get("bind", hosts[host].address))
    if bind in ("0.0.0.0", "::", "[::]", "*"):
        raise ConfigError("broker.embedded.bind", bind, "the address the other hosts use (pulsar-lite bound to a wildcard "
                          "answers topic lookups with 127.0.0.1)")  # fmt: skip
    port = _port("broker.embedded.port", entry.get("port", 6650))
    http_port = _port("broker.embedded.http_port", entry.get("http_port", 8080))
    if http_port == port:
        raise ConfigError("broker.embedded.http_port", http_port, "a port other than broker.embedded.port")
    return EmbeddedSpec(host, bind, port, http_port)


def _parse_url(broker: dict, embedded: EmbeddedSpec | None) -> str:
    url = _string("broker.url", broker.get("url"), optional=True)
    if url is None:
        if embedded is None:
            raise ConfigError("broker.url", None, "a pulsar:// or pulsar+ssl:// service URL (or broker.embedded)")
        url = f"pulsar://{embedded.bind}:{embedded.port}"
    parts = urlsplit(url)
    if parts.scheme not in ("pulsar", "pulsar+ssl") or not parts.hostname:
        raise ConfigError("broker.url", url, "a pulsar://host:port or pulsar+ssl://host:port service URL")
    if embedded is not None:
        if parts.scheme != "pulsar":
            raise ConfigError("broker.url", url, "pulsar:// with broker.embedded (pulsar-lite speaks no TLS; use a Pulsar cluster for pulsar+ssl://)")
        if (parts.port or 6650) != embedded.port:
            raise ConfigError("broker.url", url, f"the embedded broker's port {embedded.port}")
    return url


def _parse_auth(broker: dict) -> tuple[str | None, str | None]:
    """(token_env, token_file): where the token comes from on each host (at most one)."""
    auth = _mapping("broker.auth", broker.get("auth"), allowed=_AUTH_KEYS)
    token_env = _string("broker.auth.token_env", auth.get("token_env"), optional=True)
    token_file = _string("broker.auth.token_file", auth.get("token_file"), optional=True)
    if token_env and token_file:
        raise ConfigError("broker.auth.token_file", token_file, "null when broker.auth.token_env is set (one source of the token)")
    if token_env is not None and not token_env.replace("_", "").isalnum():
        raise ConfigError("broker.auth.token_env", token_env, "an environment variable name")
    return token_env, token_file


# ---------------------------------------------------------------------------
# The plan: every role process of a run, on its host
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class RoleProcess:
    name: str  # unique in the run: sink, worker-<executor>-<k>, pool-<executor>, gateway-<g>, source-<s>
    module: str
    host: str
    extra: tuple[str, ...] = ()
    threads: int | None = None  # OMP/MKL threads of a worker


@dataclass(frozen=True)
class Plan:
    testbed: Testbed
    spec: RunSpec
    processes: tuple[RoleProcess, ...]

    @property
    def control_host(self) -> str:
        """The sink's host: it waits for every role, starts the clock and stops the run."""
        return next(p.host for p in self.processes if p.module == "live.roles.sink")

    @property
    def broker_host(self) -> str | None:
        return self.testbed.embedded.host if self.testbed.embedded is not None else None

    def on(self, host: str) -> list[RoleProcess]:
        return [p for p in self.processes if p.host == host]

    @property
    def hosts_used(self) -> list[str]:
        """Hosts with something to run, in the start order (broker, workers and pools, ..., sources)."""
        order: list[str] = []
        if self.broker_host is not None:
            order.append(self.broker_host)
        for p in self.processes:
            if p.host not in order:
                order.append(p.host)
        return order

    def exit_after_s(self) -> float:
        if self.testbed.exit_after_s is not None:
            return self.testbed.exit_after_s
        settings = self.spec.settings
        return settings.startup_timeout_s + settings.timeout_s + 120.0


def _host_of(testbed: Testbed, field_name: str, value: Any) -> str:
    if not isinstance(value, str) or value not in testbed.hosts:
        raise ConfigError(field_name, value, "a host of hosts: " + ", ".join(testbed.hosts))
    return value


def _assignments(testbed: Testbed, group: str, known: list[str], what: str) -> dict[str, Any]:
    """``roles.<group>`` as name -> entry; every known name present, nothing else."""
    where = f"roles.{group}"
    entries = _mapping(where, testbed.roles.get(group))
    for name in entries:
        if name not in known:
            raise ConfigError(f"{where}.{name}", entries[name], f"a {what} of the run config: " + (", ".join(known) or "(none)"))
    for name in known:
        if name not in entries:
            raise ConfigError(f"{where}.{name}", None, f"a host for {what} {name!r} (every {what} of the run config runs somewhere)")
    return entries


def make_plan(testbed: Testbed, spec: RunSpec) -> Plan:
    """Place every role of ``spec`` on its host (ConfigError naming the testbed field otherwise)."""
    settings = spec.settings
    processes: list[RoleProcess] = []
    if "sink" not in testbed.roles:
        raise ConfigError("roles.sink", None, "a host for the sink (it is also the control host)")
    processes.append(RoleProcess("sink", "live.roles.sink", _host_of(testbed, "roles.sink", testbed.roles["sink"])))

    servers = [n for n, s in settings.executors.items() if not s.serverless and not s.inline]
    serverless = [n for n, s in settings.executors.items() if s.serverless]
    for name in _mapping("roles.workers", testbed.roles.get("workers")):
        if name in settings.executors and settings.executors[name].inline:
            raise ConfigError(f"roles.workers.{name}", testbed.roles["workers"][name],
                              "no entry: an inline executor runs in its gateway's process (live.executors.<name>.inline)")
    workers = _assignments(testbed, "workers", servers, "server executor")
    for executor in servers:
        where = f"roles.workers.{executor}"
        entry = workers[executor]
        wanted = settings.executors[executor].replicas
        if isinstance(entry, str):
            per_host = {_host_of(testbed, where, entry): wanted}
        else:
            per_host = {}
            for host, count in _mapping(where, entry).items():
                per_host[_host_of(testbed, f"{where}.{host}", host)] = check_int_at_least(f"{where}.{host}", count, 1)
            if not per_host:
                raise ConfigError(where, entry, "a host, or a mapping host -> replicas")
            if sum(per_host.values()) != wanted:
                raise ConfigError(where, entry, f"replicas adding up to {wanted}, the run config's live.executors.{executor}.replicas "
                                  "(default: the executor's slots; the sink bills that many)")  # fmt: skip
        replica = 0
        for host, count in per_host.items():
            for _ in range(count):
                processes.append(RoleProcess(f"worker-{executor}-{replica}", "live.roles.worker", host,
                                             ("--executor", executor, "--replica", str(replica)), settings.executors[executor].threads))  # fmt: skip
                replica += 1
    pools = _assignments(testbed, "pools", serverless, "serverless executor")
    for executor in serverless:
        processes.append(RoleProcess(f"pool-{executor}", "live.roles.pool", _host_of(testbed, f"roles.pools.{executor}", pools[executor]),
                                     ("--executor", executor)))  # fmt: skip
    gateways = _assignments(testbed, "gateways", list(spec.gateways), "gateway")
    for gateway in spec.gateways:
        processes.append(RoleProcess(f"gateway-{gateway}", "live.roles.gateway", _host_of(testbed, f"roles.gateways.{gateway}", gateways[gateway]),
                                     ("--gateway", gateway)))  # fmt: skip
    # open ingress: the clients send, no source runs (as live.deploy.local)
    source_names = [] if settings.ingress.open else [s.name for s in spec.workload.sources]
    sources = _assignments(testbed, "sources", source_names, "workload source")
    for source in source_names:
        processes.append(RoleProcess(f"source-{source}", "live.roles.source", _host_of(testbed, f"roles.sources.{source}", sources[source]),
                                     ("--source", source)))  # fmt: skip

    used = {p.host for p in processes} | ({testbed.embedded.host} if testbed.embedded else set())
    host = urlsplit(testbed.broker_url).hostname or ""
    if len(used) > 1 and host in _LOOPBACK:
        raise ConfigError("broker.url", testbed.broker_url, "an address every host can reach (not loopback: the roles run on "
                          + ", ".join(sorted(used)) + ")")  # fmt: skip
    return Plan(testbed, spec, tuple(processes))


# ---------------------------------------------------------------------------
# Commands
# ---------------------------------------------------------------------------


def _run_dir(run_id: str) -> str:
    return f"results/testbed/{run_id}"


def role_argv(plan: Plan, process: RoleProcess, *, python: str, run_id: str, config_path: str, out_dir: str) -> list[str]:
    """The command line of one role process (paths as given: relative to the working directory)."""
    testbed = plan.testbed
    argv = [python, "-m", process.module, "--broker", testbed.broker_url, "--run-id", run_id, "--config", config_path,
            "--name", process.name, "--stats", f"{out_dir}/stats/{process.name}.json",
            "--exit-after-s", f"{plan.exit_after_s():g}", *process.extra]  # fmt: skip
    if testbed.tls_trust_certs_file:
        argv += ["--tls-trust-certs-file", testbed.tls_trust_certs_file]
    if process.module == "live.roles.sink":
        argv += ["--out", out_dir]
    return argv


def _role_env(process: RoleProcess, host: Host) -> dict[str, str]:
    env = dict(host.env)
    env["PYTHONUNBUFFERED"] = "1"
    if process.threads is not None:
        env.update(OMP_NUM_THREADS=str(process.threads), MKL_NUM_THREADS=str(process.threads))
    return env


def _token_prefix(testbed: Testbed) -> str:
    """Shell text that sets EDGEBATCH_PULSAR_TOKEN on the remote host, without the token on any command line."""
    if testbed.token_file:
        return f'{TOKEN_ENV}="$(cat {shlex.quote(testbed.token_file)})" '
    if testbed.token_env and testbed.token_env != TOKEN_ENV:
        return f'{TOKEN_ENV}="${testbed.token_env}" '
    return ""


def _ssh(testbed: Testbed, host: Host, remote: str) -> str:
    option = f"-o SendEnv={TOKEN_ENV} " if testbed.token_env == TOKEN_ENV and not testbed.token_file else ""
    option += f"-o SendEnv={KEY_ENV} "  # the run key (live.authenticate): unused when the run does not sign
    return f"ssh {option}{host.ssh} {shlex.quote(remote)}"


def print_commands(plan: Plan, *, config_path: str, testbed_path: str, run_id: str) -> str:
    """Per-host, ssh-ready lines that deploy and start a run (see the module doc)."""
    testbed = plan.testbed
    run_dir = _run_dir(run_id)
    remote_config = f"{run_dir}/config.json"
    remote_testbed = f"{run_dir}/testbed.yaml"
    token = _token_prefix(testbed)
    lines = [
        f"# edgebatch testbed {testbed.name!r}: run {run_id}, broker {testbed.broker_url}, control host {plan.control_host}",
        "# every host: a checkout of this repository in its workdir, with its venv; clocks synchronized (docs/DEPLOY.md)",
    ]
    if testbed.token_env == TOKEN_ENV and not testbed.token_file:
        lines.append(f"# the token: {TOKEN_ENV} in your shell, sent by ssh (needs 'AcceptEnv {TOKEN_ENV}' in each host's sshd_config)")
    elif testbed.token_env:
        lines.append(f"# the token: ${testbed.token_env} in each host's environment, passed to the roles as {TOKEN_ENV}")
    elif testbed.token_file:
        lines.append(f"# the token: read from {testbed.token_file} on each host (mode 0600), passed to the roles as {TOKEN_ENV}")
    if plan.spec.settings.authenticate:
        lines.append(f"# the run key: {KEY_ENV} in your shell (export {KEY_ENV}=$(python3 -c 'import secrets; print(secrets.token_hex(32))')), "
                     f"sent by ssh (needs 'AcceptEnv {KEY_ENV}' in each host's sshd_config)")  # fmt: skip
    if plan.spec.settings.emulate_links and any(plan.on(h) for h in testbed.hosts) and len(plan.hosts_used) > 1:
        lines.append("# note: live.emulate_links is true: the gateways add the configured link delay and bandwidth on top of the real network")
    lines.append("")
    control = testbed.hosts[plan.control_host]
    tls = f" --tls-trust-certs-file {testbed.tls_trust_certs_file}" if testbed.tls_trust_certs_file else ""
    lines.append("## 1. the broker, and the run's ready subscription (before any role starts)")
    if plan.broker_host is not None:
        e = testbed.embedded
        host = testbed.hosts[plan.broker_host]
        lines.append(_ssh(testbed, host, f"mkdir -p {host.workdir}/{run_dir}/logs"))
        command = (f"cd {shlex.quote(host.workdir)} && nohup {host.python} -m live.deploy.testbed broker --bind {e.bind} --port {e.port} "
                   f"--http-port {e.http_port} --folder {run_dir}/broker > {run_dir}/logs/broker.log 2>&1 < /dev/null &")  # fmt: skip
        lines.append(_ssh(testbed, host, command))
    lines.append(_ssh(testbed, control, f"cd {shlex.quote(control.workdir)} && {token}{control.python} -m live.deploy.testbed prepare "
                      f"--broker {testbed.broker_url} --run-id {run_id}{tls} --wait-s 30"))  # fmt: skip
    lines.append("")
    lines.append("## 2. the roles, host by host (sink, workers and pools, gateways, sources)")
    for name in plan.hosts_used:
        host = testbed.hosts[name]
        processes = plan.on(name)
        if not processes:
            continue
        lines.append(f"# host {name} ({host.ssh}:{host.workdir}): {', '.join(p.name for p in processes)}")
        lines.append(_ssh(testbed, host, f"mkdir -p {host.workdir}/{run_dir}/logs {host.workdir}/{run_dir}/stats"))
        lines.append(f"scp {shlex.quote(config_path)} {host.ssh}:{host.workdir}/{remote_config}")
        for process in processes:
            argv = role_argv(plan, process, python=host.python, run_id=run_id, config_path=remote_config, out_dir=run_dir)
            env = " ".join(f"{k}={shlex.quote(v)}" for k, v in _role_env(process, host).items())
            command = (f"cd {shlex.quote(host.workdir)} && {token}nohup env {env} {shlex.join(argv)} "
                       f"> {run_dir}/logs/{process.name}.log 2>&1 < /dev/null &")  # fmt: skip
            lines.append(_ssh(testbed, host, command))
    lines.append("")
    names = ",".join(p.name for p in plan.processes)
    lines.append(f"## 3. the clock: waits until every role is ready, then starts the run {testbed.start_lead_s:g}s ahead")
    lines.append(_ssh(testbed, control, f"cd {shlex.quote(control.workdir)} && {token}{control.python} -m live.deploy.testbed start "
                      f"--broker {testbed.broker_url} --run-id {run_id}{tls} --expect {names} --lead-s {testbed.start_lead_s:g} "
                      f"--timeout-s {plan.spec.settings.startup_timeout_s:g}"))  # fmt: skip
    lines.append(f"# the sink writes {control.workdir}/{run_dir}/requests.parquet, batches.parquet, summary.json once every request has ended")
    lines.append("## 4. the end: stop every role (they also stop on their own once done, or after --exit-after-s)")
    lines.append(_ssh(testbed, control, f"cd {shlex.quote(control.workdir)} && {token}{control.python} -m live.deploy.testbed stop "
                      f"--broker {testbed.broker_url} --run-id {run_id}{tls}"))  # fmt: skip
    if plan.broker_host is not None:
        host = testbed.hosts[plan.broker_host]
        lines.append(_ssh(testbed, host, f"cd {shlex.quote(host.workdir)} && kill $(cat {run_dir}/broker/testbed-broker.pid)"))
    lines.append("")
    lines.append("## or, instead of 1-4: one command per host, in any order (each waits for the broker; the control host's")
    lines.append("## waits for every role, starts the clock, waits for the sink and stops the run; the broker's host stops it after)")
    for name in plan.hosts_used:
        host = testbed.hosts[name]
        lines.append(_ssh(testbed, host, f"mkdir -p {host.workdir}/{run_dir}/logs"))
        lines.append(f"scp {shlex.quote(config_path)} {host.ssh}:{host.workdir}/{remote_config}")
        lines.append(f"scp {shlex.quote(testbed_path)} {host.ssh}:{host.workdir}/{remote_testbed}")
        lines.append(_ssh(testbed, host, f"cd {shlex.quote(host.workdir)} && {token}nohup {host.python} -m live.deploy.testbed run "
                          f"--testbed {remote_testbed} --config {remote_config} --run-id {run_id} --host {name} "
                          f"--out {run_dir} > {run_dir}/logs/testbed-{name}.log 2>&1 < /dev/null &"))  # fmt: skip
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------
# Broker-side helpers (prepare, start, stop)
# ---------------------------------------------------------------------------


def _connect(url: str, run_id: str, tls_trust_certs_file: str | None = None, wait_s: float = 0.0):
    """A Pulsar client on ``url``, retried until the broker answers (up to ``wait_s``)."""
    from live.wire.broker import connect

    token = os.environ.get(TOKEN_ENV)
    deadline = time.monotonic() + wait_s
    while True:
        client, _ = connect(url, auth_token=token, tls_trust_certs_file=tls_trust_certs_file, operation_timeout_s=10)
        try:
            client.get_topic_partitions(Topics(run_id).control)  # a lookup: the broker answers
            return client
        except Exception as error:
            client.close()
            if time.monotonic() > deadline:
                raise RuntimeError(f"broker {url} does not answer: {error}") from None
            time.sleep(0.5)


def prepare(client, run_id: str) -> None:
    """Create the orchestrator's subscription on the run's ready topic.

    Done before any role starts, so that a real Pulsar (which keeps messages
    only for existing subscriptions) retains every role's ``ready`` even if
    the control host starts last.
    """
    subscribe_ready(client, run_id).close()


# ---------------------------------------------------------------------------
# run: the roles of one host
# ---------------------------------------------------------------------------


def run_host(plan: Plan, host_name: str, *, config_path: str, run_id: str, out_dir: str | os.PathLike, log=print) -> int:
    """Start ``host_name``'s roles (and the embedded broker, if it is here) and wait; 0 on success.

    On the control host (the sink's) also: wait for every role's ready, start
    the clock, wait for the sink, stop the run. Elsewhere: wait for the local
    roles to end, or for the run's stop (then ``stop_grace_s`` more).
    """
    if host_name not in plan.testbed.hosts:
        raise ConfigError("--host", host_name, "a host of the testbed: " + ", ".join(plan.testbed.hosts))
    out = Path(out_dir).absolute()
    (out / "logs").mkdir(parents=True, exist_ok=True)
    (out / "stats").mkdir(parents=True, exist_ok=True)
    run = _HostRun(plan, host_name, run_id, out, str(Path(config_path).absolute()), log)
    with Interrupts() as interrupts:
        try:
            return run.run(interrupts)
        except StartError as error:
            run.failed(error)
            return 1
        finally:
            run.close(interrupts)


class _HostRun:
    """The state of one ``run_host``: the broker (if here), the client, this host's role processes."""

    def __init__(self, plan: Plan, host_name: str, run_id: str, out: Path, config_path: str, log):
        self.plan = plan
        self.testbed = plan.testbed
        self.settings = plan.spec.settings
        self.host_name = host_name
        self.run_id = run_id
        self.out = out
        self.config_path = config_path
        self.log = log
        self.is_control = host_name == plan.control_host
        self.supervisor = Supervisor(out / "logs")
        self.broker = None
        self.client = None
        self.control: ControlChannel | None = None

    def run(self, interrupts: Interrupts) -> int:
        # the run's key comes from this host's environment (the same on every host); the roles inherit it
        configure(wire_settings_of(self.settings))
        if self.plan.broker_host == self.host_name:
            from live.wire.broker import EmbeddedBroker

            e = self.testbed.embedded
            self.broker = EmbeddedBroker(self.out / "broker", port=e.port, http_port=e.http_port, host=e.bind,
                                         keep_data=self.settings.keep_broker_data).start()
            self.log(f"[{self.host_name}] broker {self.broker.url} (metrics {self.broker.metrics_url}), pid {self.broker.pid}")
        self.client = _connect(self.testbed.broker_url, self.run_id, self.testbed.tls_trust_certs_file, wait_s=self.settings.startup_timeout_s)
        prepare(self.client, self.run_id)
        self._start_roles()
        return self._control_run(interrupts) if self.is_control else self._follow(interrupts)

    def _start_roles(self) -> None:
        testbed = self.testbed
        env = child_env()
        if testbed.token_file and TOKEN_ENV not in env:
            env[TOKEN_ENV] = Path(testbed.token_file).read_text().strip()
        elif testbed.token_env and testbed.token_env in env:
            env[TOKEN_ENV] = env[testbed.token_env]
        host = testbed.hosts[self.host_name]
        for process in self.plan.on(self.host_name):
            argv = role_argv(self.plan, process, python=sys.executable, run_id=self.run_id, config_path=self.config_path, out_dir=str(self.out))
            argv.append("--lifeline")  # it ends if this host's testbed process dies
            self.supervisor.spawn(process.name, process.module, argv, {**env, **_role_env(process, host)})
        started = ", ".join(f"{p.name} (pid {p.popen.pid})" for p in self.supervisor.procs)
        self.log(f"[{self.host_name}] started {started or 'no roles'}")

    def _crashed(self, crashed: RoleProc) -> None:
        raise StartError(crashed.exit_report())

    def _control_run(self, interrupts: Interrupts) -> int:
        """Wait for every role of every host, start the clock, wait for the sink, stop the run."""
        testbed, settings = self.testbed, self.settings

        def check():
            crashed = self.supervisor.crashed()
            if crashed is not None:
                self._crashed(crashed)
            if interrupts.is_set():
                raise StartError("interrupted")

        self.control = ControlChannel(self.client, self.run_id, source="testbed")
        ready = subscribe_ready(self.client, self.run_id)
        try:
            waited = wait_ready(ready, {p.name for p in self.plan.processes}, settings.startup_timeout_s, check=check)
        finally:
            ready.close()
        epoch = self.control.start(testbed.start_lead_s)
        self.log(f"[{self.host_name}] every role ready after {waited:.1f}s; clock started (epoch {epoch:.3f})")
        sink = next(p for p in self.supervisor.procs if p.module == "live.roles.sink")
        self.supervisor.watch(sink, epoch + settings.timeout_s, interrupts, on_crash=self._crashed, period_s=0.1)
        timed_out = sink.popen.poll() is None
        self.control.stop(timed_out=timed_out)
        try:
            sink.popen.wait(timeout=30.0)
        except subprocess.TimeoutExpired:
            pass
        self.supervisor.stop(testbed.stop_grace_s + 5.0, term_wait_s=5.0)
        crashed = self.supervisor.crashed()
        if crashed is not None:
            self._crashed(crashed)
        self._report(sink, timed_out)
        if testbed.stop_grace_s:
            time.sleep(testbed.stop_grace_s)  # the other hosts' roles flush and leave before the broker goes
        return 1 if timed_out else 0

    def _report(self, sink: RoleProc, timed_out: bool) -> None:
        summary_path = self.out / "summary.json"
        if not summary_path.is_file():
            raise StartError(f"the sink wrote no tables; {sink.log_path}:\n{sink.tail()}")
        summary = json.loads(summary_path.read_text())
        keys = ("count", "completed", "dropped", "latency_p50_s", "latency_p99_s", "slo_attainment", "mean_batch_size", "complete")
        self.log(f"[{self.host_name}] run {self.run_id} {'timed out' if timed_out else 'done'}: "
                 + json.dumps({k: summary.get(k) for k in keys}, default=str))  # fmt: skip
        self.log(f"[{self.host_name}] wrote {self.out}: requests.parquet, batches.parquet, summary.json, logs/, stats/")

    def _follow(self, interrupts: Interrupts) -> int:
        """Not the control host: until the local roles end, or the run's stop (then ``stop_grace_s`` more)."""
        self._wait_for_stop(interrupts)
        self.supervisor.stop(self.testbed.stop_grace_s, term_wait_s=5.0)
        crashed = self.supervisor.crashed()
        if crashed is not None:
            self.log(f"[{self.host_name}] {crashed.exit_report()}")
            return 1
        self.log(f"[{self.host_name}] done")
        return 0

    def _wait_for_stop(self, interrupts: Interrupts) -> None:
        import pulsar

        procs = self.supervisor.procs
        grace_s = self.testbed.stop_grace_s + (0.0 if procs else 2.0)
        watch = self.client.subscribe(Topics(self.run_id).control, f"testbed-{self.host_name}-{os.getpid()}",
                                      consumer_type=pulsar.ConsumerType.Shared, initial_position=pulsar.InitialPosition.Earliest)  # fmt: skip
        stopped_at = None
        limit = time.monotonic() + self.plan.exit_after_s() + 30.0
        while not interrupts.is_set() and time.monotonic() < limit:
            if procs and not self.supervisor.alive():
                break
            if stopped_at is not None and time.monotonic() - stopped_at > grace_s:
                break
            try:
                msg = watch.receive(timeout_millis=200)
            except pulsar.Timeout:
                continue
            watch.acknowledge(msg)
            try:
                message = decode(msg.data())
            except DecodeError:
                continue
            if message.op is ControlOp.STOP and stopped_at is None:
                stopped_at = time.monotonic()
        try:
            watch.unsubscribe()
        except Exception:
            pass

    def failed(self, error: StartError) -> None:
        """The run cannot go on: say why, and (on the control host) stop every role."""
        self.log(f"[{self.host_name}] {error}")
        if self.client is not None and self.is_control:
            try:
                (self.control or ControlChannel(self.client, self.run_id, source="testbed")).stop(failed=str(error)[:200])
            except Exception:
                pass

    def close(self, interrupts: Interrupts) -> None:
        self.supervisor.stop(0.0 if interrupts.is_set() else 2.0, term_wait_s=5.0)
        close_connection(self.client, self.broker)


# ---------------------------------------------------------------------------
# The command line
# ---------------------------------------------------------------------------


def _plan_from(testbed_path: str, config_path: str) -> Plan:
    testbed = load_testbed(testbed_path)
    spec = load_run(config_path)
    return make_plan(testbed, spec)


def _local_host(testbed: Testbed) -> str | None:
    names = {socket.gethostname(), socket.gethostname().split(".")[0], os.uname().nodename}
    for name, host in testbed.hosts.items():
        if name in names or host.address in names:
            return name
    return None


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m live.deploy.testbed", description="Deploy a live run on a testbed (see docs/DEPLOY.md).")
    sub = parser.add_subparsers(dest="command", required=True)

    def testbed_args(p, host: bool = False):
        p.add_argument("--testbed", required=True, help="testbed file (YAML; conf/testbed/example.yaml)")
        p.add_argument("--config", required=True, help="run config (JSON, as every role reads it)")
        p.add_argument("--run-id", help="the run's id (default: a new one)")
        if host:
            p.add_argument("--host", help="this machine's name in the testbed (default: matched from the hostname)")
            p.add_argument("--out", help="folder for logs, stats and (control host) the tables; default results/testbed/<run id>")

    def broker_args(p):
        p.add_argument("--broker", required=True, help="Pulsar service URL")
        p.add_argument("--run-id", required=True)
        p.add_argument("--tls-trust-certs-file")

    testbed_args(sub.add_parser("print", help="print the per-host commands (ssh-ready)"))
    testbed_args(sub.add_parser("run", help="run this host's roles (and the broker if it is here)"), host=True)
    check = sub.add_parser("check", help="check the testbed file against the run config")
    check.add_argument("--testbed", required=True)
    check.add_argument("--config", required=True)
    b = sub.add_parser("broker", help="run an embedded pulsar-lite broker in the foreground until SIGTERM/SIGINT")
    b.add_argument("--bind", required=True, help="the address other hosts reach this one at (not 0.0.0.0)")
    b.add_argument("--port", type=int, default=6650)
    b.add_argument("--http-port", type=int, default=8080, help="Prometheus metrics (/metrics)")
    b.add_argument("--folder", default="results/testbed/broker", help="data and log folder")
    p = sub.add_parser("prepare", help="create the run's ready subscription (before any role starts)")
    broker_args(p)
    p.add_argument("--wait-s", type=float, default=0.0, help="retry until the broker answers, up to this long")
    s = sub.add_parser("start", help="wait until every expected role is ready, then start the run's clock")
    broker_args(s)
    s.add_argument("--expect", required=True, help="comma-separated role names (as print lists them)")
    s.add_argument("--lead-s", type=float, default=1.0, help="the epoch is this far ahead of now (> clock offset + delivery)")
    s.add_argument("--timeout-s", type=float, default=60.0)
    t = sub.add_parser("stop", help="stop every role of the run")
    broker_args(t)
    return parser


def main(argv=None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command in ("print", "run", "check"):
        try:
            return _plan_command(args, parser)
        except ConfigError as error:
            print(f"testbed: {error}", file=sys.stderr)
            return 2
    if args.command == "broker":
        return _serve_broker(args)
    return _control_command(args)


def _plan_command(args, parser: argparse.ArgumentParser) -> int:
    """``check``, ``print`` and ``run``: the commands that read the testbed file and the run config."""
    plan = _plan_from(args.testbed, args.config)
    if args.command == "check":
        for name in plan.hosts_used:
            roles = [p.name for p in plan.on(name)] + (["broker"] if plan.broker_host == name else [])
            print(f"{name}: {', '.join(roles)}")
        return 0
    run_id = args.run_id or "r" + uuid.uuid4().hex[:10]
    if args.command == "print":
        sys.stdout.write(print_commands(plan, config_path=args.config, testbed_path=args.testbed, run_id=run_id))
        return 0
    host = args.host or _local_host(plan.testbed)
    if host is None:
        parser.error("--host is required (no testbed host matches this machine's hostname)")
    out = args.out or _run_dir(run_id)
    return run_host(plan, host, config_path=args.config, run_id=run_id, out_dir=out, log=lambda m: print(m, flush=True))


def _serve_broker(args) -> int:
    """``broker``: an embedded pulsar-lite in the foreground until SIGTERM or SIGINT."""
    from live.wire.broker import EmbeddedBroker

    done = {"flag": False}
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *a: done.update(flag=True))
    broker = EmbeddedBroker(args.folder, port=args.port, http_port=args.http_port, host=args.bind).start()
    pid_file = broker.folder / "testbed-broker.pid"
    pid_file.write_text(f"{os.getpid()}\n")
    print(f"broker {broker.url} (metrics {broker.metrics_url}), pulsar-lite pid {broker.pid}, this process pid {os.getpid()} "
          f"(in {pid_file}; SIGTERM it to stop), data {broker.folder}", flush=True)  # fmt: skip
    try:
        while not done["flag"] and broker.running:
            time.sleep(0.2)
    finally:
        broker.stop()
    return 0


def _control_command(args) -> int:
    """``prepare``, ``start`` and ``stop``: messages to a run on its broker (signed with ``EDGEBATCH_RUN_KEY`` if set)."""
    try:
        configure(WireSettings(key=key_from_env()))
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    client = _connect(args.broker, args.run_id, args.tls_trust_certs_file, wait_s=getattr(args, "wait_s", 0.0))
    try:
        if args.command == "prepare":
            prepare(client, args.run_id)
            print(f"run {args.run_id}: ready subscription created on {args.broker}")
        elif args.command == "start":
            expected = {n.strip() for n in args.expect.split(",") if n.strip()}
            ready = subscribe_ready(client, args.run_id)
            try:
                waited = wait_ready(ready, expected, args.timeout_s)
            except StartError as error:
                print(f"start: {error}", file=sys.stderr)
                return 1
            finally:
                ready.close()
            epoch = ControlChannel(client, args.run_id, source="testbed").start(args.lead_s)
            print(f"run {args.run_id}: {len(expected)} roles ready after {waited:.1f}s; clock starts at epoch {epoch:.3f}")
        else:
            ControlChannel(client, args.run_id, source="testbed").stop()
            print(f"run {args.run_id}: stop sent")
    finally:
        client.close()
    return 0

if __name__ == "__main__":
    raise SystemExit(main())
