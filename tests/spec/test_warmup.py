"""spec.warmup.WarmupTable: the extra service after idling, interpolated and validated."""

from __future__ import annotations

import math

import pytest

from spec.validation import ConfigError
from spec.warmup import WarmupTable

TABLE = {"batch_sizes": [1, 8], "idle_s": [0.01, 0.1], "extra_s": [[0.002, 0.003], [0.004, 0.006]]}


def test_linear_in_idle_time_from_nothing_and_flat_beyond_the_longest():
    table = WarmupTable.from_config(TABLE)
    assert table.extra_for(1, 0.0) == 0.0 and table.extra_for(1, -1.0) == 0.0
    assert table.extra_for(1, 0.005) == pytest.approx(0.001)
    assert table.extra_for(1, 0.055) == pytest.approx(0.0025)
    assert table.extra_for(1, 5.0) == pytest.approx(0.003) and table.extra_for(1, math.inf) == pytest.approx(0.003)


def test_linear_in_batch_size_between_the_measured_and_the_nearest_beyond():
    table = WarmupTable.from_config(TABLE)
    assert table.extra_for(4, 0.1) == pytest.approx(0.003 + 3 / 7 * 0.003)
    assert table.extra_for(32, 0.1) == pytest.approx(0.006)


def test_a_negative_measurement_counts_as_none():
    table = WarmupTable.from_config({**TABLE, "extra_s": [[-0.001, 0.003], [0.004, 0.006]]})
    assert table.extra_for(1, 0.01) == 0.0


@pytest.mark.parametrize("change, field", [
    ({"batch_sizes": [8, 1]}, "warmup.batch_sizes"),
    ({"idle_s": [0.0, 0.1]}, "warmup.idle_s"),
    ({"extra_s": [[0.1], [0.2]]}, "warmup.extra_s"),
])  # fmt: skip
def test_bad_tables_name_the_field(change, field):
    with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
        WarmupTable.from_config({**TABLE, **change})
    with pytest.raises(ConfigError, match="a mapping with batch_sizes, idle_s, extra_s"):
        WarmupTable.from_config({"batch_sizes": [1]})
