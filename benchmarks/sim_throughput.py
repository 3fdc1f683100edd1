"""Simulator speed and memory against a fair baseline: the plainest correct SimPy model of the same queue.

Reference scenario (issue 2): Poisson arrivals at 300 req/s, timeout batching
up to 8 requests with a 5 ms wait, one edge server with a linear latency
profile, 1,000,000 requests. Both models run in this process, one after the
other, on the very same arrival times (the project's own generated workload,
``build_run_spec(config).arrivals.arrival_s``), and the benchmark checks that
they give every request the same latency (to 1e-9 s) before it prints a
ratio, so the ratio compares like with like on whatever machine runs it.

    python -m benchmarks.sim_throughput [--requests N] [--repeat R] [--old-baseline] [--no-per-request]

The baseline (``run_fair_simpy``, issue 17) is the least a SimPy model of
this queue must do, written the way the SimPy documentation writes models:

* arrivals: one process, one ``env.timeout`` per request (SimPy's way of
  waiting for the next arrival);
* the batch queue: a plain list of the open batch's requests; the batch leaves
  when it holds ``MAX_BATCH`` requests, or when its timer fires;
* one timer per open batch: a single ``env.timeout(MAX_WAIT_S)`` started by
  the batch's oldest request, with a callback (no process, no interrupt; a
  batch that left full simply makes its timer a no-op);
* one server process taking dispatched batches from a list in FIFO order,
  one ``env.timeout`` per batch for its service, sleeping on one event when
  idle.

It keeps no records beyond each request's latency, builds no per-request
object, and has no policy layer, hops, noise, costs or tables: everything it
leaves out is work edgebatch does on top. Nothing cheaper models the queue
in SimPy without dropping events SimPy needs (a timer, an arrival, a
service end).

Both timings start from the same generated arrivals (edgebatch times
``simulate(spec)``: building the simulation, the run, the request and batch
tables and the summary). The old baseline (``--old-baseline``, issue 2: its
own random gaps, a ``Resource`` and a batcher process woken per arrival) is
kept for comparison with the figures measured before; it is labelled as such.

edgebatch takes its bulk path here (``sim.bulk_driver``: the scheduler
handed whole chunks of arrivals, ``Scheduler.handle_arrivals``); the row
"bulk path off" is the same run one request at a time, the speed of every
run the bulk path does not take (a planner, hops, links, serverless pools,
placement over several executors...), and must give identical latencies.

Speed is wall time without tracing (best of ``--repeat``); peak memory is a
separate traced run (tracemalloc, which numpy reports its buffers to); for
edgebatch from the config to its finished tables and summary (arrivals
generated inside), for the baseline from the arrival array to the latencies.
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


def edgebatch_spec(num_requests: int):
    """The run spec of the reference scenario: its arrivals feed both models."""
    from policies.run_spec import build_run_spec

    return build_run_spec(edgebatch_config(num_requests))


def run_edgebatch(spec, *, bulk: bool = True) -> np.ndarray:
    """edgebatch on ``spec`` (a run spec, or a config built here): each request's latency.

    ``bulk=False`` turns the simulator's bulk path off (``Simulation.bulk``):
    every arrival then goes through the scheduler one at a time, as in any
    run the bulk path does not take (``sim.bulk_driver``).
    """
    from sim import build_simulation

    sim = build_simulation(spec)
    sim.bulk = bulk
    result = sim.run()
    assert result.summary["completed"] == len(result.requests)
    assert (sim.feed_path == "bulk") == bulk, sim.feed_path
    return result.requests["latency_s"].to_numpy()


def run_edgebatch_per_request(spec) -> np.ndarray:
    """``run_edgebatch`` with the bulk path off."""
    return run_edgebatch(spec, bulk=False)


def run_fair_simpy(arrival_s: np.ndarray) -> np.ndarray:
    """The plainest correct SimPy model of the queue (see the module's docstring): each request's latency."""
    env = simpy.Environment()
    count = len(arrival_s)
    latency_s = np.empty(count)
    arrivals = arrival_s.tolist()
    ready: list[list[int]] = []  # dispatched batches waiting for the server, oldest first
    state = {"open": None, "idle": None}  # the open batch; the event the idle server sleeps on

    def dispatch(batch: list[int]) -> None:
        if state["open"] is batch:
            state["open"] = None
        ready.append(batch)
        idle = state["idle"]
        if idle is not None:
            state["idle"] = None
            idle.succeed()

    def timer_fired(event) -> None:
        batch = event.value
        if state["open"] is batch:  # still open: it did not fill up first
            dispatch(batch)

    def source():
        for index, at_s in enumerate(arrivals):
            yield env.timeout(at_s - env.now)
            batch = state["open"]
            if batch is None:
                batch = state["open"] = [index]
                env.timeout(MAX_WAIT_S, batch).callbacks.append(timer_fired)
            else:
                batch.append(index)
            if len(batch) == MAX_BATCH:
                dispatch(batch)

    def server():
        while True:
            if not ready:
                state["idle"] = env.event()
                yield state["idle"]
            batch = ready.pop(0)
            yield env.timeout(PER_ITEM_S * len(batch) + BASE_S)
            now = env.now
            for index in batch:
                latency_s[index] = now - arrivals[index]

    env.process(source())
    done = env.process(server())
    env.run(until=arrivals[-1] + 10.0 if count else 0.0)
    assert not done.triggered
    return latency_s


def run_old_minimal_simpy(num_requests: int, seed: int = 0) -> float:
    """The OLD baseline (issue 2): its own random gaps, a ``Resource``, a batcher woken per arrival; mean latency."""
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


def timed(fn, arg, repeat: int):
    """(best wall seconds of ``repeat`` calls of ``fn(arg)``, the last call's value)."""
    best = float("inf")
    value = None
    for _ in range(repeat):
        gc.collect()
        started = time.perf_counter()
        value = fn(arg)
        best = min(best, time.perf_counter() - started)
    return best, value


def traced_peak_bytes(fn, arg) -> int:
    gc.collect()
    tracemalloc.start()
    tracemalloc.reset_peak()
    base, _ = tracemalloc.get_traced_memory()
    fn(arg)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return peak - base


EDGEBATCH, FAIR, OLD = "edgebatch (policies + sim)", "fair SimPy baseline (same arrivals)", "OLD minimal SimPy model (issue 2)"
PER_REQUEST = "edgebatch, bulk path off (per request)"


def main(argv=None) -> pd.DataFrame:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--memory-requests", type=int, default=None, help="requests for the traced runs (default: --requests)")
    parser.add_argument("--old-baseline", action="store_true", help="also run the old minimal model of issue 2 (labelled OLD)")
    parser.add_argument("--no-per-request", action="store_true", help="skip edgebatch with its bulk path off (what runs the bulk path cannot take get)")
    args = parser.parse_args(argv)
    n = args.requests
    memory_n = args.memory_requests or n
    spec = edgebatch_spec(n)
    arrival_s = spec.arrivals.arrival_s
    rows = []
    wall_s, ours = timed(run_edgebatch, spec, args.repeat)
    peak = traced_peak_bytes(run_edgebatch, edgebatch_config(memory_n))
    rows.append((EDGEBATCH, wall_s, peak, ours))
    wall_s, fair = timed(run_fair_simpy, arrival_s, args.repeat)
    peak = traced_peak_bytes(run_fair_simpy, edgebatch_spec(memory_n).arrivals.arrival_s if memory_n != n else arrival_s)
    rows.append((FAIR, wall_s, peak, fair))
    worst_s = float(np.max(np.abs(ours - fair))) if n else 0.0
    if not worst_s <= 1e-9:
        raise AssertionError(f"the baseline and edgebatch disagree: largest per-request latency difference {worst_s:.3e} s")
    if not args.no_per_request:
        wall_s, slow = timed(run_edgebatch_per_request, spec, args.repeat)
        if not np.array_equal(slow, ours):
            raise AssertionError("edgebatch's bulk and per-request paths disagree")
        rows.append((PER_REQUEST, wall_s, traced_peak_bytes(run_edgebatch_per_request, edgebatch_config(memory_n)), slow))
    if args.old_baseline:
        wall_s, mean = timed(run_old_minimal_simpy, n, args.repeat)
        rows.append((OLD, wall_s, traced_peak_bytes(run_old_minimal_simpy, memory_n), None))
        rows[-1] = (*rows[-1][:3], np.array([mean]))
    table = pd.DataFrame(
        [{"model": name, "requests": n, "wall_s": wall, "sim_req_per_s": n / wall, "peak_bytes_per_req": peak / memory_n,
          "mean_latency_ms": 1000 * float(np.mean(latency))} for name, wall, peak, latency in rows]
    ).set_index("model")  # fmt: skip
    table["speed_vs_fair"] = table["sim_req_per_s"] / table.loc[FAIR, "sim_req_per_s"]
    with pd.option_context("display.float_format", "{:,.3f}".format, "display.width", 200):
        print(table.to_string())
    mine = table.loc[EDGEBATCH]
    print()
    print(f"per-request latencies, edgebatch vs fair baseline: largest difference {worst_s:.2e} s over {n:,} requests (required <= 1e-9)")
    if not args.no_per_request:
        print("edgebatch's bulk path and its per-request path: identical latencies (required)")
    print(f"target >= 100,000 req/s: {mine.sim_req_per_s:,.0f} ({'met' if mine.sim_req_per_s >= 1e5 else 'MISSED'})")
    print(f"target >= 1.3x the fair baseline, same run: x{mine.speed_vs_fair:.2f} ({'met' if mine.speed_vs_fair >= 1.3 else 'MISSED'})")
    print(f"target < 250 B/request peak: {mine.peak_bytes_per_req:.0f} B ({'met' if mine.peak_bytes_per_req < 250 else 'MISSED'})")
    return table


if __name__ == "__main__":
    main()
