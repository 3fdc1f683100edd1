"""A long run's arrivals, generated when read: in full on first use, or window by window for a streamed run.

``Workload.generate`` gives a long run (``Workload.merge_in_windows_above``)
as ``StreamedArrivals``: the same two arrays as ``spec.workload.Arrivals``
(``arrival_s``, ``source_index``), merged window by window
(``spec.arrival_merge``) the first time either is read, so that every reader
of ``Arrivals`` reads them unchanged. A driver that reads them in order and
can say which ids it no longer needs (the simulator's fleet bulk path with
the streaming recorder) asks for ``rolling()`` instead: the same values from
a fresh merge of the same streams, held only from the oldest id still needed
to the newest generated, so that nothing the size of the run is ever held.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np

from spec.arrival_merge import ArrivalMerge

__all__ = ["ArrivalColumns", "StreamedArrivals", "RollingArrivals", "RollingColumn"]


class ArrivalColumns:
    """Per-request columns derived from ``arrival_s``, ``source_index`` and ``sources`` (shared by both arrival types)."""

    __slots__ = ()

    @property
    def size_bytes(self) -> np.ndarray:
        return np.array([s.size_bytes for s in self.sources], dtype=np.int64)[self.source_index]

    @property
    def deadline_s(self) -> np.ndarray:
        return self.arrival_s + np.array([s.slo_s for s in self.sources])[self.source_index]


class StreamedArrivals(ArrivalColumns):
    """``Arrivals`` of ``total`` requests from ``sources``, merged by ``make_merge()`` when first read."""

    def __init__(self, make_merge: Callable[[], ArrivalMerge], *, total: int, sources: tuple):
        self._make_merge = make_merge
        self.total = int(total)
        self.sources = sources
        self._arrays: tuple[np.ndarray, np.ndarray] | None = None

    def __len__(self) -> int:
        return self.total

    def _merged(self) -> tuple[np.ndarray, np.ndarray]:
        if self._arrays is None:
            self._arrays = self._make_merge().merge()
        return self._arrays

    @property
    def arrival_s(self) -> np.ndarray:
        """Every arrival time, in order (generated on first read, then kept)."""
        return self._merged()[0]

    @property
    def source_index(self) -> np.ndarray:
        """Every arrival's source (int16), in the same order."""
        return self._merged()[1]

    def rolling(self) -> RollingArrivals:
        """The same arrivals generated as read and forgotten when trimmed (``RollingArrivals``)."""
        return RollingArrivals(self._make_merge().windows(), total=self.total, sources=self.sources)


class RollingArrivals:
    """Arrivals read by id from a window of them: generated ahead as read (``ensure``), dropped behind (``trim``).

    ``arrival_s`` and ``source_index`` take what numpy arrays take from a
    driver reading in order: ``[i]``, ``[start:stop]`` and an array of ids,
    all at or after ``base`` (an id already trimmed raises ``IndexError``).
    """

    def __init__(self, windows: Iterator[tuple[np.ndarray, np.ndarray]], *, total: int, sources: tuple):
        self._windows = windows
        self.total = int(total)
        self.sources = sources
        self.base = 0
        self._times = np.zeros(0)
        self._index = np.zeros(0, np.int16)
        self.first_s: float | None = None
        self.arrival_s = RollingColumn(self, "_times")
        self.source_index = RollingColumn(self, "_index")

    def __len__(self) -> int:
        return self.total

    @property
    def held(self) -> int:
        """Arrivals held now."""
        return len(self._times)

    def ensure(self, stop: int) -> None:
        """Generate arrivals until ids below ``stop`` are held."""
        have = self.base + len(self._times)
        if stop <= have:
            return
        times, index = [self._times], [self._index]
        while have < stop:
            window = next(self._windows, None)
            if window is None:
                raise IndexError(f"arrival {stop - 1} asked for; the run has {have}")
            times.append(window[0])
            index.append(window[1])
            have += len(window[0])
        self._times, self._index = np.concatenate(times), np.concatenate(index)
        if self.first_s is None and len(self._times):
            self.first_s = float(self._times[0])

    def trim(self, keep_from: int) -> None:
        """Forget the arrivals before id ``keep_from`` (in steps of at least a quarter of what is held: each copies)."""
        cut = keep_from - self.base
        if cut > 0 and cut >= len(self._times) // 4:
            self._times, self._index = self._times[cut:].copy(), self._index[cut:].copy()
            self.base = keep_from


class RollingColumn:
    """One of a ``RollingArrivals``' two columns, indexed by request id."""

    def __init__(self, owner: RollingArrivals, name: str):
        self._owner = owner
        self._name = name

    def __len__(self) -> int:
        return self._owner.total

    def __getitem__(self, key):
        owner = self._owner
        base = owner.base
        if isinstance(key, slice):
            if key.start is None or key.stop is None or key.step not in (None, 1):
                raise IndexError("a rolling column takes [start:stop] with both given")
            if key.start < base:
                raise IndexError(f"arrivals before {base} were trimmed; {key.start} asked for")
            owner.ensure(key.stop)
            return getattr(owner, self._name)[key.start - base : key.stop - base]
        if isinstance(key, np.ndarray):
            if not len(key):
                return getattr(owner, self._name)[:0]
            low, high = int(key.min()), int(key.max())
            if low < base:
                raise IndexError(f"arrivals before {base} were trimmed; {low} asked for")
            owner.ensure(high + 1)
            return getattr(owner, self._name)[key - base]
        key = int(key)
        if key < base:
            raise IndexError(f"arrivals before {base} were trimmed; {key} asked for")
        owner.ensure(key + 1)
        return getattr(owner, self._name)[key - base]
