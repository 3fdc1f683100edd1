"""Intervals over repeats: what a researcher needs to tell a real difference from seed noise.

A repeat is one run of a configuration with another seed (what a seed varies
is listed in the README, "Repeats"). Over the repeats of one configuration a
summary metric has a mean and a 95% interval: Student's t for means of
counts, costs and throughputs; a bootstrap (scipy.stats.bootstrap,
percentile method, seeded) for latency percentiles and SLO attainment, whose
per-run values are skewed and bounded. A paired comparison takes two
strategies run on the same seeds and gives the interval of the mean per-seed
difference (Student's t on the differences).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

__all__ = ["relative_error", "Interval", "t_interval", "bootstrap_interval", "interval", "paired_difference", "BOOTSTRAPPED", "CONFIDENCE"]

CONFIDENCE = 0.95
#: summary metrics whose interval is bootstrapped (skewed or bounded per-run values)
BOOTSTRAPPED = ("latency_p50_s", "latency_p95_s", "latency_p99_s", "slo_attainment")


@dataclass(frozen=True, kw_only=True, slots=True)
class Interval:
    """A mean over ``n`` repeats and its two-sided interval at ``confidence`` (NaN bounds: fewer than 2 values)."""

    mean: float
    low: float
    high: float
    n: int
    method: str
    confidence: float = CONFIDENCE

    @property
    def half_width(self) -> float:
        return (self.high - self.low) / 2

    @property
    def excludes_zero(self) -> bool:
        """True when the whole interval lies on one side of 0 (a difference the repeats support)."""
        return bool(self.low > 0 or self.high < 0)

    def __str__(self) -> str:
        return f"{self.mean:.4g} [{self.low:.4g}, {self.high:.4g}] (n={self.n})"


def relative_error(estimate: float, reference: float) -> float:
    """(estimate - reference) / |reference|; NaN when either is missing or not finite, inf against a 0 reference."""
    if reference is None or estimate is None or not math.isfinite(reference) or not math.isfinite(estimate):
        return math.nan
    if reference == 0:
        return 0.0 if estimate == 0 else math.inf
    return (estimate - reference) / abs(reference)


def _finite(values: Sequence[float]) -> np.ndarray:
    array = np.asarray(values, dtype=float)
    return array[np.isfinite(array)]


def t_interval(values: Sequence[float], confidence: float = CONFIDENCE) -> Interval:
    """Student's t interval of the mean (non-finite values left out)."""
    x = _finite(values)
    n = len(x)
    mean = float(x.mean()) if n else math.nan
    if n < 2:
        return Interval(mean=mean, low=math.nan, high=math.nan, n=n, method="t", confidence=confidence)
    sem = float(stats.sem(x))
    if sem == 0:
        return Interval(mean=mean, low=mean, high=mean, n=n, method="t", confidence=confidence)
    low, high = stats.t.interval(confidence, df=n - 1, loc=mean, scale=sem)
    return Interval(mean=mean, low=float(low), high=float(high), n=n, method="t", confidence=confidence)


def bootstrap_interval(values: Sequence[float], confidence: float = CONFIDENCE, *, resamples: int = 9999, seed: int = 0) -> Interval:
    """Percentile-bootstrap interval of the mean (seeded, so a table is reproducible)."""
    x = _finite(values)
    n = len(x)
    mean = float(x.mean()) if n else math.nan
    if n < 2 or np.all(x == x[0]):
        bound = mean if n >= 2 else math.nan
        return Interval(mean=mean, low=bound, high=bound, n=n, method="bootstrap", confidence=confidence)
    result = stats.bootstrap((x,), np.mean, confidence_level=confidence, n_resamples=resamples, method="percentile",
                             random_state=np.random.default_rng(seed))  # fmt: skip
    ci = result.confidence_interval
    return Interval(mean=mean, low=float(ci.low), high=float(ci.high), n=n, method="bootstrap", confidence=confidence)


def interval(metric: str, values: Sequence[float], confidence: float = CONFIDENCE) -> Interval:
    """The interval this module uses for ``metric`` (see ``BOOTSTRAPPED``)."""
    if metric in BOOTSTRAPPED:
        return bootstrap_interval(values, confidence)
    return t_interval(values, confidence)


def paired_difference(baseline: Sequence[float], candidate: Sequence[float], confidence: float = CONFIDENCE) -> Interval:
    """Interval of the mean of ``candidate - baseline`` over pairs run on the same seeds."""
    a = np.asarray(baseline, dtype=float)
    b = np.asarray(candidate, dtype=float)
    if a.shape != b.shape:
        raise ValueError(f"paired_difference: {len(a)} baseline values against {len(b)} candidate values; pair them by seed")
    result = t_interval(b - a, confidence)
    return Interval(mean=result.mean, low=result.low, high=result.high, n=result.n, method="paired t", confidence=confidence)
