"""Which requests a gateway takes: those of its own sources, each once.

Delivery is at-least-once: a request seen before is a duplicate. A message
that is not a request of one of this gateway's sources is a problem, said
in words for the dead-letter topic.
"""

from __future__ import annotations

import numpy as np

from live.wire.messages import Kind, Message
from spec.workload import Arrivals

__all__ = ["RequestIntake"]


class RequestIntake:
    def __init__(self, name: str, arrivals: Arrivals):
        self.name = name
        self.count = len(arrivals)
        self.source_index = arrivals.source_index
        #: this gateway's sources: name -> (index in the workload, source)
        self.sources = {s.name: (i, s) for i, s in enumerate(arrivals.sources) if s.gateway == name}
        self.seen = bytearray(self.count)
        self._mine = None  # which requests are of this gateway's sources (numpy mask, made when first asked)

    def check(self, message: Message) -> tuple[int, str | None]:
        """The request's index in the workload, or why the message is not a request of this gateway's sources."""
        if message.kind is not Kind.REQUEST:
            return -1, f"unexpected: a {message.kind.name} message on a requests topic"
        if message.source not in self.sources:
            return -1, f"unexpected: request from unknown source {message.source!r} (sources of {self.name}: {sorted(self.sources)})"
        try:
            request_id = int(message.request_id)
        except ValueError:
            request_id = -1
        if not 0 <= request_id < self.count or self.source_index[request_id] != self.sources[message.source][0]:
            return -1, f"unexpected: request id {message.request_id!r} is not one of {message.source}'s"
        return request_id, None

    def mark_seen(self, request_ids) -> int:
        """Take ``request_ids`` as seen already (a restarted gateway's ended ones); returns how many were new."""
        new = 0
        for request_id in request_ids:
            if 0 <= request_id < self.count and not self.seen[request_id]:
                self.seen[request_id] = 1
                new += 1
        return new

    def unseen_due(self, arrival_s, by_s: float) -> list[int]:
        """This gateway's request ids due by ``by_s`` that it has not seen."""
        if self._mine is None:
            self._mine = np.isin(self.source_index, [index for index, _ in self.sources.values()])
        unseen = np.frombuffer(self.seen, dtype=np.uint8) == 0
        return np.flatnonzero(unseen & self._mine & (arrival_s <= by_s)).tolist()

    def first_time(self, request_id: int) -> bool:
        """True the first time ``request_id`` is taken, False for a duplicate."""
        if self.seen[request_id]:
            return False
        self.seen[request_id] = 1
        return True

    def source_of(self, message: Message):
        return self.sources[message.source][1]
