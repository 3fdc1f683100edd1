"""Simulator speed and memory against a minimal hand-written SimPy model of the same queue.

Reference scenario (issue 2): Poisson arrivals at 300 req/s, timeout batching
up to 8 requests with a 5 ms wait, one edge server with a linear latency
profile, 1,000,000 requests. Both models run in this process, one after the
other, so the ratio compares like with like on whatever machine runs it.

    python -m benchmarks.sim_throughput [--requests N] [--repeat R]

Speed is wall time without tracing (best of ``--repeat``); peak memory is a
separate traced run (tracemalloc, which numpy reports its buffers to), from
building the run to its finished tables and summary.
"""

from __future__ import annotations

import argparse
import gc
import time
import tracemalloc

import numpy as np
import pandas as pd
import simpy

RATE_RPS = 300.0
MAX_BATCH = 8
MAX_WAIT_S = 0.005
PER_ITEM_S = 0.0005
BASE_S = 0.002


def edgebatch_config(num_requests: int, seed: int = 0) -> dict:
    return {
        "seed": seed,
        "workload": {"num_requests": num_requests, "sources": [{"name": "cam", "arrivals": {"kind": "poisson", "rate_rps": RATE_RPS}}]},
        "cluster": {
            "executors": [
                {"name": "edge", "kind": "edge", "gateway": "edge", "slots": 1,
                 "profile": {"kind": "linear", "per_item_s": PER_ITEM_S, "base_s": BASE_S}},
            ]
        },
        "policy": {
            "placement": {"_target_": "policies.placement.StaticPlacement"},
            "batching": {"_target_": "policies.batching.TimeoutBatching", "max_batch_size": MAX_BATCH, "max_wait_s": MAX_WAIT_S},
        },
    }  # fmt: skip


def run_edgebatch(num_requests: int) -> float:
    from sim import simulate

    result = simulate(edgebatch_config(num_requests))
    assert result.summary["completed"] == num_requests
    return result.summary["latency_mean_s"]


def run_minimal_simpy(num_requests: int, seed: int = 0) -> float:
    """The same queue written the usual SimPy way: processes, a Resource, events."""
    env = simpy.Environment()
    gaps = np.random.default_rng(seed).exponential(1.0 / RATE_RPS, num_requests)
    server = simpy.Resource(env, capacity=1)
    queue: list[tuple[int, float]] = []
    latency_s = np.empty(num_requests)
    state = {"arrived": env.event()}

    def serve(batch):
        with server.request() as slot:
            yield slot
            yield env.timeout(BASE_S + PER_ITEM_S * len(batch))
        now = env.now
        for index, arrival_s in batch:
            latency_s[index] = now - arrival_s

    def arrivals():
        for index, gap in enumerate(gaps.tolist()):
            yield env.timeout(gap)
            queue.append((index, env.now))
            state["arrived"].succeed()
            state["arrived"] = env.event()

    def batcher():
        while True:
            if not queue:
                yield state["arrived"]
            due_s = queue[0][1] + MAX_WAIT_S
            while len(queue) < MAX_BATCH and env.now < due_s:
                yield state["arrived"] | env.timeout(due_s - env.now)
            batch = queue[:MAX_BATCH]
            del queue[:MAX_BATCH]
            env.process(serve(batch))

    env.process(arrivals())
    env.process(batcher())
    env.run(until=gaps.sum() + 10.0)
    return float(latency_s.mean())


def timed(fn, num_requests: int, repeat: int) -> tuple[float, float]:
    best = float("inf")
    value = float("nan")
    for _ in range(repeat):
        gc.collect()
        started = time.perf_counter()
        value = fn(num_requests)
        best = min(best, time.perf_counter() - started)
    return best, value


def traced_peak_bytes(fn, num_requests: int) -> int:
    gc.collect()
    tracemalloc.start()
    tracemalloc.reset_peak()
    base, _ = tracemalloc.get_traced_memory()
    fn(num_requests)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return peak - base


def main(argv=None) -> pd.DataFrame:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--memory-requests", type=int, default=None, help="requests for the traced run (default: --requests)")
    args = parser.parse_args(argv)
    n = args.requests
    memory_n = args.memory_requests or n
    rows = []
    for name, fn in (("edgebatch (policies + sim)", run_edgebatch), ("minimal SimPy model", run_minimal_simpy)):
        wall_s, mean_latency = timed(fn, n, args.repeat)
        peak = traced_peak_bytes(fn, memory_n)
        rows.append(
            {"model": name, "requests": n, "wall_s": wall_s, "sim_req_per_s": n / wall_s,
             "peak_bytes_per_req": peak / memory_n, "mean_latency_ms": 1000 * mean_latency}
        )  # fmt: skip
    table = pd.DataFrame(rows).set_index("model")
    table["speed_vs_minimal"] = table["sim_req_per_s"] / table.loc["minimal SimPy model", "sim_req_per_s"]
    with pd.option_context("display.float_format", "{:,.3f}".format, "display.width", 200):
        print(table.to_string())
    ours = table.iloc[0]
    print()
    print(f"target >= 100,000 req/s: {ours.sim_req_per_s:,.0f} ({'met' if ours.sim_req_per_s >= 1e5 else 'MISSED'})")
    print(f"target faster than minimal SimPy: x{ours.speed_vs_minimal:.2f} ({'met' if ours.speed_vs_minimal > 1 else 'MISSED'})")
    print(f"target < 250 B/request peak: {ours.peak_bytes_per_req:.0f} B ({'met' if ours.peak_bytes_per_req < 250 else 'MISSED'})")
    return table


if __name__ == "__main__":
    main()
