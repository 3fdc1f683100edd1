"""The summary of a run computed as its records stream by, in memory that does not grow with the run.

Fed one slice of the request table and one of the batch table at a time
(``spec.streaming_recorder``), it gives the keys of ``spec.recorder.summary``:
counts, drops by reason, SLO attainment, batch and cold-start counts and
retries exactly; sums (latency, cost, busy time) as exactly rounded sums of
the slices' sums (``math.fsum``), which can differ from the one-pass numpy sum
of the in-memory summary in the last bits; the latency percentiles from a
``spec.latency_sketch.LatencySketch`` (relative error ``alpha``, stated
there). The prediction check of ``spec.predictions`` needs every request's
latency by gateway and window, so its keys are left None here.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping

import numpy as np
import pandas as pd

from spec.latency_sketch import LatencySketch
from spec.predictions import PREDICTION_KEYS

__all__ = ["RunningSummary"]


class RunningSummary:
    """Counts, sums and a latency sketch over slices of a run's two tables."""

    def __init__(self, executor_names: list[str], *, alpha: float = 0.005):
        self.executor_names = list(executor_names)
        self._number = {name: i for i, name in enumerate(self.executor_names)}  # a fleet's thousands: no list.index
        self.sketch = LatencySketch(alpha=alpha)
        self.count = self.completed = self.dropped = self.met = 0
        self.drops: Counter = Counter()
        self._latency_sums: list[float] = []
        self.last_completed_s = -math.inf
        self.batches = self.cold_starts = self.retries = self.redelivered = self.size_sum = 0
        self._cost_sums: list[float] = []
        self._busy_s = np.zeros(len(self.executor_names))

    def add_requests(self, requests: pd.DataFrame) -> None:
        """One slice of the request table."""
        dropped = requests["dropped"].to_numpy(dtype=bool)
        latency = requests["latency_s"].to_numpy(dtype=float)[~dropped]
        self.count += len(requests)
        self.completed += int(len(latency))
        self.dropped += int(dropped.sum())
        self.met += int(requests["met_slo"].to_numpy(dtype=bool).sum())
        if dropped.any():
            self.drops.update({str(k): int(v) for k, v in requests.loc[dropped, "drop_reason"].value_counts().items() if v})
        if len(latency):
            self._latency_sums.append(float(latency.sum()))
            self.sketch.add(latency)
        completed_s = requests["completed_s"].to_numpy(dtype=float)
        if np.isfinite(completed_s).any():
            self.last_completed_s = max(self.last_completed_s, float(np.nanmax(completed_s)))

    def add_batches(self, batches: pd.DataFrame) -> None:
        """One slice of the batch table."""
        self.batches += len(batches)
        self._cost_sums.append(float(batches["cost"].sum()))
        self.cold_starts += int(batches["cold"].sum())
        self.size_sum += int(batches["size"].sum())
        self.retries += int((batches["attempt"] > 0).sum())
        self.redelivered += int(batches["redelivered"].sum())
        start = batches["start_s"].to_numpy(dtype=float)
        end = batches["end_s"].to_numpy(dtype=float)
        served = np.isfinite(start) & np.isfinite(end)
        codes = batches["executor"].cat.codes.to_numpy()[served]
        self._busy_s += np.bincount(codes, weights=(end - start)[served], minlength=len(self.executor_names))

    def busy_s(self, executor: str) -> float:
        """Seconds ``executor`` served batches so far."""
        return float(self._busy_s[self._number[executor]])

    def result(self, *, first_arrival_s: float, servers: Mapping[str, tuple[object, int]], plans: Iterable[Mapping] = (),
               complete: bool) -> dict:  # fmt: skip
        """The summary's keys (``spec.recorder.summary``), with percentiles from the sketch."""
        span = max(self.last_completed_s - first_arrival_s, 0.0) if math.isfinite(self.last_completed_s) else 0.0
        batch_cost = math.fsum(self._cost_sums)
        standing = 0.0
        for name, (pricing, units) in servers.items():
            whole = pricing.standing_cost(span_s=span, units=units)
            standing += max(0.0, whole - pricing.standing_cost(span_s=self.busy_s(name), units=1))
        total = batch_cost + standing
        count, completed = self.count, self.completed
        out = {
            "count": count, "completed": completed, "dropped": self.dropped,
            "drops_by_reason": dict(self.drops), "span_s": float(span),
            "throughput_rps": float(completed / span) if span > 0 else math.nan,
            "latency_mean_s": math.fsum(self._latency_sums) / completed if completed else math.nan,
            "latency_p50_s": self.sketch.percentile(50), "latency_p95_s": self.sketch.percentile(95),
            "latency_p99_s": self.sketch.percentile(99),
            "slo_attainment": self.met / count if count else math.nan,
            "batch_cost": batch_cost, "total_cost": total, "cost_per_1k": total / count * 1000 if count else math.nan,
            "cold_starts": self.cold_starts, "batches": self.batches,
            "mean_batch_size": self.size_sum / self.batches if self.batches else math.nan,
            "retries": self.retries, "redelivered": self.redelivered,
        }  # fmt: skip
        out["replans"] = int(sum(1 for p in plans if p.get("trigger") != "initial"))
        out.update(dict.fromkeys(PREDICTION_KEYS))
        out["complete"] = bool(complete)
        out["percentiles"] = f"sketch (relative error {self.sketch.alpha})"
        return out
