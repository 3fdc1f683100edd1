"""Batching policies: when a queue becomes a batch, and how large."""

from policies.batching.immediate import NoBatching
from policies.batching.timeout import TimeoutBatching

__all__ = ["NoBatching", "TimeoutBatching"]
