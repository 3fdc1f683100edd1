"""One live run on this machine: every role as a subprocess, on a real broker.

``run_live(config, out_dir)`` takes the simulator's config mapping (plus the
``live`` section of ``live.config``) and:

1. checks and builds it exactly as every role will (a bad setting fails
   here, naming the field);
2. starts the embedded pulsar-lite broker (data and log under
   ``out_dir/broker``) unless ``live.wire.broker.url`` names one;
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
   ``LiveResult`` (``.requests``, ``.batches``, ``.plans``, ``.summary``).

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
import math
import os
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

from live.wire.broker import EmbeddedBroker, connect
from live.config import RunSpec, Topics, build_run
from live.wire.messages import DecodeError, Kind, decode, encode_control
from live.roles.role import TOKEN_ENV
from spec.validation import ConfigError

__all__ = ["LiveResult", "LiveRunError", "LiveRunInterrupted", "RunHandle", "run_live", "role_commands", "main"]

_ROOT = str(Path(__file__).resolve().parents[2])
_START_LEAD_S = 0.3
#: roles whose process may be restarted during a run (their state is in the broker: unacknowledged batches)
_RESTARTABLE = ("live.roles.worker", "live.roles.pool")


@dataclass
class LiveResult:
    """What a live run produced: the same fields as ``sim.SimResult``."""

    requests: pd.DataFrame
    batches: pd.DataFrame
    plans: pd.DataFrame
    summary: dict
    wall_s: float = 0.0
    extra: dict = field(default_factory=dict)


class LiveRunError(RuntimeError):
    """A role failed to start or crashed; the message holds its log's tail."""


class LiveRunInterrupted(KeyboardInterrupt):
    """The run was stopped by SIGINT or SIGTERM; ``result`` holds the records gathered so far (or None)."""

    def __init__(self, signum: int, result: "LiveResult | None", out_dir: Path):
        self.signum = int(signum)
        self.result = result
        name = signal.Signals(self.signum).name
        where = f"records so far in {out_dir}" if result is not None else "no records were written"
        super().__init__(f"live run stopped by {name}; {where}")


@dataclass
class _Proc:
    name: str
    module: str
    popen: subprocess.Popen
    log_path: Path
    log_file: object
    cmd: list = field(default_factory=list)
    env: dict = field(default_factory=dict)

    def tail(self, lines: int = 25) -> str:
        try:
            text = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return "(no log)"
        return "\n".join(text[-lines:]) or "(log is empty)"


def _plain_config(config: Mapping) -> dict:
    try:
        return json.loads(json.dumps(config, allow_nan=True))
    except (TypeError, ValueError) as error:
        raise ConfigError("config", type(config).__name__, f"plain data that JSON can hold (a role reads it from a file): {error}") from None


def _check_models(spec: RunSpec) -> None:
    from live.models import MODEL_NAMES  # torch: only here, never in the gateway, source or sink

    for name, settings in spec.settings.executors.items():
        if settings.model not in MODEL_NAMES:
            field_name = f"live.executors.{name}.model" if settings.model != spec.settings.model else "live.model"
            raise ConfigError(field_name, settings.model, "one of " + ", ".join(MODEL_NAMES))


def role_commands(spec: RunSpec) -> list[tuple[str, str, list[str]]]:
    """(name, module, extra arguments) of every role process of a run on one machine."""
    roles: list[tuple[str, str, list[str]]] = [("sink", "live.roles.sink", [])]
    for name, settings in spec.settings.executors.items():
        if settings.serverless:
            roles.append((f"pool-{name}", "live.roles.pool", ["--executor", name]))
        else:
            for k in range(settings.replicas):
                roles.append((f"worker-{name}-{k}", "live.roles.worker", ["--executor", name, "--replica", str(k)]))
    for gateway in spec.gateways:
        roles.append((f"gateway-{gateway}", "live.roles.gateway", ["--gateway", gateway]))
    for source in spec.workload.sources:
        roles.append((f"source-{source.name}", "live.roles.source", ["--source", source.name]))
    return roles


