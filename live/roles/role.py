"""What every live role process shares: its command line, its broker connection, and the run's control topic.

Each role (source, gateway, worker, pool, sink) is a process that may run on
its own machine of a testbed::

    python -m live.<role> --broker pulsar://host:6650 --run-id RUN --config run.json [--name NAME] ...

The run's start is broadcast on the control topic as ``CONTROL op="start"``
with ``meta.epoch_unix`` (the wall-clock time of ``now_s = 0``); ``--epoch``
gives it directly instead. ``op="stop"`` ends every role. Each role process
subscribes to the control topic under a subscription of its own (its name
and pid), from the earliest message, so a role started late, or restarted
after a crash, still sees the start (and a stop).
A role announces itself on the ``ready`` topic once it is connected and
subscribed, so that the orchestrator starts the clock only when every
consumer is in place.

Anything on the control topic that is not a well-formed ``start`` or
``stop`` (bytes that do not decode, another kind of message, an unknown op)
goes to the run's dead-letter topic with the reason, and the role goes on.
Every role sends its dead letters through ``Role.dead_letter``.

The auth token is read from ``--auth-token``, else the environment variable
``EDGEBATCH_PULSAR_TOKEN`` (which keeps it off the process list), else the
config's ``live.broker.auth_token``.
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import math
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

from live.deploy.lifeline import watch
from live.wire.broker import connect
from live.config import RunClock, RunSpec, Topics, load_run
from live.wire.messages import KEY_ENV, ControlOp, DecodeError, Kind, WireSettings, bounded_reason, configure, decode, encode_control, key_from_env

__all__ = ["Role", "common_parser", "TOKEN_ENV", "percentiles", "wire_settings_of"]

TOKEN_ENV = "EDGEBATCH_PULSAR_TOKEN"
#: an orphaned role stops as on SIGTERM, and exits for sure this long after
_ORPHAN_GRACE_S = 10.0
log = logging.getLogger("edgebatch.live")


def common_parser(description: str) -> argparse.ArgumentParser:
    """The arguments every role takes."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--broker", help="Pulsar service URL (default: the config's live.broker.url)")
    parser.add_argument("--run-id", required=True, help="the run's id: part of every topic name")
    parser.add_argument("--config", required=True, help="the run config (JSON)")
    parser.add_argument("--name", help="this process's name (unique in the run; default from role, host and pid)")
    parser.add_argument("--epoch", type=float, help="wall-clock time (unix s) of the run's start; default: wait for it on the control topic")
    parser.add_argument("--auth-token", help=f"broker token (better: the {TOKEN_ENV} environment variable)")
    parser.add_argument("--tls-trust-certs-file", help="CA file for pulsar+ssl://")
    parser.add_argument("--stats", help="write this role's statistics (JSON) here on exit")
    parser.add_argument("--exit-after-s", type=float, help="give up and exit this long after starting (a safety net)")
    parser.add_argument("--log-level", default="WARNING")
    parser.add_argument("--lifeline", action="store_true",
                        help="stop when standard input reaches end-of-file: the process that started this one died (live.deploy.lifeline)")
    parser.add_argument("--incarnation", type=int, default=0,
                        help="how many times this role was restarted in the run (set by live.deploy.local; see Role.skip_consumer_ids)")
    return parser


def percentiles(values) -> dict[str, float]:
    """count, p50, p99, max, mean of a list of numbers (empty: count 0)."""
    values = sorted(float(v) for v in values)
    if not values:
        return {"count": 0}
    n = len(values)
    return {
        "count": n,
        "p50": values[min(n - 1, int(0.5 * n))],
        "p99": values[min(n - 1, int(0.99 * n))],
        "max": values[-1],
        "mean": sum(values) / n,
    }


def wire_settings_of(settings) -> WireSettings:
    """This process's codec settings: the run key from the environment when the run authenticates, the limits."""
    try:
        key = key_from_env() if settings.authenticate else None
    except ValueError as error:
        raise SystemExit(f"error: {error}") from None
    if settings.authenticate and key is None:
        raise SystemExit(f"error: live.authenticate is on but {KEY_ENV} is not set (a local run sets it for its roles; "
                         "on a testbed export the same key, 32 or more hex digits, on every host)")
    return WireSettings(key=key, limits=settings.limits)


