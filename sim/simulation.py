"""One simulated run: a workload through schedulers, links and executors on SimPy."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd

from policies.events import ArrivalRateMeasured, BandwidthMeasured, InstanceStateChanged
from policies.run_spec import RunSpec
from sim.arrivals import ArrivalFeed, request_hops
from sim.environment import FeedEnvironment
from sim.gateway import GatewayDriver
from sim.harness import HarnessLoad
from sim.host import BACKGROUND_CPU_S, SimHost
from sim.link import LinkChannel
from sim.server import SlotServer
from sim.serverless import ServerlessPool
from spec.recorder import Recorder, hourly_servers, summary
from spec.records import empty_batches, empty_requests
from spec.streaming_recorder import BATCHES_FILE, REQUESTS_FILE, StreamingRecorder
from spec.run_result import RunResult
from spec.topology import Cluster, ServerlessSpec
from spec.validation import ConfigError

__all__ = ["Simulation", "RECORD_ROWS_PER_GROUP"]

#: requests per Parquet row group of a streamed run (what the streaming recorder keeps per slice)
RECORD_ROWS_PER_GROUP = 1 << 17


class Simulation:
    """Replays a run spec's arrivals through one scheduler per gateway on a SimPy clock.

    ``spec.make_scheduler(gateway, cluster)`` builds each gateway's scheduler
    (its own placement, batching and planner objects). Every request ends
    completed or dropped with a reason; a run that cannot finish (a policy
    stranding requests) raises instead of losing them. With ``horizon_s``, the
    run stops there and whatever has not finished is dropped as ``run_ended``.

    Telemetry (measured arrival rate per gateway, link bandwidth per remote
    executor, both over the period that just ended: ``Link.measured_bandwidth_MBps``)
    is fed every ``telemetry_period_s`` to schedulers that have a planner. Identical inputs and seed give identical tables.
    """

    #: the gateway driver (``sim.pipeline`` drives a pipeline stage in front of the scheduler with its own)
    driver_class = GatewayDriver

    def __init__(self, spec: RunSpec, *, records_dir: str | Path | None = None):
        self.env = FeedEnvironment()
        self.spec = spec
        self.arrivals = arrivals = spec.arrivals
        self.cluster = cluster = spec.cluster
        self.seed = seed = spec.seed
        make_scheduler = spec.make_scheduler
        central_scheduler = spec.sim.central_scheduler
        self.telemetry_period_s = spec.sim.telemetry_period_s
        self.horizon_s = spec.sim.horizon_s
        self.progress = spec.sim.progress
        self.executor_names = list(cluster.executors)
        #: each executor's index in ``executor_names`` (the recorder's executor code)
        self.executor_number = {name: i for i, name in enumerate(self.executor_names)}
        kinds = [cluster.executors[n].kind for n in self.executor_names]
        self._kinds = kinds
        streams = np.random.SeedSequence([seed, 0xEB]).spawn(len(self.executor_names))
        self.executors = {}
        for name, stream in zip(self.executor_names, streams):
            executor_spec = cluster.executors[name]
            rng = np.random.default_rng(stream)
            if isinstance(executor_spec, ServerlessSpec):
                executor = ServerlessPool(self.env, executor_spec, rng, self._batch_done, self._batch_failed, on_instances=self._instances_changed)
            else:
                executor = SlotServer(self.env, executor_spec, rng, self._batch_done, self._batch_failed)
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
            self.gateways[gateway] = self.driver_class(self, gateway, scheduler, {n: self.executors[n] for n in reachable}, channels)
        self._source_gateway = [self.gateways[g] for g in gateway_of]
        self.hosts = self._place_on_hosts()
        #: each request's hop to its gateway where sources give measured samples (None: their constant hop_s)
        self._request_hops = request_hops(arrivals, seed)
        self.recorder = self._make_recorder(spec.sim.stream_records_to if records_dir is None else records_dir)
        self._source_sizes = [s.size_bytes for s in arrivals.sources]
        self._uniform_size = self._source_sizes[0] if len(set(self._source_sizes)) == 1 else None
        self.count = len(arrivals)
        self.ended = 0
        self._next = 0
        self._arrivals_done = self.count == 0
        self.done = self.env.event()
        self._arrived_since: dict[str, int] = {g: 0 for g in self.gateways}
        self._telemetry = any(d.scheduler.planner is not None for d in self.gateways.values())

    def _make_recorder(self, folder: str | Path | None):
        """The recorder: in memory, or streaming its tables into ``folder`` (``sim.stream_records_to``)."""
        if folder is None:
            return Recorder(self.arrivals, self.executor_names, self._kinds)
        hops = True if self._request_hops is None else self._request_hops
        return StreamingRecorder(self.arrivals, self.executor_names, self._kinds, folder=folder, source_hops=hops,
                                 rows_per_group=RECORD_ROWS_PER_GROUP)

    def _place_on_hosts(self) -> dict[str, SimHost]:
        """Each host's shared cores, its executors' batches and its roles' CPU on them (none without hosts)."""
        cluster = self.cluster
        hosts = {name: SimHost(self.env, host, seed=self.seed) for name, host in cluster.hosts.items()}
        for name, executor in self.executors.items():
            host = cluster.host_of(name)
            if host is not None:
                executor.host = hosts[host.name]
                executor.batch_cores = host.cores_of_batch(name, executor.spec.kind)
                if not isinstance(executor.spec, ServerlessSpec):  # a pool's instances start cold or stay warm apart
                    executor.warm_up(host.warmup_of(name, executor.spec.kind))
                worker = host.roles.get(f"worker/{name}", host.roles.get("worker"))  # its worker's CPU, on its host
                if worker is not None:
                    executor.worker_cpu = worker
                    if worker.idle_cores > 0 and not isinstance(executor.spec, ServerlessSpec):
                        # each replica's idle loop
                        hosts[host.name].run(("idle", "worker", name), cpu_s=BACKGROUND_CPU_S, cores=worker.idle_cores * executor.spec.slots)
        harness = HarnessLoad(cluster, hosts, list(self.gateways), [s.name for s in self.arrivals.sources],
                              {s.name: s.size_bytes for s in self.arrivals.sources})  # fmt: skip
        if harness.active:
            harness.arrivals_from(self.env, self.arrivals, [d.name for d in self._source_gateway])
            for driver in self.gateways.values():
                harness.batches_through(driver)
        return hosts

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
        executor, warm = event.value
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
                        # only the past: the mean over the period that just ended
                        bandwidth = channel.link.measured_bandwidth_MBps(now_s, period_s)
                        driver.handle(BandwidthMeasured(now_s=now_s, executor=executor, bandwidth_MBps=bandwidth))

    # -- the run ----------------------------------------------------------------
    def run(self) -> RunResult:
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
        if isinstance(recorder, StreamingRecorder):
            return self._streamed_result(started)
        requests = recorder.requests(source_hops=True if self._request_hops is None else self._request_hops)
        batches = recorder.batches()
        plan_list = [p for d in self.gateways.values() for p in d.plans]
        result = summary(requests, batches, arrivals=self.arrivals, servers=hourly_servers(self.cluster), plans=plan_list,
                         complete=bool(self.done.triggered) or self.horizon_s is not None)  # fmt: skip
        return RunResult(requests, batches, pd.DataFrame(plan_list), result, wall_s=time.perf_counter() - started)

    def _streamed_result(self, started: float) -> RunResult:
        """The tables are on disk: read back (exact summary) when the run fits ``sim.max_records_in_memory``, else
        empty tables in the result and the summary from the recorder's running one (percentiles from its sketch)."""
        recorder = self.recorder
        recorder.close()
        plan_list = [p for d in self.gateways.values() for p in d.plans]
        complete = bool(self.done.triggered) or self.horizon_s is not None
        servers = hourly_servers(self.cluster)
        extra = {"records_dir": str(recorder.folder)}
        if self.count <= self.spec.sim.max_records_in_memory:
            requests = pd.read_parquet(recorder.folder / REQUESTS_FILE)
            batches = pd.read_parquet(recorder.folder / BATCHES_FILE)
            result = summary(requests, batches, arrivals=self.arrivals, servers=servers, plans=plan_list, complete=complete)
            return RunResult(requests, batches, pd.DataFrame(plan_list), result, wall_s=time.perf_counter() - started, extra=extra)
        first_s = getattr(recorder.arrivals, "first_s", None)  # a rolling view's (the fleet bulk path's), which holds no id 0
        if first_s is None:
            first_s = float(self.arrivals.arrival_s[0]) if self.count else 0.0
        result = recorder.summary.result(first_arrival_s=first_s, servers=servers, plans=plan_list, complete=complete)
        return RunResult(empty_requests(), empty_batches(), pd.DataFrame(plan_list), result, wall_s=time.perf_counter() - started,
                         extra=extra)  # fmt: skip

    def _end_early(self) -> None:
        now_s = self.env.now
        for driver in self.gateways.values():
            for action in driver.scheduler.close(now_s):
                driver._act[type(action)](action)
        self.recorder.end_unfinished()
