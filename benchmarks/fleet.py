"""Fleets: set-up, run time and peak memory of the simulator against the number of devices and of requests.

The scenario is issue 23's: one camera and one edge device per gateway
(``cluster.devices`` copies of the site, ``spec.fleet``), Poisson arrivals at
50 req/s per device varied uniformly in [0.5, 1.5] x, device speed lognormal
(cv 0.2), timeout batching (up to 8, 5 ms), a linear profile (0.5 ms per
item + 2 ms). Records stream to Parquet in a temporary folder with the
running summary (``sim.max_records_in_memory: 0``: percentiles from the
sketch); beyond 4,194,304 requests the arrivals are generated as the run
reads them (``spec.streamed_arrivals``), so nothing grows with the run.

Each measurement runs in a fresh process (peak RSS, ``ru_maxrss``, is then
the run's own), one after the other, on one core each. Printed per row:
set-up (building the run spec and the simulation: the fleet's expansion,
arrivals, one scheduler per gateway), run (the clock to the last result,
the tables written and the summary), its CPU time, simulated requests per
second of run time and per CPU-second, the latter as a ratio to the baseline
measured in the same invocation (1 device, the same number of requests),
peak RSS, the RSS above the process's after imports per request, and the
path the run took (``sim.feed_path``): a fleet whose gateways share nothing
takes the fleet's bulk path (``sim.fleet_bulk_driver``: ``fleet/v``, every
gateway's chunk in a few vectorized passes from 64 gateways; ``fleet/g``, one
call per gateway per chunk, forced by ``--per-gateway``), one device the bulk
path of issue 17 (``sim.bulk_driver``); ``--per-request`` forces the
per-request path on every row (the comparison of the earlier table).

    python -m benchmarks.fleet                 # the sequence of BENCHMARKS.md (about a minute of one core)
    python -m benchmarks.fleet --quick         # a smaller one (a minute)
    python -m benchmarks.fleet --rows 10000x1000000 1x1000000 --repeat 2
    python -m benchmarks.fleet --per-gateway   # the fleet rows one call per gateway per chunk (the earlier fleet path)
    python -m benchmarks.fleet --ray           # a sweep of fleet configurations on Ray, 1 worker then 2
    python -m benchmarks.fleet --ray --ray-per-device 3000 --ray-override policy.batching.max_inflight=null   # on the fleet path
    python -m benchmarks.fleet --rows 10000x100000000 --no-baseline   # issue 23's full run (one core, about 2 CPU-min)

``FLEET_BENCH_CORE=0`` pins the runs to core 0 (default: the last core).
``--in-memory`` adds rows of the in-memory recorder (every table kept until
the end, as before streaming) for comparison.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RATE_RPS = 50.0
SEQUENCE = ["100x1000000", "1000x1000000", "10000x1000000", "10000x3000000", "10000x10000000"]
QUICK = ["1x200000", "100x200000", "1000x200000", "10000x200000", "10000x600000"]


def fleet_config(devices: int, requests: int, *, seed: int = 0, stream_to: str | None = None) -> dict:
    """Issue 23's fleet: ``devices`` copies of one camera and its edge device; ``requests`` in all."""
    config = {
        "seed": seed,
        "workload": {"num_requests": max(1, requests // devices), "sources": {"cam": {
            "gateway": "edge", "size_bytes": 20_480, "slo_s": 0.1, "arrivals": {"kind": "poisson", "rate_rps": RATE_RPS}}}},
        "cluster": {
            "devices": devices,
            "executors": {"edge": {"kind": "edge", "gateway": "edge", "slots": 1,
                                   "profile": {"kind": "linear", "per_item_s": 0.0005, "base_s": 0.002}}},
            "vary": {"rate_scale": {"kind": "uniform", "low": 0.5, "high": 1.5},
                     "speed_scale": {"kind": "lognormal", "mean": 1.0, "cv": 0.2, "low": 0.5, "high": 2.0}},
        },
        "policy": {"placement": {"_target_": "policies.placement.StaticPlacement"},
                   "batching": {"_target_": "policies.batching.TimeoutBatching", "max_batch_size": 8, "max_wait_s": 0.005}},
    }  # fmt: skip
    if stream_to is not None:
        config["sim"] = {"stream_records_to": stream_to, "max_records_in_memory": 0}
    return config


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def child(devices: int, requests: int, in_memory: bool, bulk: bool = True, per_gateway: bool = False) -> dict:
    """One measurement in this (fresh) process."""
    from policies.run_spec import build_run_spec
    from sim import build_simulation
    from sim.fleet_bulk_driver import FleetBulkDriver

    if per_gateway:
        FleetBulkDriver.vectorized_from = 2**31  # never: one call per gateway per chunk
    vectorized = devices >= FleetBulkDriver.vectorized_from  # this fleet's batching (timeout) is one it vectorizes

    imported_mb = _rss_mb()
    with tempfile.TemporaryDirectory(prefix="fleet-") as folder:
        started = time.perf_counter()
        spec = build_run_spec(fleet_config(devices, requests, stream_to=None if in_memory else folder))
        simulation = build_simulation(spec)
        # bulk: the path the simulator picks (a fleet of gateways that share nothing: sim.fleet_bulk_driver; one device:
        # sim.bulk_driver); else the per-request path forced, for every row alike
        simulation.bulk = bulk
        setup_s = time.perf_counter() - started
        cpu_started = time.process_time()
        result = simulation.run()
        run_s = time.perf_counter() - started - setup_s
        cpu_s = time.process_time() - cpu_started
        files_mb = sum(p.stat().st_size for p in Path(folder).iterdir()) / 2**20
    count = len(spec.arrivals)
    return {"devices": devices, "requests": count, "mode": "in memory" if in_memory else "streamed", "setup_s": setup_s,
            "run_s": run_s, "rps": count / run_s, "cpu_rps": count / cpu_s, "peak_mb": _rss_mb(), "imported_mb": imported_mb, "files_mb": files_mb,
            "p99_s": result.summary["latency_p99_s"], "completed": result.summary["completed"], "path": simulation.feed_path,
            "cpu_s": cpu_s, "vectorized": vectorized}  # fmt: skip


