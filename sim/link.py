"""A network link in the simulation: transfers queue in FIFO order."""

from __future__ import annotations

from collections.abc import Callable

import simpy

from spec.links import Link

__all__ = ["LinkChannel"]


class LinkChannel:
    """One direction of a link from a gateway to a remote executor.

    A transfer starts when the previous one has left the sender (FIFO, one
    at a time: the link's bandwidth is shared by queueing, as on a single
    TCP connection), takes size / bandwidth to serialize (the bandwidth may
    follow a trace and drop to zero, in which case it waits), then
    ``delay_s`` to propagate.
    """

    def __init__(self, env: simpy.Environment, link: Link):
        self.env = env
        self.link = link
        self.free_at_s = 0.0
        self.bytes_sent = 0

    def send(self, size_bytes: float, payload, on_arrival: Callable) -> float:
        """Start a transfer; ``on_arrival(event)`` runs when it arrives (``event.value`` is ``payload``)."""
        env = self.env
        now_s = env.now
        start_s = self.free_at_s if self.free_at_s > now_s else now_s
        sent_s = self.link.serialization_end_s(start_s, size_bytes)
        self.free_at_s = sent_s
        self.bytes_sent += size_bytes
        arrival_s = sent_s + self.link.delay_s
        event = env.timeout(arrival_s - now_s, payload)
        event.callbacks.append(on_arrival)
        return arrival_s
