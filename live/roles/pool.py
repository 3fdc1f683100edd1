"""The serverless pool role: function instances as real processes, started on demand.

One pool process per serverless executor consumes ``batches-<executor>``
and hands each batch to an instance: a ``python -m live.roles.worker --stdio``
subprocess, fed over its stdin and read from its stdout in the binary codec
(length-prefixed frames; never pickle). The decisions are the model's
(``spec.instance_pool.InstancePool``, which the simulator's pool drives too);
this driver starts and stops the processes and feeds it the wall clock:

- an idle warm instance of the batch's memory size (the most recently used)
  runs it; else a new instance starts, so the cold start is real: process
  start, imports (torch), model load, measured from spawn to the instance's
  ``ready``; else, at ``max_instances``, an idle instance of another size is
  reclaimed to make room; else the batch waits in FIFO order;
- an instance runs one batch at a time; when it finishes, a waiting batch
  of its size runs on it at once, else it stays warm for ``keep_alive_s``
  and is then stopped (scale to zero; ``keep_alive_s = 0`` stops it at once);
- an instance has ``threads`` threads, or one per ``mb_per_thread`` MB of
  its memory size (``live.executors.<name>``);
- each batch is billed its measured duration (plus its cold start when the
  pricing says ``bill_cold_start``) with the executor's pricing config;
- a crashed instance fails its batch (``executor_failed``); the gateway's
  scheduler retries it up to ``policy.max_retries`` times, as in the simulator;
- ``failure_probability`` (of the executor's config) is honoured as in the
  simulator: each batch handed to an instance kills that instance abruptly
  with that probability (drawn from a generator seeded by the run's seed and
  the executor's name, so a run is repeatable): during its cold start (half
  of the failures of a starting instance) or in the middle of the batch;
- the number of warm instances goes to the gateways (CONTROL ``instances``,
  read as ``InstanceStateChanged``).

The result (with ``meta.cold_start_s``, ``meta.cost``, ``meta.memory_mb``)
is published to the sending gateway's results topic before the batch is
acknowledged::

    python -m live.roles.pool --broker URL --run-id RUN --config run.json --executor lambda
"""

from __future__ import annotations

import logging
import os
import queue
import random
import subprocess
import sys
import threading
from pathlib import Path

from live.config import ExecutorSettings, RunClock, RunSpec, Topics
from live.wire.messages import ControlOp, DecodeError, Kind, Message, decode, encode_control, encode_result
from live.roles.held_sweep import AckedMark, position, sweep_held
from live.roles.role import percentiles
from live.roles.worker import accept_batch, failure_result, read_frame, redeliveries, write_frame
from spec.instance_pool import InstancePool, JobFailed, RetireInstance, RunOnInstance, StartInstance, WarmCountChanged
from spec.records import DropReason
from spec.topology import ServerlessSpec

__all__ = ["Instance", "Pool", "main"]

log = logging.getLogger("edgebatch.live")
_ROOT = str(Path(__file__).resolve().parents[2])


class Instance:
    """One function instance: a worker subprocess of a fixed memory size."""

    def __init__(self, instance_id: int, name: str, memory_mb: int, threads: int, proc: subprocess.Popen, spawned_s: float):
        self.instance_id = instance_id  # the model's
        self.name = name
        self.memory_mb = memory_mb
        self.threads = threads
        self.proc = proc
        self.spawned_s = spawned_s
        self.ready_s: float | None = None
        self.cold_start_s = 0.0  # of the batch it runs
        self.retired = False  # stopped by the pool, or exited
        self.batches = 0
        self.crash_in_run = False  # fault injection: dies in the middle of its next batch


