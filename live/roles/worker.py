"""The worker role: runs an executor's PyTorch model on whole batches.

Broker mode (a server executor's replica)::

    python -m live.roles.worker --broker URL --run-id RUN --config run.json --executor edge --replica 0

(each replica of an executor with its own ``--replica`` index) consumes ``batches-<executor>`` on a Shared subscription (replicas share the
load), runs the model on each batch as one tensor, publishes a RESULT to
``results-<gateway>`` (the gateway that sent the batch), and acknowledges the
batch only after the result is published. A message that does not decode, or
is not a batch this worker can run, goes to the dead-letter topic with the
reason; it is acknowledged and the worker goes on.

Stdio mode (one serverless instance, started by ``live.roles.pool``)::

    python -m live.roles.worker --stdio --model mlp --threads 1 --seed 0 --epoch 1700000000.0

reads BATCH messages from stdin and writes RESULT messages to stdout, each
framed by a 4-byte big-endian length, with the binary codec (never pickle).
It first writes a CONTROL ``ready`` once its imports and model load are done
(``meta.import_s``, ``meta.load_s``); its process start up to then is the
measured cold start. End of stdin ends it.

A result's ``ts`` has ``received_s``, ``start_s``, ``end_s`` and
``service_s`` on the run's clock (``service_s`` is the measured time of
tensor conversion plus the forward pass); ``meta`` has the executor, the
worker's name, ``redelivered`` (the broker's redelivery count of the batch:
more than 0 when a worker died holding it) and, from a worker, the batch's
``cost``. A model error gives a result with ``meta.failed`` and
``meta.reason``.

A worker killed mid-batch never acknowledged it, so the broker delivers it
again to another replica (or to the worker the orchestrator restarts); if
the dead worker had already published its result, the gateway ignores the
second one. Delivery is at-least-once; the gateway and the sink deduplicate.

Fault injection (used by ``live.roles.pool`` for ``failure_probability``): an
instance started with ``--crash-before-ready`` exits abruptly during its
cold start; a CONTROL ``crash`` frame makes it exit abruptly in the middle
of its next batch (after the forward pass, before the result is written).
"""

from __future__ import annotations

import argparse
import logging
import os
import struct
import sys
import time
from pathlib import Path
from typing import BinaryIO

from live.roles.held_sweep import AckedMark, position, sweep_held
from live.wire.messages import ControlOp, DecodeError, Kind, Message, WireSettings, configure, dead_letter, decode, encode_control, encode_result, key_from_env

__all__ = ["ModelRunner", "read_frame", "write_frame", "check_batch", "accept_batch", "execute_batch", "failure_result", "redeliveries", "CRASH_EXIT_CODE", "main"]

log = logging.getLogger("edgebatch.live")
_FRAME = struct.Struct(">I")
MAX_FRAME_BYTES = 1 << 30


def write_frame(fp: BinaryIO, data: bytes) -> None:
    """One length-prefixed frame."""
    fp.write(_FRAME.pack(len(data)))
    fp.write(data)
    fp.flush()


def _read_exact(fp: BinaryIO, n: int) -> bytes | None:
    chunks, got = [], 0
    while got < n:
        chunk = fp.read(n - got)
        if not chunk:
            return None
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


def read_frame(fp: BinaryIO) -> bytes | None:
    """The next frame; None at end of stream (or on a cut or oversized frame)."""
    head = _read_exact(fp, _FRAME.size)
    if head is None:
        return None
    (n,) = _FRAME.unpack(head)
    if n > MAX_FRAME_BYTES:
        return None
    return _read_exact(fp, n)


class ModelRunner:
    """One executor's model, built once with seeded weights; runs whole batches."""

    def __init__(self, model: str, threads: int, seed: int = 0, device: str = "cpu"):
        started = time.perf_counter()
        from live import models  # torch: part of a cold start

        self.import_s = time.perf_counter() - started
        started = time.perf_counter()
        models.set_threads(threads)
        self.models = models
        self.name = model
        self.device = models.resolve_device(device)
        self.model = models.build_model(model, seed=seed, device=self.device)
        # one warm-up pass so that the first batch does not pay for lazy initialization
        models.outputs_to_records(models.run_batch(self.model, models.payload_to_tensor(model, [b""], self.device)))
        self.load_s = time.perf_counter() - started

    def run(self, message: Message, now) -> tuple[list[int], list[bytes], float, float]:
        """Labels, raw outputs, start and end (from ``now()``) of one batch (on the device: copy in and out included)."""
        models = self.models
        start_s = now()
        tensor = models.payload_to_tensor(self.name, message.payloads(), self.device)
        labels, outputs = models.outputs_to_records(models.run_batch(self.model, tensor))
        end_s = now()
        return labels, outputs, start_s, end_s


