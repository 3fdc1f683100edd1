"""The simulator's bulk path (``sim.bulk_driver``) against the per-request path: identical tables, exactly.

Randomized configurations (timeout, fixed and no batching with various sizes
and waits; arrival times on a dyadic grid, so that ties between arrivals and
between an arrival and a batch's timer are exact; one to three slots; noise
on and off; one or two sources and executors; chunks of a few arrivals up to
thousands) run once with the bulk path and once with it turned off
(``Simulation.bulk = False``), and their request and batch tables must be
equal (``assert_frame_equal``, no tolerance). Configurations the bulk path
does not take (a planner with its telemetry, placement over two executors,
hops, a bounded queue, a horizon) must fall back, and say why.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest

from policies.plan import Plan
from policies.planning.base import Planner
from policies.run_spec import build_run_spec
from sim import build_simulation
from sim.bulk_driver import BulkDriver
from spec.streamed_arrivals import RollingArrivals, StreamedArrivals
from spec.workload import Arrivals, Workload

GRID_S = 2.0**-11  # about 0.5 ms; sums of grid times are exact, so ties at a batch's due time are exact too


class QuietPlanner(Planner):
    """A planner that never plans: the scheduler must still show it every event."""

    def make_plan(self, now_s: float, trigger: str) -> Plan:
        return Plan(trigger=trigger)


def random_config(rng: np.random.Generator, num_requests: int) -> dict:
    batching = [
        {"_target_": "policies.batching.TimeoutBatching", "max_batch_size": int(rng.choice([1, 2, 3, 8, 16])),
         "max_wait_s": float(rng.choice([0.0, 2 * GRID_S, 10 * GRID_S, 0.005, 0.02]))},
        {"_target_": "policies.batching.FixedBatching", "batch_size": int(rng.choice([1, 4, 8])), "max_wait_s": float(rng.choice([8 * GRID_S, 0.01]))},
        {"_target_": "policies.batching.NoBatching"},
    ][int(rng.choice(3, p=[0.6, 0.25, 0.15]))]  # fmt: skip
    slots = int(rng.integers(1, 4))
    two_executors = bool(rng.integers(2))
    executors = [
        {"name": name, "kind": "edge", "gateway": "edge", "slots": slots,
         "profile": {"kind": "linear", "per_item_s": float(rng.uniform(0.0002, 0.001)), "base_s": float(rng.uniform(0.0, 0.003))},
         "noise": {"kind": "gamma", "cv": 0.5} if rng.integers(2) else {"kind": "none"},
         "pricing": {"kind": "hourly", "price_per_hour": 0.5} if rng.integers(2) else {"kind": "free"}}
        for name in (["e0", "e1"] if two_executors else ["e0"])
    ]  # fmt: skip
    placement = {"_target_": "policies.placement.StaticPlacement", "executor": "e1" if two_executors else None}
    if not two_executors and rng.integers(2):
        placement = {"_target_": "policies.placement.RoundRobinPlacement"}  # one executor to go round: bulk too
    rate = float(rng.uniform(200.0, 1500.0)) * slots
    sources = [{"name": "a", "slo_s": 0.05, "size_bytes": 1000, "arrivals": {"kind": "poisson", "rate_rps": rate}}]
    if rng.integers(2):
        sources.append({"name": "b", "slo_s": 0.2, "size_bytes": 5000, "arrivals": {"kind": "gamma", "rate_rps": rate / 2, "cv": 2.0}})
    return {"seed": int(rng.integers(1000)), "workload": {"num_requests": num_requests, "sources": sources},
            "cluster": {"executors": executors}, "policy": {"placement": placement, "batching": batching}}  # fmt: skip


def on_grid(spec):
    """The spec with its arrival times rounded to the dyadic grid (ties, exactly)."""
    arrivals = spec.arrivals
    rounded = np.round(arrivals.arrival_s / GRID_S) * GRID_S
    return dataclasses.replace(spec, arrivals=Arrivals(arrival_s=rounded, source_index=arrivals.source_index, sources=arrivals.sources))


def run(spec, bulk: bool):
    sim = build_simulation(spec)
    sim.bulk = bulk
    result = sim.run()
    return sim.feed_path, result


def both_paths(spec) -> tuple[str, object]:
    """Run ``spec`` on both paths, require identical tables; the bulk run's path and result."""
    path_off, off = run(spec, bulk=False)
    path_on, on = run(spec, bulk=True)
    assert path_off.startswith("per request: turned off")
    pd.testing.assert_frame_equal(on.requests, off.requests, check_exact=True)
    pd.testing.assert_frame_equal(on.batches, off.batches, check_exact=True)
    assert on.summary == off.summary
    return path_on, on


@pytest.mark.parametrize("case", range(24))
def test_random_configurations_give_identical_tables(case, monkeypatch):
    rng = np.random.default_rng(1000 + case)
    monkeypatch.setattr(BulkDriver, "chunk", int(rng.choice([1, 7, 64, 1000, 1 << 15])))
    spec = build_run_spec(random_config(rng, num_requests=int(rng.integers(200, 2500))))
    if case % 2:
        spec = on_grid(spec)
    path, result = both_paths(spec)
    assert path == "bulk"
    assert result.summary["completed"] == len(result.requests)
    assert len(result.batches) > 1


