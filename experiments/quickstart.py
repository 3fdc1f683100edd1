"""The main job (``make demo``): edgebatch end to end on this machine in under two minutes.

1. Calibrates the simulator from the live executors if no calibration exists
   (``conf/profile/calibrated.yaml``; ``experiments.calibrate``).
2. Runs one small workload on both backends with the same seed: the
   simulator, and the live harness on the embedded Pulsar broker with real
   PyTorch workers; prints the comparison table (``experiments.compare``).
3. Simulates the seed study's real request trace through one edge device
   under several batching policies, to show what batching buys.
4. Writes the plots (latency CDFs, timelines, calibration fit) under
   ``results/quickstart/<time>/``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import pandas as pd

from experiments import calibrate, compare
from experiments.paths import DATA_DIR, RESULTS_DIR
from experiments.plot import plot_all
from sim import simulate

TOUR = {
    "no batching": {"_target_": "policies.batching.NoBatching", "max_queue": 200, "max_inflight": 1},
    "timeout 8 / 50 ms": {"_target_": "policies.batching.TimeoutBatching", "max_batch_size": 8, "max_wait_s": 0.05, "max_queue": 200},
    "timeout 16 / 100 ms": {"_target_": "policies.batching.TimeoutBatching", "max_batch_size": 16, "max_wait_s": 0.1, "max_queue": 200},
    "timeout 16 / 100 ms, free slot": {
        "_target_": "policies.batching.TimeoutBatching", "max_batch_size": 16, "max_wait_s": 0.1, "max_queue": 200, "max_inflight": "executor",
    },
}  # fmt: skip


def seed_edge_config(batching: dict, *, num_requests: int, seed: int = 0) -> dict:
    """The real 49 req/s trace through one edge device with the seed's fitted ResNet-50 profile."""
    return {
        "seed": seed,
        "workload": {
            "num_requests": num_requests,
            "sources": [{"name": "camera", "size_bytes": 200 * 1024, "slo_s": 0.8,
                         # from the trace's start whatever the seed, as the README's figures
                         "arrivals": {"kind": "trace", "path": str(DATA_DIR / "interarrivals_49rps_s.json"), "start_offset_s": 0}}],
        },
        "cluster": {"executors": [{"name": "edge", "kind": "edge", "gateway": "edge",
                                   "profile": {"kind": "linear", "per_item_s": 0.008165, "base_s": 0.04234},
                                   "noise": {"kind": "lognormal", "cv": 0.05}}]},
        "policy": {"placement": {"_target_": "policies.placement.StaticPlacement"}, "batching": batching},
    }  # fmt: skip


def batching_tour(num_requests: int) -> pd.DataFrame:
    rows = []
    for name, batching in TOUR.items():
        summary = simulate(seed_edge_config(batching, num_requests=num_requests)).summary
        rows.append({"policy": name, "p50_ms": 1000 * summary["latency_p50_s"], "p95_ms": 1000 * summary["latency_p95_s"],
                     "p99_ms": 1000 * summary["latency_p99_s"], "slo_attainment": summary["slo_attainment"],
                     "dropped": summary["dropped"], "mean_batch": summary["mean_batch_size"]})  # fmt: skip
    return pd.DataFrame(rows).set_index("policy")


def main(argv=None) -> pd.DataFrame:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate-rps", type=float, default=100.0)
    parser.add_argument("--duration-s", type=float, default=8.0)
    parser.add_argument("--tour-requests", type=int, default=20_000)
    parser.add_argument("--recalibrate", action="store_true", help="calibrate even if a calibration exists")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    started = time.perf_counter()
    out = args.out or RESULTS_DIR / "quickstart" / time.strftime("%Y-%m-%d_%H-%M-%S")
    out.mkdir(parents=True, exist_ok=True)

    print("== 1. calibration ==")
    if args.recalibrate or not calibrate.CALIBRATED.exists():
        calibrate.main(["--model", "wide_mlp", "--repeats", "30", "--cold-starts", "2", "--plots", str(out / "calibration")])
    else:
        print(f"using {calibrate.CALIBRATED} (python -m experiments.calibrate to measure again)")

    print(f"\n== 2. one workload on both backends: Poisson {args.rate_rps:g} req/s for {args.duration_s:g} s, "
          "timeout batching (8 / 10 ms), one edge worker, SLO 50 ms ==")  # fmt: skip
    overrides = [
        "profile=calibrated", "cluster=edge_only", "workload=poisson", "policy/batching=timeout", "name=quickstart",
        f"rate_rps={args.rate_rps}", "slo_s=0.05", "workload.num_requests=null", f"+workload.duration_s={args.duration_s}",
        "policy.batching.max_wait_s=0.01", "policy.batching.max_batch_size=8", "policy.batching.max_inflight=null",
    ]  # fmt: skip
    sim_dir, live_dir = compare.run_both(overrides, out)
    table = compare.report(sim_dir, live_dir, out)

    print(f"\n== 3. simulated: the real 49 req/s trace ({args.tour_requests} requests), one edge device "
          "(seed ResNet-50 profile), SLO 0.8 s ==")  # fmt: skip
    tour = batching_tour(args.tour_requests)
    with pd.option_context("display.float_format", "{:,.3f}".format, "display.width", 200):
        print(tour.to_string())
    tour.to_csv(out / "batching_tour.csv")

    figures = plot_all([sim_dir, live_dir], out / "plots", timelines=2)
    print(f"\n{len(figures)} figures in {out / 'plots'}; everything in {out} ({time.perf_counter() - started:.0f} s)")
    return table


if __name__ == "__main__":
    main()
