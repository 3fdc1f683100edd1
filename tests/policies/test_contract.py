"""The policy contract, checked for every concrete policy class in policies/.

Classes are found by walking the package, so a new class is covered as soon
as it exists; it must then get an entry in ``CONFIGS`` (a test fails until
it does). For each class: the same event sequence gives identical actions
(two runs, and a replay of the recorded events); no request is lost; timers
are delivered only while running, exactly at their time; batching never
holds a request past its bound; an impossible event raises ``DriverError``;
bad settings raise ``ValueError`` naming the setting.
"""

from __future__ import annotations

import importlib
import inspect
import math
import pkgutil

import numpy as np
import pytest

import policies
from policies import (
    BatchFinished,
    BatchingPolicy,
    CancelTimer,
    DriverError,
    PlacementPolicy,
    Planner,
    Request,
    RequestArrived,
    Scheduler,
    StartTimer,
    TimerFired,
)
from policies.batching import FixedBatching, TimeoutBatching
from policies.placement import RoundRobinPlacement, WeightedPlacement
from tests.policies import harness as H


def find_classes() -> dict[str, type]:
    found = {}
    for info in pkgutil.walk_packages(policies.__path__, "policies."):
        module = importlib.import_module(info.name)
        for _, cls in inspect.getmembers(module, inspect.isclass):
            if (
                issubclass(cls, (BatchingPolicy, PlacementPolicy, Planner))
                and not inspect.isabstract(cls)
                and cls.__module__ == module.__name__
            ):
                found[f"{cls.__module__}.{cls.__name__}"] = cls
    return found


CLASSES = find_classes()


def _deadline_bound(request: Request, executor, kwargs) -> float:
    if math.isinf(request.deadline_s):
        return request.arrival_s + kwargs["max_wait_s"]
    memory = getattr(executor, "memory_mb", None)
    alone = executor.mean_service_s(1, memory)
    return max(request.arrival_s, request.deadline_s - alone - kwargs.get("safety_s", 0.0))


def _wait_bound(request, executor, kwargs) -> float:
    return request.arrival_s + kwargs["max_wait_s"]


