"""The gateway's batches in flight: dispatched, not yet back.

A batch goes ``uplink`` (crossing an emulated uplink) -> ``sent`` (published
to its executor's topic) -> ``returning`` (its result crossing the link
back), then leaves. Per executor, the tracker knows when its last result
came and the latest publication among its batches with a result: what tells
a stranded batch (see ``Flights.stranded``) and a quiet topic (see
``Flights.quiet_since_s``).
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

__all__ = ["Flight", "Flights", "StallDetection"]


@dataclass(frozen=True, kw_only=True, slots=True)
class StallDetection:
    """How soon an executor that went silent is taken for lost (``live.stall_detection``).

    Servers only (a serverless pool reports its own crashes). Silent for ``patience_s`` = ``p99_multiple`` times the p99 of the busy time per batch it reported
    (service plus any cold start) over its last ``window`` results, plus ``floor_s``; before its
    first result, ``initial_s``. Never longer than ``live.redeliver_after_s``.
    """

    p99_multiple: float = 5.0
    floor_s: float = 0.5
    initial_s: float = 5.0
    window: int = 200

    def patience_s(self, busy_s, cap_s: float) -> float:
        if not busy_s:
            return min(self.initial_s, cap_s)
        ordered = sorted(busy_s)
        p99 = ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]
        return min(cap_s, self.p99_multiple * p99 + self.floor_s)


@dataclass
class Flight:
    local_id: int
    executor: str
    ids: tuple[int, ...]
    dispatched_s: float
    memory_mb: int | None
    size_bytes: int
    planned_arrival_s: float
    arrived_s: float = math.nan
    state: str = "uplink"  # uplink -> sent -> returning
    attempt: int = 0  # the scheduler's retry number of these requests (DispatchBatch.attempt)
    data: bytes | None = None  # the published batch, kept until its result is back (to publish it again)
    resends: int = 0  # times published again for want of a result (live.redeliver_after_s)
    published: int = -1  # publication order among this gateway's batches

    def arrival_s(self, result, *, real_link: bool) -> float:
        """When the batch reached its executor, as its ``result`` (a Message) tells.

        With an emulated link (or none) the gateway itself held the batch for
        the link's time: when it was published. Over a real link (a testbed)
        when its worker received it (the worker's clock: synchronized clocks,
        docs/DEPLOY.md).
        """
        arrived_s = self.arrived_s
        if real_link:
            received_s = result.ts.get("received_s")
            if isinstance(received_s, (int, float)) and not isinstance(received_s, bool) and received_s >= arrived_s:
                arrived_s = float(received_s)
        return arrived_s


class Flights:
    """Every batch in flight, by the gateway's local batch id."""

    def __init__(self, redeliver_after_s: float | None, stall: StallDetection | None = None, watched: frozenset = frozenset()):
        self.redeliver_after_s = redeliver_after_s
        self.stall = stall
        #: the executors whose silence is measured against their service times (the servers' workers; a
        #: serverless pool reports its instances' crashes itself, and its cold starts take seconds)
        self.watched = watched
        self._by_id: dict[int, Flight] = {}
        #: per executor: the busy time of its recent batches, the patience they give (kept, not sorted at each
        #: publication), and since when it has had batches out with nothing back
        self._busy_s: dict[str, deque] = {}
        self._patience_s: dict[str, float] = {}
        self._busy_since_s: dict[str, float] = {}
        self._published = 0
        self._last_nudge_s = -math.inf
        #: per executor: when its last result came, and the latest publication among its batches with a result
        self._last_result_s: dict[str, float] = {}
        self._latest_done: dict[str, int] = {}

    def __len__(self) -> int:
        return len(self._by_id)

    def add(self, flight: Flight) -> None:
        self._by_id[flight.local_id] = flight

    def get(self, local_id: int) -> Flight | None:
        return self._by_id.get(local_id)

    def pop(self, local_id: int) -> Flight:
        return self._by_id.pop(local_id)

    def published(self, local_id: int, now_s: float, data: bytes) -> Flight:
        """The batch is on its executor's topic now (its data kept while it may have to go again)."""
        flight = self._by_id[local_id]
        if not any(f.state == "sent" and f.executor == flight.executor for f in self._by_id.values()):
            self._busy_since_s[flight.executor] = now_s  # it had nothing of ours: silence counts from now
        flight.arrived_s = now_s
        flight.state = "sent"
        flight.published = self._published
        self._published += 1
        if self.redeliver_after_s is not None:
            flight.data = data
        return flight

    def result_came(self, flight: Flight, now_s: float, busy_s: float | None = None) -> None:
        """The batch's (first) result came: it is on its way back (``busy_s``: what its executor reported)."""
        self._last_result_s[flight.executor] = now_s
        if self.stall is not None and self.redeliver_after_s is not None and busy_s is not None and math.isfinite(busy_s) and busy_s >= 0:
            samples = self._busy_s.setdefault(flight.executor, deque(maxlen=self.stall.window))
            samples.append(busy_s)
            self._patience_s[flight.executor] = self.stall.patience_s(samples, self.redeliver_after_s)
        if flight.published > self._latest_done.get(flight.executor, -1):
            self._latest_done[flight.executor] = flight.published
        flight.state = "returning"

    def patience_s(self, executor: str) -> float:
        """How long ``executor`` may stay silent with batches out before they are taken for lost."""
        if self.stall is None or executor not in self.watched:
            return self.redeliver_after_s
        patience_s = self._patience_s.get(executor)
        return self.stall.patience_s((), self.redeliver_after_s) if patience_s is None else patience_s

    def stranded(self, flight: Flight, now_s: float) -> bool:
        """A batch published after this one to the same executor has its result already, or that
        executor sent no result at all for ``patience_s`` since it last had nothing of ours to do
        (one that merely waits behind others in a backlog is not stranded)."""
        executor = flight.executor
        overtaken = self._latest_done.get(executor, -1) > flight.published
        heard_s = max(self._last_result_s.get(executor, -math.inf), self._busy_since_s.get(executor, flight.arrived_s))
        silent = now_s - heard_s >= self.patience_s(executor)
        return overtaken or silent

    def quiet_since_s(self) -> float | None:
        """Since when nothing moved (a publication, a result, a nudge) with batches sent; None: none sent."""
        sent = [f.arrived_s for f in self._by_id.values() if f.state == "sent"]
        if not sent:
            return None
        heard_s = max(self._last_result_s.values(), default=-math.inf)
        return max(heard_s, self._last_nudge_s, max(sent))

    def nudged(self, now_s: float) -> None:
        self._last_nudge_s = now_s
