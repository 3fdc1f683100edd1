"""Network links: propagation delay plus serialization at a (time-varying) bandwidth.

Bandwidth is in MB/s with MB = 2**20 bytes, the unit of the seed's LTE trace.
A trace holds one sample per second, each held until the next; 0 means the
link is down for that second; the trace repeats when it runs out.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from spec.traces import load_series
from spec.validation import ConfigError, check_non_negative, check_positive

__all__ = ["Link", "MB"]

MB = 2**20


class Link:
    """One direction of a network link, from a gateway to an executor.

    Give ``bandwidth_MBps`` (constant) or ``bandwidth_trace`` (a file of
    per-second samples, optionally scaled by ``bandwidth_scale``). Transfers
    on one link are serialized in FIFO order by the driver; this class only
    computes how long a transfer of a given size takes from a given start.
    """

    def __init__(
        self,
        *,
        delay_s: float = 0.0,
        bandwidth_MBps: float | None = None,
        bandwidth_trace: str | Path | None = None,
        bandwidth_scale: float = 1.0,
        trace_offset_s: int = 0,
    ):
        self.delay_s = check_non_negative("link.delay_s", delay_s)
        if (bandwidth_MBps is None) == (bandwidth_trace is None):
            raise ConfigError("link.bandwidth_MBps", bandwidth_MBps, "exactly one of bandwidth_MBps or bandwidth_trace")
        scale = check_positive("link.bandwidth_scale", bandwidth_scale)
        if bandwidth_trace is not None:
            samples = load_series("link.bandwidth_trace", bandwidth_trace, allow_zero=True) * scale
            if not np.any(samples > 0):
                raise ConfigError("link.bandwidth_trace", str(bandwidth_trace), "a trace with some sample > 0")
            offset = int(trace_offset_s) % len(samples)
            self.samples_MBps: np.ndarray | None = np.roll(samples, -offset)
            self.trace = str(bandwidth_trace)
            self.constant_MBps = None
        else:
            self.constant_MBps = check_positive("link.bandwidth_MBps", bandwidth_MBps) * scale
            self.samples_MBps = None
            self.trace = None
        self._samples_list = None if self.samples_MBps is None else self.samples_MBps.tolist()
        # running sums of the trace (MB carried from the trace's start to each whole second)
        self._cumulative_MB = None if self.samples_MBps is None else [0.0, *np.cumsum(self.samples_MBps).tolist()]

    def bandwidth_at(self, t_s: float) -> float:
        """Bandwidth in MB/s at time ``t_s`` (0 while the link is down): the model's truth,
        for the drivers; telemetry reports ``measured_bandwidth_MBps`` instead."""
        if self._samples_list is None:
            return self.constant_MBps
        return self._samples_list[int(math.floor(t_s)) % len(self._samples_list)]

    def measured_bandwidth_MBps(self, now_s: float, period_s: float) -> float:
        """What a meter read at ``now_s`` shows: the time-averaged bandwidth in MB/s over
        ``[now_s - period_s, now_s)``, the interval that just ended (never a later sample).

        The window starts no earlier than 0 (the run's start); the telemetry of
        both backends reports this, so no policy sees the link's future.
        """
        end_s = float(now_s)
        start_s = max(0.0, end_s - float(period_s))
        if not period_s > 0 or not end_s > start_s:
            raise ValueError(f"a measurement needs period_s > 0 and now_s > 0, got now_s={now_s!r}, period_s={period_s!r}")
        if self._samples_list is None:
            return self.constant_MBps
        return (self._carried_MB(end_s) - self._carried_MB(start_s)) / (end_s - start_s)

    def _carried_MB(self, t_s: float) -> float:
        """MB the link could carry from time 0 to ``t_s`` (the trace repeats)."""
        samples, cumulative = self._samples_list, self._cumulative_MB
        n = len(samples)
        second = math.floor(t_s)
        cycles, index = divmod(second, n)
        return cycles * cumulative[n] + cumulative[index] + (t_s - second) * samples[index]

    def serialization_end_s(self, start_s: float, size_bytes: float) -> float:
        """When the last byte of a transfer started at ``start_s`` is on the wire.

        With a trace, the transfer proceeds second by second at that second's
        bandwidth and waits out seconds at 0 (outages).
        """
        if size_bytes <= 0:
            return start_s
        if self._samples_list is None:
            return start_s + size_bytes / (self.constant_MBps * MB)
        samples = self._samples_list
        n = len(samples)
        t = start_s
        remaining = float(size_bytes)
        while True:
            second = math.floor(t)
            rate = samples[second % n] * MB
            if rate > 0:
                capacity = rate * (second + 1 - t)
                if remaining <= capacity:
                    return t + remaining / rate
                remaining -= capacity
            t = second + 1.0

    def transfer_end_s(self, start_s: float, size_bytes: float) -> float:
        """When a transfer started at ``start_s`` has fully arrived (serialization + delay)."""
        return self.serialization_end_s(start_s, size_bytes) + self.delay_s

    def mean_bandwidth_MBps(self) -> float:
        """Time-averaged bandwidth, the nominal figure for planning."""
        return self.constant_MBps if self.samples_MBps is None else float(self.samples_MBps.mean())

    def __repr__(self) -> str:
        bw = self.trace if self.trace else f"{self.constant_MBps} MB/s"
        return f"Link(delay_s={self.delay_s}, bandwidth={bw})"
