"""A tiny reference driver for policy tests (no SimPy): a heap of timed events.

It honours the policy contract the way the simulator must: a timer is
delivered exactly at its time unless cancelled or replaced; every executor
runs one batch at a time (FIFO), each taking its profile's mean service time;
arrivals are Poisson from a seeded numpy generator. It records every event it
delivered and every action it got back, and where each request ended.
"""

from __future__ import annotations

import bisect
import heapq
import math
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from policies import (
    ArrivalRateMeasured,
    BandwidthMeasured,
    BatchFinished,
    CancelTimer,
    DispatchBatch,
    DropRequest,
    NotePlan,
    Request,
    RequestArrived,
    Scheduler,
    StartTimer,
    TimerFired,
)
from spec.links import Link
from spec.noise import LognormalNoise
from spec.pricing import HourlyPricing, ServerlessPricing
from spec.profiles import LinearMemoryProfile, LinearProfile
from spec.topology import Cluster, ServerlessSpec, ServerSpec

# the seed's fitted models (../shared/data/README.md)
EDGE_PROFILE = LinearProfile(per_item_s=0.008165, base_s=0.04234)
SERVERLESS_PROFILE = LinearMemoryProfile(per_item_s=0.141, per_mb_s=-8.806e-6, base_s=0.225)
PRICE_PER_GB_S = 0.0000127
REQUEST_BYTES = 200 * 1024


def seed_cluster(*, bandwidth_MBps: float = 4.26, link_delay_s: float = 0.0, with_cloud: bool = False) -> Cluster:
    """One edge device at gateway "edge", one serverless pool behind an uplink (and optionally a cloud server)."""
    executors = [
        ServerSpec(name="edge", kind="edge", profile=EDGE_PROFILE, gateway="edge"),
        ServerlessSpec(
            name="serverless",
            profile=SERVERLESS_PROFILE,
            pricing=ServerlessPricing(price_per_gb_s=PRICE_PER_GB_S),
            memory_mb=2048,
        ),
    ]
    links = {"serverless": Link(delay_s=link_delay_s, bandwidth_MBps=bandwidth_MBps)}
    if with_cloud:
        executors.append(
            ServerSpec(
                name="cloud",
                kind="cloud",
                profile=LinearProfile(per_item_s=0.002, base_s=0.01),
                noise=LognormalNoise(cv=0.1),
                pricing=HourlyPricing(price_per_hour=3.0),
            )
        )
        links["cloud"] = Link(delay_s=0.01, bandwidth_MBps=20.0)
    return Cluster(executors=executors, links=links)


@dataclass
class Run:
    """What a run delivered and what came back."""

    events: list = field(default_factory=list)
    actions: list = field(default_factory=list)  # one list per event (and one for close)
    requests: dict[int, Request] = field(default_factory=dict)
    dispatched: dict[int, tuple[float, str, int]] = field(default_factory=dict)  # id -> (time, executor, batch)
    completed: dict[int, float] = field(default_factory=dict)
    dropped: dict[int, str] = field(default_factory=dict)
    batches: dict[int, tuple[str, tuple[int, ...], float, int | None]] = field(default_factory=dict)
    timers_fired: list[tuple[str, float]] = field(default_factory=list)
    plans: list = field(default_factory=list)

    @property
    def all_actions(self) -> list:
        return [a for batch in self.actions for a in batch]


