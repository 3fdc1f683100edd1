"""One live run on this machine: every role as a subprocess, on a real broker.

``run_live(config, out_dir)`` takes the simulator's config mapping (plus the
``live`` section of ``live.config``) and:

1. checks and builds it exactly as every role will (a bad setting fails
   here, naming the field);
2. starts the embedded pulsar-lite broker (log under ``out_dir/broker``, data
   in a temporary folder removed at the end unless ``live.broker.keep_data``)
   unless ``live.broker.url`` names one;
3. starts the roles as processes: the sink, the workers of every server
   executor (``live.executors.<name>.replicas``, default its ``slots``), a
   pool per serverless executor, a gateway per gateway, a source per
   workload source; logs in ``out_dir/logs``, statistics in ``out_dir/stats``;
4. waits until every role is connected and subscribed, then starts the
   run's clock (a ``start`` on the control topic with the epoch);
5. waits for the sink to see every request end (completed or dropped), or
   for ``live.timeout_s``; then stops every role (``stop`` on the control
   topic, then SIGTERM and SIGKILL by pid) and the broker;
6. returns the sink's tables, with the simulator's columns, as a
   ``RunResult`` (``.requests``, ``.batches``, ``.plans``, ``.summary``).

From a shell::

    python -m live.deploy.local --config run.json --out results/live1

Faults:

- a worker or pool process that dies during the run (a crash, SIGKILL) is
  restarted, up to ``live.max_restarts`` times each; what it held unacknowledged
  the broker delivers again (to another replica, or to the restarted one).
  Any other role that crashes ends the run with ``LiveRunError`` and its log's
  tail;
- the broker may go away and come back on the same port: every client
  reconnects and resends what was not acknowledged; duplicates are dropped by
  request id (gateway, sink) and by batch id (gateway);
- SIGINT (Ctrl-C) or SIGTERM to this process stops the run: the roles are
  told to stop, the sink writes the records gathered so far (requests that had
  not ended are dropped as ``run_ended``, the summary says ``"complete":
  false`` and ``"interrupted": "SIGINT"``), every process is stopped (broker
  last), and ``run_live`` raises ``LiveRunInterrupted`` (a
  ``KeyboardInterrupt``; ``python -m live.deploy.local`` exits with 128 + the signal).
  A second signal stops at once. The roles and the broker run in sessions of
  their own, so a Ctrl-C at the terminal reaches only this process.

Once the clock has started, ``<out>/run.json`` names the run id, the broker
and every role's pid. ``run_live(..., on_start=f)`` calls ``f(handle)`` on a
thread of its own once the clock has started (fault injection in the tests:
``handle.pid(name)``, ``handle.broker.restart()``, ``handle.now()``).
To run the roles on separate machines, start each role's module by hand with
the same ``--broker``, ``--run-id`` and ``--config`` (see ``live.roles.role``),
then start the clock and, at the end, stop the roles::

    python -m live.deploy.local --control start --broker pulsar://host:6650 --run-id RUN
    python -m live.deploy.local --control stop --broker pulsar://host:6650 --run-id RUN
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from live.wire.broker import EmbeddedBroker, check_reachable, connect
from live.wire.messages import KEY_ENV, WireSettings, configure, key_from_env
from live.config import RunSpec, Topics, build_run
from live.deploy.processes import ControlChannel, Interrupts, RoleProc, StartError, Supervisor, child_env, close_connection
from live.deploy.processes import subscribe_ready, wait_ready
from live.roles.role import TOKEN_ENV
from spec.run_result import RunResult
from spec.validation import ConfigError

__all__ = ["LiveRunError", "LiveRunInterrupted", "RunHandle", "run_live", "role_commands", "main"]

_START_LEAD_S = 0.3
#: roles whose process may be restarted during a run (their state is in the broker, unacknowledged batches, or in
#: the schedule: a restarted source sends again what was due, and the gateway keeps one of each; or on disk: a
#: restarted sink reads its write-ahead log, and the broker delivers again what it had not acknowledged; a gateway
#: acknowledges a request only once it ended, so its restarted successor gets every unfinished one again)
_RESTARTABLE = ("live.roles.worker", "live.roles.pool", "live.roles.source", "live.roles.sink", "live.roles.gateway")


class LiveRunError(RuntimeError):
    """A role failed to start or crashed; the message holds its log's tail."""


