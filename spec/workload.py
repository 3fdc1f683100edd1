"""Workloads: arrival processes and sources, as numpy arrays of arrival times.

The simulator and the live source both call ``Workload.generate(seed)`` and so
replay exactly the same arrivals for a given seed. A seed varies a random
process's draws and where a trace's replay starts (``TraceArrivals``).
"""

from __future__ import annotations

import abc
import hashlib
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from spec.arrival_merge import ArrivalMerge, in_time_order
from spec.streamed_arrivals import ArrivalColumns, StreamedArrivals
from spec.traces import load_series
from spec.validation import ConfigError, check_int_at_least, check_non_negative, check_positive

__all__ = [
    "ArrivalProcess",
    "PoissonArrivals",
    "GammaArrivals",
    "MMPPArrivals",
    "TraceArrivals",
    "Source",
    "Workload",
    "Arrivals",
]


class ArrivalProcess(abc.ABC):
    """A renewal or modulated process producing arrival times in seconds."""

    @abc.abstractmethod
    def times_s(self, rng: np.random.Generator, *, count: int | None, duration_s: float | None) -> np.ndarray:
        """Increasing arrival times from 0, stopping at ``count`` arrivals or
        before ``duration_s``, whichever is given (at least one must be)."""

    @property
    @abc.abstractmethod
    def mean_rate_rps(self) -> float:
        """Long-run mean arrival rate in requests per second."""

    def blocks_s(self, rng: np.random.Generator, *, count: int, block: int) -> Iterator[np.ndarray]:
        """``times_s(rng, count=count)``'s very times, in consecutive blocks (``spec.arrival_merge``).

        This default gives them in one block; a renewal process draws them ``block`` at a time.
        """
        yield self.times_s(rng, count=count, duration_s=None)


def _take_blocks(gap_sampler, rng, count: int, block: int) -> Iterator[np.ndarray]:
    """``_take``'s ``count`` times, ``block`` at a time: the same draws (a generator's draws do not depend on how many
    are asked at once) and the same running sum (each block's cumsum continues from the last time)."""
    last, left = np.zeros(1), count
    while left > 0:
        gaps = gap_sampler(rng, min(block, left))
        times = np.cumsum(np.concatenate([last, gaps]))[1:]
        left -= len(times)
        last = times[-1:]
        yield times


def _take(gap_sampler, rng, count, duration_s, mean_gap_s) -> np.ndarray:
    """Draw gaps in blocks until ``count`` arrivals or ``duration_s`` is covered."""
    if count is not None:
        return np.cumsum(gap_sampler(rng, count))
    parts, total, end = [], 0, 0.0
    block = max(1024, int(duration_s / mean_gap_s * 1.1) + 16)
    while end < duration_s:
        times = end + np.cumsum(gap_sampler(rng, block))
        parts.append(times)
        end = float(times[-1])
        total += block
    times = np.concatenate(parts)
    return times[times < duration_s]


class PoissonArrivals(ArrivalProcess):
    """Exponential gaps at ``rate_rps``."""

    def __init__(self, *, rate_rps: float):
        self.rate_rps = check_positive("arrivals.rate_rps", rate_rps)

    @property
    def mean_rate_rps(self) -> float:
        return self.rate_rps

    def times_s(self, rng, *, count=None, duration_s=None):
        return _take(lambda r, n: r.exponential(1.0 / self.rate_rps, n), rng, count, duration_s, 1 / self.rate_rps)

    def blocks_s(self, rng, *, count, block):
        return _take_blocks(lambda r, n: r.exponential(1.0 / self.rate_rps, n), rng, count, block)


class GammaArrivals(ArrivalProcess):
    """Gamma-distributed gaps with mean ``1/rate_rps`` and coefficient of
    variation ``cv`` (cv > 1 is burstier than Poisson, cv = 1 is Poisson)."""

    def __init__(self, *, rate_rps: float, cv: float):
        self.rate_rps = check_positive("arrivals.rate_rps", rate_rps)
        self.cv = check_positive("arrivals.cv", cv)
        self._shape = 1.0 / self.cv**2

    @property
    def mean_rate_rps(self) -> float:
        return self.rate_rps

    def times_s(self, rng, *, count=None, duration_s=None):
        scale = 1.0 / (self.rate_rps * self._shape)
        return _take(lambda r, n: r.gamma(self._shape, scale, n), rng, count, duration_s, 1 / self.rate_rps)

    def blocks_s(self, rng, *, count, block):
        scale = 1.0 / (self.rate_rps * self._shape)
        return _take_blocks(lambda r, n: r.gamma(self._shape, scale, n), rng, count, block)