def test_ties_at_a_batchs_due_time_go_to_the_next_batch(monkeypatch):
    # arrivals every 4 grid steps, wait 8 steps: the third arrival of each batch comes exactly at its due time
    monkeypatch.setattr(BulkDriver, "chunk", 5)
    config = random_config(np.random.default_rng(0), num_requests=300)
    config["policy"] = {"placement": {"_target_": "policies.placement.StaticPlacement"},
                        "batching": {"_target_": "policies.batching.TimeoutBatching", "max_batch_size": 8, "max_wait_s": 8 * GRID_S}}  # fmt: skip
    config["cluster"]["executors"] = config["cluster"]["executors"][:1]
    config["cluster"]["executors"][0]["name"] = "e0"
    spec = build_run_spec(config)
    count = len(spec.arrivals)
    times = np.arange(count) * 4 * GRID_S
    spec = dataclasses.replace(spec, arrivals=Arrivals(arrival_s=times, source_index=np.zeros(count, np.int16), sources=spec.arrivals.sources))
    path, result = both_paths(spec)
    assert path == "bulk"
    # hand-computed: the timer fires first at each tie, so every batch holds two requests and leaves at its due time
    batches = result.requests.groupby("batch_id")
    assert (batches.size() == 2).all()
    np.testing.assert_array_equal(batches["dispatched_s"].first().to_numpy(), times[::2] + 8 * GRID_S)


def fallback_configs() -> list[tuple[str, dict, str]]:
    base = random_config(np.random.default_rng(5), num_requests=800)
    base["cluster"]["executors"] = [dict(base["cluster"]["executors"][0], name="e0"), dict(base["cluster"]["executors"][0], name="e1")]
    base["policy"] = {"placement": {"_target_": "policies.placement.StaticPlacement", "executor": "e1"},
                      "batching": {"_target_": "policies.batching.TimeoutBatching", "max_batch_size": 4, "max_wait_s": 0.004}}  # fmt: skip
    cases = []

    def case(name, reason, **changes):
        config = {**base, "policy": dict(base["policy"]), "sim": dict(base.get("sim", {}))}
        config["workload"] = {**base["workload"], "sources": [dict(s) for s in base["workload"]["sources"]]}
        config["cluster"] = dict(base["cluster"])
        for key, value in changes.items():
            section, _, leaf = key.partition("__")
            config[section][leaf] = value
        cases.append((name, config, reason))

    case("planner", "a planner", policy__planner={"_target_": "tests.sim.test_bulk_path.QuietPlanner"}, sim__telemetry_period_s=0.05)
    case("round_robin_over_two", "policies that take requests one at a time", policy__placement={"_target_": "policies.placement.RoundRobinPlacement"})
    case("bounded_queue", "policies that take requests one at a time",
         policy__batching={"_target_": "policies.batching.TimeoutBatching", "max_batch_size": 4, "max_wait_s": 0.004, "max_queue": 3})
    case("max_inflight", "policies that take requests one at a time",
         policy__batching={"_target_": "policies.batching.TimeoutBatching", "max_batch_size": 4, "max_wait_s": 0.004, "max_inflight": 1})
    case("horizon", "a horizon", sim__horizon_s=0.5)
    case("source_hop", "source hops", workload__sources=[dict(s, hop_s=0.001) for s in base["workload"]["sources"]])
    executor = base["cluster"]["executors"][0]
    # two gateways with an executor each take the fleet's bulk path (tests/sim/test_fleet_bulk_path.py); sharing one, not
    shared = {k: v for k, v in executor.items() if k != "gateway"}
    case("two_gateways_sharing", "share executor 'c'", cluster__executors=[dict(shared, name="c", kind="cloud")],
         policy__placement={"_target_": "policies.placement.StaticPlacement"},
         workload__sources=[{"name": "a", "arrivals": {"kind": "poisson", "rate_rps": 300.0}},
                            {"name": "b", "gateway": "far", "arrivals": {"kind": "poisson", "rate_rps": 300.0}}])  # fmt: skip
    return cases


@pytest.mark.parametrize("name, config, reason", fallback_configs(), ids=[c[0] for c in fallback_configs()])
def test_runs_the_bulk_path_cannot_take_fall_back_and_say_why(name, config, reason):
    path, _ = both_paths(build_run_spec(config))
    assert path.startswith("per request: ") and reason in path, path


@pytest.mark.parametrize("case", [3, 8])
def test_a_long_streamed_run_generates_its_arrivals_as_it_goes_and_writes_the_same_files(case, tmp_path, monkeypatch):
    # one gateway, a "long" run (spec.streamed_arrivals) in small windows: the bulk path reads a rolling view, trimmed
    # behind it, so that a run's arrivals are never all held (issue 23: 1 device x 100 M requests held 1.9 GB before)
    monkeypatch.setattr(Workload, "merge_in_windows_above", 1000)
    monkeypatch.setattr(Workload, "merge_window_requests", 97)
    monkeypatch.setattr(BulkDriver, "chunk", 150)
    monkeypatch.setattr("sim.simulation.RECORD_ROWS_PER_GROUP", 128)
    config = random_config(np.random.default_rng(2000 + case), num_requests=3000)
    simulations, results = {}, {}
    for bulk in (False, True):
        config["sim"] = {"stream_records_to": str(tmp_path / str(bulk)), "max_records_in_memory": 0}
        spec = build_run_spec(config)
        assert isinstance(spec.arrivals, StreamedArrivals)
        simulation = simulations[bulk] = build_simulation(spec)
        simulation.bulk = bulk
        results[bulk] = simulation.run()
    rolling = simulations[True].recorder.arrivals
    assert simulations[True].feed_path == "bulk"
    assert isinstance(rolling, RollingArrivals) and rolling.base > 0 and rolling.held < len(rolling) // 4  # trimmed as it went
    on, off = results[True].summary, results[False].summary
    assert on.keys() == off.keys()
    for key, value in off.items():  # sums over chunks of different sizes: equal to rounding
        assert on[key] == (pytest.approx(value, rel=1e-12, nan_ok=True) if isinstance(value, float) else value), key
    for name in ("requests.parquet", "batches.parquet"):
        pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "True" / name), pd.read_parquet(tmp_path / "False" / name), check_exact=True)