class Role:
    """A role's connection to the run: client, control topic, producers, stats."""

    def __init__(self, args: argparse.Namespace, kind: str, default_name: str):
        logging.basicConfig(level=getattr(logging, str(args.log_level).upper(), logging.WARNING),
                            format=f"%(asctime)s {kind} %(levelname)s %(message)s", stream=sys.stderr)
        self.args = args
        self.started_at = time.monotonic()
        self.name = args.name or f"{default_name}-{os.uname().nodename}-{os.getpid()}"
        self.spec: RunSpec = load_run(args.config)
        self.topics = Topics(args.run_id)
        settings = self.spec.settings
        configure(wire_settings_of(settings))
        url = args.broker or settings.broker_url
        if not url:
            raise SystemExit("--broker is required (the config's live.broker.url is null)")
        token = args.auth_token or os.environ.get(TOKEN_ENV) or settings.auth_token
        self.client, _ = connect(url, auth_token=token, tls_trust_certs_file=args.tls_trust_certs_file or settings.tls_trust_certs_file)
        self.stop = threading.Event()
        self._epoch: float | None = args.epoch
        self._started = threading.Event()
        if self._epoch is not None:
            self._started.set()
        self._producers: dict[str, Any] = {}
        #: a source sets this: called with each CONTROL ``resend`` (from a restarted gateway)
        self.on_resend = None
        self.stats: dict[str, Any] = {"role": kind, "name": self.name}
        self._send_errors = 0
        self.dead_letters = 0
        # before the control subscription: a bad control message goes to the dead-letter topic
        self._dead_letter_producer = self.producer(self.topics.dead_letter)
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, self._on_signal)
            signal.signal(signal.SIGINT, self._on_signal)
        if getattr(args, "lifeline", False):
            watch(self._orphaned)
        import pulsar

        self._control = self.client.subscribe(
            self.topics.control,
            f"control-{self.name}-{os.getpid()}",
            consumer_type=pulsar.ConsumerType.Shared,
            initial_position=pulsar.InitialPosition.Earliest,
            message_listener=self._on_control,
        )

    # -- control -----------------------------------------------------------------
    def _close_run_cpu(self) -> None:
        """The run's CPU window closes at the stop (what follows, writing tables and stats, is not the run's work)."""
        window = getattr(self, "_run_cpu", None)
        if window is not None and len(window) == 1:
            window.append((time.process_time(), time.monotonic()))

    def _on_signal(self, signum, frame) -> None:
        self._close_run_cpu()
        self.stop.set()
        self._started.set()

    def _orphaned(self) -> None:
        """The process that started this one is gone: stop as on SIGTERM, and exit for sure soon after."""
        log.warning("%s: the process that started it is gone; stopping", self.name)
        self.stop.set()
        self._started.set()
        deadline = threading.Timer(_ORPHAN_GRACE_S, os._exit, args=(3,))
        deadline.daemon = True  # a role that stops in time exits as usual
        deadline.start()

    def _on_control(self, consumer, msg) -> None:
        raw = msg.data()
        try:
            message = decode(raw)
        except DecodeError as error:
            self.dead_letter(raw, str(error), self.topics.control)
            consumer.acknowledge(msg)
            return
        op = message.op
        if message.kind is not Kind.CONTROL:
            self.dead_letter(raw, f"unexpected: a {message.kind.name} message on the control topic", self.topics.control)
        elif op is ControlOp.START:
            epoch = message.meta.get("epoch_unix")
            if not isinstance(epoch, (int, float)) or isinstance(epoch, bool) or not math.isfinite(epoch):
                self.dead_letter(raw, f"unexpected: a start without a finite epoch_unix ({epoch!r})", self.topics.control)
            elif self._epoch is None:
                self._epoch = float(epoch)
                self._run_cpu = [(time.process_time(), time.monotonic())]  # the run's CPU window opens (write_stats)
                self._started.set()
        elif op is ControlOp.STOP:
            self._close_run_cpu()
            self.stop.set()
            self._started.set()
        elif op is ControlOp.RESEND:
            if self.on_resend is not None:  # a source: the ids it holds are sent again; any other role ignores it
                self.on_resend(message)
        else:
            self.dead_letter(raw, f"unexpected: control op {op.value!r} (one of start, stop, resend)", self.topics.control)
        consumer.acknowledge(msg)

    def dead_letter(self, raw: bytes, reason: str, source_topic: str) -> None:
        """Publish ``raw`` unchanged to the run's dead-letter topic, with ``reason`` and ``source_topic``."""
        self.dead_letters += 1
        self._dead_letter_producer.send_async(bytes(raw), self._sent, properties={"reason": bounded_reason(reason), "source_topic": str(source_topic)})

    def announce_ready(self) -> None:
        """Tell the orchestrator that this role is connected and subscribed."""
        producer = self.producer(self.topics.ready)
        # what was built so far (modules, torch, the config) lives for the whole run: out of the collector's
        # sight, so that a full collection during the run scans only what the run allocates (with torch
        # loaded, one such pass took ~100 ms, and a request waiting behind it paid them). No collection
        # first: that pass itself delayed a restarted worker's ready past a short run's end
        gc.freeze()
        self._cpu_at_ready_s = time.process_time()  # the stats' cpu_s counts from here (experiments.calibrate)
        producer.send(encode_control(ControlOp.READY, source=self.name, meta={"role": self.stats["role"], "pid": os.getpid()}))

    def ready_to_serve(self):
        """For an executor role: open the dead-letter producer and every gateway's results producer,
        say ready, and wait for the start. Returns ``(dead_letter_producer, clock)``; clock None: stop."""
        dlq = self.producer(self.topics.dead_letter)
        for gateway in self.spec.gateways:
            self.producer(self.topics.results(gateway))
        self.announce_ready()
        return dlq, self.wait_start()

    def clock_or_none(self) -> RunClock | None:
        """The run's clock once it has started, else None (does not wait)."""
        return RunClock(self._epoch) if self._epoch is not None else None

    def wait_start(self) -> RunClock | None:
        """Block until the run starts; None when told to stop (or out of time) first."""
        while not self._started.wait(0.1):
            if self.expired():
                return None
        if self._epoch is None or self.stop.is_set():
            return None
        return RunClock(self._epoch)

    def expired(self) -> bool:
        limit = self.args.exit_after_s
        return limit is not None and time.monotonic() - self.started_at > limit

    def should_stop(self) -> bool:
        return self.stop.is_set() or self.expired()

    # -- broker ----------------------------------------------------------------------
    def producer(self, topic: str):
        """A producer for ``topic`` (one per topic): unbatched, chunking large messages."""
        producer = self._producers.get(topic)
        if producer is None:
            producer = self.client.create_producer(
                topic, batching_enabled=False, chunking_enabled=True, block_if_queue_full=True, send_timeout_millis=0
            )
            self._producers[topic] = producer
        return producer

    def send_async(self, topic: str, data: bytes, properties: dict | None = None) -> None:
        """Publish without waiting, and without a Python callback (the producers never time a send out,
        ``send_timeout_millis=0``: the client retries across reconnections; only a closed producer fails).

        A callback per message cost ~15 us of CPU and, worse, a GIL hand-off between the client's thread
        and ours on every send (measured: 245 against 94 us of wall time per send in a tight loop), which
        at 4,000 req/s left the source behind its schedule. Dead letters keep theirs (``send_errors``)."""
        if properties:
            self.producer(topic).send_async(data, None, properties=properties)
        else:
            self.producer(topic).send_async(data, None)

    def _sent(self, result, msg_id) -> None:
        import pulsar

        if result != pulsar.Result.Ok:
            self._send_errors += 1
            log.error("%s: a send failed: %s", self.name, result)

    def skip_consumer_ids(self, count: int) -> None:
        """Advance this client's consumer ids by ``count`` (a pulsar-lite workaround).

        pulsar-lite (0.2) refuses a consumer joining a subscription while
        another connection's consumer with the same client-side consumer id
        is in it ("Consumer 1 already exists"); a real Pulsar keys consumers
        per connection. Replicas sharing one subscription therefore skip
        ``replica`` ids first (a throwaway subscribe and unsubscribe each),
        so that each joins with its own id. Harmless on a real Pulsar.

        pulsar-lite also keeps the consumers of a connection that was reset
        (a process killed while data was on its way to it) on their
        subscriptions, so a restarted role skips past the ids of every
        predecessor too (``--incarnation``).
        """
        import pulsar

        for i in range(int(count)):
            consumer = self.client.subscribe(self.topics.control, f"skip-{self.name}-{i}", consumer_type=pulsar.ConsumerType.Shared)
            consumer.unsubscribe()

    def subscribe(self, topic: str, subscription: str, **kwargs):
        import pulsar

        kwargs.setdefault("consumer_type", pulsar.ConsumerType.Shared)
        kwargs.setdefault("initial_position", pulsar.InitialPosition.Earliest)
        kwargs.setdefault("consumer_name", self.name)
        return self.client.subscribe(topic, subscription, **kwargs)

    # -- the end ---------------------------------------------------------------------
    def write_stats(self) -> None:
        self.stats["send_errors"] = self._send_errors
        self.stats["dead_letters"] = self.stats.get("dead_letters", 0) + self.dead_letters
        # CPU-seconds of this process (all its threads) since it said ready: the harness's own CPU per message
        self.stats["cpu_s"] = round(time.process_time() - getattr(self, "_cpu_at_ready_s", 0.0), 6)
        window = getattr(self, "_run_cpu", None)
        if window is not None and len(window) == 2:
            # from the start to the stop on the control topic: without the wait for the other roles and the shutdown
            (cpu_start, wall_start), (cpu_stop, wall_stop) = window
            self.stats["run_cpu_s"] = round(cpu_stop - cpu_start, 6)
            self.stats["run_window_s"] = round(wall_stop - wall_start, 6)
        if self.args.stats:
            path = Path(self.args.stats)
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(path.suffix + ".tmp")
            tmp.write_text(json.dumps(self.stats, indent=1, default=str))
            os.replace(tmp, path)

    def close(self) -> None:
        """Flush what is being sent, write the stats, and disconnect."""
        for producer in self._producers.values():
            try:
                producer.flush()
            except Exception as error:  # the broker may already be gone at the very end
                log.warning("%s: flush failed: %s", self.name, error)
        self.write_stats()
        try:
            self.client.close()
        except Exception:
            pass
