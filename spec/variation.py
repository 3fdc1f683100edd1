"""A per-device variation: a distribution of positive factors, drawn once per device of a fleet.

``spec.fleet.Fleet`` draws one factor per device from each of its variations
(arrival rate, device speed, link bandwidth and delay) and multiplies the
template's values by it. A variation is given as a number (every device the
same factor) or a mapping::

    {kind: constant, value: 1.0}
    {kind: uniform, low: 0.5, high: 1.5}                 # every factor in [low, high]
    {kind: lognormal, mean: 1.0, cv: 0.3, low: 0.25, high: 4.0}   # clipped to [low, high] (default 0, inf)
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from spec.validation import ConfigError, check_choice, check_non_negative, check_positive

__all__ = ["Variation", "VARIATION_KINDS"]

VARIATION_KINDS = ("constant", "uniform", "lognormal")

_KEYS = {"constant": ("value",), "uniform": ("low", "high"), "lognormal": ("mean", "cv", "low", "high")}


@dataclass(frozen=True, slots=True, kw_only=True)
class Variation:
    """Positive factors: constant, uniform on [low, high], or lognormal (mean, cv) clipped to [low, high]."""

    kind: str = "constant"
    value: float = 1.0
    low: float = 0.0
    high: float = math.inf
    mean: float = 1.0
    cv: float = 0.0

    @classmethod
    def from_config(cls, field: str, raw: Any) -> Variation:
        """A number (a constant factor) or ``{kind, ...}``; a bad entry raises ``ConfigError`` naming ``field``."""
        if raw is None:
            return cls()
        if isinstance(raw, (int, float)) and not isinstance(raw, bool):
            return cls(value=check_positive(field, raw))
        if not isinstance(raw, Mapping):
            raise ConfigError(field, raw, "a factor > 0 or a mapping {kind: constant|uniform|lognormal, ...}")
        kind = check_choice(f"{field}.kind", raw.get("kind", "constant"), VARIATION_KINDS)
        extra = sorted(set(raw) - {"kind", *_KEYS[kind]})
        if extra:
            raise ConfigError(f"{field}.{extra[0]}", raw[extra[0]], f"a setting of a {kind} variation: " + ", ".join(_KEYS[kind]))
        if kind == "constant":
            return cls(value=check_positive(f"{field}.value", raw.get("value", 1.0)))
        if kind == "uniform":
            low = check_positive(f"{field}.low", raw.get("low"))
            high = check_positive(f"{field}.high", raw.get("high"))
            if high < low:
                raise ConfigError(f"{field}.high", high, f"a number >= low ({low})")
            return cls(kind=kind, low=low, high=high)
        mean = check_positive(f"{field}.mean", raw.get("mean", 1.0))
        cv = check_non_negative(f"{field}.cv", raw.get("cv"))
        low = check_non_negative(f"{field}.low", raw.get("low", 0.0))
        high = check_positive(f"{field}.high", raw.get("high", math.inf), finite=False)
        if high <= low:
            raise ConfigError(f"{field}.high", high, f"a number > low ({low})")
        return cls(kind=kind, mean=mean, cv=cv, low=low, high=high)

    def sample(self, rng: np.random.Generator, count: int) -> np.ndarray:
        """``count`` factors (float64, all > 0), drawn in one call so a fleet's first devices keep theirs as it grows."""
        if self.kind == "constant":
            return np.full(count, self.value)
        if self.kind == "uniform":
            return rng.uniform(self.low, self.high, count)
        sigma2 = math.log1p(self.cv**2)
        draws = rng.lognormal(math.log(self.mean) - sigma2 / 2, math.sqrt(sigma2), count)
        # a factor of 0 would stop a device: clip into (low, high], never below a tiny positive floor
        return np.clip(draws, max(self.low, 1e-9), self.high)
