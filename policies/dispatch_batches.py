"""The bulk form of ``DispatchBatch``: many consecutive batches to one executor, as arrays."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from policies.actions import Action

__all__ = ["DispatchBatches"]


@dataclass(frozen=True, slots=True, kw_only=True, eq=False)
class DispatchBatches(Action):
    """Send batches ``first_batch_id``, ``first_batch_id + 1``, ... to ``executor``, each at its ``dispatched_s``.

    What ``Scheduler.handle_arrivals`` returns in place of one ``DispatchBatch``
    per batch: batch k holds ``request_ids[ends[k-1]:ends[k]]`` (``ends[-1]``
    taken as 0) and left at ``dispatched_s[k]`` (nondecreasing). A driver
    carries it out as those ``DispatchBatch`` actions at those times; none is
    a retry (``attempt`` 0). Arrays compare by identity (``eq=False``).
    """

    first_batch_id: int
    executor: str
    request_ids: np.ndarray
    ends: np.ndarray
    dispatched_s: np.ndarray
    memory_mb: int | None = None

    @property
    def sizes(self) -> np.ndarray:
        """Each batch's number of requests."""
        return np.diff(self.ends, prepend=0)

    def batches(self) -> list[tuple[int, tuple[int, ...], float]]:
        """``(batch_id, request_ids, dispatched_s)`` of each batch: the ``DispatchBatch`` actions it stands for."""
        ids = self.request_ids.tolist()
        starts = [0, *self.ends.tolist()]
        return [(self.first_batch_id + k, tuple(ids[starts[k] : starts[k + 1]]), at_s) for k, at_s in enumerate(self.dispatched_s.tolist())]