class LiveRunInterrupted(KeyboardInterrupt):
    """The run was stopped by SIGINT or SIGTERM; ``result`` holds the records gathered so far (or None)."""

    def __init__(self, signum: int, result: "RunResult | None", out_dir: Path):
        self.signum = int(signum)
        self.result = result
        name = signal.Signals(self.signum).name
        where = f"records so far in {out_dir}" if result is not None else "no records were written"
        super().__init__(f"live run stopped by {name}; {where}")


def _plain_config(config: Mapping) -> dict:
    try:
        return json.loads(json.dumps(config, allow_nan=True))
    except (TypeError, ValueError) as error:
        raise ConfigError("config", type(config).__name__, f"plain data that JSON can hold (a role reads it from a file): {error}") from None


def check_models(spec: RunSpec) -> None:
    """Every executor's model builds and serves one input, and the device exists: else a ConfigError naming the field."""
    from live import models  # torch: only here, never in the gateway, source or sink

    try:
        models.resolve_device(spec.settings.device)
    except ValueError:  # live.config allowed only auto, cpu and cuda: this is cuda on a machine without one
        raise ConfigError("live.device", spec.settings.device, "auto or cpu (no CUDA device here)") from None
    for name, settings in spec.settings.executors.items():
        field_name = f"live.executors.{name}.model" if settings.model != spec.settings.model else "live.model"
        if settings.model in models.MODEL_NAMES:
            continue
        if not settings.model.startswith(("target:", "file:")):
            raise ConfigError(field_name, settings.model, "one of " + ", ".join(models.MODEL_NAMES) + ", or {_target_: ..., input_shape: [...]}"
                              " or {path: ..., input_shape: [...]}", choices=models.MODEL_NAMES)  # fmt: skip
        try:
            models.check_model(settings.model)
        except Exception as error:  # a user's model may fail in any way: say so at config time, with the field
            raise ConfigError(field_name, settings.model, f"a model that builds and serves one input ({str(error)[:200]})") from None


def role_commands(spec: RunSpec) -> list[tuple[str, str, list[str]]]:
    """(name, module, extra arguments) of every role process of a run on one machine."""
    roles: list[tuple[str, str, list[str]]] = [("sink", "live.roles.sink", [])]
    for name, settings in spec.settings.executors.items():
        if settings.serverless:
            roles.append((f"pool-{name}", "live.roles.pool", ["--executor", name]))
        elif not settings.inline:  # an inline executor runs in its gateway's process (live.roles.inline_executor)
            for k in range(settings.replicas):
                roles.append((f"worker-{name}-{k}", "live.roles.worker", ["--executor", name, "--replica", str(k)]))
    for gateway in spec.gateways:
        roles.append((f"gateway-{gateway}", "live.roles.gateway", ["--gateway", gateway]))
    for source in () if spec.settings.ingress.open else spec.workload.sources:  # open ingress: the clients send
        roles.append((f"source-{source.name}", "live.roles.source", ["--source", source.name]))
    return roles


def _ignore(result, msg_id) -> None:
    """A send callback that does nothing (dead letters are best effort)."""


@dataclass
class RunHandle:
    """What ``run_live(..., on_start=f)`` gives ``f`` (on a thread of its own) once the clock has started."""

    run_id: str
    out_dir: Path
    broker_url: str
    #: the embedded broker (``restart()`` keeps its port and data), or None with an external one
    broker: EmbeddedBroker | None
    epoch_unix: float
    _procs: list
    #: set when the run is ending: ``f`` should return soon
    ending: threading.Event = field(default_factory=threading.Event)
    #: anything ``f`` wants to report (returned in ``RunResult.extra["faults"]``)
    notes: dict = field(default_factory=dict)

    def now(self) -> float:
        """Seconds since the run's start."""
        return time.time() - self.epoch_unix

    def sleep_until(self, at_s: float) -> bool:
        """Wait until the run's clock reads ``at_s``; False when the run ended first."""
        return not self.ending.wait(max(0.0, at_s - self.now()))

    @property
    def names(self) -> list[str]:
        return [p.name for p in self._procs]

    def pid(self, name: str) -> int:
        """The pid of the role process ``name`` now (a restarted role has a new one)."""
        for proc in self._procs:
            if proc.name == name:
                return proc.popen.pid
        raise KeyError(f"no role {name!r}; roles: {', '.join(self.names)}")