#: per class: configs to run, bad settings (kwargs, name the error must mention),
#: and for batching the latest dispatch time of a request (None: no bound)
CONFIGS: dict[str, dict] = {
    "policies.batching.no_batching.NoBatching": dict(
        configs=[{}],
        bad=[({"max_queue": 0}, "max_queue")],
        bound=lambda r, e, kw: r.arrival_s,
    ),
    "policies.batching.timeout.TimeoutBatching": dict(
        configs=[{"max_batch_size": 4, "max_wait_s": 0.02}, {"max_batch_size": 8, "max_wait_s": 0.05, "preferred_batch_sizes": [2, 4]}],
        bad=[
            ({"max_batch_size": 0}, "max_batch_size"),
            ({"max_wait_s": -1.0}, "max_wait_s"),
            ({"max_batch_size": 4, "preferred_batch_sizes": [8]}, "preferred_batch_sizes"),
            ({"max_inflight": 0}, "max_inflight"),
            ({"preferred_batch_sizes": [2.5]}, "preferred_batch_sizes"),
        ],
        bound=_wait_bound,
    ),
    "policies.batching.fixed.FixedBatching": dict(
        configs=[{"batch_size": 4, "max_wait_s": 0.05}],
        bad=[({"batch_size": 0}, "batch_size"), ({"max_wait_s": 0.0}, "max_wait_s"), ({"max_wait_s": math.inf}, "max_wait_s")],
        bound=_wait_bound,
    ),
    "policies.batching.aimd.AIMDBatching": dict(
        configs=[{"slo_s": 0.2, "max_batch_size": 16, "max_wait_s": 0.02}],
        bad=[
            ({"decrease": 1.5}, "decrease"),
            ({"increase": 0}, "increase"),
            ({"slo_s": -1.0}, "slo_s"),
            ({"max_batch_size": 4, "initial_batch_size": 8}, "initial_batch_size"),
        ],
        bound=_wait_bound,
    ),
    "policies.batching.deadline.DeadlineAwareBatching": dict(
        configs=[
            {"max_batch_size": 8, "shed": True, "safety_s": 0.01, "max_wait_s": 0.05},
            {"max_batch_size": 8, "shed": False, "max_wait_s": 0.05, "uplink_MBps": 4.26},
        ],
        bad=[
            ({"safety_s": -1.0}, "safety_s"),
            ({"max_batch_size": 0}, "max_batch_size"),
            ({"shed": "yes"}, "shed"),
            ({"uplink_MBps": 0.0}, "uplink_MBps"),
        ],
        bound=_deadline_bound,
    ),
    "policies.placement.static.StaticPlacement": dict(
        configs=[{}, {"executor": "serverless"}],
        bad=[({"executor": "nope"}, "executor")],
    ),
    "policies.placement.round_robin.RoundRobinPlacement": dict(
        configs=[{}],
        bad=[({"executors": ["nope"]}, "executors"), ({"executors": []}, "executors")],
    ),
    "policies.placement.least_loaded.LeastLoadedPlacement": dict(
        configs=[{}],
        bad=[({"executors": ["nope"]}, "executors"), ({"executors": []}, "executors")],
    ),
    "policies.placement.latency_aware.LatencyAwarePlacement": dict(
        configs=[{}, {"mode": "cheapest"}],
        bad=[({"mode": "slowest"}, "mode"), ({"batch_size_estimate": 0}, "batch_size_estimate"), ({"executors": ["x"]}, "executors")],
    ),
    "policies.placement.cascade.CascadePlacement": dict(
        configs=[{"cheap": "edge", "big": "cloud"}],
        bad=[({"cheap": "nope", "big": "cloud"}, "cheap"), ({"cheap": "edge", "big": "nope"}, "big")],
    ),
    "policies.placement.weighted.WeightedPlacement": dict(
        configs=[{}, {"weights": {"edge": 2, "serverless": 1, "cloud": 1}}],
        bad=[
            ({"weights": {"edge": -1.0}}, "weights"),
            ({"weights": {"nope": 1.0}}, "weights"),
            ({"weights": {}}, "weights"),
            ({"weights": {"edge": 0.0}}, "weights"),
        ],
    ),
    "policies.planning.edge_first.EdgeFirstPlanner": dict(
        configs=[
            {"slo_s": 0.8, "nominal_rate_rps": 60.0, "period_s": 2.0},
            {"slo_s": 0.8, "nominal_rate_rps": 60.0, "trigger": "changepoint"},
            {"slo_s": 0.8, "nominal_rate_rps": 60.0, "trigger": "none"},
        ],
        bad=[
            ({"slo_s": 0.0, "nominal_rate_rps": 60.0}, "slo_s"),
            ({"slo_s": 0.8, "nominal_rate_rps": -1.0}, "nominal_rate_rps"),
            ({"slo_s": 0.8, "nominal_rate_rps": 60.0, "trigger": "sometimes"}, "trigger"),
            ({"slo_s": 0.8, "nominal_rate_rps": 60.0, "edge_batch_sizes": []}, "edge_batch_sizes"),
            ({"slo_s": 0.8, "nominal_rate_rps": 60.0, "memory_sizes_mb": [0, 1024]}, "memory_sizes_mb"),
            ({"slo_s": 0.8, "nominal_rate_rps": 60.0, "changepoint": {"threshold": 2.0}}, "threshold"),
            ({"slo_s": 0.8, "nominal_rate_rps": 60.0, "changepoint": {"no_such": 1}}, "changepoint"),
            ({"slo_s": 0.8, "nominal_rate_rps": 60.0, "period_s": 0}, "period_s"),
            ({"slo_s": 0.8, "nominal_rate_rps": 60.0, "edge_executor": "cloud"}, "edge_executor"),
        ],
    ),
    "policies.planning.tail_aware.TailAwarePlanner": dict(
        configs=[
            {"slo_s": 0.8, "nominal_rate_rps": 60.0, "period_s": 2.0},
            {"slo_s": 0.8, "nominal_rate_rps": 60.0, "trigger": "changepoint", "criterion": "mixture"},
        ],
        bad=[
            ({"slo_s": 0.8, "nominal_rate_rps": 60.0, "percentile": 1.5}, "percentile"),
            ({"slo_s": 0.8, "nominal_rate_rps": 60.0, "criterion": "x"}, "criterion"),
            ({"slo_s": 0.8, "nominal_rate_rps": 60.0, "split_steps": 0}, "split_steps"),
            ({"slo_s": 0.8, "nominal_rate_rps": 60.0, "service_cv": -0.1}, "service_cv"),
            ({"slo_s": -0.8, "nominal_rate_rps": 60.0}, "slo_s"),
        ],
    ),
}

