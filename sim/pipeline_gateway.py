"""A gateway in the simulation with EdgeServe's pipeline stage in front of its scheduler.

The stage (``spec.pipeline_stage``, the live gateway's too) is fed each input
at the time the gateway sees it; a fired join (or a lone input) becomes one
request arrival for the same scheduler, a stale or expired input is dropped
with its reason. A batch to a remote executor moves what the stage says over
the link (payloads, or references plus the payloads read, with one more
round trip of the link's delay for the reads); when a cheap model's batch
finishes, the tasks the cascade escalates arrive again at the scheduler,
which places them on the big model (``policies.placement.cascade``).
"""

from __future__ import annotations

from policies.actions import DispatchBatch, DropRequest
from policies.events import Request
from sim.batch import SimBatch
from sim.gateway import GatewayDriver
from spec.pipeline_ledger import link_name
from spec.pipeline_stage import AdmitTask, PipelineStage, RejectInput

__all__ = ["PipelineGatewayDriver", "task_request"]


def task_request(admit: AdmitTask) -> Request:
    """The scheduler's request for an admitted task."""
    return Request(request_id=admit.task_id, source=admit.source, arrival_s=admit.arrival_s, size_bytes=admit.size_bytes,
                   deadline_s=admit.deadline_s)  # fmt: skip


class PipelineGatewayDriver(GatewayDriver):
    """``GatewayDriver`` with a ``PipelineStage`` between the arrivals and the scheduler."""

    def __init__(self, sim, name, scheduler, executors, channels):
        super().__init__(sim, name, scheduler, executors, channels)
        self.stage = PipelineStage(sim.pipeline_spec, sim.arrivals, ledger=sim.ledger, members=sim.members)
        self.handle_arrival = self._take
        self._tasks: dict[int, tuple[int, ...]] = {}  # the recorder's batch id -> its task ids
        self._fetching: set[int] = set()  # batches whose lazy reads add a round trip after the link

    # -- inputs -------------------------------------------------------------------------
    def _take(self, now_s: float, request: Request) -> list:
        actions: list = []
        for out in self.stage.take(now_s, request.request_id, made_s=request.arrival_s):
            if isinstance(out, RejectInput):
                self._reject(out)
            else:
                actions.extend(self.scheduler.handle_arrival(now_s, task_request(out)))
        return actions

    def _reject(self, out: RejectInput) -> None:
        self.sim.recorder.dropped(out.request_id, out.reason)
        self.sim.inputs_ended(1)

    def close_stage(self) -> None:
        """No more inputs: those still waiting in a join expire."""
        for out in self.stage.close(self.env.now):
            self._reject(out)

    # -- batches ------------------------------------------------------------------------
    def _dispatch(self, action: DispatchBatch) -> None:
        channel = self.channels[action.executor]
        self.sim.transfer_bytes = None
        if channel is not None:  # what crosses the link: the stage says (and counts it on the ledger)
            transfer = self.stage.transfer(link_name(self.name, action.executor), action.request_ids)
            self.sim.transfer_bytes = transfer.size_bytes
            if transfer.fetched:
                self._fetching.add(self.sim.recorder.batch_count)
        self._tasks[self.sim.recorder.batch_count] = action.request_ids
        super()._dispatch(action)

    def _arrived(self, event) -> None:
        batch: SimBatch = event.value
        if batch.batch_id in self._fetching:  # the read request goes back over the link, the payload comes
            self._fetching.discard(batch.batch_id)
            self.env.call_in(2 * self.channels[batch.executor].link.delay_s, super()._arrived, batch)
            return
        super()._arrived(event)

    def _complete(self, batch: SimBatch) -> None:
        super()._complete(batch)  # the scheduler has heard BatchFinished: an escalated task may arrive again
        tasks = self._tasks.pop(batch.batch_id)
        escalated = self.stage.escalations(batch.executor, tasks)
        again = {a.task_id for a in escalated}
        self.sim.inputs_ended(sum(len(self.stage.members(t)) for t in tasks if t not in again))
        now_s = self.env.now
        for admit in escalated:
            for action in self.scheduler.handle_arrival(now_s, task_request(admit)):
                self._act[type(action)](action)

    def _failure_back(self, event) -> None:
        self._tasks.pop(event.value.batch_id, None)  # its tasks are retried (a new batch) or dropped
        super()._failure_back(event)

    def _drop(self, action: DropRequest) -> None:
        members = self.stage.members(action.request_id)
        for member in members:
            self.sim.recorder.dropped(member, action.reason)
        self.sim.inputs_ended(len(members))
