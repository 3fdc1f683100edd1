"""Open ingress against replay: what serving a client costs over replaying the same load (issue 19, item 2).

Per repeat, two live runs on this machine, each with its own embedded
broker, the same cluster and policy (one edge worker, the ``mlp`` model,
timeout batching up to 8 requests / 20 ms), ``--requests`` requests of
1 KB at Poisson times of ``--rate`` req/s from one seed:

- replay: the source replays the schedule; latency from each request's
  scheduled arrival to its completion at the gateway (the tables);
- open: one ``live.client.EdgebatchClient`` submits at the same times;
  from the tables, latency from the client's send time (``latency_s``) and
  from the gateway's receive time; from the client, submit to answer on its
  own monotonic clock (the answer's extra hop back to the client included).

    python -m benchmarks.open_ingress [--requests 300] [--rate 100] [--repeats 3]

Prints one table per repeat and the ratios open / replay (median and spread
over the repeats). Timings depend on the machine and whatever else runs on
it: the figures are for this machine, this run.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from live.client import EdgebatchClient
from live.deploy.local import run_live
from live.deploy.processes import ControlChannel
from live.wire.broker import connect
from live.wire.messages import KEY_ENV


def _config(requests: int, rate_rps: float, seed: int, *, open_ingress: bool) -> dict:
    config = {
        "seed": seed,
        "workload": {"num_requests": requests, "sources": [{"name": "cam", "size_bytes": 1024, "slo_s": 1.0, "gateway": "edge",
                                                            "arrivals": {"kind": "poisson", "rate_rps": rate_rps}}]},
        "cluster": {"executors": [{"name": "edge", "kind": "edge", "gateway": "edge",
                                   "profile": {"kind": "linear", "per_item_s": 0.0005, "base_s": 0.002}}]},
        "policy": {"placement": {"_target_": "policies.placement.StaticPlacement"},
                   "batching": {"_target_": "policies.batching.TimeoutBatching", "max_batch_size": 8, "max_wait_s": 0.02}},
        "live": {"model": "mlp", "timeout_s": 120, "startup_timeout_s": 60},
    }  # fmt: skip
    if open_ingress:
        config["live"]["ingress"] = {"mode": "open", "clients": {"bench": {"slo_s": 1.0}}}
    return config


def _percentiles(values, prefix: str) -> dict:
    values = np.asarray(values, dtype=float)
    values = values[np.isfinite(values)]
    return {f"{prefix}_p50_ms": 1e3 * float(np.percentile(values, 50)), f"{prefix}_p99_ms": 1e3 * float(np.percentile(values, 99))}


def _client(times_s: np.ndarray, seen: dict):
    """The on_start hook of the open run: submit at ``times_s`` after the run's start, wait for every answer, stop."""

    def run(handle) -> None:
        client, _ = connect(handle.broker_url)
        try:
            bench = EdgebatchClient(client, handle.run_id, "bench", os.environ[KEY_ENV], gateway="edge")
            payload = bytes(range(256)) * 4
            ids = []
            for at_s in times_s:
                handle.sleep_until(at_s)
                ids.append(bench.submit(payload))
            seen["replies"] = [bench.result(i, timeout_s=30) for i in ids]
            bench.close()
            ControlChannel(client, handle.run_id, source="run").stop()
        finally:
            client.close()

    return run


def one_repeat(requests: int, rate_rps: float, seed: int, out: Path) -> pd.DataFrame:
    rows = []
    replay = run_live(_config(requests, rate_rps, seed, open_ingress=False), out / f"replay-{seed}")
    done = replay.requests[~replay.requests.dropped]
    rows.append({"mode": "replay", "completed": len(done), **_percentiles(done.latency_s, "latency")})
    times_s = np.sort(replay.requests.arrival_s.to_numpy())  # the very schedule the source replayed
    seen: dict = {}
    opened = run_live(_config(requests, rate_rps, seed, open_ingress=True), out / f"open-{seed}", on_start=_client(times_s, seen))
    ingress = pd.read_parquet(Path(opened.extra["out_dir"]) / "ingress.parquet")
    done = ingress[~ingress.dropped]
    replies = seen.get("replies", [])
    rows.append({"mode": "open", "completed": len(done), **_percentiles(done.latency_s, "latency"),
                 **_percentiles(done.latency_from_received_s, "from_received"),
                 **_percentiles([r.latency_s for r in replies if r.ok], "client_round_trip")})  # fmt: skip
    return pd.DataFrame(rows)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--rate", type=float, default=100.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", help="keep the runs here (default: a temporary folder)")
    args = parser.parse_args(argv)
    os.environ.setdefault(KEY_ENV, os.urandom(32).hex())  # one key for the runs and the client
    out = Path(args.out or tempfile.mkdtemp(prefix="open-ingress-"))
    ratios = []
    for k in range(args.repeats):
        started = time.perf_counter()
        table = one_repeat(args.requests, args.rate, 11 + k, out)
        print(f"repeat {k} (seed {11 + k}, {time.perf_counter() - started:.1f}s)")
        print(table.to_string(index=False, float_format=lambda v: f"{v:.2f}"))
        replay, opened = table.iloc[0], table.iloc[1]
        ratios.append({"p50_open_over_replay": opened.latency_p50_ms / replay.latency_p50_ms,
                       "p99_open_over_replay": opened.latency_p99_ms / replay.latency_p99_ms,
                       "client_p50_over_replay": opened.client_round_trip_p50_ms / replay.latency_p50_ms})  # fmt: skip
    ratios = pd.DataFrame(ratios)
    summary = pd.DataFrame({"median": ratios.median(), "min": ratios.min(), "max": ratios.max()})
    print(f"\nopen / replay over {args.repeats} repeats ({args.requests} requests at {args.rate:g} req/s each)")
    print(summary.to_string(float_format=lambda v: f"{v:.3f}"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