def run_live(
    config: Mapping,
    out_dir: str | os.PathLike,
    *,
    run_id: str | None = None,
    on_start: Callable[[RunHandle], None] | None = None,
) -> RunResult:
    """Run ``config`` live on this machine; return its records and summary (see the module doc).

    Raises ``ConfigError`` (before anything starts) for a bad setting,
    ``LiveRunError`` when a role cannot start or crashes for good, and
    ``LiveRunInterrupted`` after SIGINT or SIGTERM (records flushed first).
    """
    started = time.perf_counter()
    spec = build_run(config if isinstance(config, RunSpec) else _plain_config(config))
    config = _plain_config(spec.config)
    check_models(spec)
    out = Path(out_dir).absolute()
    (out / "logs").mkdir(parents=True, exist_ok=True)
    (out / "stats").mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text(json.dumps(config, indent=1))
    run = _LocalRun(spec, out, run_id or "r" + uuid.uuid4().hex[:10], on_start)
    # SIGINT / SIGTERM: stop in order and keep the records (a second signal: at once)
    with Interrupts(second_raises=True) as interrupts:
        try:
            return run.run(interrupts, started)
        finally:
            run.close()


class _LocalRun:
    """The state of one ``run_live``: the broker, the client, the role processes, the fault hook."""

    def __init__(self, spec: RunSpec, out: Path, run_id: str, on_start: Callable[[RunHandle], None] | None):
        self.spec = spec
        self.settings = spec.settings
        self.out = out
        self.run_id = run_id
        self.topics = Topics(run_id)
        self.on_start = on_start
        self.supervisor = Supervisor(out / "logs", restartable=_RESTARTABLE, max_restarts=self.settings.max_restarts)
        self.broker: EmbeddedBroker | None = None
        self.client = None
        self.control: ControlChannel | None = None
        self.url = ""
        self.handle: RunHandle | None = None
        self.fault_thread: threading.Thread | None = None
        self.fault_error: list[BaseException] = []
        # a fresh key per run (or the caller's, from the environment): the roles get it in theirs, never in a file
        key = (key_from_env() or secrets.token_bytes(32)) if self.settings.authenticate else None
        self.run_key_hex = key.hex() if key is not None else None
        self._wire_before = configure(WireSettings(key=key, limits=self.settings.limits))

    def run(self, interrupts: Interrupts, started: float) -> RunResult:
        ready = self._connect()
        self._start_roles()
        self._wait_ready(ready, interrupts)
        ready_s = time.perf_counter() - started
        sink = self.supervisor.procs[0]
        if not interrupts.is_set():
            epoch = self._start_clock()
            self.supervisor.watch(sink, epoch + self.settings.timeout_s, interrupts, on_crash=lambda p: self._on_crash(p, epoch),
                                  period_s=0.05)  # fmt: skip
        stopped_by = interrupts.first
        sink = self.supervisor.get(sink.name)  # the one running now (a crashed sink is restarted)
        timed_out = stopped_by is None and sink.popen.poll() is None
        self._stop(sink, timed_out, stopped_by)
        result = self._result(sink, timed_out, stopped_by, ready_s, started)
        if stopped_by is not None:
            raise LiveRunInterrupted(stopped_by, result, self.out)
        return result

    def _connect(self):
        """The broker (embedded unless the config names one), the client, the control and dead-letter producers."""
        settings = self.settings
        self.url = settings.broker_url
        if self.url is None:
            self.broker = EmbeddedBroker(self.out / "broker", keep_data=settings.keep_broker_data).start()
            self.url = self.broker.url
        else:
            check_reachable(self.url)  # the user's broker must be up before a local run starts its roles
        self.client, _ = connect(self.url, auth_token=settings.auth_token, tls_trust_certs_file=settings.tls_trust_certs_file)
        ready = subscribe_ready(self.client, self.run_id)
        self.control = ControlChannel(self.client, self.run_id, source="run")
        self.dead_letters = self.client.create_producer(self.topics.dead_letter, batching_enabled=False)
        return ready

    def _start_roles(self) -> None:
        settings = self.settings
        out = self.out
        env = child_env({"PYTHONUNBUFFERED": "1"})
        if settings.auth_token:
            env[TOKEN_ENV] = settings.auth_token
        env.pop(KEY_ENV, None)
        if self.run_key_hex is not None:
            env[KEY_ENV] = self.run_key_hex
        exit_after_s = settings.startup_timeout_s + settings.timeout_s + 60.0
        for name, module, extra in role_commands(self.spec):
            role_env = dict(env)
            if module == "live.roles.worker":
                threads = str(settings.executors[extra[1]].threads)
                role_env.update(OMP_NUM_THREADS=threads, MKL_NUM_THREADS=threads)
            cmd = [
                sys.executable, "-m", module, "--broker", self.url, "--run-id", self.run_id, "--config", str(out / "config.json"),
                "--name", name, "--stats", str(out / "stats" / f"{name}.json"), "--exit-after-s", str(exit_after_s), "--lifeline", *extra,
            ]  # fmt: skip
            if module == "live.roles.sink":
                cmd += ["--out", str(out)]
            self.supervisor.spawn(name, module, cmd, role_env)

    def _wait_ready(self, ready, interrupts: Interrupts) -> None:
        """Every role connected and subscribed (or a signal came first)."""

        def check():
            crashed = self.supervisor.crashed()
            if crashed is not None:
                raise LiveRunError(crashed.exit_report(" while starting"))

        def reject(raw, reason):
            self.dead_letters.send_async(raw, _ignore, properties={"reason": reason, "source_topic": self.topics.ready})

        timeout_s = self.settings.startup_timeout_s
        try:
            external = {name for e in self.settings.executors.values() for name in e.external}  # run by someone else
            wait_ready(ready, {p.name for p in self.supervisor.procs} | external, timeout_s, check=check, stop=interrupts, reject=reject)
        except StartError as error:
            first = sorted(error.missing)[0]
            where = "an external worker (live.executors.*.external)" if first in external else self.supervisor.get(first).log_path
            raise LiveRunError(f"roles not ready after {timeout_s:.0f}s: {', '.join(sorted(error.missing))}; {where}") from None

    def _start_clock(self) -> float:
        """Send the start, write ``run.json`` and start the ``on_start`` hook; return the epoch."""
        epoch = self.control.start(_START_LEAD_S)
        _write_run_file(self.out, self.run_id, self.url, epoch, self.supervisor.procs, state="running")
        if self.on_start is not None:
            handle = self.handle = RunHandle(self.run_id, self.out, self.url, self.broker, epoch, self.supervisor.procs)

            def run_hook():
                try:
                    self.on_start(handle)
                except BaseException as error:  # reported after the run
                    self.fault_error.append(error)

            self.fault_thread = threading.Thread(target=run_hook, name="on_start", daemon=True)
            self.fault_thread.start()
        return epoch

    def _on_crash(self, crashed: RoleProc, epoch: float) -> None:
        """A worker or pool is restarted (while it has restarts left); any other crash ends the run."""
        if self.supervisor.restart(crashed, epoch):
            _write_run_file(self.out, self.run_id, self.url, epoch, self.supervisor.procs, state="running")
            return
        raise LiveRunError(crashed.exit_report(self.supervisor.restart_note(crashed)))

    def _stop(self, sink: RoleProc, timed_out: bool, stopped_by: int | None) -> None:
        """Tell the roles to stop, give the sink time to write the records, stop every process."""
        self.control.stop(timed_out=timed_out, interrupted=stopped_by is not None)
        try:
            sink.popen.wait(timeout=30.0)  # the sink writes the records gathered so far
        except subprocess.TimeoutExpired:
            pass
        if self.handle is not None:
            self.handle.ending.set()
            self.fault_thread.join(timeout=60.0)
        self.supervisor.stop(grace_s=10.0)
        crashed = self.supervisor.crashed()
        if stopped_by is None and crashed is not None and (crashed is sink or not timed_out):
            raise LiveRunError(crashed.exit_report())
        if self.fault_error:
            raise LiveRunError(f"the on_start function failed: {self.fault_error[0]!r}") from self.fault_error[0]

    def _result(self, sink: RoleProc, timed_out: bool, stopped_by: int | None, ready_s: float, started: float) -> RunResult:
        """The sink's tables, the summary (with what only the orchestrator knows) and the roles' statistics."""
        out = self.out
        restarts = self.supervisor.restarts
        if not (out / "requests.parquet").is_file():
            if stopped_by is not None:
                raise LiveRunInterrupted(stopped_by, None, out)
            raise LiveRunError(f"the sink wrote no tables; {sink.log_path}:\n{sink.tail()}")
        requests = pd.read_parquet(out / "requests.parquet")
        batches = pd.read_parquet(out / "batches.parquet")
        plans_path = out / "plans.jsonl"
        plans = pd.DataFrame([json.loads(line) for line in plans_path.read_text().splitlines() if line.strip()]) if plans_path.is_file() else pd.DataFrame()
        summary = json.loads((out / "summary.json").read_text())  # NaN round-trips through Python's json
        summary["timed_out"] = timed_out
        summary["restarts"] = int(sum(restarts.values()))
        if stopped_by is not None:
            summary["complete"] = False
            summary["interrupted"] = signal.Signals(stopped_by).name
        (out / "summary.json").write_text(json.dumps(summary, indent=1, default=str))
        stats = {}
        for proc in self.supervisor.procs:
            path = out / "stats" / f"{proc.name}.json"
            if path.is_file():
                stats[proc.name] = json.loads(path.read_text())
        data_dir = str(self.broker.data_path.parent) if self.broker is not None else None
        extra = {"run_id": self.run_id, "out_dir": str(out), "broker_url": self.url, "broker_data_dir": data_dir,
                 "startup_s": ready_s, "roles": stats,
                 "restarts": dict(restarts), "faults": dict(self.handle.notes) if self.handle is not None else {}}  # fmt: skip
        return RunResult(requests, batches, plans, summary, wall_s=time.perf_counter() - started, extra=extra)

    def close(self) -> None:
        """Whatever is still running stops (roles, client, broker); ``run.json`` says the run ended."""
        if self.handle is not None:
            self.handle.ending.set()
            if self.fault_thread is not None:
                self.fault_thread.join(timeout=30.0)
        if self.supervisor.procs:
            if self.control is not None and self.supervisor.alive():
                try:
                    self.control.stop()
                except Exception:
                    pass
            self.supervisor.stop(grace_s=5.0)
        close_connection(self.client, self.broker)
        _mark_run_file_ended(self.out)
        configure(self._wire_before)


