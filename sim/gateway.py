"""A gateway in the simulation: carries out one scheduler's actions."""

from __future__ import annotations

from collections.abc import Mapping

import simpy

from policies.actions import CancelTimer, DispatchBatch, DropRequest, NotePlan, StartTimer
from policies.events import BatchFailed, BatchFinished, Event, TimerFired
from spec.records import DropReason
from policies.scheduler import Scheduler
from sim.batch import SimBatch
from sim.executor import SimExecutor, resampler
from sim.link import LinkChannel
from spec.links import MB
from spec.recorder import FINISHED

__all__ = ["GatewayDriver"]


class GatewayDriver:
    """Feeds one gateway's scheduler its events and carries out its actions.

    Timers fire at exactly their time (a cancelled or restarted timer's old
    scheduled call is left in the queue and ignored by its generation number).
    A dispatched batch crosses the gateway's link to a remote executor (FIFO
    per link), runs there, and its result comes back after the link's delay;
    only then does the scheduler hear that it finished.
    """

    def __init__(
        self,
        sim,
        name: str,
        scheduler: Scheduler,
        executors: Mapping[str, SimExecutor],
        channels: Mapping[str, LinkChannel | None],
    ):
        self.sim = sim
        self.env: simpy.Environment = sim.env
        self.name = name
        self.scheduler = scheduler
        self.executors = executors
        self.channels = channels
        self.executor_index = {n: sim.executor_number[n] for n in executors}  # a dict: a list's index() per gateway is quadratic in a fleet
        self.hops_s = {n: e.spec.hop_s for n, e in executors.items()}
        self.hop_rates = {n: e.spec.hop_MBps for n, e in executors.items()}
        #: measured hops resampled per message (``hop_samples_s``), else None: the constant ``hop_s``
        self.hop_draws = {n: resampler(e.spec.hop_samples_s, e.rng) for n, e in executors.items()}
        #: what the arrival feed calls with each request (``sim.harness`` wraps it to charge CPU)
        self.handle_arrival = scheduler.handle_arrival
        #: the harness's CPU per batch on the hosts (``sim.harness.HarnessLoad``); None: no hosts
        self.harness = None
        self._timer_generation: dict[str, int] = {}
        self._generation = 0
        self.plans: list[dict] = []
        self._act = {
            DispatchBatch: self._dispatch,
            StartTimer: self._start_timer,
            CancelTimer: self._cancel_timer,
            DropRequest: self._drop,
            NotePlan: self._note_plan,
        }

    def handle(self, event: Event) -> None:
        """Give ``event`` to the scheduler and carry out what it asks."""
        act = self._act
        for action in self.scheduler.handle(event):
            act[type(action)](action)

    # -- actions ------------------------------------------------------------
    def _dispatch(self, action: DispatchBatch) -> None:
        sim = self.sim
        now_s = self.env.now
        executor = action.executor
        ids = action.request_ids
        batch_id = sim.recorder.batch_dispatched(now_s, self.executor_index[executor], ids, action.memory_mb, action.attempt)
        channel = self.channels[executor]
        stores = self.harness is not None and self.harness.counts_storage  # the broker's storage step counts the bytes
        size_bytes = sim.payload_bytes(ids) if channel is not None or self.hop_rates[executor] or stores else 0
        draw = self.hop_draws[executor]
        hop_s = self.hops_s[executor] if draw is None else draw()  # the hop back
        return_delay_s = (channel.link.delay_s if channel is not None else 0.0) + hop_s
        batch = SimBatch(batch_id, action.batch_id, self, executor, len(ids), size_bytes, action.memory_mb, now_s, return_delay_s, hop_s)
        if channel is not None:
            channel.send(size_bytes, batch, self._arrived)
        elif hop_s > 0 or self.hop_rates[executor] or draw is not None:
            # the broker hop to a local executor: the batch is off its (absent) link when sent; the hop is timed apart
            batch.hop_there_s = there_s = self._hop_there_s(executor, size_bytes)
            self.env.call_in(there_s, self._hopped, batch)
        else:
            self.executors[executor].submit(batch)

    def _hop_there_s(self, executor: str, size_bytes: float) -> float:
        rate = self.hop_rates[executor]
        draw = self.hop_draws[executor]
        return (self.hops_s[executor] if draw is None else draw()) + (size_bytes / (rate * MB) if rate else 0.0)

    def _hopped(self, event) -> None:
        batch: SimBatch = event.value
        self.executors[batch.executor].submit(batch)

    def _arrived(self, event) -> None:
        batch: SimBatch = event.value
        batch.arrived_s = self.env.now
        batch.hop_there_s = hop_s = self._hop_there_s(batch.executor, batch.size_bytes)
        if hop_s > 0:
            self.env.call_in(hop_s, self._hopped, batch)
        else:
            self.executors[batch.executor].submit(batch)

    def batch_done(self, batch: SimBatch) -> None:
        """The executor finished ``batch``; its result travels back, then the scheduler hears."""
        if batch.return_delay_s > 0:
            self.env.call_in(batch.return_delay_s, self._result_back, batch)
        else:
            self._complete(batch)

    def _result_back(self, event) -> None:
        self._complete(event.value)

    def batch_failed(self, batch: SimBatch) -> None:
        """The executor lost ``batch``; the failure is reported back after the link's delay."""
        self.env.call_in(batch.return_delay_s, self._failure_back, batch)

    def _failure_back(self, event) -> None:
        batch: SimBatch = event.value
        self.sim.recorder.batch_failed(batch.batch_id, cost=batch.cost)
        self.handle(BatchFailed(now_s=self.env.now, batch_id=batch.local_id, executor=batch.executor, reason=DropReason.EXECUTOR_FAILED))

    def _complete(self, batch: SimBatch) -> None:
        now_s = self.env.now
        sim = self.sim
        hop_back_s = batch.hop_back_s
        sim.recorder.batch_finished(batch.batch_id, batch.arrived_s, batch.start_s, batch.end_s, now_s, batch.cold_start_s, batch.cost,
                                    FINISHED, batch.hop_there_s + hop_back_s, hop_back_s)  # fmt: skip
        self.handle(BatchFinished.make(now_s, batch.local_id, batch.executor, batch.end_s - batch.start_s))
        if self.harness is not None:
            self.harness.batch(self.name, batch.size_bytes)
        sim.requests_ended(batch.size)

    def _start_timer(self, action: StartTimer) -> None:
        self._generation += 1
        generation = self._generation
        self._timer_generation[action.timer_id] = generation
        now_s = self.env.now
        self.env.call_in(action.at_s - now_s if action.at_s > now_s else 0.0, self._timer_fired, (action.timer_id, generation))

    def _cancel_timer(self, action: CancelTimer) -> None:
        self._timer_generation.pop(action.timer_id, None)

    def _timer_fired(self, event) -> None:
        timer_id, generation = event.value
        if self._timer_generation.get(timer_id) != generation:
            return  # cancelled or restarted since
        del self._timer_generation[timer_id]
        self.handle(TimerFired.make(self.env.now, timer_id, 0.0))

    def _drop(self, action: DropRequest) -> None:
        self.sim.recorder.dropped(action.request_id, action.reason)
        self.sim.requests_ended(1)

    def _note_plan(self, action: NotePlan) -> None:
        self.plans.append({"at_s": action.at_s, "gateway": self.name, **action.plan.as_dict()})