def check_batch(message: Message, gateways, executor: str | None) -> str | None:
    """Why ``message`` is not a batch this executor can run (None when it is)."""
    if message.kind is not Kind.BATCH:
        return f"unexpected: a {message.kind.name} message on a batch topic"
    if message.source not in gateways:
        return f"unexpected: batch from unknown gateway {message.source!r}"
    named = message.meta.get("executor")
    if executor is not None and named is not None and named != executor:
        return f"unexpected: batch for executor {named!r} on {executor!r}'s topic"
    return None


def accept_batch(raw: bytes, gateways, executor: str | None, dlq, topic: str) -> Message | None:
    """Decode and check a batch; a bad one goes to the dead-letter topic and None comes back."""
    try:
        message = decode(raw)
        problem = check_batch(message, gateways, executor)
    except DecodeError as error:
        problem = str(error)
    if problem is None:
        return message
    dead_letter(dlq, raw, problem, topic)
    return None


def redeliveries(msg) -> int:
    """The broker's redelivery count of a received message (0 when unknown)."""
    try:
        count = int(msg.redelivery_count())
    except Exception:  # not a pulsar message (a unit test's stand-in), or a client without the count
        return 0
    return max(count, 0)


#: the exit status of an instance that crashes on purpose (fault injection)
CRASH_EXIT_CODE = 70


def failure_result(message: Message, *, source: str, executor: str, reason: str, detail: str, ts=None, meta=None) -> bytes:
    """A RESULT saying the batch failed (its requests are dropped with ``reason``)."""
    return encode_result(
        message.batch_id, message.ids, source=source, ts=dict(ts or {}),
        meta={**(meta or {}), "executor": executor, "failed": True, "reason": reason, "error": detail[:500]},
    )  # fmt: skip


def execute_batch(runner: ModelRunner, message: Message, *, source: str, executor, threads: int, received_s: float,
                  redelivered: int, now) -> tuple[bytes, float | None]:
    """Run one checked batch on ``runner``: its signed RESULT, and its service time (None: the model failed).

    ``executor`` is the executor's spec (its pricing gives the batch's cost). A worker process and an
    inline executor (``live.roles.inline_executor``) both run batches through here, so their results match.
    """
    try:
        labels, outputs, start_s, end_s = runner.run(message, now)
    except Exception as error:  # a model error fails the batch, not the worker
        log.exception("batch %s failed", message.batch_id)
        data = failure_result(message, source=source, executor=executor.name, reason="executor_failed",
                              detail=repr(error), ts={"received_s": received_s}, meta={"redelivered": redelivered})  # fmt: skip
        return data, None
    service_s = end_s - start_s
    cost = executor.pricing.batch_cost(duration_s=service_s, memory_mb=None)
    data = encode_result(
        message.batch_id, message.ids, outputs, source=source, labels=labels,
        ts={"received_s": received_s, "start_s": start_s, "end_s": end_s, "service_s": service_s},
        meta={"executor": executor.name, "cost": cost, "cold_start_s": 0.0, "threads": threads, "redelivered": redelivered},
    )  # fmt: skip
    return data, service_s


# ---------------------------------------------------------------------------
# Broker mode
# ---------------------------------------------------------------------------