CASES = [(name, i) for name in sorted(CLASSES) if name in CONFIGS for i in range(len(CONFIGS[name]["configs"]))]


def family(cls: type) -> str:
    if issubclass(cls, BatchingPolicy):
        return "batching"
    if issubclass(cls, PlacementPolicy):
        return "placement"
    return "planner"


def build(cls: type, kwargs: dict) -> Scheduler:
    cluster = H.seed_cluster(with_cloud=True)
    kind = family(cls)
    if kind == "batching":
        return Scheduler(cluster=cluster, placement=RoundRobinPlacement(), batching=lambda: cls(**kwargs))
    if kind == "placement":
        return Scheduler(cluster=cluster, placement=cls(**kwargs), batching=TimeoutBatching(max_batch_size=4, max_wait_s=0.02))
    return Scheduler(
        cluster=cluster, placement=WeightedPlacement(), batching=FixedBatching(batch_size=4, max_wait_s=0.2), planner=cls(**kwargs)
    )


def scenario(cls: type) -> dict:
    """A workload that exercises each family: deadlines for batching, a load and link change for planners."""
    kind = family(cls)
    if kind == "planner":
        rng = np.random.default_rng(7)
        low = np.cumsum(rng.exponential(1 / 40.0, 600))
        low = low[low < 10.0]
        high = 10.0 + np.cumsum(rng.exponential(1 / 120.0, 1800))
        high = high[high < 20.0]
        return dict(
            arrival_s=np.concatenate([low, high]),
            duration_s=20.0,
            slo_s=0.8,
            rate_period_s=1.0,
            bandwidth=lambda t: 4.26 if t < 12 else 1.0,
        )
    return dict(
        rate_rps=60.0,
        duration_s=8.0,
        seed=3,
        slo_s=lambda i: 0.6 if i % 2 == 0 else math.inf,
        bandwidth=(lambda t: 4.26 if t < 4 else 0.0) if kind == "placement" else None,
    )


def test_every_class_has_a_config():
    missing = sorted(set(CLASSES) - set(CONFIGS))
    assert not missing, f"add an entry to CONFIGS in {__file__} for {missing}"
    stale = sorted(set(CONFIGS) - set(CLASSES))
    assert not stale, f"CONFIGS names classes that no longer exist: {stale}"


def test_the_walk_finds_the_known_classes():
    assert len(CLASSES) >= 12
    assert "policies.planning.edge_first.EdgeFirstPlanner" in CLASSES
    assert "policies.planning.replanning.ReplanningPlanner" not in CLASSES  # abstract base


def _timers_honoured(result: H.Run) -> None:
    running: dict[str, float] = {}
    for event, actions in zip(result.events, result.actions):
        if isinstance(event, TimerFired):
            assert event.timer_id in running, f"{event.timer_id} fired while not running"
            assert event.now_s == running.pop(event.timer_id), "timer delivered off its time"
        for action in actions:
            if isinstance(action, StartTimer):
                running[action.timer_id] = action.at_s
            elif isinstance(action, CancelTimer):
                running.pop(action.timer_id, None)


