"""One simulated run: a workload through schedulers, links and executors on SimPy."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from policies.events import ArrivalRateMeasured, BandwidthMeasured, InstanceStateChanged
from policies.scheduler import Scheduler
from sim.arrivals import ArrivalFeed
from sim.environment import FeedEnvironment
from sim.gateway import GatewayDriver
from sim.link import LinkChannel
from sim.recorder import Recorder
from sim.server import SlotServer
from sim.serverless import ServerlessPool
from spec.records import DropReason, summarize
from spec.topology import Cluster, ServerlessSpec
from spec.validation import ConfigError, check_positive
from spec.workload import Arrivals

__all__ = ["Simulation", "SimResult"]


@dataclass
class SimResult:
    """What a run produced: the two record tables, the plans adopted, and the summary."""

    requests: pd.DataFrame
    batches: pd.DataFrame
    plans: pd.DataFrame
    summary: dict
    wall_s: float = 0.0
    extra: dict = field(default_factory=dict)


class Simulation:
    """Replays ``arrivals`` through one scheduler per gateway on a SimPy clock.

    ``make_scheduler(gateway, cluster)`` builds each gateway's scheduler (its
    own placement, batching and planner objects). Every request ends
    completed or dropped with a reason; a run that cannot finish (a policy
    stranding requests) raises instead of losing them. With ``horizon_s``, the
    run stops there and whatever has not finished is dropped as ``run_ended``.

    Telemetry (measured arrival rate per gateway, link bandwidth per remote
    executor) is fed every ``telemetry_period_s`` to schedulers that have a
    planner. Identical inputs and seed give identical tables.
    """

    def __init__(
        self,
        *,
        arrivals: Arrivals,
        cluster: Cluster,
        make_scheduler: Callable[[str, Cluster], Scheduler],
        seed: int = 0,
        telemetry_period_s: float = 1.0,
        horizon_s: float | None = None,
        progress: bool = False,
        central_scheduler: bool = False,
    ):
        self.env = FeedEnvironment()
        self.arrivals = arrivals
        self.cluster = cluster
        self.seed = seed
        self.telemetry_period_s = check_positive("sim.telemetry_period_s", telemetry_period_s)
        self.horizon_s = None if horizon_s is None else check_positive("sim.horizon_s", horizon_s)
        self.progress = progress
        self.executor_names = list(cluster.executors)
        kinds = [cluster.executors[n].kind for n in self.executor_names]
        self.recorder = Recorder(arrivals, self.executor_names, kinds)
        streams = np.random.SeedSequence([seed, 0xEB]).spawn(len(self.executor_names))
        self.executors = {}
        for name, stream in zip(self.executor_names, streams):
            spec = cluster.executors[name]
            rng = np.random.default_rng(stream)
            if isinstance(spec, ServerlessSpec):
                executor = ServerlessPool(self.env, spec, rng, self._batch_done, self._batch_failed, on_instances=self._instances_changed)
            else:
                executor = SlotServer(self.env, spec, rng, self._batch_done, self._batch_failed)
            self.executors[name] = executor
        gateway_of = [s.gateway for s in arrivals.sources]
        if central_scheduler:
            gateway_of = [Cluster.CENTRAL] * len(gateway_of)
        gateways = sorted(set(gateway_of) | (set() if central_scheduler else set(cluster.gateways)))
        self.gateways: dict[str, GatewayDriver] = {}
        for gateway in gateways:
            reachable = cluster.reachable(gateway)
            if not reachable:
                if gateway in gateway_of:
                    raise ConfigError("workload.sources.gateway", gateway, "a gateway that reaches some executor")
                continue
            scheduler = make_scheduler(gateway, cluster)
            channels = {}
            for name in reachable:
                link = cluster.link(gateway, name)
                channels[name] = None if link is None else LinkChannel(self.env, link)
            self.gateways[gateway] = GatewayDriver(self, gateway, scheduler, {n: self.executors[n] for n in reachable}, channels)
        self._source_gateway = [self.gateways[g] for g in gateway_of]
        self._source_sizes = [s.size_bytes for s in arrivals.sources]
        self._uniform_size = self._source_sizes[0] if len(set(self._source_sizes)) == 1 else None
        self.count = len(arrivals)
        self.ended = 0
        self._next = 0
        self._arrivals_done = self.count == 0
        self.done = self.env.event()
        self._arrived_since: dict[str, int] = {g: 0 for g in self.gateways}
        self._telemetry = any(d.scheduler.planner is not None for d in self.gateways.values())

    # -- wiring used by the drivers and executors ------------------------------
    def payload_bytes(self, request_ids) -> int:
        """Total payload of the requests in a batch."""
        if self._uniform_size is not None:
            return self._uniform_size * len(request_ids)
        sizes, index = self._source_sizes, self.arrivals.source_index
        return sum(sizes[index[r]] for r in request_ids)

    def requests_ended(self, count: int) -> None:
        self.ended += count
        if self._arrivals_done and self.ended >= self.count and not self.done.triggered:
            self.done.succeed()

    def _batch_done(self, batch) -> None:
        batch.gateway.batch_done(batch)

    def _batch_failed(self, batch) -> None:
        batch.gateway.batch_failed(batch)

    def _instances_changed(self, executor: str, now_s: float, warm: int) -> None:
        # delivered as its own SimPy event, never inside another event's action loop
        event = self.env.timeout(0, (executor, warm))
        event.callbacks.append(self._deliver_instances)

    def _deliver_instances(self, event) -> None:
        executor, warm = event._value
        if self.done.triggered:
            return
        for driver in self.gateways.values():
            if executor in driver.executors:
                driver.handle(InstanceStateChanged(now_s=self.env.now, executor=executor, warm_instances=warm))

    def _arrivals_finished(self) -> None:
        self._arrivals_done = True
        self.requests_ended(0)

    def _telemetry_loop(self):
        env = self.env
        period_s = self.telemetry_period_s
        while not self.done.triggered:
            yield env.timeout(period_s)
            if self.done.triggered:
                return
            now_s = env.now
            for name, driver in self.gateways.items():
                if driver.scheduler.planner is None:
                    continue
                driver.handle(ArrivalRateMeasured(now_s=now_s, rate_rps=self._arrived_since[name] / period_s))
                self._arrived_since[name] = 0
                for executor, channel in driver.channels.items():
                    if channel is not None:
                        bandwidth = channel.link.bandwidth_at(now_s)
                        driver.handle(BandwidthMeasured(now_s=now_s, executor=executor, bandwidth_MBps=bandwidth))

    # -- the run ----------------------------------------------------------------
    def run(self) -> SimResult:
        """Run to the end (or the horizon) and return the records and summary."""
        started = time.perf_counter()
        env = self.env
        ArrivalFeed(self, on_done=self._arrivals_finished, progress=self.progress).start()
        if self._telemetry:
            env.process(self._telemetry_loop())
        if self.horizon_s is None:
            try:
                env.run(until=self.done)
            except RuntimeError as error:  # the queue emptied before every request ended
                stuck = self.recorder.unfinished()
                raise RuntimeError(f"{len(stuck)} requests never ended (first ids {stuck[:5].tolist()}): {error}") from None
        else:
            env.run(until=env.any_of([self.done, env.timeout(self.horizon_s)]))
        if not self.done.triggered:
            self._end_early()
        recorder = self.recorder
        requests = recorder.requests()
        batches = recorder.batches()
        plans = pd.DataFrame([p for d in self.gateways.values() for p in d.plans])
        completed_s = requests["completed_s"].to_numpy()
        first_s = float(self.arrivals.arrival_s[0]) if self.count else 0.0
        last_s = float(np.nanmax(completed_s)) if np.isfinite(completed_s).any() else first_s
        span_s = max(last_s - first_s, 0.0)
        standing = sum(e.standing_cost(span_s) for e in self.executors.values())
        summary = summarize(requests, batches, span_s=span_s, standing_cost=standing)
        summary["replans"] = int(sum(1 for d in self.gateways.values() for p in d.plans if p.get("trigger") != "initial"))
        summary["complete"] = bool(self.done.triggered) or self.horizon_s is not None
        return SimResult(requests, batches, plans, summary, wall_s=time.perf_counter() - started)

    def _end_early(self) -> None:
        now_s = self.env.now
        for driver in self.gateways.values():
            for action in driver.scheduler.close(now_s):
                driver._act[type(action)](action)
        for request_id in self.recorder.unfinished().tolist():
            self.recorder.dropped(request_id, DropReason.RUN_ENDED)
