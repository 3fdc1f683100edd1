"""A host's cores shared by the work that runs on it: a sans-I/O processor-sharing model.

Co-located work (model executions, cold-starting serverless instances, the
harness's own per-message work in the broker, gateway, source and sink)
competes for one machine's cores. This model decides how fast each piece of
work progresses; a driver feeds it times and carries out the actions it
returns, in order. The simulator drives it from SimPy (``sim/host.py``).

Each job has CPU work left (CPU-seconds) and a demand (the cores it can keep
busy: its threads). While the demands sum to at most ``cores`` every job runs
at its demand; otherwise the cores are shared max-min fairly (water-filling):
a job demanding less than the fair level gets its demand, the others the
level. A job of ``cpu_s`` demanding ``d`` cores alone takes ``cpu_s / d``
seconds; ``n`` equal one-core jobs on ``c < n`` cores each run at ``c / n``.
That is the processor-sharing (PS) server of queueing theory: an M/M/1-PS
queue has the mean sojourn ``1 / (mu - lambda)`` of M/M/1-FIFO.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Union

from spec.validation import ConfigError

__all__ = ["HostCpu", "HostCpuError", "WakeAt", "JobFinished", "HostCpuAction"]

#: finish times this close (relative to the clock) count as now: progress is
#: accumulated in floating point, so a job due at t may be left 1e-16 short at t
_RELATIVE_TOLERANCE = 1e-9


@dataclass(frozen=True, kw_only=True, slots=True)
class WakeAt:
    """Call ``wake(at_s, generation=generation)`` at ``at_s``: the next job finishes then.

    Every change of the set of jobs issues a new one; a wake with an older
    generation does nothing (the driver need not cancel timers).
    """

    at_s: float
    generation: int


@dataclass(frozen=True, kw_only=True, slots=True)
class JobFinished:
    """``job`` has done all its CPU work, at ``at_s``."""

    job: Any
    at_s: float


HostCpuAction = Union[WakeAt, JobFinished]


class HostCpuError(RuntimeError):
    """The driver misused the model (time going backwards, a job's demand changed)."""


class _Job:
    __slots__ = ("left_cpu_s", "cores", "rate")

    def __init__(self, left_cpu_s: float, cores: float):
        self.left_cpu_s = left_cpu_s
        self.cores = cores
        self.rate = 0.0  # cores it gets now


class HostCpu:
    """Processor sharing of ``cores`` cores among jobs with CPU work left (see the module doc).

    ``submit(now_s, job=..., cpu_s=..., cores=...)`` adds work: a new job, or
    more work for a job that is still running (a role process's backlog of
    messages, served at one core). ``wake(now_s, generation=...)`` is called
    at each ``WakeAt``. Both return the actions to carry out: ``JobFinished``
    for every job done now, then the next ``WakeAt`` (none when idle).
    """

    __slots__ = ("cores", "_jobs", "_last_s", "_generation", "busy_cpu_s")

    def __init__(self, *, cores: float):
        if isinstance(cores, bool) or not isinstance(cores, (int, float)) or not math.isfinite(cores) or cores <= 0:
            raise ConfigError("host.cores", cores, "a number of cores > 0 (finite)")
        self.cores = float(cores)
        self._jobs: dict[Any, _Job] = {}
        self._last_s = 0.0
        self._generation = 0
        #: CPU-seconds done so far (for utilization: busy_cpu_s / (cores * elapsed))
        self.busy_cpu_s = 0.0

    # -- what the driver reads ------------------------------------------------------------
    @property
    def active(self) -> int:
        """Jobs with work left."""
        return len(self._jobs)

    def rate(self, job: Any) -> float:
        """The cores ``job`` runs on now (0 when it has no work left)."""
        entry = self._jobs.get(job)
        return 0.0 if entry is None else entry.rate

    def left_cpu_s(self, job: Any) -> float:
        """CPU-seconds ``job`` still needs, as of the last event."""
        entry = self._jobs.get(job)
        return 0.0 if entry is None else entry.left_cpu_s

    # -- events ---------------------------------------------------------------------------
    def submit(self, now_s: float, *, job: Any, cpu_s: float, cores: float = 1.0) -> list[HostCpuAction]:
        """``cpu_s`` more CPU-seconds for ``job`` (new, or still running), which can keep ``cores`` cores busy."""
        return self.submit_all(now_s, [(job, cpu_s, cores)])

    def submit_all(self, now_s: float, work) -> list[HostCpuAction]:
        """Several ``(job, cpu_s, cores)`` submissions at one time, settled once (as ``submit`` one after the other)."""
        self._advance(now_s, "submit")
        for job, cpu_s, cores in work:
            if isinstance(cpu_s, bool) or not isinstance(cpu_s, (int, float)) or not math.isfinite(cpu_s) or cpu_s < 0:
                raise HostCpuError(f"HostCpu.submit: the driver gave cpu_s={cpu_s!r} for {job!r}; a finite number >= 0")
            if isinstance(cores, bool) or not isinstance(cores, (int, float)) or not math.isfinite(cores) or cores <= 0:
                raise HostCpuError(f"HostCpu.submit: the driver gave cores={cores!r} for {job!r}; a finite number > 0")
            entry = self._jobs.get(job)
            if entry is None:
                self._jobs[job] = _Job(float(cpu_s), float(cores))
            elif entry.cores != cores:
                raise HostCpuError(f"HostCpu.submit: the driver changed the demand of running job {job!r} from {entry.cores} to {cores} cores")
            else:
                entry.left_cpu_s += float(cpu_s)
        return self._settle(now_s)

    def wake(self, now_s: float, *, generation: int) -> list[HostCpuAction]:
        """The time of a ``WakeAt``: finish what is done (a stale generation: nothing)."""
        if generation != self._generation:
            return []
        self._advance(now_s, "wake")
        return self._settle(now_s)

    # -- the model --------------------------------------------------------------------------
    def _advance(self, now_s: float, caller: str) -> None:
        elapsed_s = now_s - self._last_s
        if elapsed_s < 0:
            raise HostCpuError(f"HostCpu.{caller}: the driver went back in time, to {now_s} from {self._last_s}")
        if elapsed_s > 0:
            for entry in self._jobs.values():
                done = entry.rate * elapsed_s
                entry.left_cpu_s -= done
                self.busy_cpu_s += done
        self._last_s = now_s

    def _settle(self, now_s: float) -> list[HostCpuAction]:
        """Finish the jobs with no work left, share the cores anew, and say when the next one finishes."""
        tolerance_s = _RELATIVE_TOLERANCE * max(1.0, abs(now_s))
        actions: list[HostCpuAction] = []
        jobs = self._jobs
        # a job finishes now when what it has left would take at most the tolerance at its rate
        done = [job for job, e in jobs.items() if e.left_cpu_s <= e.rate * tolerance_s]
        for job in done:
            self.busy_cpu_s += max(0.0, jobs.pop(job).left_cpu_s)
            actions.append(JobFinished(job=job, at_s=now_s))
        self._share()
        self._generation += 1
        if jobs:
            actions.append(WakeAt(at_s=now_s + min([e.left_cpu_s / e.rate for e in jobs.values()]), generation=self._generation))
        return actions

    def _share(self) -> None:
        """Max-min fair shares of the cores (water-filling over the demands)."""
        jobs = self._jobs.values()
        if sum([e.cores for e in jobs]) <= self.cores:
            for entry in jobs:
                entry.rate = entry.cores
            return
        free, left = self.cores, len(self._jobs)
        for entry in sorted(jobs, key=lambda e: e.cores):
            level = free / left
            entry.rate = min(entry.cores, level)
            free -= entry.rate
            left -= 1
