"""A fleet's servers, one per gateway, serving a chunk's batches of all of them at once (the fleet's bulk path)."""

from __future__ import annotations

import math

import numpy as np

from spec.noise import NoNoise
from spec.pricing import FreePricing, HourlyPricing

__all__ = ["FleetServers"]

#: the largest table of mean service times kept, gateways x batch sizes (beyond: each server's own ``service_bulk``)
MAX_MEANS = 1 << 22


class FleetServers:
    """``SlotServer.run_bulk`` for many servers at once: each one's batches first in first out, the same sums.

    ``servers[g]`` is gateway g's (a ``SlotServer`` that needs nothing but
    its service: ``sim.bulk_driver``'s conditions), ``memory_mb[g]`` its
    batches' memory size, ``max_size`` the largest batch any can get. The
    servers' slots are taken over for the run (``start``) and handed back
    (``finish``). Service times: the profile's mean per (gateway, size),
    kept in a table, or where a server has noise its own ``service_bulk``
    on its batches of the chunk, in their order (its noise stream drawn as
    ``run_bulk`` draws it: one call per noisy server per chunk). Slots:
    batch k of every gateway in one pass, k = 0, 1, ...: ``start =
    max(arrival, free)``, ``end = start + service``, per element, as
    ``run_bulk`` computes them one at a time, so the numbers are the same.
    """

    def __init__(self, servers: list, memory_mb: list[int | None], max_size: int):
        self.servers = servers
        self.memory_mb = memory_mb
        count = len(servers)
        self.noisy = np.array([not isinstance(s.spec.noise, NoNoise) for s in servers])
        self._means = np.full((count, max_size + 1), math.nan) if count * (max_size + 1) <= MAX_MEANS else None
        self._own_service = self.noisy if self._means is not None else np.ones(count, dtype=bool)
        pricings = [s.spec.pricing for s in servers]
        self._free_pricing = all(type(p) is FreePricing for p in pricings)
        hourly = [type(p) is HourlyPricing for p in pricings]
        self._hourly = np.array(hourly)
        self._price_per_hour = np.array([p.price_per_hour if h else math.nan for p, h in zip(pricings, hourly)])
        self._other_pricing = not self._free_pricing and not all(hourly)
        self.width = max(s.slots for s in servers)
        self._free_s = np.full((count, self.width), math.inf)  # a slot a server lacks is never the first free
        self._served = np.zeros(count, dtype=np.int64)

    def start(self) -> None:
        """Take over the servers' slots (``SlotServer.free_at_s``)."""
        for g, server in enumerate(self.servers):
            self._free_s[g, : server.slots] = server.free_at_s

    def finish(self) -> None:
        """Hand the slots back, with the count of batches each served (``SlotServer.served_bulk``)."""
        for g, server in enumerate(self.servers):
            server.served_bulk(self._free_s[g, : server.slots].tolist(), int(self._served[g]))
            self._served[g] = 0

    def serve(self, gateway: np.ndarray, dispatched_s: np.ndarray, sizes: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(start_s, end_s, cost)`` of batches sorted by gateway, then dispatch time (each gateway's in its order)."""
        count = len(gateway)
        run_first = np.flatnonzero(np.concatenate([[True], gateway[1:] != gateway[:-1]])) if count else np.zeros(0, np.int64)
        run_length = np.diff(np.append(run_first, count))
        run_gateway = gateway[run_first]
        service_s = self._service_s(gateway, sizes, run_first, run_length, run_gateway)
        start_s, end_s = self._slots(dispatched_s, service_s, run_first, run_length, run_gateway)
        self._served[run_gateway] += run_length  # one run per gateway: no index twice
        return start_s, end_s, self._costs(gateway, end_s - start_s, run_first, run_length, run_gateway)

    def _service_s(self, gateway, sizes, run_first, run_length, run_gateway) -> np.ndarray:
        service_s = np.empty(len(gateway))
        means = self._means
        if means is not None:
            service_s = means[gateway, sizes]
            missing = np.isnan(service_s)
            if missing.any():
                width = means.shape[1]
                pairs = np.unique(gateway[missing].astype(np.int64) * width + sizes[missing]).tolist()
                for g, size in (divmod(pair, width) for pair in pairs):
                    means[g, size] = self.servers[g].spec.profile.mean_s(size, self.memory_mb[g])
                service_s = means[gateway, sizes]
        own = self._own_service[run_gateway]
        for g, first, length in zip(run_gateway[own].tolist(), run_first[own].tolist(), run_length[own].tolist()):
            service_s[first : first + length] = self.servers[g].service_bulk(sizes[first : first + length], self.memory_mb[g])
        return service_s

    def _slots(self, dispatched_s, service_s, run_first, run_length, run_gateway) -> tuple[np.ndarray, np.ndarray]:
        """Each run's k-th batch for every run at once, k = 0, 1, ...: its start and end (``run_bulk``'s sums)."""
        start_s, end_s = np.empty(len(dispatched_s)), np.empty(len(dispatched_s))
        free = self._free_s
        alive = np.arange(len(run_first))
        one_slot = self.width == 1
        column = free[:, 0].copy() if one_slot else None
        for k in range(int(run_length.max()) if len(run_length) else 0):
            alive = alive[run_length[alive] > k]
            batch = run_first[alive] + k
            lane = run_gateway[alive]
            at_s = dispatched_s[batch]
            if one_slot:
                free_s = column[lane]
            else:
                slot = free[lane].argmin(axis=1)  # the earliest free slot (a heap's pop: the same value)
                free_s = free[lane, slot]
            began_s = np.where(free_s > at_s, free_s, at_s)
            ended_s = began_s + service_s[batch]
            if one_slot:
                column[lane] = ended_s
            else:
                free[lane, slot] = ended_s
            start_s[batch] = began_s
            end_s[batch] = ended_s
        if one_slot:
            free[:, 0] = column
        return start_s, end_s

    def _costs(self, gateway, duration_s, run_first, run_length, run_gateway) -> np.ndarray:
        """``batch_costs`` per server, as arrays: hourly ``price * duration / 3600`` per element, others each its own call."""
        if self._free_pricing:
            return np.zeros(len(duration_s))
        hourly = self._hourly[gateway]
        cost = np.where(hourly, self._price_per_hour[gateway] * duration_s / 3600.0, 0.0)
        if self._other_pricing:
            other = ~self._hourly[run_gateway] & ~np.array([type(self.servers[g].spec.pricing) is FreePricing for g in run_gateway.tolist()])
            for g, first, length in zip(run_gateway[other].tolist(), run_first[other].tolist(), run_length[other].tolist()):
                cost[first : first + length] = self.servers[g].batch_costs(duration_s[first : first + length], self.memory_mb[g])
        return cost
