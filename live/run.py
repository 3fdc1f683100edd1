"""One live run on this machine: every role as a subprocess, on a real broker.

``run_live(config, out_dir)`` takes the simulator's config mapping (plus the
``live`` section of ``live.config``) and:

1. checks and builds it exactly as every role will (a bad setting fails
   here, naming the field);
2. starts the embedded pulsar-lite broker (data and log under
   ``out_dir/broker``) unless ``live.broker.url`` names one;
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

    python -m live.run --config run.json --out results/live1

A role that crashes ends the run with ``LiveRunError`` and its log's tail.
To run the roles on separate machines, start each role's module by hand with
the same ``--broker``, ``--run-id`` and ``--config`` (see ``live.role``),
then start the clock and, at the end, stop the roles::

    python -m live.run --control start --broker pulsar://host:6650 --run-id RUN
    python -m live.run --control stop --broker pulsar://host:6650 --run-id RUN
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from live.broker import EmbeddedBroker, connect
from live.config import RunSpec, Topics, build_run
from live.messages import DecodeError, Kind, decode, encode_control
from live.role import TOKEN_ENV
from spec.validation import ConfigError

__all__ = ["LiveResult", "LiveRunError", "run_live", "role_commands", "main"]

_ROOT = str(Path(__file__).resolve().parent.parent)
_START_LEAD_S = 0.3


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


@dataclass
class _Proc:
    name: str
    module: str
    popen: subprocess.Popen
    log_path: Path
    log_file: object

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
    roles: list[tuple[str, str, list[str]]] = [("sink", "live.sink", [])]
    for name, settings in spec.settings.executors.items():
        if settings.serverless:
            roles.append((f"pool-{name}", "live.pool", ["--executor", name]))
        else:
            for k in range(settings.replicas):
                roles.append((f"worker-{name}-{k}", "live.worker", ["--executor", name, "--replica", str(k)]))
    for gateway in spec.gateways:
        roles.append((f"gateway-{gateway}", "live.gateway", ["--gateway", gateway]))
    for source in spec.workload.sources:
        roles.append((f"source-{source.name}", "live.source", ["--source", source.name]))
    return roles


def _stop(procs: list[_Proc], grace_s: float) -> None:
    """SIGTERM then SIGKILL each process we started, by pid."""
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
            proc.popen.wait(timeout=3.0)
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


def _crashed(procs: list[_Proc]) -> _Proc | None:
    for proc in procs:
        code = proc.popen.poll()
        if code is not None and code != 0:
            return proc
    return None


def run_live(config: Mapping, out_dir: str | os.PathLike, *, run_id: str | None = None) -> LiveResult:
    """Run ``config`` live on this machine; return its records and summary (see the module doc)."""
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
    procs: list[_Proc] = []
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
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        env["PYTHONPATH"] = _ROOT + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        if settings.auth_token:
            env[TOKEN_ENV] = settings.auth_token
        exit_after_s = settings.startup_timeout_s + settings.timeout_s + 60.0
        for name, module, extra in role_commands(spec):
            role_env = dict(env)
            if module == "live.worker":
                threads = str(settings.executors[extra[1]].threads)
                role_env.update(OMP_NUM_THREADS=threads, MKL_NUM_THREADS=threads)
            cmd = [
                sys.executable, "-m", module, "--broker", url, "--run-id", run_id, "--config", str(config_path),
                "--name", name, "--stats", str(out / "stats" / f"{name}.json"), "--exit-after-s", str(exit_after_s), *extra,
            ]  # fmt: skip
            if module == "live.sink":
                cmd += ["--out", str(out)]
            log_path = out / "logs" / f"{name}.log"
            log_file = open(log_path, "wb")
            popen = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log_file, stderr=subprocess.STDOUT, cwd=_ROOT, env=role_env)
            procs.append(_Proc(name, module, popen, log_path, log_file))

        # every role connected and subscribed
        expected = {p.name for p in procs}
        seen: set[str] = set()
        deadline = time.monotonic() + settings.startup_timeout_s
        while seen != expected:
            crashed = _crashed(procs)
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
            try:
                message = decode(msg.data())
            except DecodeError:
                continue
            if message.kind is Kind.CONTROL and message.meta.get("op") == "ready":
                seen.add(message.source)
        ready_s = time.perf_counter() - started

        # the clock starts
        epoch = time.time() + _START_LEAD_S
        control.send(encode_control("start", source="run", meta={"epoch_unix": epoch, "run_id": run_id}))
        sink = procs[0]
        end_at = epoch + settings.timeout_s
        while sink.popen.poll() is None and time.time() < end_at:
            crashed = _crashed(procs)
            if crashed is not None:
                raise LiveRunError(f"{crashed.name} exited with code {crashed.popen.returncode}; {crashed.log_path}:\n{crashed.tail()}")
            time.sleep(0.05)
        timed_out = sink.popen.poll() is None
        control.send(encode_control("stop", source="run", meta={"timed_out": timed_out}))
        try:
            sink.popen.wait(timeout=30.0)
        except subprocess.TimeoutExpired:
            pass
        _stop(procs, grace_s=10.0)
        crashed = _crashed(procs)
        if crashed is not None and (crashed is sink or not timed_out):
            raise LiveRunError(f"{crashed.name} exited with code {crashed.popen.returncode}; {crashed.log_path}:\n{crashed.tail()}")
        if not (out / "requests.parquet").is_file():
            raise LiveRunError(f"the sink wrote no tables; {sink.log_path}:\n{sink.tail()}")
        requests = pd.read_parquet(out / "requests.parquet")
        batches = pd.read_parquet(out / "batches.parquet")
        plans_path = out / "plans.jsonl"
        plans = pd.DataFrame([json.loads(line) for line in plans_path.read_text().splitlines() if line.strip()]) if plans_path.is_file() else pd.DataFrame()
        summary = json.loads((out / "summary.json").read_text())  # NaN round-trips through Python's json
        summary["timed_out"] = timed_out
        stats = {}
        for proc in procs:
            path = out / "stats" / f"{proc.name}.json"
            if path.is_file():
                stats[proc.name] = json.loads(path.read_text())
        extra = {"run_id": run_id, "out_dir": str(out), "broker_url": url, "startup_s": ready_s, "roles": stats}
        return LiveResult(requests, batches, plans, summary, wall_s=time.perf_counter() - started, extra=extra)
    finally:
        if procs:
            if client is not None and any(p.popen.poll() is None for p in procs):
                try:
                    control.send(encode_control("stop", source="run"))
                except Exception:
                    pass
            _stop(procs, grace_s=5.0)
        if client is not None:
            try:
                client.close()
            except Exception:
                pass
        if broker is not None:
            broker.stop()


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
    config = load_config(args.config)
    if args.broker:
        config.setdefault("live", {}).setdefault("broker", {})["url"] = args.broker
    result = run_live(config, args.out, run_id=args.run_id)
    keys = ("count", "completed", "dropped", "latency_p50_s", "latency_p95_s", "latency_p99_s", "slo_attainment",
            "mean_batch_size", "batches", "cold_starts", "total_cost", "complete")  # fmt: skip
    print(json.dumps({k: result.summary.get(k) for k in keys}, indent=1, default=str))
    print(f"wrote {args.out}: requests.parquet, batches.parquet, plans.jsonl, summary.json, logs/, stats/ ({result.wall_s:.1f}s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
