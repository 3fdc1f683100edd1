"""A long run's arrivals merged window by window are the very arrays of the one global stable sort."""

from __future__ import annotations

import json

import numpy as np
import pytest

from spec.arrival_merge import ArrivalMerge, in_time_order
from spec.workload import GammaArrivals, MMPPArrivals, PoissonArrivals, Source, TraceArrivals, Workload


def sources(tmp_path) -> list[Source]:
    trace = tmp_path / "gaps.json"
    trace.write_text(json.dumps([0.5] * 10 + [0.25] * 10))  # times on a grid: ties across sources
    made = [Source(name=f"p{i}", arrivals=PoissonArrivals(rate_rps=2.0 + i % 5)) for i in range(40)]
    made += [Source(name=f"t{i}", arrivals=TraceArrivals(path=str(trace), start_offset_s=0)) for i in range(3)]
    made += [Source(name="g", arrivals=GammaArrivals(rate_rps=6.0, cv=2.5)),
             Source(name="m", arrivals=MMPPArrivals(rate_high_rps=20, rate_low_rps=0.5, mean_high_s=2, mean_low_s=3))]  # fmt: skip
    return made


@pytest.mark.parametrize(("window_requests", "block"), [(64, 7), (1000, 256), (10**6, 1)])
def test_the_windowed_merge_gives_the_arrays_of_the_global_sort(tmp_path, window_requests, block):
    workload = Workload(sources=sources(tmp_path), num_requests=400)
    whole = workload.generate(5)
    assert len(np.unique(whole.arrival_s)) < len(whole)  # there are ties to break in source order
    workload.merge_in_windows_above, workload.merge_window_requests, workload.merge_block = 0, window_requests, block
    merged = workload.generate(5)
    np.testing.assert_array_equal(merged.arrival_s, whole.arrival_s)
    np.testing.assert_array_equal(merged.source_index, whole.source_index)
    assert merged.source_index.dtype == np.int16 and len(merged) == 45 * 400


def test_blocks_are_the_times_of_one_call():
    for process in (PoissonArrivals(rate_rps=3.0), GammaArrivals(rate_rps=3.0, cv=0.4)):
        whole = process.times_s(np.random.default_rng(9), count=1000)
        blocks = list(process.blocks_s(np.random.default_rng(9), count=1000, block=33))
        assert len(blocks) == 31 and max(len(b) for b in blocks) == 33
        np.testing.assert_array_equal(np.concatenate(blocks), whole)


def test_a_merge_that_gets_the_wrong_count_says_so():
    with pytest.raises(ValueError, match="not 5"):
        ArrivalMerge([iter([np.array([1.0, 2.0])])], total=5, window_s=1.0).merge()
    with pytest.raises(ValueError, match="more than"):
        ArrivalMerge([iter([np.array([1.0, 2.0, 3.0])])], total=2, window_s=10.0).merge()


@pytest.mark.parametrize("grid", [0.0, 0.25])
def test_the_time_order_is_the_stable_sort_by_time(grid):
    """``in_time_order`` (an unstable sort, lexsort at a tie) against numpy's stable sort of arrays in source order."""
    rng = np.random.default_rng(3)
    per_source = [np.sort(rng.uniform(0, 50, 300)) for _ in range(20)]
    if grid:
        per_source = [np.round(t / grid) * grid for t in per_source]  # ties within and across sources
    times = np.concatenate(per_source)
    index = np.repeat(np.arange(20, dtype=np.int16), 300)
    stable = np.argsort(times, kind="stable")
    sorted_s, sorted_index = in_time_order(times, index)
    np.testing.assert_array_equal(sorted_s, times[stable])
    np.testing.assert_array_equal(sorted_index, index[stable])
    assert (len(np.unique(times)) < len(times)) == bool(grid)
