"""A host's shared cores in the simulation: the processor-sharing model on the SimPy clock."""

from __future__ import annotations

import math
import zlib
from collections.abc import Callable
from typing import Any

import numpy as np

from sim.environment import FeedEnvironment
from spec.host_cpu import HostCpu, JobFinished, WakeAt
from spec.host_spec import HostSpec

__all__ = ["SimHost", "BACKGROUND_CPU_S", "run_effects"]

#: CPU-seconds of a never-ending demand (a role's idle loops, other tenants): more than any run needs
BACKGROUND_CPU_S = 1e9
#: the random stream of a host's per-run effects (its speed, its background level), apart from every other stream
_RUN_EFFECTS_STREAM = 0x405
#: a drawn background level stays this far under the host's cores (the model needs some core left)
_BACKGROUND_CAP = 0.95


def run_effects(spec: HostSpec, seed: int) -> tuple[float, float]:
    """This run's speed factor (CPU-seconds per CPU-second of work) and background cores on host ``spec``.

    Drawn once per run from the seed (the same seed, the same draw): the
    factor lognormal with mean 1 and coefficient of variation ``run_cv``,
    the background normal around ``background_cores`` with sd
    ``background_cores_sd``, kept in [0, 0.95 * cores]. Without spread, 1.0
    and ``background_cores`` exactly (no draw).
    """
    rng = np.random.default_rng([int(seed) % 2**32, _RUN_EFFECTS_STREAM, zlib.crc32(spec.name.encode())])
    factor, background = 1.0, float(spec.background_cores)
    if spec.run_cv > 0:
        sigma = math.sqrt(math.log1p(spec.run_cv**2))
        factor = float(rng.lognormal(mean=-0.5 * sigma**2, sigma=sigma))
    if spec.background_cores_sd > 0:
        background = float(min(max(0.0, rng.normal(background, spec.background_cores_sd)), _BACKGROUND_CAP * spec.cores))
    return factor, background


class SimHost:
    """One machine's cores, shared by the work the simulation puts on it.

    The sharing is ``spec.host_cpu.HostCpu``'s; this driver hands it the SimPy
    time whenever the set of jobs changes, schedules one call at the next
    ``WakeAt`` (a stale one is ignored by its generation), and runs each
    finished job's ``on_done(now_s)``. A job without ``on_done`` is background
    work (a role's backlog of messages): it only takes its share of the cores.
    The run's effects (``run_effects``: the machine's speed, the background
    level) are drawn once from ``seed``: every CPU-second submitted costs
    ``speed_factor`` CPU-seconds of the cores.
    """

    __slots__ = ("env", "spec", "model", "_done", "speed_factor", "background_cores")

    def __init__(self, env: FeedEnvironment, spec: HostSpec, seed: int = 0):
        self.env = env
        self.spec = spec
        self.model = HostCpu(cores=spec.cores)
        self._done: dict[Any, Callable[[float], None]] = {}
        self.speed_factor, self.background_cores = run_effects(spec, seed)
        if self.background_cores > 0:
            # work outside the model (other tenants): a demand of background_cores all run long
            self.run(("background", spec.name), cpu_s=BACKGROUND_CPU_S, cores=self.background_cores)

    def run(self, job: Any, *, cpu_s: float, cores: float = 1.0, on_done: Callable[[float], None] | None = None) -> None:
        """Add ``cpu_s`` CPU-seconds of work for ``job`` (at most ``cores`` cores); ``on_done(now_s)`` when it is all done."""
        if on_done is not None:
            if job in self._done:
                raise RuntimeError(f"SimHost.run: job {job!r} is already running on host {self.spec.name!r}")
            self._done[job] = on_done
        self._apply(self.model.submit(self.env.now_s, job=job, cpu_s=cpu_s * self.speed_factor, cores=cores))

    def run_all(self, work) -> None:
        """Background work for several jobs at once, ``(job, cpu_s, cores)`` each (the model settles once)."""
        factor = self.speed_factor
        if factor != 1.0:
            work = [(job, cpu_s * factor, cores) for job, cpu_s, cores in work]
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