@pytest.mark.parametrize("name,index", CASES)
def test_contract(name, index):
    cls = CLASSES[name]
    entry = CONFIGS[name]
    kwargs = entry["configs"][index]
    work = scenario(cls)
    first = H.run(build(cls, kwargs), **work)
    second = H.run(build(cls, kwargs), **work)
    # determinism: same events, same actions; and a replay of the recorded log
    assert first.events == second.events
    assert first.actions == second.actions
    assert H.replay(build(cls, kwargs), first.events) == first.actions
    # no request lost
    H.check_accounting(first)
    assert first.completed, "nothing completed"
    for reason in first.dropped.values():
        assert isinstance(reason, str) and reason
    # timers
    _timers_honoured(first)
    # batching bound
    bound = entry.get("bound")
    if bound is not None:
        cluster = H.seed_cluster(with_cloud=True)
        for rid, (at, executor, _) in first.dispatched.items():
            request = first.requests[rid]
            latest = bound(request, cluster.executors[executor], kwargs)
            assert at <= latest + 1e-9, f"request {rid} held until {at}, bound {latest}"
        for rid, reason in first.dropped.items():
            assert reason in ("run_ended", "deadline", "queue_full"), reason
    if family(cls) == "planner":
        assert first.plans, "the planner never planned"


@pytest.mark.parametrize("name", sorted(CLASSES))
def test_impossible_events_raise_driver_error(name):
    cls = CLASSES[name]
    kwargs = CONFIGS[name]["configs"][0]
    scheduler = build(cls, kwargs)
    request = Request(request_id=1, source="s", arrival_s=0.0, size_bytes=1000)
    scheduler.handle(RequestArrived(now_s=0.0, request=request))
    with pytest.raises(DriverError):
        scheduler.handle(BatchFinished(now_s=0.1, batch_id=10**6, executor="edge", service_s=0.01))
    with pytest.raises(DriverError):
        scheduler.handle(TimerFired(now_s=0.2, timer_id="never-started"))
    with pytest.raises(DriverError):
        scheduler.handle(RequestArrived(now_s=0.05, request=request))  # time went backwards


@pytest.mark.parametrize(
    "name,bad,setting",
    [(name, bad, setting) for name in sorted(CLASSES) for bad, setting in CONFIGS.get(name, {}).get("bad", [])],
)
def test_bad_settings_raise_value_error_naming_them(name, bad, setting):
    cls = CLASSES[name]
    with pytest.raises(ValueError, match=setting):
        build(cls, bad)


@pytest.mark.parametrize("name", sorted(CLASSES))
def test_handle_arrival_is_handle_of_request_arrived(name):
    # the simulator's hot path (Scheduler.handle_arrival) against the one entry point, event for event
    cls = CLASSES[name]
    kwargs = CONFIGS[name]["configs"][0]
    by_event, by_arrival = build(cls, kwargs), build(cls, kwargs)
    rng = np.random.default_rng(5)
    now_s = 0.0
    for request_id in range(200):
        now_s += float(rng.exponential(0.01))
        request = Request(request_id=request_id, source="s", arrival_s=now_s, size_bytes=1000, deadline_s=now_s + 0.5)
        expected = by_event.handle(RequestArrived(now_s=now_s, request=request))
        assert by_arrival.handle_arrival(now_s, request) == expected
        for timer in [a for a in expected if isinstance(a, StartTimer) and a.at_s <= now_s]:
            assert by_arrival.handle(TimerFired(now_s=now_s, timer_id=timer.timer_id)) == by_event.handle(
                TimerFired(now_s=now_s, timer_id=timer.timer_id))
    assert by_arrival.pending_requests == by_event.pending_requests
    with pytest.raises(DriverError):
        by_arrival.handle_arrival(now_s - 1.0, Request(request_id=10**6, source="s", arrival_s=0.0, size_bytes=1))
    with pytest.raises(DriverError):
        by_arrival.handle_arrival(now_s, Request(request_id=199, source="s", arrival_s=now_s, size_bytes=1))  # arrived twice
