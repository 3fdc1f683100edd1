"""``segmented_timeout_cuts`` against ``timeout_cuts`` run on each segment alone: the same batches, exactly."""

from __future__ import annotations

import numpy as np
import pytest

from policies.batching import FixedBatching, NoBatching, TimeoutBatching
from policies.batching import segmented_cuts
from policies.batching.segmented_cuts import segmented_timeout_cuts, timeout_settings
from policies.batching.timeout_cuts import timeout_cuts


def segments(rng: np.random.Generator, count: int, grid: bool) -> list[np.ndarray]:
    out = []
    for _ in range(count):
        n = int(rng.choice([0, 1, 2, 5, 30, 300]))
        if grid:  # dyadic steps: due times tie with arrivals, arrivals with each other
            gaps = rng.integers(0, 4, n) * 2.0**-10
        else:
            gaps = rng.exponential(rng.choice([0.0005, 0.003, 0.02]), n)
        out.append(float(rng.uniform(0, 5)) + np.cumsum(gaps))
    return out


@pytest.mark.parametrize("parallel_from", [1, 10**9])  # the chain followed segment-parallel, or in one loop
@pytest.mark.parametrize("probes", [0, 4])  # the binary search for every head, or after four linear probes
@pytest.mark.parametrize("case", range(40))
def test_each_segment_is_cut_as_timeout_cuts_cuts_it_alone(case, probes, parallel_from, monkeypatch):
    monkeypatch.setattr(segmented_cuts, "_PARALLEL_FROM", parallel_from)
    monkeypatch.setattr(segmented_cuts, "_LINEAR_PROBES", probes)
    rng = np.random.default_rng(900 + case)
    parts = segments(rng, int(rng.integers(1, 60)), grid=bool(case % 2))
    sizes = rng.choice([1, 2, 3, 8, 64], len(parts))
    waits = rng.choice([0.0, 2.0**-10, 0.001, 0.005, 0.05], len(parts))
    lengths = np.array([len(p) for p in parts], dtype=np.int64)
    times = np.concatenate(parts) if parts else np.zeros(0)
    ends_of = np.cumsum(lengths)
    segment_end = np.repeat(ends_of, lengths)
    until_s = float(rng.choice([np.inf, float(times.max()) if len(times) else 0.0, float(np.median(times)) if len(times) else 0.0]))
    heads, ends, dispatched_s = segmented_timeout_cuts(times, segment_end, np.repeat(sizes, lengths), np.repeat(waits, lengths), until_s)
    offset = 0
    for part, size, wait in zip(parts, sizes, waits):
        want_ends, want_s = timeout_cuts(part, int(size), float(wait), until_s)
        mine = (heads >= offset) & (heads < offset + len(part))
        assert (ends[mine] - offset).tolist() == want_ends.tolist()
        assert np.array_equal(dispatched_s[mine], want_s)  # bit for bit
        assert (heads[mine] - offset).tolist() == [0, *want_ends[:-1].tolist()][: len(want_ends)]
        offset += len(part)


def test_the_three_bulk_batchings_are_recognized_and_a_replaced_cut_is_not():
    assert timeout_settings(TimeoutBatching(max_batch_size=6, max_wait_s=0.003)) == (6, 0.003)
    assert timeout_settings(FixedBatching(batch_size=4, max_wait_s=0.01)) == (4, 0.01)
    assert timeout_settings(NoBatching()) == (1, 0.0)
    assert timeout_settings(TimeoutBatching(max_batch_size=6, max_queue=10)) is None  # no bulk at all

    class Own(TimeoutBatching):
        def bulk_cuts(self, arrival_s, until_s):
            return super().bulk_cuts(arrival_s, until_s)

    assert timeout_settings(Own()) is None


def test_no_batching_as_size_one_without_wait_is_its_own_cuts():
    times = np.array([0.0, 0.0, 1.0, 1.0, 1.5])
    want = NoBatching().bulk_cuts(times, np.inf)
    heads, ends, dispatched_s = segmented_timeout_cuts(times, np.full(5, 5), np.ones(5, np.int64), np.zeros(5), 1.2)
    assert ends.tolist() == want[0].tolist() and np.array_equal(dispatched_s, want[1])