def measure(devices: int, requests: int, in_memory: bool = False, bulk: bool = True, per_gateway: bool = False) -> dict:
    """``child`` in a fresh interpreter (its own peak RSS), pinned to one core where the OS allows it."""
    code = f"import json, benchmarks.fleet as f; print(json.dumps(f.child({devices}, {requests}, {in_memory}, {bulk}, {per_gateway})))"
    command = [sys.executable, "-c", code]
    if hasattr(os, "sched_setaffinity"):
        core = os.environ.get("FLEET_BENCH_CORE", str(sorted(os.sched_getaffinity(0))[-1]))  # the last core by default
        command = ["taskset", "-c", core] + command
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def _parse(row: str) -> tuple[int, int]:
    devices, requests = row.lower().split("x")
    return int(devices), int(float(requests))


def run_table(rows: list[str], repeat: int, in_memory: bool, *, bulk: bool = True, baseline: bool = True,
              per_gateway: bool = False) -> list[dict]:  # fmt: skip
    measured = []
    plan = [(d, r, False) for d, r in map(_parse, rows)]
    if in_memory:
        plan += [(d, r, True) for d, r in map(_parse, rows) if r <= 3_000_000]
    # the baseline of every request count: 1 device, the same requests, the same invocation
    for requests in sorted({r for _, r, _ in plan}) if baseline else []:
        if (1, requests, False) not in plan:
            plan.insert(0, (1, requests, False))
    for devices, requests, memory in plan:
        tries = [measure(devices, requests, memory, bulk, per_gateway) for _ in range(repeat)]
        row = dict(tries[0])
        for key in ("setup_s", "run_s", "cpu_s", "rps", "cpu_rps", "peak_mb"):
            values = [t[key] for t in tries]
            row[key] = statistics.median(values)
            row[key + "_spread"] = (min(values), max(values))
        measured.append(row)
        print_row(row, measured)
    return measured


def _path(row: dict) -> str:
    """``sim.feed_path`` in a word: fleet/v or fleet/g (the fleet's bulk path, vectorized or per gateway), bulk (one gateway's), per-req."""
    feed_path = row["path"]
    if feed_path.startswith("bulk: "):
        return "fleet/v" if row.get("vectorized") else "fleet/g"
    return "bulk" if feed_path == "bulk" else "per-req"


def print_row(row: dict, measured: list[dict]) -> None:
    if len(measured) == 1:
        print(f"{'devices':>8} {'requests':>11} {'path':>7} {'setup_s':>8} {'run_s':>8} {'cpu_s':>8} {'req/s':>8} {'req/CPU-s':>9} "
              f"{'vs 1 dev':>8} {'peak MB':>8} {'B/req':>6} {'files MB':>8} {'spread (cpu_s)':>16} {'load':>5}")  # fmt: skip
    base = next((m for m in measured if m["devices"] == 1 and m["requests"] == row["requests"] and m["mode"] == "streamed"), None)
    ratio = row["cpu_rps"] / base["cpu_rps"] if base else float("nan")  # CPU time: robust to other work on the machine
    per_request = (row["peak_mb"] - row["imported_mb"]) * 2**20 / row["requests"]
    low, high = row["cpu_s_spread"]
    mode = _path(row) + ("/mem" if row["mode"] == "in memory" else "")
    print(f"{row['devices']:>8} {row['requests']:>11,} {mode:>7} {row['setup_s']:>8.2f} {row['run_s']:>8.1f} {row['cpu_s']:>8.1f} "
          f"{row['rps']:>8,.0f} {row['cpu_rps']:>9,.0f} {ratio:>8.2f} {row['peak_mb']:>8.0f} {per_request:>6.1f} {row['files_mb']:>8.1f} "
          f"{low:>7.1f}-{high:<8.1f} {os.getloadavg()[0]:>5.1f}", flush=True)  # fmt: skip


