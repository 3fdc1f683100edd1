"""The gateway loop's mailbox: what the broker's listeners (and inline executors) hand it, results first.

A result frees its executor for the next batch. In one first-in-first-out
queue it would wait behind every request taken in before it, and under load
that wait is the backlog itself: with batches capped (32) and one in flight,
the executor then idles for the length of the queue, fewer requests complete
per second than arrive, and the queue grows further (measured at 4,000 req/s:
ingest lag 0.5-2 s, throughput 1,500-2,500 req/s). So results go on a queue
of their own, taken before any request, and a token on the main queue wakes
a loop that sleeps.
"""

from __future__ import annotations

import queue

__all__ = ["Inbox"]

#: on the main queue: a result is waiting on the results queue
_WAKE = ("wake", None, None)


class Inbox:
    """``put((kind, consumer, message))`` from any thread; ``get(timeout_s)`` from the loop's, results first.

    ``get`` returns None when nothing came within ``timeout_s`` (0: do not wait). Only one thread takes
    items out, so a results queue found non-empty still holds its item when taken.
    """

    def __init__(self) -> None:
        self._main: queue.SimpleQueue = queue.SimpleQueue()  # requests, and a wake-up per result
        self._results: queue.SimpleQueue = queue.SimpleQueue()

    def put(self, item: tuple) -> None:
        if item[0] == "result":
            self._results.put(item)
            self._main.put(_WAKE)
        else:
            self._main.put(item)

    def get(self, timeout_s: float) -> tuple | None:
        results = self._results
        while True:
            if not results.empty():
                return results.get_nowait()
            try:
                item = self._main.get(timeout=timeout_s) if timeout_s > 0 else self._main.get_nowait()
            except queue.Empty:
                return None
            if item is not _WAKE:
                return item
            # a wake-up: its result is next, unless it was taken already ahead of its token (then wait on)

    def requests_queued(self, limit: int) -> list[tuple]:
        """Up to ``limit`` more requests queued right now (no wait); it stops at a result (taken first)."""
        taken: list[tuple] = []
        main, results = self._main, self._results
        while len(taken) < limit and results.empty():
            try:
                item = main.get_nowait()
            except queue.Empty:
                break
            if item is _WAKE:
                break  # its result is on the results queue: get() returns it next
            taken.append(item)
        return taken

    def result_waiting(self) -> bool:
        """A result is queued (the loop takes it before the next request)."""
        return not self._results.empty()
