"""A mergeable percentile sketch: a fixed-bin logarithmic histogram with a stated relative error.

Bin ``i`` holds the values in ``(gamma**(i-1), gamma**i]`` with
``gamma = (1 + alpha) / (1 - alpha)`` and reports ``2 * gamma**i / (gamma + 1)``
for each of them, which is within ``alpha`` (relative) of every value in the
bin (the DDSketch construction). The bins are fixed, so two sketches merge by
adding their counts, in any order, with no loss.

The error bound, against numpy's exact ``np.percentile(x, q)`` (linear
interpolation between the order statistics ``x[floor(r)]`` and
``x[ceil(r)]``, ``r = q/100 * (n-1)``): the estimate lies in
``[(1 - alpha) * x[floor(r)], (1 + alpha) * x[ceil(r)]]``. With millions of
samples the two order statistics are next to each other, so this is a
relative error of ``alpha`` (0.5 % by default). Values at or below
``min_s`` (and 0) share the lowest bin, values above ``max_s`` the highest:
outside ``[min_s, max_s]`` the bound does not hold (the default range, 1 us
to 1e6 s, holds any latency a run produces).
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["LatencySketch"]


class LatencySketch:
    """Counts of values in logarithmic bins of relative width ``alpha``; ``percentile`` as numpy's, within ``alpha``."""

    def __init__(self, *, alpha: float = 0.005, min_s: float = 1e-6, max_s: float = 1e6):
        if not 0 < alpha < 1:
            raise ValueError(f"alpha={alpha!r}: a relative error in (0, 1)")
        if not 0 < min_s < max_s:
            raise ValueError(f"min_s={min_s!r}, max_s={max_s!r}: 0 < min_s < max_s")
        self.alpha = float(alpha)
        self.min_s, self.max_s = float(min_s), float(max_s)
        self._log_gamma = math.log((1 + alpha) / (1 - alpha))
        self._offset = math.ceil(math.log(min_s) / self._log_gamma)
        self.counts = np.zeros(math.ceil(math.log(max_s) / self._log_gamma) - self._offset + 1, dtype=np.int64)

    @property
    def count(self) -> int:
        """How many values were added."""
        return int(self.counts.sum())

    def add(self, values_s: np.ndarray) -> None:
        """Count ``values_s`` (NaNs are skipped)."""
        values = np.asarray(values_s, dtype=np.float64)
        values = values[~np.isnan(values)]
        if not len(values):
            return
        clipped = np.clip(values, self.min_s, self.max_s)
        index = np.ceil(np.log(clipped) / self._log_gamma).astype(np.int64) - self._offset
        np.clip(index, 0, len(self.counts) - 1, out=index)
        self.counts += np.bincount(index, minlength=len(self.counts))

    def merge(self, other: LatencySketch) -> None:
        """Add ``other``'s counts (the same ``alpha`` and range)."""
        if (other.alpha, other.min_s, other.max_s) != (self.alpha, self.min_s, self.max_s):
            raise ValueError("sketches with different alpha or range do not merge")
        self.counts += other.counts

    def _value(self, rank: int, cumulative: np.ndarray) -> float:
        """The reported value of the ``rank``-th smallest value (from 0)."""
        i = int(np.searchsorted(cumulative, rank, side="right"))
        gamma = math.exp(self._log_gamma)
        return 2 * math.exp((i + self._offset) * self._log_gamma) / (gamma + 1)

    def percentile(self, q: float) -> float:
        """numpy's ``percentile(values, q)`` (linear between order statistics), each order statistic from its bin."""
        n = self.count
        if n == 0:
            return math.nan
        cumulative = np.cumsum(self.counts)
        r = q / 100 * (n - 1)
        low, high = math.floor(r), math.ceil(r)
        v_low = self._value(low, cumulative)
        v_high = v_low if high == low else self._value(high, cumulative)
        return v_low + (r - low) * (v_high - v_low)