def _ignore(result, msg_id) -> None:
    """A send callback that does nothing (dead letters are best effort)."""


def _spawn(name: str, module: str, cmd: list[str], env: dict, log_path: Path, append: bool = False) -> _Proc:
    log_file = open(log_path, "ab" if append else "wb")
    # a session of its own: a terminal's Ctrl-C reaches the orchestrator only, which stops the roles in order
    popen = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log_file, stderr=subprocess.STDOUT, cwd=_ROOT, env=env,
                             start_new_session=True)  # fmt: skip
    return _Proc(name, module, popen, log_path, log_file, cmd, env)


def _restart(proc: _Proc, epoch_unix: float, incarnation: int) -> _Proc:
    """Start a role's process again with the same command line (and the run's epoch: the start has been sent)."""
    try:
        proc.log_file.close()
    except Exception:
        pass
    with open(proc.log_path, "ab") as fp:
        fp.write(f"\n--- edgebatch: {proc.name} exited with code {proc.popen.returncode}; restarted ---\n".encode())
    cmd = list(proc.cmd)
    if "--incarnation" in cmd:
        del cmd[cmd.index("--incarnation"):cmd.index("--incarnation") + 2]
    cmd += ["--incarnation", str(incarnation)]
    if "--epoch" not in cmd:
        cmd += ["--epoch", repr(epoch_unix)]
    return _spawn(proc.name, proc.module, cmd, proc.env, proc.log_path, append=True)


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
    #: anything ``f`` wants to report (returned in ``LiveResult.extra["faults"]``)
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