class Pool:
    """The pool's state machine; ``send(topic, data)`` publishes, ``ack(msg)`` acknowledges.

    Everything runs on one thread: batches, instance frames and instance
    exits come in through ``inbox`` (see ``main``).
    """

    def __init__(self, spec: RunSpec, executor: str, topics: Topics, clock: RunClock, inbox, send, ack, name: str = "pool"):
        self.spec = spec
        self.executor = executor
        self.espec: ServerlessSpec = spec.cluster.executors[executor]
        self.settings: ExecutorSettings = spec.settings.executors[executor]
        self.topics, self.clock, self.inbox, self.name = topics, clock, inbox, name
        self.send, self.ack = send, ack  # publish(topic, data), acknowledge(msg): the broker stays outside
        self.gateways = [g for g in spec.gateways if executor in spec.cluster.reachable(g)]
        # jobs are (pulsar message, Message, received_s, memory_mb)
        self.model = InstancePool.from_spec(self.espec)
        self.instances: dict[int, Instance] = {}  # alive (starting, busy or idle) by the model's id
        self.cold_starts: list[float] = []
        self.services: list[float] = []
        self.billed = 0.0
        self.failed = 0
        self.failure_probability = float(getattr(self.espec, "failure_probability", 0.0) or 0.0)
        self._faults = random.Random(f"edgebatch-faults/{spec.seed}/{executor}")
        self.injected = {"cold_start": 0, "execution": 0}

    # -- batches in --------------------------------------------------------------------
    def submit(self, msg, message: Message) -> None:
        received_s = self.clock.now()
        memory_mb = message.meta.get("memory_mb")
        if not isinstance(memory_mb, int) or isinstance(memory_mb, bool) or memory_mb <= 0:
            memory_mb = self.espec.memory_mb
        self._apply(self.model.submit(received_s, (msg, message, received_s, memory_mb), memory_mb))

    @property
    def warm(self) -> int:
        return self.model.warm

    @property
    def spawned(self) -> int:
        return self.model.cold_starts

    def _apply(self, actions, exited: tuple[Instance, int] | None = None) -> None:
        """Carry out the model's actions (``exited``: the dead instance and its exit code, for ``JobFailed``)."""
        for action in actions:
            if isinstance(action, StartInstance):
                self._spawn(action.instance_id, action.memory_mb)
            elif isinstance(action, RunOnInstance):
                instance = self.instances[action.instance_id]
                instance.crash_in_run = self._fails()
                self._run(instance, action.job)
            elif isinstance(action, RetireInstance):
                self._stop(self.instances.pop(action.instance_id))
            elif isinstance(action, WarmCountChanged):
                data = encode_control(ControlOp.INSTANCES, source=self.name, meta={"executor": self.executor, "warm": action.warm})
                for gateway in self.gateways:
                    self.send(self.topics.results(gateway), data)
            elif isinstance(action, JobFailed):
                self._fail(action.job, *exited)
            # ExpireAt: the main loop polls expire()

    def _spawn(self, instance_id: int, memory_mb: int) -> None:
        threads = self.settings.threads_for(memory_mb)
        name = f"{self.executor}-i{instance_id}"
        env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads), "PYTHONUNBUFFERED": "1"}
        env["PYTHONPATH"] = _ROOT + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        cmd = [
            sys.executable, "-m", "live.roles.worker", "--stdio", "--model", self.settings.model, "--threads", str(threads),
            "--seed", str(self.spec.seed), "--epoch", repr(self.clock.epoch_unix), "--name", name, "--device", self.spec.settings.device,
        ]  # fmt: skip
        crash = self._fails()
        crash_in_start = crash and self._faults.random() < 0.5
        if crash_in_start:
            cmd.append("--crash-before-ready")
            self.injected["cold_start"] += 1
        spawned_s = self.clock.now()
        proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env, cwd=_ROOT)
        instance = Instance(instance_id, name, memory_mb, threads, proc, spawned_s)
        instance.crash_in_run = crash and not crash_in_start
        self.instances[instance_id] = instance
        threading.Thread(target=self._read, args=(instance,), daemon=True, name=f"read-{name}").start()

    def _read(self, instance: Instance) -> None:
        out = instance.proc.stdout
        while True:
            raw = read_frame(out)
            if raw is None:
                break
            self.inbox.put(("frame", instance, raw))
        self.inbox.put(("exit", instance, instance.proc.wait()))

    def _fails(self) -> bool:
        """Fault injection: does the instance that gets the next batch die (``failure_probability``)?"""
        return self.failure_probability > 0 and self._faults.random() < self.failure_probability

    def _run(self, instance: Instance, job, cold_start_s: float = 0.0) -> None:
        instance.cold_start_s = cold_start_s
        try:
            if instance.crash_in_run:
                instance.crash_in_run = False
                self.injected["execution"] += 1
                write_frame(instance.proc.stdin, encode_control(ControlOp.CRASH, source=self.name))
            write_frame(instance.proc.stdin, job[1].to_bytes())
        except OSError as error:  # it died: its exit comes through the inbox and fails the batch
            log.error("%s: cannot hand over batch %s: %s", instance.name, job[1].batch_id, error)

    # -- instances out ---------------------------------------------------------------------
    def on_frame(self, instance: Instance, raw: bytes) -> None:
        if instance.retired:
            return  # the last words of an instance the pool has stopped
        try:
            message = decode(raw)
        except DecodeError as error:
            log.error("%s sent a bad frame (%s); stopping it", instance.name, error)
            instance.proc.kill()
            return
        if message.op is ControlOp.READY:
            now_s = self.clock.now()
            instance.ready_s = now_s
            cold_s = now_s - instance.spawned_s
            self.cold_starts.append(cold_s)
            self._apply(self.model.instance_started(now_s, instance.instance_id))
            self._run(instance, self.model.job(instance.instance_id), cold_start_s=cold_s)
        elif message.kind is Kind.RESULT and self.model.state(instance.instance_id) == "busy":
            self._finished(instance, message)

    def _finished(self, instance: Instance, result: Message) -> None:
        msg, batch, received_s, memory_mb = self.model.job(instance.instance_id)
        gateway = batch.source
        cold_s = instance.cold_start_s
        if result.meta.get("failed"):
            data = failure_result(batch, source=instance.name, executor=self.executor, reason=str(result.meta.get("reason")),
                                  detail=str(result.meta.get("error", "")), ts={"received_s": received_s},
                                  meta={"redelivered": redeliveries(msg)})  # fmt: skip
            self.failed += 1
        else:
            service_s = float(result.ts.get("service_s", 0.0))
            cost = self.model.batch_cost(duration_s=service_s, cold_start_s=cold_s, memory_mb=memory_mb)
            self.billed += cost
            self.services.append(service_s)
            data = encode_result(
                batch.batch_id, batch.ids, result.payloads(), source=instance.name, labels=result.labels,
                ts={**result.ts, "received_s": received_s},
                meta={"executor": self.executor, "cost": cost, "cold_start_s": cold_s, "memory_mb": memory_mb,
                      "instance": instance.name, "threads": instance.threads, "redelivered": redeliveries(msg)},
            )  # fmt: skip
        instance.batches += 1
        self.send(self.topics.results(gateway), data)  # published, then acked
        self.ack(msg)
        self._apply(self.model.finished(self.clock.now(), instance.instance_id))

    def _stop(self, instance: Instance) -> None:
        instance.retired = True
        try:
            instance.proc.stdin.close()  # end of stdin: the instance exits
        except OSError:
            pass

    def on_exit(self, instance: Instance, returncode: int) -> None:
        """An instance process ended: expected after retiring, a crash otherwise."""
        if instance.retired:
            return
        log.error("%s exited with code %s while %s", instance.name, returncode, self.model.state(instance.instance_id))
        self._stop(self.instances.pop(instance.instance_id))
        self._apply(self.model.failed(self.clock.now(), instance.instance_id), exited=(instance, returncode))

    def _fail(self, job, instance: Instance, returncode: int) -> None:
        msg, batch, received_s, _ = job
        self.failed += 1
        self.send(self.topics.results(batch.source), failure_result(
            batch, source=instance.name, executor=self.executor, reason=DropReason.EXECUTOR_FAILED,
            detail=f"instance exited with code {returncode}", ts={"received_s": received_s}, meta={"redelivered": redeliveries(msg)},
        ))  # fmt: skip
        self.ack(msg)

    # -- time ------------------------------------------------------------------------------
    def expire(self) -> float | None:
        """Stop instances idle past their keep-alive; return the next expiry (None: none idle)."""
        self._apply(self.model.expire(self.clock.now()))
        return self.model.next_expiry_s

    def shutdown(self, grace_s: float = 5.0) -> None:
        """Stop every instance (end of stdin, then kill after ``grace_s``)."""
        procs = [i.proc for i in self.instances.values()]
        self._apply(self.model.close(self.clock.now()))
        for proc in procs:
            try:
                proc.wait(timeout=grace_s)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def stats(self) -> dict:
        return {
            "executor": self.executor,
            "instances_started": self.spawned,
            "peak_instances": self.model.peak_instances,
            "cold_start_s": percentiles(self.cold_starts),
            "cold_starts_list_s": self.cold_starts[:100],
            "service_s": percentiles(self.services),
            "batches": len(self.services) + self.failed,
            "failed": self.failed,
            "injected_failures": dict(self.injected),
            "billed": self.billed,
        }


