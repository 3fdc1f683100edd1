"""The harness's own CPU work in the simulation: broker, gateways, sources and sink on their hosts."""

from __future__ import annotations

from collections.abc import Mapping

from sim.host import BACKGROUND_CPU_S, SimHost
from spec.host_spec import RoleCpu
from spec.topology import Cluster

__all__ = ["HarnessLoad"]

#: arrivals read at a time (a streamed run's arrays are generated as read)
_CHUNK = 1 << 14


class HarnessLoad:
    """Puts each role's per-request and per-batch CPU on the host it runs on.

    A role instance (the broker, the sink, one gateway, one source) is one
    single-threaded process: its work is one job on its host at one core,
    to which every message adds ``RoleCpu`` CPU-seconds (a backlog it works
    off while sharing the cores with the models), and a message that finds
    the job idle ``cpu_s_per_wakeup`` more. Per request, when its source
    publishes it (the arrival: the live ingest hop that follows already
    includes this work as latency, so it contends with what runs during the
    hop, not with the request's own execution): its source, the broker and
    the gateway. Per batch (when its result is back): the gateway, the
    broker and the sink. A role's ``idle_cores`` (its polling loops) is a
    second job on its host, demanding that much of a core for the whole
    run. Roles on no host cost nothing. A role with a storage step
    (``RoleCpu.step_after_MB``) costs ``step_factor`` times as much per
    message once the run has stored that much: every request's payload
    (``size_bytes`` of its source), and every finished batch's.
    """

    def __init__(self, cluster: Cluster, hosts: Mapping[str, SimHost], gateways, sources, size_bytes: Mapping[str, int] | None = None):
        def place(role: str, name: str | None) -> tuple[SimHost, tuple, RoleCpu] | None:
            found = cluster.host_of_role(role, name)
            if found is None:
                return None
            host, cpu = found
            return hosts[host.name], ("role", role, name), cpu

        self._broker = place("broker", None)
        self._sink = place("sink", None)
        self._gateways = {g: place("gateway", g) for g in gateways}
        self._sources = {s: place("source", s) for s in sources}
        self._size_bytes = dict(size_bytes or {})
        self.stored_MB = 0.0  # payloads through the broker so far
        for placed in (self._broker, self._sink, *self._gateways.values(), *self._sources.values()):
            if placed is not None and placed[2].idle_cores > 0:
                # the process's polling and timer loops: a demand of idle_cores for the whole run
                placed[0].run(("idle", *placed[1][1:]), cpu_s=BACKGROUND_CPU_S, cores=placed[2].idle_cores)

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
        """Each role's ``field`` CPU (and a wake-up's, where its job is idle) on its host, one submission per host."""
        by_host: dict[int, tuple[SimHost, list]] = {}
        stored_MB = self.stored_MB
        for placed in placed_roles:
            if placed is None:
                continue
            host, job, cpu = placed
            cpu_s = getattr(cpu, field)
            if stored_MB > cpu.step_after_MB:
                cpu_s *= cpu.step_factor
            if cpu.cpu_s_per_wakeup > 0 and host.model.left_cpu_s(job) <= 0:
                cpu_s += cpu.cpu_s_per_wakeup
            if cpu_s > 0:
                by_host.setdefault(id(host), (host, []))[1].append((job, cpu_s, 1.0))
        for host, work in by_host.values():
            host.run_all(work)

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