def serve_broker(argv) -> int:
    from live.roles.role import Role, common_parser, percentiles

    parser = common_parser("A worker replica of a server executor.")
    parser.add_argument("--executor", required=True)
    parser.add_argument("--replica", type=int, default=0,
                        help="this replica's index among the executor's replicas (0, 1, ...; distinct per replica, see Role.skip_consumer_ids)")
    args = parser.parse_args(argv)
    role = None
    try:
        role = Role(args, "worker", f"worker-{args.executor}")
        spec = role.spec
        settings = spec.settings.executors.get(args.executor)
        if settings is None or settings.serverless:
            raise SystemExit(f"--executor must name a server executor of the config, not {args.executor!r}")
        executor_spec = spec.cluster.executors[args.executor]
        runner = ModelRunner(settings.model, settings.threads, spec.seed, spec.settings.device)
        import pulsar

        in_topic = role.topics.batches(args.executor)
        # distinct from every other replica's id and from those of this replica's dead predecessors (pulsar-lite)
        role.skip_consumer_ids(args.replica + args.incarnation * settings.replicas)
        consumer = role.subscribe(in_topic, "workers", receiver_queue_size=1)
        # what a killed predecessor held may never come again (pulsar-lite): its bad messages are swept (live.roles.held_sweep)
        mark = AckedMark(Path(args.config).resolve().parent / f"{role.name}.acked", restarted=args.incarnation > 0)
        dlq, clock = role.ready_to_serve()
        if clock is None:
            return 0
        gateways = set(spec.gateways)
        services, dead, redelivered = [], 0, 0
        swept = sweep_held(role.client, in_topic, mark.before,
                           lambda raw: accept_batch(raw, gateways, args.executor, dlq, in_topic) is None)[0] if args.incarnation else set()
        dead += len(swept)
        while not role.should_stop():
            try:
                msg = consumer.receive(timeout_millis=100)
            except pulsar.Timeout:
                continue
            received_s = clock.now()
            raw = msg.data()
            if redeliveries(msg):
                redelivered += 1
            message = None if swept and position(msg) in swept else accept_batch(raw, gateways, args.executor, dlq, in_topic)
            if message is None:
                dead += position(msg) not in swept
                consumer.acknowledge(msg)
                mark.acked(msg)
                continue
            data, service_s = execute_batch(runner, message, source=role.name, executor=executor_spec, threads=settings.threads,
                                            received_s=received_s, redelivered=redeliveries(msg), now=clock.now)  # fmt: skip
            if service_s is not None:
                services.append(service_s)
            role.producer(role.topics.results(message.source)).send(data)  # published, then acked
            consumer.acknowledge(msg)
            mark.acked(msg)
        mark.close(remove=True)
        role.stats.update(executor=args.executor, batches=len(services), dead_letters=dead, swept_dead_letters=len(swept), service_s=percentiles(services), redelivered=redelivered,
                          model=settings.model, threads=settings.threads, import_s=runner.import_s, load_s=runner.load_s)  # fmt: skip
        return 0
    finally:
        if role is not None:
            role.close()


# ---------------------------------------------------------------------------
# Stdio mode (a serverless instance)
# ---------------------------------------------------------------------------


def serve_stdio(argv) -> int:
    parser = argparse.ArgumentParser(description="One serverless instance on stdin/stdout (started by live.roles.pool).")
    parser.add_argument("--stdio", action="store_true", required=True)
    parser.add_argument("--model", required=True)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu", help="auto, cpu or cuda (live.device)")
    parser.add_argument("--epoch", type=float, required=True)
    parser.add_argument("--name", default=f"instance-{os.getpid()}")
    parser.add_argument("--crash-before-ready", action="store_true", help="fault injection: exit abruptly during the cold start")
    args = parser.parse_args(argv)
    # keep the frames clean: our stdout is the pipe; anything printed goes to stderr
    out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    inp = os.fdopen(os.dup(0), "rb")
    from live.config import RunClock

    clock = RunClock(args.epoch)
    configure(WireSettings(key=key_from_env()))  # the pool's key: it passes signed batches on unchanged
    runner = ModelRunner(args.model, args.threads, args.seed, args.device)
    if args.crash_before_ready:
        os._exit(CRASH_EXIT_CODE)  # dies in its cold start: imports and model load done, never ready
    crash_next = False
    write_frame(out, encode_control(ControlOp.READY, source=args.name, meta={"import_s": runner.import_s, "load_s": runner.load_s, "pid": os.getpid()}))
    while True:
        raw = read_frame(inp)
        if raw is None:
            return 0
        received_s = clock.now()
        try:
            message = decode(raw)
        except DecodeError as error:  # the pool checked it; a torn pipe is all this can be
            log.error("instance got a bad frame: %s", error)
            return 1
        if message.kind is Kind.CONTROL:
            crash_next = crash_next or message.op is ControlOp.CRASH
            continue
        try:
            labels, outputs, start_s, end_s = runner.run(message, clock.now)
            if crash_next:
                os._exit(CRASH_EXIT_CODE)  # dies in the middle of the batch: no result
        except Exception as error:
            data = failure_result(message, source=args.name, executor="", reason="executor_failed", detail=repr(error),
                                  ts={"received_s": received_s})  # fmt: skip
        else:
            data = encode_result(
                message.batch_id, message.ids, outputs, source=args.name, labels=labels,
                ts={"received_s": received_s, "start_s": start_s, "end_s": end_s, "service_s": end_s - start_s},
                meta={"threads": args.threads},
            )  # fmt: skip
        write_frame(out, data)


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if "--stdio" in argv:
        return serve_stdio(argv)
    return serve_broker(argv)


if __name__ == "__main__":
    raise SystemExit(main())
