"""The harness's own CPU work in the simulation: broker, gateways, sources and sink on their hosts."""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Mapping

from sim.host import BACKGROUND_CPU_S, SimHost
from spec.host_spec import RoleCpu
from spec.topology import Cluster

__all__ = ["HarnessLoad", "RoleProcess"]

#: arrivals read at a time (a streamed run's arrays are generated as read)
_CHUNK = 1 << 14


class HarnessLoad:
    """Puts each role's per-request and per-batch CPU on the host it runs on.

    A role instance (the broker, the sink, one gateway, one source) is one
    single-threaded process (``RoleProcess``): it works off its messages one
    at a time, in order, at the rate its host gives it, and a message that
    finds it idle costs ``cpu_s_per_wakeup`` more. A message passes through
    its roles in turn, as it does live: a request (when its source publishes
    it: the live ingest hop that follows already includes this work as
    latency, so it contends with what runs during the hop, not with the
    request's own execution) through its source, the broker and its gateway;
    a batch's result (when it is back) through the gateway, the broker and
    the sink. So one request keeps at most one role busy at a time, beside
    whatever the models run. A role's ``idle_cores`` (its polling loops) is
    a second job on its host, demanding that much of a core for the whole
    run. Roles on no host cost nothing. A role with a storage step
    (``RoleCpu.step_after_MB``) costs ``step_factor`` times as much per
    message once the run has stored that much: every request's payload
    (``size_bytes`` of its source), and every finished batch's.
    """

    def __init__(self, cluster: Cluster, hosts: Mapping[str, SimHost], gateways, sources, size_bytes: Mapping[str, int] | None = None):
        def place(role: str, name: str | None) -> RoleProcess | None:
            found = cluster.host_of_role(role, name)
            if found is None:
                return None
            host, cpu = found
            return RoleProcess(hosts[host.name], ("role", role, name), cpu)

        self._broker = place("broker", None)
        self._sink = place("sink", None)
        self._gateways = {g: place("gateway", g) for g in gateways}
        self._sources = {s: place("source", s) for s in sources}
        self._size_bytes = dict(size_bytes or {})
        self.stored_MB = 0.0  # payloads through the broker so far
        for placed in (self._broker, self._sink, *self._gateways.values(), *self._sources.values()):
            if placed is not None and placed.cpu.idle_cores > 0:
                # the process's polling and timer loops: a demand of idle_cores for the whole run
                placed.host.run(("idle", *placed.job[1:]), cpu_s=BACKGROUND_CPU_S, cores=placed.cpu.idle_cores)

    @property
    def counts_storage(self) -> bool:
        """True when some role has a storage step (the batches' payload sizes are then needed)."""
        return any(p is not None and math.isfinite(p.cpu.step_after_MB)
                   for p in (self._broker, self._sink, *self._gateways.values(), *self._sources.values()))  # fmt: skip

    @property
    def active(self) -> bool:
        """True when some role is on a host (else nothing is charged)."""
        return any(p is not None for p in (self._broker, self._sink, *self._gateways.values(), *self._sources.values()))

    def request(self, source: str, gateway: str) -> None:
        """A request from ``source`` reached ``gateway``."""
        self.stored_MB += self._size_bytes.get(source, 0) / 1e6
        self._charge((self._sources.get(source), self._broker, self._gateways.get(gateway)), "cpu_s_per_request")

    def batch(self, gateway: str, size_bytes: int = 0) -> None:
        """A batch (of ``size_bytes``) came back to ``gateway`` (and its records go on to the sink)."""
        self.stored_MB += size_bytes / 1e6
        self._charge((self._gateways.get(gateway), self._broker, self._sink), "cpu_s_per_batch")

    def _charge(self, placed_roles, field: str) -> None:
        """The message through each placed role in turn: its ``field`` CPU (stepped up past its storage step)."""
        chain = [(p, getattr(p.cpu, field) * (p.cpu.step_factor if self.stored_MB > p.cpu.step_after_MB else 1.0))
                 for p in placed_roles if p is not None]  # fmt: skip
        _through(chain)

    def arrivals_from(self, env, arrivals, gateway_of_source) -> None:
        """Charge each request's CPU when its source publishes it: a SimPy process over ``arrivals`` in time order.

        ``gateway_of_source[i]`` is the name of source ``i``'s gateway.
        """
        names = [s.name for s in arrivals.sources]
        charge = self.request

        def publish():
            for start in range(0, len(arrivals), _CHUNK):
                chunk = slice(start, start + _CHUNK)
                for at_s, source in zip(arrivals.arrival_s[chunk].tolist(), arrivals.source_index[chunk].tolist()):
                    if at_s > env.now_s:
                        yield env.timeout(at_s - env.now_s)
                    charge(names[source], gateway_of_source[source])

        env.process(publish())

    def batches_through(self, driver) -> None:
        """Charge each batch's CPU when ``driver`` has its result back (``SimGateway`` calls ``batch``)."""
        driver.harness = self


def _through(chain: list) -> None:
    """Hand a message to the first ``(RoleProcess, cpu_s)`` of ``chain``; each passes it on when done with it."""
    if chain:
        process, cpu_s = chain[0]
        process.take(cpu_s, (lambda: _through(chain[1:])) if len(chain) > 1 else None)


class RoleProcess:
    """One single-threaded harness process on its host: messages worked off one at a time, first in first out.

    ``take(cpu_s, then)`` queues a message of ``cpu_s`` CPU-seconds (plus
    ``cpu_s_per_wakeup`` if it finds the process idle) and calls ``then()``
    when the process is done with it. The work runs as the host's job
    ``job``, at one core, sharing the host's cores with everything else.
    """

    __slots__ = ("host", "job", "cpu", "_queue", "_busy")

    def __init__(self, host: SimHost, job: tuple, cpu: RoleCpu):
        self.host = host
        self.job = job
        self.cpu = cpu
        self._queue: deque = deque()
        self._busy = False

    def take(self, cpu_s: float, then=None) -> None:
        if self._busy:
            self._queue.append((cpu_s, then))
            return
        cpu_s += self.cpu.cpu_s_per_wakeup
        if cpu_s <= 0:
            if then is not None:
                then()
            return
        self._start(cpu_s, then)

    def _start(self, cpu_s: float, then) -> None:
        self._busy = True
        self.host.run(self.job, cpu_s=cpu_s, on_done=lambda now_s: self._done(then))

    def _done(self, then) -> None:
        self._busy = False
        if self._queue:
            self._start(*self._queue.popleft())
        if then is not None:
            then()
