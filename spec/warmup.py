"""A model's extra service time after its worker idled: the warm-up the calibration measures.

Timed back to back, wide_mlp's batch of one takes 3.45 ms on this machine;
after 10 ms asleep it takes 5.2, after 20 ms 5.9, after 100 ms 6.9 (a
batch of 8: 11.4 ms back to back, 17.6 after 100 ms), in isolation, with
nothing else running: the caches and the core's clock have cooled. A worker
at low load always starts cold, one near saturation always warm, so one
service table cannot hold both. ``WarmupTable`` holds the extra seconds by
batch size and by the idle time before the batch; the simulator adds them
to a batch's service time from its slot's own idle time.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from spec.validation import ConfigError

__all__ = ["WarmupTable"]


@dataclass(frozen=True, kw_only=True)
class WarmupTable:
    """``extra_s[i][j]``: seconds more for a batch of ``batch_sizes[i]`` after ``idle_s[j]`` seconds idle.

    Linear in the idle time between the measured points (0 extra after no
    idle time), flat beyond the longest; linear in the batch size between
    the measured sizes, the nearest beyond them. Negative measurements are
    taken as 0 (noise around no warm-up).
    """

    batch_sizes: Sequence[int]
    idle_s: Sequence[float]
    extra_s: Sequence[Sequence[float]]

    def __post_init__(self):
        sizes, idles = list(self.batch_sizes), list(self.idle_s)
        if not sizes or sorted(set(sizes)) != sizes or any(not isinstance(s, int) or s < 1 for s in sizes):
            raise ConfigError("warmup.batch_sizes", self.batch_sizes, "increasing batch sizes >= 1")
        if not idles or sorted(set(idles)) != idles or any(not math.isfinite(g) or g <= 0 for g in idles):
            raise ConfigError("warmup.idle_s", self.idle_s, "increasing idle times > 0 (seconds, finite)")
        rows = [list(r) for r in self.extra_s]
        if len(rows) != len(sizes) or any(len(r) != len(idles) for r in rows) or not all(math.isfinite(v) for r in rows for v in r):
            raise ConfigError("warmup.extra_s", self.extra_s, f"{len(sizes)} rows (one per batch size) of {len(idles)} finite seconds")
        object.__setattr__(self, "_idle", np.array([0.0, *idles]))
        object.__setattr__(self, "_rows", np.array([[0.0, *(max(0.0, v) for v in r)] for r in rows]))
        object.__setattr__(self, "_sizes", np.array(sizes, dtype=float))

    @classmethod
    def from_config(cls, raw, field_name: str = "warmup") -> "WarmupTable":
        if isinstance(raw, WarmupTable):
            return raw
        if not isinstance(raw, Mapping) or set(raw) != {"batch_sizes", "idle_s", "extra_s"}:
            raise ConfigError(field_name, raw, "a mapping with batch_sizes, idle_s, extra_s")
        try:
            return cls(batch_sizes=list(raw["batch_sizes"]), idle_s=[float(g) for g in raw["idle_s"]], extra_s=raw["extra_s"])
        except ConfigError as error:
            raise ConfigError(f"{field_name}.{error.field.split('.')[-1]}", error.value, error.allowed) from None
        except (TypeError, ValueError):
            raise ConfigError(field_name, raw, "batch_sizes (integers), idle_s and extra_s (numbers)") from None

    def extra_for(self, batch_size: int, idle_s: float) -> float:
        """Seconds more for a batch of ``batch_size`` that starts after ``idle_s`` seconds idle."""
        if not idle_s > 0:
            return 0.0
        by_size = [float(np.interp(idle_s, self._idle, row)) for row in self._rows]
        return float(np.interp(batch_size, self._sizes, by_size))
