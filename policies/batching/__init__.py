"""Batching policies: when a queue becomes a batch, and how large."""

from policies.batching.aimd import AIMDBatching
from policies.batching.deadline import DeadlineAwareBatching
from policies.batching.fixed import FixedBatching
from policies.batching.no_batching import NoBatching
from policies.batching.timeout import TimeoutBatching

__all__ = ["NoBatching", "TimeoutBatching", "FixedBatching", "AIMDBatching", "DeadlineAwareBatching"]
