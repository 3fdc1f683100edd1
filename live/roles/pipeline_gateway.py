"""A live gateway with EdgeServe's pipeline stage in front of its scheduler, on the wall clock.

The stage is ``spec.pipeline_stage.PipelineStage``, the simulator's too: each
request message the gateway takes is an input, fed to it at the time it is
taken; a fired join (or a lone input) becomes one request arrival for the
same scheduler, with the payloads of its inputs as its payload (a join's
concatenated; lazily routed, a reference-sized stand-in for each input plus
the payloads read, so the emulated uplink carries exactly the bytes the
stage counts, and a read waits one more round trip of the link's delay). A
stale or expired input ends at once with its reason. When a batch of the
cascade's cheap model comes back, its tasks whose confidence (the top softmax
probability of the logits the worker returned) is below the threshold, or
its drawn share, arrive again at the scheduler and go to the big model.
"""

from __future__ import annotations

import numpy as np

from live.roles.gateway import Gateway
from live.roles.pipeline_records import PipelineRecords
from policies.actions import DispatchBatch, DropRequest
from policies.events import Event, Request, RequestArrived
from spec.cascade import softmax_confidence
from spec.pipeline import PipelineSpec
from spec.pipeline_ledger import link_name
from spec.pipeline_stage import AdmitTask, PipelineStage, RejectInput

__all__ = ["PipelineGateway", "gateway_class"]


def gateway_class(spec) -> type[Gateway]:
    """The gateway a run needs: this one when its config has a ``pipeline`` block."""
    return PipelineGateway if spec.config.get("pipeline") else Gateway


class _FetchingLink:
    """An emulated uplink (``spec.link_queue.LinkQueue``) whose next transfer may wait out a lazy read's round trip."""

    def __init__(self, inner):
        self.inner = inner
        self.extra_s = 0.0

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def send(self, now_s: float, size_bytes: float) -> float:
        return self.inner.send(now_s, size_bytes) + self.extra_s


class PipelineGateway(Gateway):
    """``Gateway`` whose request messages are inputs of a ``PipelineStage``."""

    #: each input goes through the stage as it is taken (``handle``), not in a bunch
    bunches_arrivals = False

    def __init__(self, spec, name, topics, send, now, incarnation: int = 0):
        super().__init__(spec, name, topics, send, now, incarnation=incarnation)
        self.stage = PipelineStage(PipelineSpec.from_config(spec.config["pipeline"], seed=spec.seed), spec.arrivals)
        self.records = PipelineRecords(self.records, self.stage)
        self.emulators = {n: _FetchingLink(q) for n, q in self.emulators.items()}
        self._inputs: dict[int, bytes] = {}  # input payloads, until their task is made
        self._moved: dict[int, tuple[str, dict[int, int]]] = {}  # batch id -> (link, bytes per input)
        self._admitting = False
        self._closed = False

    def handle(self, event: Event) -> None:
        if isinstance(event, RequestArrived) and not self._admitting:
            self._take(event)  # an input off the requests topic: the stage first
        else:
            super().handle(event)

    # -- inputs ---------------------------------------------------------------------------
    def _take(self, event: RequestArrived) -> None:
        now_s, request_id = event.now_s, event.request.request_id
        self._inputs[request_id] = self.payloads.pop(request_id, b"")
        for out in self.stage.take(now_s, request_id, made_s=event.request.arrival_s):
            self._act_on(out, now_s)
        if self.arrivals_seen >= self.expected and not self._closed:
            self._closed = True  # every input is in: those still waiting for join partners expire
            for out in self.stage.close(now_s):
                self._act_on(out, now_s)

    def _act_on(self, out: AdmitTask | RejectInput, now_s: float) -> None:
        if isinstance(out, RejectInput):
            self._end_input(out.request_id, out.reason)
            return
        self.payloads[out.task_id] = b"".join(self._task_part(m) for m in out.member_ids)
        self._admit(out, now_s)

    def _task_part(self, member: int) -> bytes:
        payload = self._inputs.pop(member, b"")
        lazy = self.stage.lazy
        if lazy is None or not lazy.enabled:
            return payload
        return bytes(lazy.ref_size_bytes) + (payload if self.stage.reads(member) else b"")

    def _admit(self, out: AdmitTask, now_s: float) -> None:
        request = Request(request_id=out.task_id, source=out.source, arrival_s=out.arrival_s, size_bytes=out.size_bytes,
                          deadline_s=out.deadline_s)  # fmt: skip
        self._admitting = True
        try:
            super().handle(RequestArrived(now_s=now_s, request=request))
        finally:
            self._admitting = False

    def _end_input(self, request_id: int, reason: str) -> None:
        self._inputs.pop(request_id, None)
        self.metrics.counts["drops"] += 1
        self.ended += 1
        self.ended_requests.append(request_id)
        self.records.inner.dropped(request_id, reason, self.now())

    def _drop(self, action: DropRequest) -> None:
        self.payloads.pop(action.request_id, None)
        for member in self.stage.members(action.request_id):
            self._end_input(member, action.reason)

    # -- batches ------------------------------------------------------------------------------
    def _dispatch(self, action: DispatchBatch) -> None:
        link = self.links.get(action.executor)
        emulator = self.emulators.get(action.executor)
        if link is not None:
            name = link_name(self.name, action.executor)
            before = {m: int(self.stage.ledger.payload_bytes[m]) for m in self.stage.expand(action.request_ids)}
            transfer = self.stage.transfer(name, action.request_ids)
            self._moved[action.batch_id] = (name, {m: int(self.stage.ledger.payload_bytes[m]) - b for m, b in before.items()})
            if emulator is not None:
                emulator.extra_s = 2 * link.delay_s if transfer.fetched else 0.0
        try:
            super()._dispatch(action)
        finally:
            if emulator is not None:
                emulator.extra_s = 0.0

    def _confidence(self, tasks, message) -> dict[int, float] | None:
        cascade = self.stage.cascade
        if cascade is None or not cascade.needs_confidence or message.meta.get("failed"):
            return None
        rows = message.payloads()
        if len(rows) != len(tasks) or not rows or not len(rows[0]) or len(rows[0]) % 4:
            return None  # no logits: drawn from the measured samples instead
        logits = np.stack([np.frombuffer(r, dtype="<f4") for r in rows])
        return dict(zip(tasks, softmax_confidence(logits).tolist()))

    def _complete(self, item, now_s: float) -> None:
        local_id, message = item
        flight = self.flights.get(local_id)
        tasks = tuple(flight.ids)
        link, moved = self._moved.pop(local_id, (None, {}))
        failed = bool(message.meta.get("failed"))
        escalated = [] if failed else self.stage.escalations(flight.executor, tasks, self._confidence(tasks, message))
        escalating = {m for a in escalated for m in a.member_ids}
        kept = {a.task_id: self.payloads.get(a.task_id, b"") for a in escalated}
        records = self.records
        records.escalating, records.moved, records.link = escalating, moved, link
        ended_before = len(self.ended_requests)
        super()._complete(item, now_s)
        records.escalating, records.moved, records.link = set(), {}, None
        if failed:
            return
        # the base counted tasks; inputs end (or go on to the big model) instead
        del self.ended_requests[ended_before:]
        ended = [m for t in tasks for m in self.stage.members(t) if m not in escalating]
        self.ended_requests.extend(ended)
        self.ended += len(ended) - len(tasks)
        for admit in escalated:
            self.payloads[admit.task_id] = kept[admit.task_id]
            self._admit(admit, now_s)
