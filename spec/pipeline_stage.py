"""The pipeline stage in front of a gateway's scheduler: one sans-I/O model, driven by both backends.

Fed each input as its gateway takes it (``take``), it returns frozen actions:
``AdmitTask`` (hand this task to the scheduler as one request arrival: a
single input, or a fired join of several) or ``RejectInput`` (the input ends
here, with a reason: stale, or expired from a join). When a batch leaves for
a remote executor, ``transfer`` says how many bytes cross the link (payloads,
or references plus the payloads read, ``spec.lazy_payload``) and whether a
fetch round trip follows. When a cheap model's batch finishes,
``escalations`` returns the tasks that go on to the big model, again as
``AdmitTask`` (``spec.cascade``). The stage keeps a ``PipelineLedger`` of what
it did. The simulator calls it from SimPy events, the live gateway from the
wall clock; neither has a copy of these rules.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from spec.cascade import ESCALATED_SUFFIX
from spec.join_buffer import InputExpired, JoinFired
from spec.pipeline import PipelineSpec
from spec.pipeline_ledger import PipelineLedger
from spec.workload import Arrivals

__all__ = ["PipelineStage", "AdmitTask", "RejectInput", "Transfer"]


@dataclass(frozen=True, kw_only=True, slots=True)
class AdmitTask:
    """Give the scheduler one request: task ``task_id`` made of the inputs ``member_ids``."""

    task_id: int
    member_ids: tuple[int, ...]
    source: str
    arrival_s: float  # its earliest member's
    size_bytes: int  # its members' payloads together
    deadline_s: float  # its earliest member's


@dataclass(frozen=True, kw_only=True, slots=True)
class RejectInput:
    """Input ``request_id`` ends here without a result, for ``reason``."""

    request_id: int
    reason: str


@dataclass(frozen=True, kw_only=True, slots=True)
class Transfer:
    """What a batch moves over its link: ``size_bytes`` in all, ``fetched`` when a lazy read adds a round trip."""

    size_bytes: int
    fetched: bool


class PipelineStage:
    """One gateway's pipeline: stale filter, join, lazy routing and cascade over the run's ``arrivals``."""

    def __init__(self, spec: PipelineSpec, arrivals: Arrivals, *, ledger: PipelineLedger | None = None,
                 members: dict[int, tuple[int, ...]] | None = None):  # fmt: skip
        self.spec = spec
        self.join, self.cascade, self.lazy, self.stale = spec.models()
        self.sources = arrivals.sources
        self.source_index = arrivals.source_index
        self.arrival_s = arrivals.arrival_s
        self.deadline_s = arrivals.deadline_s
        #: shared by the stages of several gateways (one run's ledger; task ids are input ids, unique in the run)
        self.ledger = PipelineLedger(len(arrivals)) if ledger is None else ledger
        self._members: dict[int, tuple[int, ...]] = {} if members is None else members
        self._size = [s.size_bytes for s in arrivals.sources]

    # -- inputs ----------------------------------------------------------------------
    def take(self, now_s: float, request_id: int, *, made_s: float | None = None) -> list[AdmitTask | RejectInput]:
        """Input ``request_id`` reached its gateway at ``now_s`` (made at ``made_s``: its arrival time by default)."""
        made_s = float(self.arrival_s[request_id]) if made_s is None else float(made_s)
        if self.stale is not None:
            reason = self.stale.check(now_s=now_s, made_s=made_s)
            if reason is not None:
                return [RejectInput(request_id=int(request_id), reason=reason)]
        source = self.sources[self.source_index[request_id]].name
        if self.join is None or source not in self.join:
            self.ledger.admitted(int(request_id), int(request_id))
            return [self._admit((int(request_id),), source)]
        out: list[AdmitTask | RejectInput] = []
        for fact in self.join.offer(now_s=now_s, request_id=int(request_id), source=source, made_s=made_s):
            if isinstance(fact, InputExpired):
                out.append(RejectInput(request_id=fact.request_id, reason=fact.reason))
            else:
                out.append(self._fired(fact))
        return out

    def _fired(self, fired: JoinFired) -> AdmitTask:
        for member, wait_s in zip(fired.member_ids, fired.wait_s):
            self.ledger.admitted(member, fired.task_id, wait_s)
        return self._admit(fired.member_ids, "+".join(self.join.sources), task_id=fired.task_id)

    def _admit(self, members: tuple[int, ...], source: str, task_id: int | None = None) -> AdmitTask:
        task_id = members[0] if task_id is None else task_id
        self._members[task_id] = members
        return AdmitTask(task_id=task_id, member_ids=members, source=source, arrival_s=min(float(self.arrival_s[m]) for m in members),
                         size_bytes=sum(self._size[self.source_index[m]] for m in members),
                         deadline_s=min(float(self.deadline_s[m]) for m in members))  # fmt: skip

    def close(self, now_s: float) -> list[RejectInput]:
        """End of the gateway's inputs: inputs still waiting for join partners expire."""
        if self.join is None:
            return []
        return [RejectInput(request_id=f.request_id, reason=f.reason) for f in self.join.close(now_s)]

    def members(self, task_id: int) -> tuple[int, ...]:
        """The inputs of task ``task_id``."""
        return self._members.get(task_id, (task_id,))

    def expand(self, task_ids: Sequence[int]) -> list[int]:
        """The inputs of several tasks, in order."""
        return [m for t in task_ids for m in self.members(t)]

    # -- links ------------------------------------------------------------------------
    def _source_of(self, request_id: int) -> str:
        return self.sources[self.source_index[request_id]].name

    def reads(self, request_id: int) -> bool:
        """Whether the consumer reads this input's payload (always without lazy routing)."""
        return True if self.lazy is None else self.lazy.reads(request_id, self._source_of(request_id))

    def transfer(self, link: str, task_ids: Sequence[int]) -> Transfer:
        """A batch of ``task_ids`` leaves over ``link``: the bytes it moves (each member's counted on the ledger)."""
        total, fetched = 0, False
        for member in self.expand(task_ids):
            size = self._size[self.source_index[member]]
            if self.lazy is None:
                moved = size
            else:
                source = self._source_of(member)
                moved = self.lazy.message_bytes(size) + self.lazy.fetch_bytes(member, source, size)
                fetched = fetched or (self.lazy.enabled and self.lazy.reads(member, source))
            self.ledger.moved(link, member, moved)
            total += moved
        return Transfer(size_bytes=total, fetched=fetched)

    # -- cascade ----------------------------------------------------------------------
    def escalations(self, executor: str, task_ids: Sequence[int], confidence: Mapping[int, float] | None = None) -> list[AdmitTask]:
        """The tasks of a finished batch on ``executor`` that go on to the big model (none off the cheap one).

        ``confidence``: the live model's per task (a threshold cascade); absent ones are drawn from the samples.
        """
        cascade = self.cascade
        if cascade is None or executor != cascade.cheap:
            return []
        out = []
        for task_id in task_ids:
            measured = None if confidence is None else confidence.get(task_id)
            if not cascade.escalates(task_id, measured):
                continue
            members = self.members(task_id)
            for member in members:
                self.ledger.escalate(member)
            first = self._admit(members, "", task_id=task_id)
            source = "+".join(self.join.sources) if len(members) > 1 else self._source_of(task_id)
            out.append(AdmitTask(task_id=task_id, member_ids=members, source=source + ESCALATED_SUFFIX, arrival_s=first.arrival_s,
                                 size_bytes=first.size_bytes, deadline_s=first.deadline_s))  # fmt: skip
        return out

    @property
    def expired(self) -> int:
        """Inputs expired from the join so far."""
        return 0 if self.join is None else self.join.expired