def _mark_run_file_ended(out: Path) -> None:
    if (out / "run.json").is_file():
        try:
            run_file = json.loads((out / "run.json").read_text())
            run_file["state"] = "ended"
            (out / "run.json").write_text(json.dumps(run_file, indent=1))
        except (OSError, ValueError):
            pass


def _write_run_file(out: Path, run_id: str, url: str, epoch: float, procs: list[RoleProc], *, state: str) -> None:
    """``<out>/run.json``: the run id, broker, epoch and every role's pid (for operators and fault tests)."""
    body = {"run_id": run_id, "broker_url": url, "epoch_unix": epoch, "state": state, "orchestrator_pid": os.getpid(),
            "pids": {p.name: p.popen.pid for p in procs}}  # fmt: skip
    tmp = out / "run.json.tmp"
    tmp.write_text(json.dumps(body, indent=1))
    os.replace(tmp, out / "run.json")


def main(argv=None) -> int:
    from live.config import load_config

    parser = argparse.ArgumentParser(description="Run a config live on this machine (every role a process).")
    parser.add_argument("--config", help="run config (JSON)")
    parser.add_argument("--out", help="output folder")
    parser.add_argument("--run-id")
    parser.add_argument("--broker", help="Pulsar service URL (default: the config's, else an embedded broker)")
    parser.add_argument("--control", choices=("start", "stop"),
                        help="only publish a start (epoch: now + lead) or stop to the roles of --run-id on --broker")
    args = parser.parse_args(argv)
    if args.control:
        if not args.broker or not args.run_id:
            parser.error("--control needs --broker and --run-id")
        try:  # signed with the run's key: export the EDGEBATCH_RUN_KEY the run was started with
            configure(WireSettings(key=key_from_env()))
        except ValueError as error:
            parser.error(str(error))
        client, _ = connect(args.broker, auth_token=os.environ.get(TOKEN_ENV))
        try:
            control = ControlChannel(client, args.run_id, source="run")
            control.start(_START_LEAD_S) if args.control == "start" else control.stop()
        finally:
            client.close()
        print(f"sent {args.control} to run {args.run_id}")
        return 0
    if not args.config or not args.out:
        parser.error("--config and --out are required (or --control)")
    keys = ("count", "completed", "dropped", "drops_by_reason", "latency_p50_s", "latency_p95_s", "latency_p99_s", "slo_attainment",
            "mean_batch_size", "batches", "cold_starts", "total_cost", "retries", "redelivered", "restarts", "complete")  # fmt: skip
    try:
        config = load_config(args.config)
        if args.broker:
            config.setdefault("live", {}).setdefault("broker", {})["url"] = args.broker
        result = run_live(config, args.out, run_id=args.run_id)
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except LiveRunInterrupted as stop:
        if stop.result is not None:
            print(json.dumps({k: stop.result.summary.get(k) for k in keys}, indent=1, default=str))
        print(f"{stop}", file=sys.stderr)
        return 128 + stop.signum
    print(json.dumps({k: result.summary.get(k) for k in keys}, indent=1, default=str))
    print(f"wrote {args.out}: requests.parquet, batches.parquet, plans.jsonl, summary.json, logs/, stats/ ({result.wall_s:.1f}s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
