"""The sink's record keeping for a pipeline run: a row per input, and the pipeline's columns.

A pipeline gateway's batch records list inputs and say how many tasks the
batch held (``live.roles.pipeline_records``). This keeps the batch's size at
its tasks, ends each input with it except those whose task escalated (their
row ends with the big model's batch, as in the simulator), and feeds the
facts the records carry to the run's ``spec.pipeline_ledger.PipelineLedger``
(the simulator's), which adds ``task_id``, ``join_wait_s``, ``escalated``
and ``payload_bytes`` to the request table and ``link_bytes`` to the summary.
"""

from __future__ import annotations

from live.roles.sink import SinkState
from live.wire.messages import ControlOp, Kind, Message
from spec.pipeline_ledger import PipelineLedger
from spec.recorder import FAILED, FINISHED

__all__ = ["PipelineSinkState", "sink_state"]


def sink_state(spec) -> SinkState:
    """The sink's state for a run: this one when its config has a ``pipeline`` block."""
    return PipelineSinkState(spec) if spec.config.get("pipeline") else SinkState(spec)


def _tasks(message: Message) -> int | None:
    tasks = message.meta.get("tasks")
    return tasks if isinstance(tasks, int) and not isinstance(tasks, bool) and tasks > 0 else None


class PipelineSinkState(SinkState):
    """``SinkState`` for records whose batches hold tasks of one or more inputs."""

    def __init__(self, spec):
        super().__init__(spec)
        self.ledger = PipelineLedger(self.count)

    def add(self, message: Message) -> str | None:
        tasks = _tasks(message)
        is_result = message.kind is Kind.RESULT
        if tasks is None or not (is_result or message.op is ControlOp.BATCH_FAILED):
            return super().add(message)
        ids = self._ids(message)
        if not ids or message.meta.get("executor") not in self.executor_names:
            return super().add(message)  # it says what is wrong
        key = str(message.batch_id) if is_result else str(message.meta.get("batch_id"))
        index = self._batch(message, key, [0] * tasks, FINISHED if is_result else FAILED)  # a batch of ``tasks`` requests
        if index is None:
            self.duplicates += len(ids)
            return None
        if not is_result:
            self.recorder.attribute([r for r in ids if not self.ended[r]], index)
            return None
        self._facts(message, ids)
        escalating = set(message.meta["pipeline"].get("escalating") or ()) if isinstance(message.meta.get("pipeline"), dict) else set()
        for request_id in ids:
            if request_id in escalating:
                if not self.ended[request_id]:
                    self.recorder.attribute((request_id,), index)  # its latest batch so far; the big model's ends it
            else:
                self._end(request_id, index, None)
        return None

    def _facts(self, message: Message, ids: list[int]) -> None:
        facts = message.meta.get("pipeline")
        if not isinstance(facts, dict):
            return
        tasks, waits, moved = facts.get("task_id") or [], facts.get("join_wait_s") or [], facts.get("bytes") or []
        link = facts.get("link")
        for i, request_id in enumerate(ids):
            if i < len(tasks) and isinstance(tasks[i], int) and tasks[i] >= 0:
                wait_s = waits[i] if i < len(waits) and isinstance(waits[i], (int, float)) else 0.0
                self.ledger.admitted(request_id, tasks[i], float(wait_s))
            if isinstance(link, str) and i < len(moved) and isinstance(moved[i], int) and moved[i] > 0:
                self.ledger.moved(link, request_id, moved[i])
        for request_id in facts.get("escalating") or ():
            if isinstance(request_id, int) and 0 <= request_id < self.count:
                self.ledger.escalate(request_id)

    def requests_table(self):
        return self.ledger.add_columns(super().requests_table())

    def summary(self, requests, batches, *, complete: bool) -> dict:
        result = super().summary(requests, batches, complete=complete)
        result.update(self.ledger.summary(requests))
        return result
