"""An edge executor run on a thread of its gateway's process (``live.executors.<name>.inline: true``).

The default live path makes three broker hops per request: source ->
gateway, gateway -> worker (``batches-<executor>``), worker -> gateway
(``results-<gateway>``). When the executor is one edge device on the
gateway's own machine, the middle two carry nothing a real deployment
needs: the gateway could call the model itself. With ``inline: true`` the
gateway process loads the executor's model (``live.roles.worker.ModelRunner``)
and runs it on a thread of its own; the BATCH the gateway would publish is
handed to that thread instead, and its RESULT is put on the gateway's inbox
as if it had come from ``results-<gateway>``. So a request takes one broker
hop (source -> gateway) and its record is written on the gateway's
completion, as before.

Everything past the hand-off is the worker's own code and the gateway's
own: the batch is decoded, verified (HMAC) and checked
(``live.roles.worker.accept_batch``; a bad one goes to the dead-letter
topic), run by ``live.roles.worker.execute_batch`` (a model error gives a
failed RESULT), and the RESULT, signed, goes through
``Gateway.on_result``: the same records and columns, the same
``BatchFinished`` with the measured service time, the same limits, the same
duplicate and redelivery handling (a batch published again reaches the
thread again; the first result wins).

When it applies: one edge device (one slot, one replica) on the gateway's
machine. A remote executor, several replicas, a serverless pool or an
external worker keep the worker hop (``live.config`` refuses ``inline``
there). The gateway process then imports torch, and the model's time shares
that process with the scheduler (torch releases the GIL in the forward
pass; the tensor conversion does not).
"""

from __future__ import annotations

import logging
import os
import queue
import threading
from collections.abc import Callable

from live.roles.role import percentiles

__all__ = ["InlineExecutor", "InlineExecutors"]

log = logging.getLogger("edgebatch.live")


class _Delivered:
    """A RESULT handed to the gateway's loop in place of a broker message (``data()``)."""

    __slots__ = ("_data",)

    def __init__(self, data: bytes):
        self._data = data

    def data(self) -> bytes:
        return self._data


class _NoAck:
    """The consumer of a handed-over RESULT: nothing to acknowledge, no broker holds it."""

    @staticmethod
    def acknowledge(msg) -> None:
        return None


_NO_ACK = _NoAck()


class InlineExecutor:
    """One edge executor's model on a thread: BATCH bytes in (``submit``), RESULT bytes to ``deliver``."""

    def __init__(self, spec, executor: str, gateway: str, topics, dead_letter_producer, deliver: Callable[[bytes], None]):
        from live.roles.worker import ModelRunner  # torch: only in a gateway with an inline executor

        settings = spec.settings.executors[executor]
        for variable in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):  # read once, when torch loads (as a worker's env sets them)
            os.environ.setdefault(variable, str(settings.threads))
        self.executor = spec.cluster.executors[executor]
        self.threads = settings.threads
        self.name = f"inline-{executor}@{gateway}"
        self.topic = topics.batches(executor)
        self.runner = ModelRunner(settings.model, settings.threads, spec.seed, spec.settings.device)
        self.gateways = {gateway}
        self._dlq = dead_letter_producer
        self._deliver = deliver
        self._inbox: queue.SimpleQueue = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self.services_s: list[float] = []
        self.dead_letters = 0

    def start(self, now: Callable[[], float]) -> None:
        """Serve from now on, stamping with the run's clock ``now``."""
        self._thread = threading.Thread(target=self._serve, args=(now,), name=self.name, daemon=True)
        self._thread.start()

    def submit(self, data: bytes) -> None:
        """A BATCH the gateway would have published on ``batches-<executor>``."""
        self._inbox.put(bytes(data))

    def _serve(self, now) -> None:
        from live.roles.worker import accept_batch, execute_batch

        while True:
            raw = self._inbox.get()
            if raw is None:
                return
            received_s = now()
            message = accept_batch(raw, self.gateways, self.executor.name, self._dlq, self.topic)
            if message is None:
                self.dead_letters += 1
                continue
            data, service_s = execute_batch(self.runner, message, source=self.name, executor=self.executor, threads=self.threads,
                                            received_s=received_s, redelivered=0, now=now)  # fmt: skip
            if service_s is not None:
                self.services_s.append(service_s)
            self._deliver(data)

    def close(self) -> dict:
        """Stop the thread (after the batch it runs, if any); its statistics."""
        if self._thread is not None:
            self._inbox.put(None)
            self._thread.join(timeout=30.0)
        return {"batches": len(self.services_s), "dead_letters": self.dead_letters, "service_s": percentiles(self.services_s),
                "model": self.runner.name, "threads": self.threads, "import_s": self.runner.import_s, "load_s": self.runner.load_s}  # fmt: skip


class InlineExecutors:
    """A gateway's inline executors (none unless the config asks): built before it says ready, started with the clock.

    ``route(send)`` wraps the gateway's send function: a BATCH for an inline executor goes to its thread,
    anything else to ``send``. Results go on ``inbox`` as ``("result", consumer, message)``, as the
    broker's listener puts them.
    """

    def __init__(self, spec, gateway: str, topics, dead_letter_producer, inbox):
        def deliver(data: bytes) -> None:
            inbox.put(("result", _NO_ACK, _Delivered(data)))

        names = [n for n in spec.cluster.reachable(gateway) if getattr(spec.settings.executors.get(n), "inline", False)]
        self.by_topic = {topics.batches(n): InlineExecutor(spec, n, gateway, topics, dead_letter_producer, deliver) for n in names}

    def route(self, send: Callable[..., None]) -> Callable[..., None]:
        if not self.by_topic:
            return send
        by_topic = self.by_topic

        def routed(topic: str, data: bytes, properties=None) -> None:
            executor = by_topic.get(topic)
            if executor is None:
                send(topic, data, properties)
            else:
                executor.submit(data)

        return routed

    def start(self, now: Callable[[], float]) -> None:
        for executor in self.by_topic.values():
            executor.start(now)

    def close(self) -> dict:
        """Stop every thread; their statistics (``{"inline_executors": {executor: {...}}}``, empty without any)."""
        stats = {e.executor.name: e.close() for e in self.by_topic.values()}
        return {"inline_executors": stats} if stats else {}
