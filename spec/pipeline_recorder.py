"""The recorder of a pipeline run: a batch holds tasks, each request row is an input of one.

A fired join is one task (one request to the scheduler, one slot of a
batch) made of several inputs; every input keeps its own row in the request
table (its own source and arrival time, so its latency counts from when its
source made it). This recorder takes the drivers' task ids and attributes
each batch to all the inputs of its tasks; a batch's size stays the number
of tasks in it. A task's batch cost is shared by its inputs' rows the same
way as a batch's by its requests (each row gets cost/size).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from spec.recorder import Recorder
from spec.workload import Arrivals

__all__ = ["PipelineRecorder"]


class PipelineRecorder(Recorder):
    """``Recorder`` whose request ids are task ids, expanded to their inputs by ``expand``."""

    def __init__(self, arrivals: Arrivals, executor_names: list[str], executor_kinds: list[str],
                 expand: Callable[[Iterable[int]], list[int]]):  # fmt: skip
        super().__init__(arrivals, executor_names, executor_kinds)
        self.expand = expand

    def batch_dispatched(self, now_s: float, executor_index: int, request_ids, memory_mb: int | None, attempt: int = 0) -> int:
        batch_id = self.batch_opened(now_s, executor_index, len(request_ids), memory_mb, attempt)
        self.attribute(request_ids, batch_id)
        return batch_id

    def attribute(self, request_ids: Iterable[int], batch_id: int) -> None:
        super().attribute(self.expand(request_ids), batch_id)
