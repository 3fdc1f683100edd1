"""The main job: a quick tour of edgebatch on this machine.

Runs the real request trace (../shared/data) through one edge device with
the seed's fitted ResNet-50 profile, under several batching policies, in the
simulator, and prints latency, SLO attainment and batch sizes side by side.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pandas as pd

from sim import simulate

DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "data"

POLICIES = {
    "no batching": {"_target_": "policies.batching.NoBatching", "max_queue": 200, "max_inflight": 1},
    "timeout 8 / 50 ms": {"_target_": "policies.batching.TimeoutBatching", "max_batch_size": 8, "max_wait_s": 0.05, "max_queue": 200},
    "timeout 16 / 100 ms": {"_target_": "policies.batching.TimeoutBatching", "max_batch_size": 16, "max_wait_s": 0.1, "max_queue": 200},
    "timeout 16 / 100 ms, 1 in flight": {
        "_target_": "policies.batching.TimeoutBatching", "max_batch_size": 16, "max_wait_s": 0.1, "max_queue": 200, "max_inflight": 1,
    },
}


def seed_edge_config(batching: dict, *, num_requests: int, seed: int = 0) -> dict:
    return {
        "seed": seed,
        "workload": {
            "num_requests": num_requests,
            "sources": [
                {
                    "name": "camera",
                    "size_bytes": 200 * 1024,
                    "slo_s": 0.8,
                    "arrivals": {"kind": "trace", "path": str(DATA / "interarrivals_49rps_s.json")},
                }
            ],
        },
        "cluster": {
            "executors": [
                {
                    "name": "edge",
                    "kind": "edge",
                    "gateway": "edge",
                    "profile": {"kind": "linear", "per_item_s": 0.008165, "base_s": 0.04234},
                    "noise": {"kind": "lognormal", "cv": 0.05},
                }
            ]
        },
        "policy": {"placement": {"_target_": "policies.placement.StaticPlacement"}, "batching": batching},
    }


def main(argv=None) -> pd.DataFrame:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--out", type=Path, default=Path("results/quickstart"))
    args = parser.parse_args(argv)
    rows = []
    for name, batching in POLICIES.items():
        summary = simulate(seed_edge_config(batching, num_requests=args.requests)).summary
        rows.append(
            {"policy": name, "p50_ms": 1000 * summary["latency_p50_s"], "p95_ms": 1000 * summary["latency_p95_s"],
             "p99_ms": 1000 * summary["latency_p99_s"], "slo_attainment": summary["slo_attainment"],
             "dropped": summary["dropped"], "mean_batch": summary["mean_batch_size"]}
        )  # fmt: skip
    table = pd.DataFrame(rows).set_index("policy")
    print(f"Simulated: {args.requests} requests of the real 49 req/s trace, one edge device (seed ResNet-50 profile), SLO 0.8 s")
    with pd.option_context("display.float_format", "{:,.3f}".format, "display.width", 200):
        print(table.to_string())
    args.out.mkdir(parents=True, exist_ok=True)
    table.to_csv(args.out / "summary.csv")
    (args.out / "summary.json").write_text(json.dumps(rows, indent=2))
    print(f"wrote {args.out}/summary.csv")
    return table


if __name__ == "__main__":
    main()
