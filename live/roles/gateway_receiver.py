"""The gateway's request intake: a thread that takes requests off their consumer, in bunches when they queue up.

With a message listener, every request is a call into Python from the
client's thread, which must take the GIL from the gateway's busy loop: the
interpreter hands it over only every switch interval (5 ms) or when the loop
blocks, so under load requests reached the loop in a trickle while the
client's queue filled (measured in a two-process test at 4,000 msgs/s and 60
us of work per message, on this loaded 2-core machine: receive-to-loop p50
100-790 ms with a listener, 3-24 ms like this). Here one thread waits in
``receive()`` (the GIL released) and hands each request to the inbox at once;
when a receive returns at once (requests were queued already) it takes what
else is queued with one ``batch_receive()``, one hand-off for the bunch. At
low load every request goes alone, as before.
"""

from __future__ import annotations

import logging
import threading
import time

__all__ = ["RequestReceiver", "BATCH_POLICY"]

log = logging.getLogger("edgebatch.live")

#: a receive that returned within this was served from the client's queue: more are likely waiting
_QUEUED_S = 50e-6
#: at most this many requests per bunch; a bunch waits at most 1 ms for them (the client's smallest timeout)
_BUNCH = 64
#: the consumer's batch-receive policy (pulsar.ConsumerBatchReceivePolicy arguments: messages, bytes (-1: any), timeout ms)
BATCH_POLICY = (_BUNCH, -1, 1)


class RequestReceiver:
    """Puts ``("request", consumer, message)`` on ``inbox`` for every message ``consumer`` receives, until ``stop()``."""

    def __init__(self, consumer, inbox, name: str = "requests"):
        self.consumer = consumer
        self.inbox = inbox
        self.bunches = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"receive-{name}", daemon=True)

    def start(self) -> "RequestReceiver":
        self._thread.start()
        return self

    def _run(self) -> None:
        import pulsar

        consumer, put, clock = self.consumer, self.inbox.put, time.perf_counter
        while not self._stop.is_set():
            asked_s = clock()
            try:
                msg = consumer.receive(timeout_millis=200)
            except pulsar.Timeout:
                continue
            except Exception as error:  # the client closed under it (the run's end), or the broker went away
                if self._stop.is_set():
                    return
                log.warning("request intake: receive failed (%s); trying again", error)
                time.sleep(0.05)
                continue
            put(("request", consumer, msg))
            if clock() - asked_s < _QUEUED_S:
                self._bunch(consumer, put)

    def _bunch(self, consumer, put) -> None:
        try:
            msgs = consumer.batch_receive()
        except Exception as error:
            if not self._stop.is_set():
                log.warning("request intake: batch receive failed (%s)", error)
            return
        self.bunches += 1
        for msg in msgs:
            put(("request", consumer, msg))

    def stop(self) -> None:
        """Stop taking requests (those taken are on the inbox); waits for the thread a moment."""
        self._stop.set()
        self._thread.join(timeout=1.0)
