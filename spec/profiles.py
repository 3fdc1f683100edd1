"""Latency profiles: the mean service time of a batch.

A profile maps a batch size (and, for serverless executors, a memory size in
MB) to the mean time to run the batch, in seconds. Noise around that mean is a
separate concern (``spec.noise``).
"""

from __future__ import annotations

import abc
from collections.abc import Sequence

import numpy as np

from spec.validation import ConfigError, check_int_at_least, check_non_negative

__all__ = ["LatencyProfile", "LinearProfile", "LinearMemoryProfile", "TableProfile"]

#: No batch ever runs faster than this; it keeps a fitted line with a negative
#: memory term from predicting zero or negative times at large memory sizes.
MIN_SERVICE_S = 1e-6


class LatencyProfile(abc.ABC):
    """Mean service time of a batch, as a function of batch and memory size."""

    @abc.abstractmethod
    def mean_s(self, batch_size: int, memory_mb: int | None = None) -> float:
        """Mean seconds to run a batch of ``batch_size`` requests."""

    def _check(self, batch_size: int) -> None:
        if batch_size < 1:
            raise ConfigError("batch_size", batch_size, "an integer >= 1")


class LinearProfile(LatencyProfile):
    """``per_item_s * b + base_s``; memory size is ignored.

    The seed's edge model (Jetson Orin, ResNet-50) is
    ``LinearProfile(per_item_s=0.008165, base_s=0.04234)``.
    """

    def __init__(self, *, per_item_s: float, base_s: float):
        self.per_item_s = check_non_negative("profile.per_item_s", per_item_s)
        self.base_s = check_non_negative("profile.base_s", base_s)
        if self.per_item_s == 0 and self.base_s == 0:
            raise ConfigError("profile.base_s", base_s, "> 0 when per_item_s is 0")

    def mean_s(self, batch_size: int, memory_mb: int | None = None) -> float:
        return self.per_item_s * batch_size + self.base_s

    def __repr__(self) -> str:
        return f"LinearProfile(per_item_s={self.per_item_s}, base_s={self.base_s})"


class LinearMemoryProfile(LatencyProfile):
    """``per_item_s * b + per_mb_s * m + base_s``, floored at 1 microsecond.

    The seed's serverless model (Alibaba Function Compute, ResNet-50) is
    ``LinearMemoryProfile(per_item_s=0.141, per_mb_s=-8.806e-6, base_s=0.225)``.
    ``default_memory_mb`` is used when a batch names no memory size.
    """

    def __init__(self, *, per_item_s: float, per_mb_s: float, base_s: float, default_memory_mb: int = 1024):
        self.per_item_s = check_non_negative("profile.per_item_s", per_item_s)
        if not isinstance(per_mb_s, (int, float)) or isinstance(per_mb_s, bool):
            raise ConfigError("profile.per_mb_s", per_mb_s, "a number (seconds per MB, may be negative)")
        self.per_mb_s = float(per_mb_s)
        self.base_s = check_non_negative("profile.base_s", base_s)
        self.default_memory_mb = check_int_at_least("profile.default_memory_mb", default_memory_mb, 1)

    def mean_s(self, batch_size: int, memory_mb: int | None = None) -> float:
        m = self.default_memory_mb if memory_mb is None else memory_mb
        return max(MIN_SERVICE_S, self.per_item_s * batch_size + self.per_mb_s * m + self.base_s)

    def __repr__(self) -> str:
        return (
            f"LinearMemoryProfile(per_item_s={self.per_item_s}, per_mb_s={self.per_mb_s}, "
            f"base_s={self.base_s})"
        )


class TableProfile(LatencyProfile):
    """Measured mean latencies, linearly interpolated between measured batch sizes.

    ``latencies_s`` is one row per batch size, or a matrix with one column per
    entry of ``memory_mb`` (interpolated in both). Beyond the largest measured
    batch size the last segment's slope is extended, since batch latency grows
    roughly linearly once the hardware is saturated.
    """

    def __init__(
        self,
        *,
        batch_sizes: Sequence[int],
        latencies_s: Sequence[float] | Sequence[Sequence[float]],
        memory_mb: Sequence[int] | None = None,
    ):
        sizes = np.asarray(batch_sizes, dtype=float)
        if sizes.ndim != 1 or len(sizes) < 1 or np.any(sizes < 1) or np.any(np.diff(sizes) <= 0):
            raise ConfigError("profile.batch_sizes", list(batch_sizes), "increasing batch sizes >= 1")
        table = np.asarray(latencies_s, dtype=float)
        if memory_mb is None:
            if table.shape != sizes.shape:
                raise ConfigError("profile.latencies_s", list(latencies_s), f"{len(sizes)} values, one per batch size")
            table = table[:, None]
            mems = np.array([0.0])
        else:
            mems = np.asarray(memory_mb, dtype=float)
            if mems.ndim != 1 or np.any(np.diff(mems) <= 0) or np.any(mems <= 0):
                raise ConfigError("profile.memory_mb", list(memory_mb), "increasing memory sizes > 0")
            if table.shape != (len(sizes), len(mems)):
                raise ConfigError(
                    "profile.latencies_s", "shape " + str(table.shape), f"a {len(sizes)} x {len(mems)} table"
                )
        if np.any(~np.isfinite(table)) or np.any(table <= 0):
            raise ConfigError("profile.latencies_s", table.tolist(), "finite latencies > 0")
        self.batch_sizes = sizes
        self.memory_mb = mems
        self.table_s = table
        self._cache: dict[tuple[int, int | None], float] = {}

    def _column(self, memory_mb: int | None) -> np.ndarray:
        if len(self.memory_mb) == 1:
            return self.table_s[:, 0]
        m = float(self.memory_mb[0] if memory_mb is None else memory_mb)
        m = min(max(m, self.memory_mb[0]), self.memory_mb[-1])
        return np.array([np.interp(m, self.memory_mb, row) for row in self.table_s])

    def mean_s(self, batch_size: int, memory_mb: int | None = None) -> float:
        key = (batch_size, memory_mb)
        cached = self._cache.get(key)
        if cached is not None:
            return cached
        column = self._column(memory_mb)
        sizes = self.batch_sizes
        if batch_size <= sizes[-1] or len(sizes) == 1:
            value = float(np.interp(batch_size, sizes, column))
        else:
            slope = (column[-1] - column[-2]) / (sizes[-1] - sizes[-2])
            value = float(column[-1] + slope * (batch_size - sizes[-1]))
        value = max(MIN_SERVICE_S, value)
        self._cache[key] = value
        return value


def check_profile(field: str, profile: object) -> LatencyProfile:
    """Raise ``ConfigError`` unless ``profile`` is a ``LatencyProfile``."""
    if not isinstance(profile, LatencyProfile):
        raise ConfigError(field, type(profile).__name__, "a spec.profiles.LatencyProfile")
    return profile


