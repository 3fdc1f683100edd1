"""Records of a simulated run, kept as compact columns until the end.

Per request only what differs between requests of one batch is stored while
the run goes (dispatch time, batch, drop reason); per batch the rest. The
request table of DESIGN.md's schema is expanded from these at the end, so a
run of a million requests costs a few tens of bytes per request until then.
"""

from __future__ import annotations

import math
from array import array

import numpy as np
import pandas as pd

from spec.records import BATCH_COLUMNS, DROP_REASONS, request_table
from spec.workload import Arrivals

__all__ = ["Recorder"]

#: drop reasons by code; code 0 means not dropped
_REASON_BY_CODE = ("", *DROP_REASONS)


class Recorder:
    """Collects what happens to every request and batch of one run.

    Batch ids are global (the driver maps each gateway's own ids onto them).
    A request ends either completed (its batch finished) or dropped with a
    reason; ``unfinished`` counts those that did neither, which must be 0.
    """

    def __init__(self, arrivals: Arrivals, executor_names: list[str], executor_kinds: list[str]):
        count = len(arrivals)
        self.arrivals = arrivals
        self.executor_names = executor_names
        self.executor_kinds = executor_kinds
        # per request only its batch (an array.array: cheaper to set one item than numpy);
        # everything else is per batch, expanded at the end
        self._batch_of = array("i", [-1]) * count
        self.drop_code = np.zeros(count, dtype=np.int8)
        self._reason_code = {reason: code for code, reason in enumerate(_REASON_BY_CODE) if code}
        # batch columns, appended at dispatch and filled in as the batch goes
        self.b_executor = array("h")
        self.b_size = array("i")
        self.b_memory_mb = array("i")
        self.b_dispatched_s = array("d")
        self.b_attempt = array("i")
        # the rest, appended when a batch ends (in the order they end; e_batch says which)
        self.e_batch = array("i")
        self.b_arrived_s = array("d")  # at the executor, after the uplink
        self.b_start_s = array("d")
        self.b_end_s = array("d")
        self.b_completed_s = array("d")  # result back at the gateway
        self.b_cold_start_s = array("d")
        self.b_cost = array("d")
        self.b_state = array("b")  # 1 finished, 2 failed; batches that never ended have no entry

    # -- during the run ------------------------------------------------------
    def batch_dispatched(self, now_s: float, executor_index: int, request_ids, memory_mb: int | None, attempt: int = 0) -> int:
        batch_id = len(self.b_size)
        self.b_attempt.append(attempt)
        self.b_executor.append(executor_index)
        self.b_size.append(len(request_ids))
        self.b_memory_mb.append(memory_mb or 0)
        self.b_dispatched_s.append(now_s)
        batch_of = self._batch_of
        for request_id in request_ids:
            batch_of[request_id] = batch_id
        return batch_id

    def batch_finished(self, batch_id: int, arrived_s, start_s, end_s, completed_s, cold_start_s, cost, state: int = 1) -> None:
        """A batch ended (state 1 finished, 2 failed); columns kept in the order batches end."""
        self.e_batch.append(batch_id)
        self.b_arrived_s.append(arrived_s)
        self.b_start_s.append(start_s)
        self.b_end_s.append(end_s)
        self.b_completed_s.append(completed_s)
        self.b_cold_start_s.append(cold_start_s)
        self.b_cost.append(cost)
        self.b_state.append(state)

    def batch_failed(self, batch_id: int, *, cost: float = 0.0) -> None:
        nan = math.nan
        self.batch_finished(batch_id, nan, nan, nan, nan, 0.0, cost, 2)

    def dropped(self, request_id: int, reason: str) -> None:
        code = self._reason_code.get(reason)
        if code is None:
            code = len(self._reason_code) + 1  # an unlisted reason from a user's policy: the next code, kept by name
            self._reason_code[reason] = code
        self.drop_code[request_id] = code

    # -- at the end --------------------------------------------------------------
    def _reasons(self) -> list[str]:
        names = list(_REASON_BY_CODE)
        extra = sorted((code, reason) for reason, code in self._reason_code.items() if code >= len(_REASON_BY_CODE))
        return names + [reason for _, reason in extra]

    @property
    def batch_of(self) -> np.ndarray:
        """Each request's batch id (-1: never dispatched), a view on the recorder's own column."""
        return np.frombuffer(self._batch_of, np.int32) if len(self._batch_of) else np.zeros(0, np.int32)

    def _by_batch(self, column: array, dtype, missing) -> np.ndarray:
        """An end-of-batch column indexed by batch id (``missing`` for batches still in flight)."""
        out = np.full(len(self.b_size), missing, dtype=dtype)
        if len(self.e_batch):
            out[np.frombuffer(self.e_batch, np.int32)] = np.frombuffer(column, dtype)
        return out

    def unfinished(self) -> np.ndarray:
        """Request ids that neither completed nor were dropped (must be empty)."""
        state = self._by_batch(self.b_state, np.int8, 0)
        has_batch = self.batch_of >= 0
        finished = np.zeros(len(self.batch_of), dtype=bool)
        finished[has_batch] = state[self.batch_of[has_batch]] == 1
        return np.flatnonzero(~finished & (self.drop_code == 0))

    def batches(self) -> pd.DataFrame:
        """One row per batch (DESIGN.md's batch columns)."""
        executor = pd.Categorical.from_codes(np.frombuffer(self.b_executor, np.int16).astype(np.int16), self.executor_names)
        memory = np.frombuffer(self.b_memory_mb, np.int32)
        table = {
            "batch_id": np.arange(len(self.b_size), dtype=np.int32),
            "executor": executor,
            "size": np.frombuffer(self.b_size, np.int32),
            "memory_mb": memory,
            "start_s": self._by_batch(self.b_start_s, np.float64, np.nan),
            "end_s": self._by_batch(self.b_end_s, np.float64, np.nan),
            "cold": self._by_batch(self.b_cold_start_s, np.float64, 0.0) > 0,
            "cost": self._by_batch(self.b_cost, np.float64, 0.0),
            "attempt": np.frombuffer(self.b_attempt, np.int32) if len(self.b_attempt) else np.zeros(0, np.int32),
            "redelivered": np.zeros(len(self.b_size), dtype=np.int32),  # no broker in the simulator
        }
        frame = pd.DataFrame(table, copy=True)
        return frame[list(BATCH_COLUMNS)]

    def requests(self) -> pd.DataFrame:
        """One row per request (DESIGN.md's request columns), expanded from the batches."""
        arrivals = self.arrivals
        batch = self.batch_of
        has_batch = batch >= 0
        index = np.where(has_batch, batch, 0)

        ended = set(id(c) for c in (self.b_arrived_s, self.b_start_s, self.b_end_s, self.b_completed_s,
                                     self.b_cold_start_s, self.b_cost, self.b_state))

        def per_batch(column: array, dtype, missing):
            if id(column) in ended:
                values = self._by_batch(column, dtype, missing)
            else:
                values = np.frombuffer(column, dtype) if len(column) else np.zeros(0, dtype)
            if not len(values):
                values = np.zeros(1, dtype)
            out = values[index]
            out[~has_batch] = missing
            return out

        state = per_batch(self.b_state, np.int8, 0)
        return request_table(
            arrivals,
            batch_id=batch,
            completed=(state == 1) & (self.drop_code == 0),
            drop_codes=self.drop_code.astype(np.int16) - 1,
            drop_reasons=self._reasons()[1:],
            executor_codes=per_batch(self.b_executor, np.int16, -1),
            executor_names=self.executor_names,
            executor_kinds=self.executor_kinds,
            size=per_batch(self.b_size, np.int32, 0),
            memory_mb=per_batch(self.b_memory_mb, np.int32, 0),
            batch_cost=per_batch(self.b_cost, np.float64, 0.0),
            dispatched_s=per_batch(self.b_dispatched_s, np.float64, np.nan),
            arrived_s=per_batch(self.b_arrived_s, np.float64, np.nan),
            start_s=per_batch(self.b_start_s, np.float64, np.nan),
            end_s=per_batch(self.b_end_s, np.float64, np.nan),
            completed_s=per_batch(self.b_completed_s, np.float64, np.nan),
            cold_start_s=per_batch(self.b_cold_start_s, np.float64, np.nan),
        )
