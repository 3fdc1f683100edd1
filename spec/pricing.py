"""Pricing: what a batch costs on each kind of executor. Prices are configs."""

from __future__ import annotations

import abc
import math

from spec.validation import check_non_negative, check_positive

__all__ = ["Pricing", "FreePricing", "HourlyPricing", "ServerlessPricing"]


class Pricing(abc.ABC):
    """Cost of running batches on one executor."""

    @abc.abstractmethod
    def batch_cost(self, *, duration_s: float, memory_mb: int | None) -> float:
        """Cost charged for one batch that held an instance for ``duration_s``."""

    def standing_cost(self, *, span_s: float, units: int) -> float:
        """Cost of keeping ``units`` instances for ``span_s`` whether busy or not."""
        return 0.0


class FreePricing(Pricing):
    """Nothing is charged (an edge device already paid for)."""

    def batch_cost(self, *, duration_s, memory_mb):
        return 0.0


class HourlyPricing(Pricing):
    """A server or edge device paid by the hour (or its amortized price).

    A batch is charged its busy time's share; the idle remainder appears as
    standing cost in the run's total.
    """

    def __init__(self, *, price_per_hour: float):
        self.price_per_hour = check_non_negative("pricing.price_per_hour", price_per_hour)

    def batch_cost(self, *, duration_s, memory_mb):
        return self.price_per_hour * duration_s / 3600.0

    def standing_cost(self, *, span_s, units):
        return self.price_per_hour * span_s / 3600.0 * units


class ServerlessPricing(Pricing):
    """Configured memory x billed duration, plus a fee per invocation.

    Billed duration is rounded up to ``granularity_s`` (1 ms on AWS Lambda,
    100 ms on older price lists) and to at least ``minimum_s``.
    ``price_per_gb_s`` is per GB (1024 MB) of configured memory.
    """

    def __init__(
        self,
        *,
        price_per_gb_s: float,
        per_invocation: float = 0.0,
        granularity_s: float = 0.001,
        minimum_s: float = 0.0,
        bill_cold_start: bool = True,
    ):
        self.price_per_gb_s = check_non_negative("pricing.price_per_gb_s", price_per_gb_s)
        self.per_invocation = check_non_negative("pricing.per_invocation", per_invocation)
        self.granularity_s = check_positive("pricing.granularity_s", granularity_s)
        self.minimum_s = check_non_negative("pricing.minimum_s", minimum_s)
        self.bill_cold_start = bool(bill_cold_start)

    def billed_s(self, duration_s: float) -> float:
        """Duration after rounding up to the granularity and the minimum."""
        # a tiny epsilon keeps 0.1 s billed as 0.1 s, not 0.1 + granularity, after float error
        units = math.ceil(duration_s / self.granularity_s - 1e-9)
        return max(self.minimum_s, units * self.granularity_s)

    def batch_cost(self, *, duration_s, memory_mb):
        memory_gb = (memory_mb or 0) / 1024.0
        return self.price_per_gb_s * memory_gb * self.billed_s(duration_s) + self.per_invocation
