"""Merging many sources' arrival times in time windows, in memory that does not hold them twice.

``spec.workload.Workload.generate`` concatenates every source's times and
sorts them all at once (a stable sort, ties in source order): four or five
arrays the size of the run at its peak. For a long run (a fleet) this merge
gives the very same two arrays from each source's times drawn block by
block (``ArrivalProcess.blocks_s``): window after window of simulated time,
each source's times before the window's end are taken (in source order) and
stably sorted within the window. Every time in a window is below every time
of the next, so this is the global stable sort, piece by piece; what it
holds beyond the two output arrays (10 bytes per request) is one window and
each source's drawn-but-not-yet-merged block.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np

__all__ = ["ArrivalMerge", "in_time_order"]


def in_time_order(times_s: np.ndarray, source_index: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Both arrays sorted by time, ties in source order, then in their given order (as a stable sort by time of arrays
    given in source order; within a source, times are given in their order)."""
    order = np.argsort(times_s)  # numpy's fastest sort, not a stable one: without ties any sort gives the one order
    sorted_s = times_s[order]
    if bool((sorted_s[1:] == sorted_s[:-1]).any()):  # a tie: by source, then as given (lexsort is stable)
        order = np.lexsort((source_index, times_s))
        sorted_s = times_s[order]
    return sorted_s, source_index[order]


class ArrivalMerge:
    """Merge ``streams`` (each source's increasing times, in blocks) of ``total`` times, ``window_s`` of time at a time."""

    def __init__(self, streams: Sequence[Iterator[np.ndarray]], *, total: int, window_s: float):
        if not window_s > 0:
            raise ValueError(f"window_s={window_s!r}: a window of time > 0")
        self.streams = list(streams)
        self.total = int(total)
        self.window_s = float(window_s)

    def merge(self) -> tuple[np.ndarray, np.ndarray]:
        """(arrival times, source index as int16), sorted by time, ties in source order."""
        arrival_s = np.empty(self.total, dtype=np.float64)
        source_index = np.empty(self.total, dtype=np.int16)
        position = 0
        for times, index in self.windows():
            stop = position + len(times)
            arrival_s[position:stop] = times
            source_index[position:stop] = index
            position = stop
        return arrival_s, source_index

    def windows(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """``merge``'s two arrays, a window at a time (consecutive pieces; an empty window is skipped).

        Every source's drawn-but-not-merged times are one pool (each source's
        in its time order), so a window is a few passes over the pool; Python
        runs only per block drawn, for the sources whose draws end before the
        window does (a fleet of 10,000 sources: BENCHMARKS.md, Fleets).
        """
        count = len(self.streams)
        pool_s, pool_source = np.empty(0), np.empty(0, dtype=np.int16)
        last_s = np.full(count, -np.inf)  # each source's last time drawn
        exhausted = np.zeros(count, dtype=bool)
        position, end_s = 0, self.window_s
        while len(pool_s) or not exhausted.all():
            drawn_s, drawn_source = self._draw(np.flatnonzero(~exhausted & (last_s < end_s)), end_s, last_s, exhausted)
            pool_s, pool_source = np.concatenate([pool_s, *drawn_s]), np.concatenate([pool_source, *drawn_source])
            inside = pool_s < end_s
            t, i = pool_s[inside], pool_source[inside]
            pool_s, pool_source = pool_s[~inside], pool_source[~inside]
            end_s += self.window_s
            if not len(t):
                continue
            position += len(t)
            if position > self.total:
                raise ValueError(f"the sources gave more than the {self.total} times they were to give")
            yield in_time_order(t, i)
        if position != self.total:
            raise ValueError(f"the sources gave {position} times, not {self.total}")

    def _draw(self, needy: np.ndarray, end_s: float, last_s: np.ndarray, exhausted: np.ndarray):
        """Blocks of the ``needy`` sources until each has drawn past ``end_s`` or has no more (``last_s``, ``exhausted``
        updated): the blocks' times and source indices."""
        times, index = [], []
        for source in needy.tolist():
            stream = self.streams[source]
            while last_s[source] < end_s:
                block = next(stream, None)
                if block is None:
                    exhausted[source] = True
                    break
                if len(block):
                    times.append(block)
                    index.append(np.full(len(block), source, dtype=np.int16))
                    last_s[source] = block[-1]
        return times, index
