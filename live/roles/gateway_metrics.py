"""What the gateway measures about itself: counts, lateness of timers and transfers, ingest lag, memory."""

from __future__ import annotations

import os

from live.roles.role import percentiles

__all__ = ["GatewayMetrics", "rss_mb"]


class GatewayMetrics:
    def __init__(self) -> None:
        self.counts = {"duplicate_requests": 0, "duplicate_results": 0, "stale_results": 0, "dead_letters": 0, "batches": 0, "drops": 0, "retries": 0,
                       "redelivered": 0, "nudges": 0}  # fmt: skip
        #: how late each timer was delivered, each uplink transfer published, each request taken in (s)
        self.timer_late_s: list[float] = []
        self.uplink_late_s: list[float] = []
        self.ingest_lag_s: list[float] = []
        #: most requests held at once (queued in the scheduler or in flight): bounded by the batching policy's
        #: max_queue and max_inflight, whatever the offered load
        self.peak_pending = 0
        #: most resident memory seen (sampled every 1,000 arrivals and at the end), MB
        self.peak_rss_mb: float | None = None

    def pending(self, count: int) -> None:
        if count > self.peak_pending:
            self.peak_pending = count

    def sample_rss(self) -> None:
        rss = rss_mb()
        if rss is not None and (self.peak_rss_mb is None or rss > self.peak_rss_mb):
            self.peak_rss_mb = rss

    def as_dict(self) -> dict:
        """Counts, lateness percentiles and peaks (memory sampled once more now)."""
        self.sample_rss()
        return {
            **self.counts,
            "timer_late_s": percentiles(self.timer_late_s),
            "uplink_late_s": percentiles(self.uplink_late_s),
            "ingest_lag_s": percentiles(self.ingest_lag_s),
            "peak_pending": self.peak_pending,
            "peak_rss_mb": self.peak_rss_mb,
        }


def rss_mb() -> float | None:
    """This process's resident memory now, in MB (None where /proc does not say).

    Not ``getrusage``'s peak: a process started by fork and exec inherits its
    parent's peak (the orchestrator's, with torch loaded in a test).
    """
    try:
        with open("/proc/self/statm") as fp:
            resident_pages = int(fp.read().split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return resident_pages * os.sysconf("SC_PAGE_SIZE") / (1024.0 * 1024.0)
