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

__all__ = ["ArrivalMerge"]


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
        """``merge``'s two arrays, a window at a time (consecutive pieces; an empty window is skipped)."""
        pending = {s: np.empty(0) for s in range(len(self.streams))}  # each live source's times not yet merged
        position, end_s = 0, self.window_s
        while pending:
            times, index = self._window(pending, end_s)
            if times:
                t = np.concatenate(times)
                i = np.concatenate(index)
                order = np.argsort(t, kind="stable")
                position += len(t)
                if position > self.total:
                    raise ValueError(f"the sources gave more than the {self.total} times they were to give")
                yield t[order], i[order]
            end_s += self.window_s
        if position != self.total:
            raise ValueError(f"the sources gave {position} times, not {self.total}")

    def _window(self, pending: dict[int, np.ndarray], end_s: float) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """Each source's times before ``end_s``, in source order (a source drained and exhausted leaves ``pending``)."""
        times, index = [], []
        for source in list(pending):
            buffer = pending[source]
            exhausted = False
            if not len(buffer) or buffer[-1] < end_s:
                blocks = [buffer]  # joined once: joining block by block would copy a long window over and over
                while not len(blocks[-1]) or blocks[-1][-1] < end_s:
                    block = next(self.streams[source], None)
                    if block is None:
                        exhausted = True
                        break
                    blocks.append(block)
                buffer = np.concatenate(blocks) if len(blocks) > 1 else buffer
            cut = int(np.searchsorted(buffer, end_s, side="left"))
            if cut:
                times.append(buffer[:cut])
                index.append(np.full(cut, source, dtype=np.int16))
            if exhausted and cut == len(buffer):
                del pending[source]
            else:
                pending[source] = buffer[cut:]
        return times, index
