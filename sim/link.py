"""A network link in the simulation: the shared FIFO model on the SimPy clock."""

from __future__ import annotations

from collections.abc import Callable

import simpy

from spec.link_queue import LinkQueue
from spec.links import Link

__all__ = ["LinkChannel"]


class LinkChannel:
    """One direction of a link from a gateway to a remote executor, driven by SimPy.

    The queueing is ``spec.link_queue.LinkQueue``'s (the live gateway drives
    the same model from the wall clock); this only turns its arrival time
    into a SimPy event.
    """

    def __init__(self, env: simpy.Environment, link: Link):
        self.env = env
        self.link = link
        self.queue = LinkQueue(link)

    @property
    def bytes_sent(self) -> float:
        return self.queue.bytes_sent

    def send(self, size_bytes: float, payload, on_arrival: Callable) -> float:
        """Start a transfer; ``on_arrival(event)`` runs when it arrives (``event.value`` is ``payload``)."""
        now_s = self.env.now
        arrival_s = self.queue.send(now_s, size_bytes)
        event = self.env.timeout(arrival_s - now_s, payload)
        event.callbacks.append(on_arrival)
        return arrival_s