def main(argv=None) -> int:
    from live.roles.role import Role, common_parser

    parser = common_parser("A serverless pool: instances as processes started on demand.")
    parser.add_argument("--executor", required=True)
    args = parser.parse_args(argv)
    role = None
    pool = None
    try:
        role = Role(args, "pool", f"pool-{args.executor}")
        spec = role.spec
        settings = spec.settings.executors.get(args.executor)
        if settings is None or not settings.serverless:
            raise SystemExit(f"--executor must name a serverless executor of the config, not {args.executor!r}")
        inbox: queue.SimpleQueue = queue.SimpleQueue()
        in_topic = role.topics.batches(args.executor)
        role.skip_consumer_ids(args.incarnation)  # not the id of a dead predecessor's consumer (pulsar-lite)
        consumer = role.subscribe(in_topic, "pool", receiver_queue_size=100,
                                  message_listener=lambda c, m: inbox.put(("batch", c, m)))  # fmt: skip
        # what a killed predecessor held unread (its receiver queue, its inbox) may never come again (pulsar-lite):
        # its bad messages are swept from the furthest batch it took (live.roles.held_sweep)
        mark = AckedMark(Path(args.config).resolve().parent / f"{role.name}.acked", restarted=args.incarnation > 0, forward_only=True)
        dlq, clock = role.ready_to_serve()
        if clock is None:
            return 0
        pool = Pool(spec, args.executor, role.topics, clock, inbox,
                    send=lambda topic, data: role.producer(topic).send(data), ack=consumer.acknowledge, name=role.name)  # fmt: skip
        gateways = set(spec.gateways)
        swept = sweep_held(role.client, in_topic, mark.before,
                           lambda raw: accept_batch(raw, gateways, args.executor, dlq, in_topic) is None)[0] if args.incarnation else set()
        dead = len(swept)
        while not role.should_stop():
            next_s = pool.expire()
            wait_s = 0.2 if next_s is None else min(0.2, max(0.001, next_s - clock.now()))
            try:
                kind, a, b = inbox.get(timeout=wait_s)
            except queue.Empty:
                continue
            if kind == "batch":
                message = None if swept and position(b) in swept else accept_batch(b.data(), gateways, args.executor, dlq, in_topic)
                mark.acked(b)  # taken: a bad one is on the dead-letter topic by now (a synchronous send)
                if message is None:
                    dead += position(b) not in swept
                    a.acknowledge(b)
                    continue
                pool.submit(b, message)
            elif kind == "frame":
                pool.on_frame(a, b)
            else:
                pool.on_exit(a, b)
        mark.close(remove=True)
        role.stats.update(pool.stats(), dead_letters=dead, swept_dead_letters=len(swept))
        return 0
    finally:
        if pool is not None:
            pool.shutdown()
        if role is not None:
            role.close()


if __name__ == "__main__":
    raise SystemExit(main())
