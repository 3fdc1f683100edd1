"""Timeout batching's cuts for many queues at once: ``timeout_cuts`` over segments, in a few vectorized passes.

A fleet's gateways each keep one queue; on the simulator's fleet bulk path a
chunk of arrivals of all of them, sorted by (queue, time), is cut in one call
instead of one ``timeout_cuts`` call per queue (``sim.fleet_bulk_driver``).
"""

from __future__ import annotations

import math

import numpy as np

from policies.batching.fixed import FixedBatching
from policies.batching.no_batching import NoBatching
from policies.batching.timeout import TimeoutBatching
from policies.batching.timeout_cuts import timer_fires_s

__all__ = ["timeout_settings", "segmented_timeout_cuts"]

#: linear probes for each head's first arrival at or after its due time before a binary search takes the rest
_LINEAR_PROBES = 4
#: fewer segments than this: the chain of heads is followed in one loop over plain lists, not segment-parallel
_PARALLEL_FROM = 32


def timeout_settings(batcher) -> tuple[int, float] | None:
    """``(max_batch_size, max_wait_s)`` whose ``timeout_cuts`` are ``batcher.bulk_cuts`` now; None: not one of those.

    Timeout batching's own; fixed batching cuts as timeout batching of its
    ``batch_size`` (``FixedBatching.bulk_cuts``); no batching as batches of
    one sent at their arrival (size 1, no wait: every head fills its batch).
    A subclass that replaces ``bulk_cuts`` is none of them.
    """
    if not batcher.supports_bulk:
        return None
    cuts = type(batcher).bulk_cuts
    if cuts is TimeoutBatching.bulk_cuts:
        return int(batcher.max_batch_size), float(batcher.max_wait_s)
    if cuts is FixedBatching.bulk_cuts:
        return int(batcher.batch_size), float(batcher.max_wait_s)
    if cuts is NoBatching.bulk_cuts:
        return 1, 0.0
    return None


def segmented_timeout_cuts(arrival_s: np.ndarray, segment_end: np.ndarray, max_batch_size: np.ndarray, max_wait_s: np.ndarray,
                           until_s: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:  # fmt: skip
    """``timeout_cuts`` of every segment of ``arrival_s`` at once: ``(heads, ends, dispatched_s)``, in position order.

    ``arrival_s`` holds the segments one after the other, each sorted (a
    queue's requests, those queued first); ``segment_end[i]`` is one past the
    last position of ``i``'s segment, ``max_batch_size[i]`` and
    ``max_wait_s[i]`` its queue's settings. Batch k is positions
    ``heads[k]:ends[k]``, sent at ``dispatched_s[k]``; within each segment the
    batches are exactly ``timeout_cuts(segment, size, wait, until_s)``'s (the
    same operations on the same numbers), and the positions of a segment past
    its last batch stay queued.

    Each head's candidate batch needs only its first arrival at or after its
    due time among the next ``max_batch_size`` of its segment (any later one
    and the batch is full), found by a few probes and a binary search over
    all positions together; the chain of heads is followed for all segments
    in parallel, one step of every segment per pass.
    """
    count = len(arrival_s)
    if not count:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0)
    positions = np.arange(count, dtype=np.int64)
    due_s = arrival_s + max_wait_s
    fire_s = timer_fires_s(arrival_s, due_s)
    full_at = positions + max_batch_size
    limit = np.minimum(full_at, segment_end)
    first = _first_at_or_after(arrival_s, due_s, positions, limit)
    found = first < limit
    at_due_s = np.where(found, arrival_s[np.minimum(first, count - 1)], math.inf)
    by_arrival = found & ((first == positions) | (at_due_s < fire_s))
    ends = np.where(by_arrival, first + 1, first)
    dispatched_s = np.where(by_arrival, at_due_s, fire_s)
    full = ends >= full_at  # the filling arrival came first (or no arrival was due before the batch filled)
    ends = np.where(full, full_at, ends)
    dispatched_s = np.where(full, arrival_s[np.minimum(full_at - 1, count - 1)], dispatched_s)
    settled = full | found | (fire_s <= until_s)
    heads = _chain(settled, ends, segment_end)
    return heads, ends[heads], dispatched_s[heads]


def _first_at_or_after(arrival_s: np.ndarray, due_s: np.ndarray, start: np.ndarray, limit: np.ndarray) -> np.ndarray:
    """For each i, the first position j in ``start[i]:limit[i]`` with ``arrival_s[j] >= due_s[i]`` (``limit[i]``: none)."""
    first = limit.copy()
    which = np.flatnonzero(start < limit)
    probe = start[which]
    for _ in range(_LINEAR_PROBES):  # the usual case: the next arrival or two decide
        if not len(which):
            return first
        hit = arrival_s[probe] >= due_s[which]
        first[which[hit]] = probe[hit]
        which, probe = which[~hit], probe[~hit] + 1
        going = probe < limit[which]
        which, probe = which[going], probe[going]
    low, high = probe, limit[which]
    while len(which):  # the rest: a binary search over [low, high), all together
        middle = (low + high) // 2
        hit = arrival_s[middle] >= due_s[which]
        high = np.where(hit, middle, high)
        low = np.where(hit, low, middle + 1)
        done = low >= high
        first[which[done]] = low[done]
        which, low, high = which[~done], low[~done], high[~done]
    return first


def _chain(settled: np.ndarray, ends: np.ndarray, segment_end: np.ndarray) -> np.ndarray:
    """The heads each segment's chain visits (from its first position, each batch's end the next head, while settled), in order."""
    count = len(settled)
    starts = np.flatnonzero(np.concatenate([[True], segment_end[1:] != segment_end[:-1]]))
    if len(starts) < _PARALLEL_FROM:
        # few segments, long chains: one loop over plain lists, a segment's unsettled head jumping to the next segment
        settled_l, next_l, end_l = settled.tolist(), ends.tolist(), segment_end.tolist()
        heads = []
        head = 0
        while head < count:
            if settled_l[head]:
                heads.append(head)
                head = next_l[head]
            else:
                head = end_l[head]
        return np.asarray(heads, dtype=np.int64)
    is_head = np.zeros(count, dtype=bool)
    head, stop = starts, segment_end[starts]
    while len(head):  # one step of every segment's chain per pass
        going = settled[head]
        head, stop = head[going], stop[going]
        is_head[head] = True
        head = ends[head]
        going = head < stop
        head, stop = head[going], stop[going]
    return np.flatnonzero(is_head)