def poisson_times(rate_rps: float, duration_s: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    gaps = rng.exponential(1.0 / rate_rps, int(rate_rps * duration_s * 1.5) + 50)
    times = np.cumsum(gaps)
    return times[times < duration_s]


def run(
    scheduler: Scheduler,
    *,
    rate_rps: float = 50.0,
    duration_s: float = 10.0,
    seed: int = 0,
    slo_s: float | Callable[[int], float] = math.inf,
    size_bytes: int = REQUEST_BYTES,
    arrival_s: Sequence[float] | None = None,
    rate_period_s: float | None = None,
    bandwidth: Callable[[float], float] | None = None,
    bandwidth_executor: str = "serverless",
    extra_events: Sequence = (),
    service_s: Callable[[str, int, int | None], float] | None = None,
) -> Run:
    """Drive ``scheduler`` with Poisson arrivals (or ``arrival_s``) until
    ``duration_s``, then close it and let the batches in flight finish.

    ``rate_period_s``: emit ``ArrivalRateMeasured`` (arrivals counted over the
    last period) that often. ``bandwidth``: emit ``BandwidthMeasured`` for
    ``bandwidth_executor`` every second from this function of time.
    ``service_s(executor, size, memory_mb)`` overrides the profile mean.
    """
    out = Run()
    heap: list = []
    seq = 0

    def push(t: float, kind: str, payload) -> None:
        nonlocal seq
        heapq.heappush(heap, (t, seq, kind, payload))
        seq += 1

    times = poisson_times(rate_rps, duration_s, seed) if arrival_s is None else np.asarray(arrival_s, dtype=float)
    for i, t in enumerate(times.tolist()):
        slo = slo_s(i) if callable(slo_s) else slo_s
        request = Request(request_id=i, source="s", arrival_s=t, size_bytes=size_bytes, deadline_s=t + slo)
        out.requests[i] = request
        push(t, "arrival", request)
    if rate_period_s is not None:
        t = rate_period_s
        while t < duration_s:
            push(t, "rate", None)
            t += rate_period_s
    if bandwidth is not None:
        t = 1.0
        while t < duration_s:
            push(t, "bandwidth", None)
            t += 1.0
    for event in extra_events:
        push(event.now_s, "event", event)

    closed = False
    timers: dict[str, int] = {}  # running timer id -> token of its heap entry
    busy: dict[str, bool] = {}
    waiting: dict[str, deque] = {}
    cluster = scheduler.cluster

    def start(executor: str, now: float) -> None:
        if busy.get(executor) or not waiting.get(executor):
            return
        batch_id, size, memory = waiting[executor].popleft()
        busy[executor] = True
        if service_s is not None:
            took = service_s(executor, size, memory)
        else:
            took = cluster.executors[executor].mean_service_s(size, memory)
        push(now + took, "finish", (batch_id, executor, took))

    def carry_out(actions: list, now: float) -> None:
        out.actions.append(actions)
        for action in actions:
            if isinstance(action, DispatchBatch):
                for rid in action.request_ids:
                    assert rid not in out.dispatched, f"request {rid} dispatched twice"
                    assert rid not in out.dropped, f"request {rid} dispatched after it was dropped"
                    out.dispatched[rid] = (now, action.executor, action.batch_id)
                assert action.batch_id not in out.batches, f"batch id {action.batch_id} reused"
                out.batches[action.batch_id] = (action.executor, action.request_ids, now, action.memory_mb)
                waiting.setdefault(action.executor, deque()).append((action.batch_id, len(action.request_ids), action.memory_mb))
                start(action.executor, now)
            elif isinstance(action, StartTimer):
                assert closed or action.at_s >= now - 1e-9, f"timer {action.timer_id} started in the past"
                timers[action.timer_id] = seq  # the heap entry pushed next carries this seq
                push(action.at_s, "timer", action.timer_id)
            elif isinstance(action, CancelTimer):
                timers.pop(action.timer_id, None)
            elif isinstance(action, DropRequest):
                rid = action.request_id
                assert rid not in out.dropped, f"request {rid} dropped twice"
                assert rid not in out.dispatched, f"request {rid} dropped after dispatch"
                assert isinstance(action.reason, str) and action.reason
                out.dropped[rid] = action.reason
            elif isinstance(action, NotePlan):
                out.plans.append(action.plan)

    def deliver(event) -> None:
        out.events.append(event)
        carry_out(scheduler.handle(event), event.now_s)

    arrivals_seen: list[float] = []
    while heap:
        t, token, kind, payload = heapq.heappop(heap)
        if not closed and t > duration_s:
            closed = True
            out.events.append(("close", duration_s))
            carry_out(scheduler.close(duration_s), duration_s)
            timers.clear()
        if kind == "arrival":
            arrivals_seen.append(t)
            deliver(RequestArrived(now_s=t, request=payload))
        elif kind == "timer":
            timer_id = payload
            if closed or timers.get(timer_id) != token:
                continue  # cancelled, replaced, or after the end: never delivered
            del timers[timer_id]
            out.timers_fired.append((timer_id, t))
            deliver(TimerFired(now_s=t, timer_id=timer_id))
        elif kind == "finish":
            batch_id, executor, took = payload
            busy[executor] = False
            _, ids, _, _ = out.batches[batch_id]
            for rid in ids:
                out.completed[rid] = t
            deliver(BatchFinished(now_s=t, batch_id=batch_id, executor=executor, service_s=took))
            start(executor, t)
        elif kind == "rate":
            if closed:
                continue
            count = len(arrivals_seen) - bisect.bisect_right(arrivals_seen, t - rate_period_s)
            deliver(ArrivalRateMeasured(now_s=t, rate_rps=count / rate_period_s))
        elif kind == "bandwidth":
            if closed:
                continue
            deliver(BandwidthMeasured(now_s=t, executor=bandwidth_executor, bandwidth_MBps=float(bandwidth(t))))
        elif kind == "event":
            if closed:
                continue
            deliver(payload)
    if not closed:
        out.events.append(("close", duration_s))
        carry_out(scheduler.close(duration_s), duration_s)
    return out


def replay(scheduler: Scheduler, events: list) -> list:
    """Feed a recorded event sequence (with its close marker) to a fresh scheduler; the actions per event."""
    out = []
    for event in events:
        if isinstance(event, tuple) and event[0] == "close":
            out.append(scheduler.close(event[1]))
        else:
            out.append(scheduler.handle(event))
    return out


def check_accounting(result: Run) -> None:
    """Every request ended exactly once: completed after one dispatch, or dropped with a reason."""
    for rid in result.requests:
        ended = (rid in result.completed) + (rid in result.dropped)
        assert ended == 1, f"request {rid}: completed={rid in result.completed} dropped={result.dropped.get(rid)}"
        if rid in result.completed:
            assert rid in result.dispatched, f"request {rid} completed without a dispatch"
        else:
            assert rid not in result.dispatched, f"request {rid} dropped after a dispatch"
    assert set(result.dispatched) <= set(result.requests)