def stop_processes(procs: list, grace_s: float, term_wait_s: float = 3.0) -> None:
    """Wait up to ``grace_s`` for each process we started to exit, then SIGTERM, then SIGKILL: by pid.

    ``procs`` hold a ``popen`` and the ``log_file`` their output goes to
    (closed at the end); shared by ``run_live`` and the testbed's per-host runs.
    """
    deadline = time.monotonic() + grace_s
    for proc in procs:
        if proc.popen.poll() is None:
            try:
                proc.popen.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
    for proc in procs:
        if proc.popen.poll() is None:
            try:
                os.kill(proc.popen.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
    for proc in procs:
        try:
            proc.popen.wait(timeout=term_wait_s)
        except subprocess.TimeoutExpired:
            try:
                os.kill(proc.popen.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.popen.wait()
    for proc in procs:
        try:
            proc.log_file.close()
        except Exception:
            pass


def first_crashed(procs: list):
    """The first process that exited with an error, or None."""
    for proc in procs:
        code = proc.popen.poll()
        if code is not None and code != 0:
            return proc
    return None


def run_live(
    config: Mapping,
    out_dir: str | os.PathLike,
    *,
    run_id: str | None = None,
    on_start: Callable[[RunHandle], None] | None = None,
) -> LiveResult:
    """Run ``config`` live on this machine; return its records and summary (see the module doc).

    Raises ``ConfigError`` (before anything starts) for a bad setting,
    ``LiveRunError`` when a role cannot start or crashes for good, and
    ``LiveRunInterrupted`` after SIGINT or SIGTERM (records flushed first).
    """
    started = time.perf_counter()
    config = _plain_config(config)
    spec = build_run(config)
    _check_models(spec)
    settings = spec.settings
    out = Path(out_dir).absolute()
    (out / "logs").mkdir(parents=True, exist_ok=True)
    (out / "stats").mkdir(parents=True, exist_ok=True)
    config_path = out / "config.json"
    config_path.write_text(json.dumps(config, indent=1))
    run_id = run_id or "r" + uuid.uuid4().hex[:10]
    topics = Topics(run_id)
    broker = None
    client = None
    control = None
    procs: list[_Proc] = []
    restarts: dict[str, int] = {}
    handle: RunHandle | None = None
    fault_thread: threading.Thread | None = None
    fault_error: list[BaseException] = []

    # SIGINT / SIGTERM: stop in order and keep the records (a second signal: at once)
    interrupted = threading.Event()
    signals: list[int] = []

    def on_signal(signum, frame):
        if interrupted.is_set():
            raise KeyboardInterrupt(f"second {signal.Signals(signum).name}: stopping at once")
        signals.append(signum)
        interrupted.set()

    previous = {}
    if threading.current_thread() is threading.main_thread():
        for signum in (signal.SIGINT, signal.SIGTERM):
            previous[signum] = signal.signal(signum, on_signal)
    try:
        url = settings.broker_url
        if url is None:
            broker = EmbeddedBroker(out / "broker").start()
            url = broker.url
        client, _ = connect(url, auth_token=settings.auth_token, tls_trust_certs_file=settings.tls_trust_certs_file)
        import pulsar

        ready = client.subscribe(topics.ready, "orchestrator", consumer_type=pulsar.ConsumerType.Shared,
                                 initial_position=pulsar.InitialPosition.Earliest)  # fmt: skip
        control = client.create_producer(topics.control, batching_enabled=False)
        dead_letters = client.create_producer(topics.dead_letter, batching_enabled=False)
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        env["PYTHONPATH"] = _ROOT + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        if settings.auth_token:
            env[TOKEN_ENV] = settings.auth_token
        exit_after_s = settings.startup_timeout_s + settings.timeout_s + 60.0
        for name, module, extra in role_commands(spec):
            role_env = dict(env)
            if module == "live.roles.worker":
                threads = str(settings.executors[extra[1]].threads)
                role_env.update(OMP_NUM_THREADS=threads, MKL_NUM_THREADS=threads)
            cmd = [
                sys.executable, "-m", module, "--broker", url, "--run-id", run_id, "--config", str(config_path),
                "--name", name, "--stats", str(out / "stats" / f"{name}.json"), "--exit-after-s", str(exit_after_s), *extra,
            ]  # fmt: skip
            if module == "live.roles.sink":
                cmd += ["--out", str(out)]
            procs.append(_spawn(name, module, cmd, role_env, out / "logs" / f"{name}.log"))

        # every role connected and subscribed
        expected = {p.name for p in procs}
        seen: set[str] = set()
        deadline = time.monotonic() + settings.startup_timeout_s
        while seen != expected and not interrupted.is_set():
            crashed = first_crashed(procs)
            if crashed is not None:
                raise LiveRunError(f"{crashed.name} exited with code {crashed.popen.returncode} while starting; {crashed.log_path}:\n{crashed.tail()}")
            if time.monotonic() > deadline:
                missing = sorted(expected - seen)
                raise LiveRunError(f"roles not ready after {settings.startup_timeout_s:.0f}s: {', '.join(missing)}; "
                                   f"{procs[[p.name for p in procs].index(missing[0])].log_path}")  # fmt: skip
            try:
                msg = ready.receive(timeout_millis=200)
            except pulsar.Timeout:
                continue
            ready.acknowledge(msg)
            raw = msg.data()
            try:
                message = decode(raw)
            except DecodeError as error:
                dead_letters.send_async(raw, _ignore, properties={"reason": str(error), "source_topic": topics.ready})
                continue
            if message.kind is Kind.CONTROL and message.meta.get("op") == "ready":
                seen.add(message.source)
            else:
                reason = f"unexpected: a {message.kind.name} message (op {message.meta.get('op')!r}) on the ready topic"
                dead_letters.send_async(raw, _ignore, properties={"reason": reason, "source_topic": topics.ready})
        ready_s = time.perf_counter() - started

        sink = procs[0]
        epoch = math.nan
        if not interrupted.is_set():
            # the clock starts
            epoch = time.time() + _START_LEAD_S
            control.send(encode_control("start", source="run", meta={"epoch_unix": epoch, "run_id": run_id}))
            _write_run_file(out, run_id, url, epoch, procs, state="running")
            if on_start is not None:
                handle = RunHandle(run_id, out, url, broker, epoch, procs)

                def run_hook():
                    try:
                        on_start(handle)
                    except BaseException as error:  # reported after the run
                        fault_error.append(error)

                fault_thread = threading.Thread(target=run_hook, name="on_start", daemon=True)
                fault_thread.start()
            end_at = epoch + settings.timeout_s
            while sink.popen.poll() is None and time.time() < end_at and not interrupted.is_set():
                crashed = first_crashed(procs)
                if crashed is not None:
                    index = procs.index(crashed)
                    if crashed.module in _RESTARTABLE and restarts.get(crashed.name, 0) < settings.max_restarts:
                        restarts[crashed.name] = restarts.get(crashed.name, 0) + 1
                        procs[index] = _restart(crashed, epoch, restarts[crashed.name])
                        _write_run_file(out, run_id, url, epoch, procs, state="running")
                        continue
                    raise LiveRunError(f"{crashed.name} exited with code {crashed.popen.returncode}"
                                       f"{' (restarted %d times)' % restarts[crashed.name] if crashed.name in restarts else ''}; "
                                       f"{crashed.log_path}:\n{crashed.tail()}")  # fmt: skip
                time.sleep(0.05)
        stopped_by = signals[0] if interrupted.is_set() else None
        timed_out = stopped_by is None and sink.popen.poll() is None
        control.send(encode_control("stop", source="run", meta={"timed_out": timed_out, "interrupted": stopped_by is not None}))
        try:
            sink.popen.wait(timeout=30.0)  # the sink writes the records gathered so far
        except subprocess.TimeoutExpired:
            pass
        if handle is not None:
            handle.ending.set()
            fault_thread.join(timeout=60.0)
        stop_processes(procs, grace_s=10.0)
        crashed = first_crashed(procs)
        if stopped_by is None and crashed is not None and (crashed is sink or not timed_out):
            raise LiveRunError(f"{crashed.name} exited with code {crashed.popen.returncode}; {crashed.log_path}:\n{crashed.tail()}")
        if fault_error:
            raise LiveRunError(f"the on_start function failed: {fault_error[0]!r}") from fault_error[0]
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
        for proc in procs:
            path = out / "stats" / f"{proc.name}.json"
            if path.is_file():
                stats[proc.name] = json.loads(path.read_text())
        extra = {"run_id": run_id, "out_dir": str(out), "broker_url": url, "startup_s": ready_s, "roles": stats,
                 "restarts": dict(restarts), "faults": dict(handle.notes) if handle is not None else {}}  # fmt: skip
        result = LiveResult(requests, batches, plans, summary, wall_s=time.perf_counter() - started, extra=extra)
        if stopped_by is not None:
            raise LiveRunInterrupted(stopped_by, result, out)
        return result
    finally:
        if handle is not None:
            handle.ending.set()
            if fault_thread is not None:
                fault_thread.join(timeout=30.0)
        if procs:
            if client is not None and control is not None and any(p.popen.poll() is None for p in procs):
                try:
                    control.send(encode_control("stop", source="run"))
                except Exception:
                    pass
            stop_processes(procs, grace_s=5.0)
        if client is not None:
            try:
                client.close()
            except Exception:
                pass
        if broker is not None:
            broker.stop()
        if (out / "run.json").is_file():
            try:
                run_file = json.loads((out / "run.json").read_text())
                run_file["state"] = "ended"
                (out / "run.json").write_text(json.dumps(run_file, indent=1))
            except (OSError, ValueError):
                pass
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _write_run_file(out: Path, run_id: str, url: str, epoch: float, procs: list[_Proc], *, state: str) -> None:
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
        client, _ = connect(args.broker, auth_token=os.environ.get(TOKEN_ENV))
        try:
            producer = client.create_producer(Topics(args.run_id).control, batching_enabled=False)
            meta = {"epoch_unix": time.time() + _START_LEAD_S, "run_id": args.run_id} if args.control == "start" else {}
            producer.send(encode_control(args.control, source="run", meta=meta))
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