def extrapolate(measured: list[dict], devices: int = 10_000, target: int = 100_000_000) -> None:
    """A straight line through the streamed rows at ``devices``: run time and peak RSS at ``target`` requests."""
    rows = sorted((m for m in measured if m["devices"] == devices and m["mode"] == "streamed"), key=lambda m: m["requests"])
    if len(rows) < 2:
        return
    (a, b) = rows[0], rows[-1]
    per_request_s = 1 / b["cpu_rps"]  # the CPU cost per request of the longest run (flat within a run: BENCHMARKS.md)
    per_request_mb = (b["peak_mb"] - a["peak_mb"]) / (b["requests"] - a["requests"])
    run_s = per_request_s * target
    peak_mb = b["peak_mb"] + per_request_mb * (target - b["requests"])
    print(f"\nextrapolated (not measured; the CPU time per request of the {b['requests']:,}-request run, memory a straight "
          f"line through {a['requests']:,} and {b['requests']:,} requests, at {devices:,} devices): {target:,} requests: "
          f"set-up {b['setup_s']:.1f} s + run {run_s / 60:.1f} CPU-min "
          f"({per_request_s * 1e6:.1f} us per request), peak RSS {peak_mb:,.0f} MB ({per_request_mb * 2**20:.1f} B per request)")  # fmt: skip


def ray_sweep(devices: int, per_device: int, seeds: int, overrides: tuple[str, ...] = ()) -> None:
    """The same fleet sweep (``fleet_seed`` x ``seed``) on a local Ray cluster of 1 CPU, then 2: wall time and speed-up.

    ``overrides``: more Hydra overrides for every job (``policy.batching.max_inflight=null``: the fleet's bulk path;
    the default timeout batching waits for a free slot, ``max_inflight: executor``, so the jobs take the per-request path).
    """
    print(f"\nRay sweep: cluster=fleet cluster.devices={devices} num_requests={per_device} {' '.join(overrides)}, "
          f"{seeds} fleets x 2 seeds = {2 * seeds} jobs")
    print(f"{'workers':>8} {'jobs':>5} {'wall_s':>8} {'jobs/min':>9} {'speed-up':>9}")
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"}
    first = None
    for workers in (1, 2):
        with tempfile.TemporaryDirectory(prefix="fleet-ray-") as folder:
            command = [sys.executable, "-m", "experiments.run", "--multirun", "hydra/launcher=ray_local",
                       f"hydra.launcher.ray.init.num_cpus={workers}", "cluster=fleet", f"cluster.devices={devices}",
                       f"num_requests={per_device}", "cluster.fleet_seed=" + ",".join(map(str, range(seeds))), "seed=0,1",
                       f"hydra.sweep.dir={folder}/sweep", *overrides]  # fmt: skip
            started = time.perf_counter()
            subprocess.run(command, cwd=REPO, env=env, check=True, capture_output=True, text=True)
            wall_s = time.perf_counter() - started
            jobs = len(list(Path(folder).rglob("summary.json")))
        first = first or wall_s
        print(f"{workers:>8} {jobs:>5} {wall_s:>8.1f} {jobs / wall_s * 60:>9.1f} {first / wall_s:>9.2f}", flush=True)
    print(f"(this machine has {os.cpu_count()} cores: 2 workers is all it has; Ray's start-up is in the wall time)")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", nargs="*", help="DEVICESxREQUESTS, e.g. 10000x1000000")
    parser.add_argument("--quick", action="store_true", help="smaller sizes (about a minute)")
    parser.add_argument("--repeat", type=int, default=1, help="runs per row (median and spread)")
    parser.add_argument("--in-memory", action="store_true", help="also the in-memory recorder, up to 3,000,000 requests")
    parser.add_argument("--per-request", action="store_true", help="force the per-request path on every row (Simulation.bulk = False)")
    parser.add_argument("--per-gateway", action="store_true", help="fleet rows one call per gateway per chunk (not vectorized)")
    parser.add_argument("--no-baseline", action="store_true", help="no 1-device rows (for one long run)")
    parser.add_argument("--ray", action="store_true", help="only the Ray sweep")
    parser.add_argument("--ray-devices", type=int, default=1000)
    parser.add_argument("--ray-per-device", type=int, default=300)
    parser.add_argument("--ray-override", nargs="*", default=[], help="more Hydra overrides for the Ray jobs")
    args = parser.parse_args(argv)
    if args.ray:
        ray_sweep(args.ray_devices, args.ray_per_device, seeds=2, overrides=tuple(args.ray_override))
        return
    rows = args.rows or (QUICK if args.quick else SEQUENCE)
    print(f"fleet benchmark: {RATE_RPS:.0f} req/s per device, timeout batching, records streamed; one core per run, "
          f"{os.cpu_count()} cores on this machine")
    measured = run_table(rows, args.repeat, args.in_memory, bulk=not args.per_request, baseline=not args.no_baseline,
                         per_gateway=args.per_gateway)  # fmt: skip
    extrapolate(measured)


if __name__ == "__main__":
    main()