class MMPPArrivals(ArrivalProcess):
    """Two-state Markov-modulated Poisson process.

    The process stays in the high state for an exponential time with mean
    ``mean_high_s`` at ``rate_high_rps``, then in the low state for mean
    ``mean_low_s`` at ``rate_low_rps``, and so on, starting high.
    """

    def __init__(self, *, rate_high_rps: float, rate_low_rps: float, mean_high_s: float, mean_low_s: float):
        self.rate_high_rps = check_positive("arrivals.rate_high_rps", rate_high_rps)
        self.rate_low_rps = check_non_negative("arrivals.rate_low_rps", rate_low_rps)
        self.mean_high_s = check_positive("arrivals.mean_high_s", mean_high_s)
        self.mean_low_s = check_positive("arrivals.mean_low_s", mean_low_s)

    @property
    def mean_rate_rps(self) -> float:
        weight = self.mean_high_s / (self.mean_high_s + self.mean_low_s)
        return weight * self.rate_high_rps + (1 - weight) * self.rate_low_rps

    def times_s(self, rng, *, count=None, duration_s=None):
        out: list[np.ndarray] = []
        produced, start, high = 0, 0.0, True
        while True:
            rate = self.rate_high_rps if high else self.rate_low_rps
            length = rng.exponential(self.mean_high_s if high else self.mean_low_s)
            if rate > 0:
                n = rng.poisson(rate * length)
                # given the count, Poisson arrivals in an interval are uniform order statistics
                times = start + np.sort(rng.uniform(0.0, length, n))
                out.append(times)
                produced += n
            start += length
            high = not high
            if count is not None and produced >= count:
                return np.concatenate(out)[:count]
            if duration_s is not None and start >= duration_s:
                times = np.concatenate(out) if out else np.empty(0)
                return times[times < duration_s]


