"""The harness's own CPU work in the simulation: broker, gateways, sources and sink on their hosts."""

from __future__ import annotations

from collections.abc import Mapping

from sim.host import BACKGROUND_CPU_S, SimHost
from spec.host_spec import RoleCpu
from spec.topology import Cluster

__all__ = ["HarnessLoad"]


class HarnessLoad:
    """Puts each role's per-request and per-batch CPU on the host it runs on.

    A role instance (the broker, the sink, one gateway, one source) is one
    single-threaded process: its work is one job on its host at one core,
    to which every message adds ``RoleCpu`` CPU-seconds (a backlog it works
    off while sharing the cores with the models). Per request (when a
    gateway receives it): its source, the broker and the gateway. Per batch
    (when its result is back): the gateway, the broker and the sink. A
    role's ``idle_cores`` (its polling loops) is a second job on its host,
    demanding that much of a core for the whole run. Roles on no host cost
    nothing.
    """

    def __init__(self, cluster: Cluster, hosts: Mapping[str, SimHost], gateways, sources):
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
        self._charge((self._sources.get(source), self._broker, self._gateways.get(gateway)), "cpu_s_per_request")

    def batch(self, gateway: str) -> None:
        """A batch's result came back to ``gateway`` (and its records go on to the sink)."""
        self._charge((self._gateways.get(gateway), self._broker, self._sink), "cpu_s_per_batch")

    @staticmethod
    def _charge(placed_roles, field: str) -> None:
        """Each role's ``field`` CPU on its host, one submission per host."""
        by_host: dict[int, tuple[SimHost, list]] = {}
        for placed in placed_roles:
            if placed is not None and getattr(placed[2], field) > 0:
                by_host.setdefault(id(placed[0]), (placed[0], []))[1].append((placed[1], getattr(placed[2], field), 1.0))
        for host, work in by_host.values():
            host.run_all(work)

    def arrivals_through(self, driver) -> None:
        """Charge each request's CPU when ``driver``'s scheduler receives it (wraps ``driver.handle_arrival``)."""
        inner, gateway, request_cpu = driver.handle_arrival, driver.name, self.request

        def handle_arrival(now_s, request):
            request_cpu(request.source, gateway)
            return inner(now_s, request)

        driver.handle_arrival = handle_arrival
        driver.harness = self
