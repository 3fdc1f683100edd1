"""What a pipeline gateway tells the sink: its batches' records with tasks expanded into their inputs.

A batch holds tasks (a fired join is one task of several inputs); the sink
keeps a row per input. So each completion or failure record lists the
inputs, says how many tasks the batch held (``meta.tasks``: its size), and
carries the pipeline's facts (``meta.pipeline``): each input's task and join
wait, the inputs whose task escalated (their row ends with the big model's
batch, not this one), the link the batch crossed and each input's bytes over
it. ``live.roles.pipeline_sink`` reads them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from live.roles.gateway_records import RecordWriter
from spec.pipeline_stage import PipelineStage

__all__ = ["PipelineRecords"]


class PipelineRecords:
    """Wraps a gateway's ``RecordWriter``: records of task batches become records of their inputs."""

    def __init__(self, inner: RecordWriter, stage: PipelineStage):
        self.inner = inner
        self.stage = stage
        #: set by the gateway before each completion: the inputs whose task escalated, and the batch's bytes per input
        self.escalating: set[int] = set()
        self.moved: Mapping[int, int] = {}
        self.link: str | None = None

    def __getattr__(self, name):
        return getattr(self.inner, name)  # plans and drops of single inputs pass through

    def _facts(self, members: Sequence[int]) -> dict:
        ledger = self.stage.ledger
        return {"task_id": [int(ledger.task_id[m]) for m in members], "join_wait_s": [float(ledger.join_wait_s[m]) for m in members],
                "escalating": sorted(m for m in members if m in self.escalating), "link": self.link,
                "bytes": [int(self.moved.get(m, 0)) for m in members]}  # fmt: skip

    def _expand(self, ids: Sequence[str], labels):
        tasks = [int(i) for i in ids]
        members = self.stage.expand(tasks)
        if labels is not None:  # each input gets its task's label
            labels = [label for task, label in zip(tasks, labels) for _ in self.stage.members(task)]
        return tasks, members, labels

    def completed(self, key: str, ids: Sequence[str], *, labels, ts: Mapping[str, float], meta: Mapping, **extra) -> None:
        tasks, members, labels = self._expand(ids, labels)
        meta = {**meta, "tasks": len(tasks), "pipeline": self._facts(members)}
        self.inner.completed(key, [str(m) for m in members], labels=labels, ts=ts, meta=meta, **extra)

    def batch_failed(self, key: str, ids: Sequence[str], *, reason: str, ts: Mapping[str, float], meta: Mapping) -> None:
        tasks, members, _ = self._expand(ids, None)
        self.inner.batch_failed(key, [str(m) for m in members], reason=reason, ts=ts, meta={**meta, "tasks": len(tasks)})
