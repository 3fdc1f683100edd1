"""Service-time noise as a planner learns it: from the batches that finished, never from a config."""

from __future__ import annotations

import math
from collections.abc import Callable

from spec.validation import check_int_at_least, check_non_negative

__all__ = ["ServiceNoiseEstimate"]


class _Moments:
    """Welford's running mean and variance of one series."""

    __slots__ = ("count", "mean", "m2")

    def __init__(self) -> None:
        self.count = 0
        self.mean = 0.0
        self.m2 = 0.0

    def add(self, value: float) -> None:
        self.count += 1
        delta = value - self.mean
        self.mean += delta / self.count
        self.m2 += delta * (value - self.mean)

    def cv(self) -> float:
        if self.count < 2 or not self.mean > 0:
            return 0.0
        return math.sqrt(max(self.m2 / (self.count - 1), 0.0)) / self.mean


class ServiceNoiseEstimate:
    """The coefficient of variation of service times per executor and batch size, measured.

    Each finished batch adds ``service_s / mean_s(executor, batch_size,
    memory_mb)`` (its measured service time over the profile's mean, so that
    batches of every size can be pooled) to the series of its executor,
    batch size and memory size, and to its executor's pooled series.
    ``cv(executor, batch_size, memory_mb)`` is that series' CV once it holds
    ``min_samples`` batches; before that, the executor's pooled CV once that
    holds ``min_samples``; before that, ``prior_cv``. Deterministic for a
    given sequence of batches; memory O(1) per (executor, size, memory).

    Parameters: ``mean_s`` (the profile's mean service time, seconds, of
    ``(executor, batch_size, memory_mb)``), ``prior_cv`` (>= 0),
    ``min_samples`` (>= 2).
    """

    def __init__(self, *, mean_s: Callable[[str, int, int | None], float], prior_cv: float = 0.0, min_samples: int = 20):
        self.mean_s = mean_s
        self.prior_cv = check_non_negative("planner.service_cv", prior_cv)
        self.min_samples = check_int_at_least("planner.noise_min_samples", min_samples, 2)
        self._by_size: dict[tuple[str, int, int | None], _Moments] = {}
        self._pooled: dict[str, _Moments] = {}

    def add(self, *, executor: str, batch_size: int, memory_mb: int | None, service_s: float) -> None:
        """Count one finished batch (a non-positive or non-finite profile mean is skipped)."""
        mean = self.mean_s(executor, int(batch_size), memory_mb)
        if not (math.isfinite(mean) and mean > 0 and math.isfinite(service_s)):
            return
        ratio = float(service_s) / mean
        self._by_size.setdefault((executor, int(batch_size), memory_mb), _Moments()).add(ratio)
        self._pooled.setdefault(executor, _Moments()).add(ratio)

    def samples(self, executor: str, batch_size: int | None = None, memory_mb: int | None = None) -> int:
        """Batches counted for the executor (and, given, that batch and memory size)."""
        if batch_size is None:
            moments = self._pooled.get(executor)
        else:
            moments = self._by_size.get((executor, int(batch_size), memory_mb))
        return 0 if moments is None else moments.count

    def cv(self, executor: str, batch_size: int, memory_mb: int | None = None) -> float:
        """The measured CV for this batch and memory size, else the executor's pooled CV, else the prior."""
        moments = self._by_size.get((executor, int(batch_size), memory_mb))
        if moments is not None and moments.count >= self.min_samples:
            return moments.cv()
        pooled = self._pooled.get(executor)
        if pooled is not None and pooled.count >= self.min_samples:
            return pooled.cv()
        return self.prior_cv