class TraceArrivals(ArrivalProcess):
    """Replay inter-arrival gaps (seconds) from a JSON list or CSV column.

    ``time_scale`` stretches the gaps (0.5 doubles the rate). The replay
    starts ``start_offset_s`` seconds into the trace (the trace's own seconds,
    before ``time_scale``; the first arrival is the trace's first at or after
    that point), and loops the trace when more arrivals are asked for than
    it holds. ``start_offset_s: random`` (the default) draws the offset
    uniformly over the trace's length from ``rng``: ``Workload.generate``
    gives a trace a generator seeded by the run's seed and the source's name,
    so each seed replays another part of the trace. A number fixes it (0:
    from the trace's start) whatever the seed.
    """

    RANDOM = "random"

    def __init__(self, *, path: str | Path, time_scale: float = 1.0, start_offset_s: float | str = RANDOM):
        self.path = str(path)
        self.gaps_s = load_series("arrivals.path", path, allow_zero=True)
        if self.gaps_s.sum() <= 0:
            raise ConfigError("arrivals.path", self.path, "a trace whose gaps sum to more than 0 s")
        self.time_scale = check_positive("arrivals.time_scale", time_scale)
        self.start_offset_s: float | None = None  # random
        if start_offset_s != self.RANDOM:
            try:
                self.start_offset_s = check_non_negative("arrivals.start_offset_s", start_offset_s)
            except ConfigError:
                raise ConfigError("arrivals.start_offset_s", start_offset_s, f"'{self.RANDOM}' or a number of seconds >= 0") from None
        self._ends_s = np.cumsum(self.gaps_s)  # each arrival's time in one pass of the trace

    @property
    def mean_rate_rps(self) -> float:
        return len(self.gaps_s) / (self.gaps_s.sum() * self.time_scale)

    @property
    def length_s(self) -> float:
        return float(self.gaps_s.sum() * self.time_scale)

    def offset_s(self, rng: np.random.Generator) -> float:
        """Where the replay starts, in the trace's own seconds: fixed, or drawn from ``rng``."""
        length_s = float(self._ends_s[-1])
        offset_s = rng.uniform(0.0, length_s) if self.start_offset_s is None else self.start_offset_s
        return float(offset_s % length_s)

    def times_s(self, rng, *, count=None, duration_s=None):
        offset_s = self.offset_s(rng)
        start = int(np.searchsorted(self._ends_s, offset_s, side="left"))  # the first arrival at or after it
        gaps = np.roll(self.gaps_s, -start)
        gaps[0] = self._ends_s[start] - offset_s
        gaps = gaps * self.time_scale
        if count is None:  # enough whole passes to cover duration_s from any starting point
            count = (int(duration_s // self.length_s) + 2) * len(gaps)
        repeats = -(-count // len(gaps))
        times = np.cumsum(np.tile(gaps, repeats)[:count])
        if duration_s is not None:
            times = times[times < duration_s]
        return times


@dataclass(frozen=True, slots=True, kw_only=True)
class Source:
    """One edge device's stream of requests.

    ``slo_s`` sets each request's deadline (arrival + slo_s); ``inf`` for none.
    ``gateway`` names the edge node whose scheduler receives it (several
    sources may share one).
    """

    name: str
    arrivals: ArrivalProcess
    size_bytes: int = 200 * 1024
    slo_s: float = math.inf
    gateway: str = "edge"
    #: one-way hop from the device to its gateway (the gateway sees a request this
    #: long after it was made; latency counts from when it was made)
    hop_s: float = 0.0
    #: measured hops to the gateway (seconds, e.g. quantiles from calibration), resampled per request
    #: with the run's seeded generator in place of the constant ``hop_s`` (their mean when it is 0)
    hop_samples_s: tuple[float, ...] | None = None

    def __post_init__(self):
        if not isinstance(self.name, str) or not self.name:
            raise ConfigError("source.name", self.name, "a non-empty string")
        if self.hop_samples_s is not None:
            samples = self.hop_samples_s
            if isinstance(samples, (str, bytes)) or not isinstance(samples, Sequence) or not samples:
                raise ConfigError(f"sources.{self.name}.hop_samples_s", samples, "a non-empty list of measured delays in seconds (>= 0)")
            samples = tuple(check_non_negative(f"sources.{self.name}.hop_samples_s", v) for v in samples)
            object.__setattr__(self, "hop_samples_s", samples)
            if self.hop_s == 0.0:
                object.__setattr__(self, "hop_s", sum(samples) / len(samples))
        if not isinstance(self.arrivals, ArrivalProcess):
            raise ConfigError(f"sources.{self.name}.arrivals", type(self.arrivals).__name__, "an ArrivalProcess")
        check_int_at_least(f"sources.{self.name}.size_bytes", self.size_bytes, 0)
        check_positive(f"sources.{self.name}.slo_s", self.slo_s, finite=False)
        check_non_negative(f"sources.{self.name}.hop_s", self.hop_s)


@dataclass(frozen=True, slots=True, kw_only=True)
class Arrivals(ArrivalColumns):
    """Merged arrivals of all sources, sorted by time: what a driver replays."""

    arrival_s: np.ndarray  # float64, increasing
    source_index: np.ndarray  # int16 index into ``sources``
    sources: tuple[Source, ...]

    def __len__(self) -> int:
        return len(self.arrival_s)


def _named_stream(seed: int, name: str) -> np.random.SeedSequence:
    """A random stream of its own for ``name`` under ``seed`` (stable across processes and source orders)."""
    digest = hashlib.blake2b(name.encode("utf-8"), digest_size=8, person=b"edgebatch-src").digest()
    return np.random.SeedSequence([int(seed), int.from_bytes(digest, "little")])


#: the error of a workload given both lengths (``Workload`` and ``spec.build.build_workload`` raise it)
CONFLICTING_LENGTH = "workload.num_requests, workload.duration_s"
CONFLICTING_LENGTH_ALLOWED = "one of the two, not both (set the other to null)"


class Workload:
    """Several sources, each with its own arrival process, over a common span.

    Give either ``num_requests`` (per source) or ``duration_s``, not both
    (``ConfigError`` naming the two); a workload
    whose sources are all traces may give neither and replays each trace once.
    """

    def __init__(self, *, sources: Sequence[Source], num_requests: int | None = None, duration_s: float | None = None):
        if not sources:
            raise ConfigError("workload.sources", [], "at least one source")
        names = [s.name for s in sources]
        if len(set(names)) != len(names):
            raise ConfigError("workload.sources", names, "sources with distinct names")
        if len(sources) > np.iinfo(np.int16).max:
            raise ConfigError("workload.sources", len(sources), f"at most {np.iinfo(np.int16).max} sources")
        self.sources = tuple(sources)
        if num_requests is not None and duration_s is not None:
            # which one bounds the run would be a guess: say so before any work
            raise ConfigError(CONFLICTING_LENGTH, {"num_requests": num_requests, "duration_s": duration_s}, CONFLICTING_LENGTH_ALLOWED)
        self.num_requests = None if num_requests is None else check_int_at_least("workload.num_requests", num_requests, 1)
        self.duration_s = None if duration_s is None else check_positive("workload.duration_s", duration_s)
        if self.num_requests is None and self.duration_s is None:
            if not all(isinstance(s.arrivals, TraceArrivals) for s in self.sources):
                raise ConfigError("workload.num_requests", None, "an integer >= 1, or set workload.duration_s")

    def generate(self, seed: int) -> Arrivals | StreamedArrivals:
        """Arrival times of every source merged in time order, for ``seed`` (a long run's generated when first read).

        Each source draws from a stream of its own: a random process from the
        seed's i-th child stream; a trace (its start offset) from one seeded by
        the seed and the source's name.
        """
        children = np.random.SeedSequence(seed).spawn(len(self.sources))
        if self.num_requests is not None and self.num_requests * len(self.sources) > self.merge_in_windows_above:
            return self._generate_in_windows(seed, children)
        times, index = [], []
        for i, (source, child) in enumerate(zip(self.sources, children)):
            if isinstance(source.arrivals, TraceArrivals):
                child = _named_stream(seed, source.name)
            rng = np.random.default_rng(child)
            count, duration = self.num_requests, self.duration_s
            if count is None and duration is None:
                count = len(source.arrivals.gaps_s)
            t = source.arrivals.times_s(rng, count=count if duration is None else None, duration_s=duration)
            times.append(t)
            index.append(np.full(len(t), i, dtype=np.int16))
        arrival_s = np.concatenate(times)
        source_index = np.concatenate(index)
        arrival_s, source_index = in_time_order(arrival_s, source_index)
        return Arrivals(arrival_s=arrival_s, source_index=source_index, sources=self.sources)

    #: a run of more requests than this (``num_requests`` in all) is merged window by window (``spec.arrival_merge``):
    #: the same arrays, without holding every source's times twice and a sort's index at once
    merge_in_windows_above = 1 << 22
    #: requests per window of that merge (on average, at the sources' mean rates), and the fewest per block of draws
    merge_window_requests = 1 << 20
    merge_block = 256

    def _generate_in_windows(self, seed: int, children) -> StreamedArrivals:
        """``generate`` for a long run: the same arrays, merged a window of time at a time when first read
        (``spec.streamed_arrivals``: or window by window, never all held, by a driver that reads them in order)."""
        return StreamedArrivals(lambda: self._merge(seed, children), total=self.num_requests * len(self.sources), sources=self.sources)

    def _merge(self, seed: int, children) -> ArrivalMerge:
        """The window merge of every source's times, from fresh streams (the same draws each time)."""
        streams = []
        rate_rps = sum(s.arrivals.mean_rate_rps for s in self.sources)
        window_s = self.merge_window_requests / rate_rps
        for source, child in zip(self.sources, children):
            if isinstance(source.arrivals, TraceArrivals):
                child = _named_stream(seed, source.name)
            # about a window's worth a block (the draws do not depend on it): few calls, and little drawn ahead
            block = int(min(max(self.merge_block, source.arrivals.mean_rate_rps * window_s), 1 << 16))
            streams.append(source.arrivals.blocks_s(np.random.default_rng(child), count=self.num_requests, block=block))
        return ArrivalMerge(streams, total=self.num_requests * len(self.sources), window_s=window_s)
