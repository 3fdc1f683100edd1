"""A host's shared cores in the simulation: the processor-sharing model on the SimPy clock."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sim.environment import FeedEnvironment
from spec.host_cpu import HostCpu, JobFinished, WakeAt
from spec.host_spec import HostSpec

__all__ = ["SimHost", "BACKGROUND_CPU_S"]

#: CPU-seconds of a never-ending demand (a role's idle loops, other tenants): more than any run needs
BACKGROUND_CPU_S = 1e9


class SimHost:
    """One machine's cores, shared by the work the simulation puts on it.

    The sharing is ``spec.host_cpu.HostCpu``'s; this driver hands it the SimPy
    time whenever the set of jobs changes, schedules one call at the next
    ``WakeAt`` (a stale one is ignored by its generation), and runs each
    finished job's ``on_done(now_s)``. A job without ``on_done`` is background
    work (a role's backlog of messages): it only takes its share of the cores.
    """

    __slots__ = ("env", "spec", "model", "_done")

    def __init__(self, env: FeedEnvironment, spec: HostSpec):
        self.env = env
        self.spec = spec
        self.model = HostCpu(cores=spec.cores)
        self._done: dict[Any, Callable[[float], None]] = {}
        if spec.background_cores > 0:
            # work outside the model (other tenants): a demand of background_cores all run long
            self.run(("background", spec.name), cpu_s=BACKGROUND_CPU_S, cores=spec.background_cores)

    def run(self, job: Any, *, cpu_s: float, cores: float = 1.0, on_done: Callable[[float], None] | None = None) -> None:
        """Add ``cpu_s`` CPU-seconds of work for ``job`` (at most ``cores`` cores); ``on_done(now_s)`` when it is all done."""
        if on_done is not None:
            if job in self._done:
                raise RuntimeError(f"SimHost.run: job {job!r} is already running on host {self.spec.name!r}")
            self._done[job] = on_done
        self._apply(self.model.submit(self.env.now_s, job=job, cpu_s=cpu_s, cores=cores))

    def run_all(self, work) -> None:
        """Background work for several jobs at once, ``(job, cpu_s, cores)`` each (the model settles once)."""
        self._apply(self.model.submit_all(self.env.now_s, work))

    def _wake(self, call) -> None:
        self._apply(self.model.wake(self.env.now_s, generation=call.value))

    def _apply(self, actions) -> None:
        env = self.env
        for action in actions:
            if action.__class__ is JobFinished:
                on_done = self._done.pop(action.job, None)
                if on_done is not None:
                    on_done(action.at_s)
            elif action.__class__ is WakeAt:
                env.call_in(max(0.0, action.at_s - env.now_s), self._wake, action.generation)
