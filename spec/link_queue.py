"""The FIFO queue of one link direction: a sans-I/O model both backends drive."""

from __future__ import annotations

from spec.links import Link

__all__ = ["LinkQueue"]


class LinkQueue:
    """Transfers on one link direction leave in FIFO order, one at a time.

    A transfer starts when the previous one has left the sender (as on a
    single TCP connection, the bandwidth is shared by queueing), serializes
    at the link's bandwidth (constant or traced, waiting out outages), then
    takes the link's ``delay_s`` to propagate. ``send(now_s, size_bytes)``
    returns the arrival time; the simulator schedules a SimPy event at it,
    the live gateway holds the batch on its timer heap until then.
    """

    __slots__ = ("link", "free_at_s", "bytes_sent", "transfers")

    def __init__(self, link: Link):
        self.link = link
        #: when the sender is free again (the last transfer's last byte is on the wire)
        self.free_at_s = 0.0
        self.bytes_sent = 0
        self.transfers = 0

    def send(self, now_s: float, size_bytes: float) -> float:
        """Queue a transfer of ``size_bytes`` at ``now_s``; return when it has fully arrived."""
        if size_bytes < 0:
            raise ValueError(f"LinkQueue.send: the driver passed size_bytes={size_bytes!r}; a transfer has >= 0 bytes")
        start_s = self.free_at_s if self.free_at_s > now_s else now_s
        sent_s = self.link.serialization_end_s(start_s, size_bytes)
        self.free_at_s = sent_s
        self.bytes_sent += size_bytes
        self.transfers += 1
        return sent_s + self.link.delay_s

    def backlog_s(self, now_s: float) -> float:
        """How long a transfer queued now would wait before it starts."""
        return max(0.0, self.free_at_s - now_s)
