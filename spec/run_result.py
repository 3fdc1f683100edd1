"""What a run produced, in either backend."""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

__all__ = ["RunResult"]


@dataclass
class RunResult:
    """The two record tables (``spec.records``), the plans adopted, the summary (``spec.recorder.summary``).

    ``wall_s`` is how long the run took on this machine; ``extra`` holds what
    one backend adds (live: run id, output folder, broker, role statistics,
    restarts, faults; a streamed simulation, ``sim.stream_records_to``:
    ``records_dir``, the folder of its Parquet tables, which are then empty
    here when the run was longer than ``sim.max_records_in_memory``).
    """

    requests: pd.DataFrame
    batches: pd.DataFrame
    plans: pd.DataFrame
    summary: dict
    wall_s: float = 0.0
    extra: dict = field(default_factory=dict)
