"""The main job (``make demo``): edgebatch end to end on this machine in about two minutes.

1. Calibrates the simulator from the live executors if no calibration exists
   (``conf/profile/calibrated.yaml``; ``experiments.calibrate``).
2. Runs one small workload on both backends, three seeds each (the
   simulator, and the live harness on the embedded Pulsar broker with a real
   PyTorch worker); prints each metric's mean and 95% interval per backend
   and the simulator's error beside the live run-to-run spread
   (``experiments.compare``), so that two runs of the demo can be told apart
   from noise.
3. Simulates the seed study's real request trace through one edge device
   under several batching policies, to show what batching buys.
4. Writes the figures (latency CDFs, the errors against the live spread,
   timelines, the batching tour, the calibration fit) under
   ``results/quickstart/<time>/``, each as PNG and SVG.
"""

from __future__ import annotations

import argparse
import logging
import math
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import yaml

from experiments import calibrate, compare
from experiments.paths import DATA_DIR, RESULTS_DIR
from experiments.plot import plain_log_ticks, plot_all, timeline
from experiments.run import run_config
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


def batching_tour(num_requests: int) -> tuple[pd.DataFrame, dict[str, pd.DataFrame]]:
    """The tour's table (one row per policy) and each policy's requests table."""
    rows, requests = [], {}
    for name, batching in TOUR.items():
        result = simulate(seed_edge_config(batching, num_requests=num_requests))
        summary = result.summary
        requests[name] = result.requests
        rows.append({"policy": name, "p50_ms": 1000 * summary["latency_p50_s"], "p95_ms": 1000 * summary["latency_p95_s"],
                     "p99_ms": 1000 * summary["latency_p99_s"], "slo_attainment": summary["slo_attainment"],
                     "dropped": summary["dropped"], "mean_batch": summary["mean_batch_size"]})  # fmt: skip
    return pd.DataFrame(rows).set_index("policy"), requests


def plot_tour(requests: dict[str, pd.DataFrame], out: Path, *, num_requests: int, slo_s: float = 0.8) -> list[Path]:
    """The tour's latency CDFs, one per policy, with the SLO and each policy's dropped share."""
    fig, ax = plt.subplots(figsize=(9, 4.6))
    for (name, table), colour in zip(requests.items(), plt.get_cmap("tab10").colors):
        done = np.sort(table.loc[~table["dropped"].astype(bool), "latency_s"].to_numpy())
        dropped = 1 - len(done) / len(table)
        ax.plot(done * 1000, np.arange(1, len(done) + 1) / len(table), color=colour, linewidth=1.4,
                label=f"{name} ({100 * dropped:.0f}% dropped)")  # fmt: skip
    ax.axvline(slo_s * 1000, color="black", linestyle="--", linewidth=0.9)
    ax.text(slo_s * 1000, 0.99, f"SLO {slo_s * 1000:g} ms ", rotation=90, fontsize=7, va="top", ha="right", transform=ax.get_xaxis_transform())
    ax.set_xscale("log")
    plain_log_ticks(ax.xaxis)
    ax.set_xlabel("latency (ms, log scale)")
    ax.set_ylabel("fraction of requests completed within")
    ax.set_ylim(0, 1.02)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0), frameon=False, title="batching (queue bound 200)", title_fontsize=7)
    fig.suptitle(f"Batching tour, simulated: the real 49 req/s trace from its start ({num_requests:,} requests), one edge device "
                 "with the seed's ResNet-50 profile\n(42.3 ms + 8.2 ms per request, lognormal noise cv 0.05), seed 0; "
                 "a curve ends below 1 by the share dropped", fontsize=9, x=0.01, ha="left")  # fmt: skip
    out.mkdir(parents=True, exist_ok=True)
    written = [out / "batching_tour.png", out / "batching_tour.svg"]
    fig.tight_layout()
    for path in written:
        fig.savefig(path, dpi=150, bbox_inches="tight")
    plt.close(fig)
    return written


def run_repeated(overrides: list[str], out: Path, seeds: list[int]) -> tuple[Path, Path]:
    """``overrides`` on each backend with each seed, into ``<out>/<backend>/seed=<K>/`` (overrides saved for collect)."""
    for backend in ("sim", "live"):
        for seed in seeds:
            run_overrides = [*overrides, f"backend={backend}", f"seed={seed}"]
            run_dir = out / backend / f"seed={seed}"
            (run_dir / ".hydra").mkdir(parents=True, exist_ok=True)
            (run_dir / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(run_overrides))
            started = time.perf_counter()
            summary = run_config(compare.compose_config(run_overrides), run_dir)
            print(f"  {backend} seed={seed}: {summary['completed']}/{summary['count']} completed, "
                  f"p50 {1000 * summary['latency_p50_s']:.1f} ms, in {time.perf_counter() - started:.1f} s")  # fmt: skip
    return out / "sim", out / "live"


def _with_interval(mean: float, low: float, high: float, scale: float) -> str:
    if not math.isfinite(mean):
        return "-"
    if not (math.isfinite(low) and math.isfinite(high)) or high - low <= 1e-12 * max(1.0, abs(mean)):
        return f"{mean * scale:.4g}"
    return f"{mean * scale:.4g} [{max(low, 0.0) * scale:.4g}, {high * scale:.4g}]"


def report_repeated(sim_dir: Path, live_dir: Path, out: Path, seeds: list[int]) -> pd.DataFrame:
    """Per metric: each backend's mean [95% interval] over the seeds, and the error beside the live spread."""
    pairs = compare.compare_sweep([sim_dir, live_dir])
    rows = []
    for pair in pairs.itertuples():
        unit = compare.METRICS[pair.metric][1]
        scale, unit = (1000.0, "ms") if unit == "s" else (1.0, unit)
        rows.append({"metric": pair.metric, "unit": unit,
                     f"sim, {len(seeds)} seeds": _with_interval(pair.sim, pair.sim_low, pair.sim_high, scale),
                     f"live, {len(seeds)} seeds": _with_interval(pair.live, pair.live_low, pair.live_high, scale),
                     "error (sim - live) / live": compare._error_cell(pair.rel_error, pair.live_spread)})  # fmt: skip
    table = pd.DataFrame(rows).set_index("metric")
    with pd.option_context("display.width", 200, "display.max_colwidth", 40):
        print(table.to_string())
    print("mean [95% interval] over the seeds; the error's (±) is the live run-to-run spread: the half-width of the live "
          "mean's interval, relative to it (an error within it is within the live runs' own variation)")  # fmt: skip
    out.mkdir(parents=True, exist_ok=True)
    pairs.to_csv(out / "compare.csv", index=False)
    compare.plot_sweep(pairs, out / "plots" / "sim_vs_live_errors", ["p50 latency", "p95 latency", "throughput", "mean batch size"],
                       setup=compare.sweep_caption([sim_dir, live_dir]))  # fmt: skip
    print(f"-> {out / 'compare.csv'}")
    return table


def _figures(out: Path, sim_dir: Path, live_dir: Path, seeds: list[int]) -> list[Path]:
    """The CDFs of both backends and a timeline of each one's first seed (the other figures are drawn as they go)."""
    written = plot_all([sim_dir, live_dir], out / "plots", timelines=0)
    for backend, folder in (("simulated", sim_dir), ("live", live_dir)):
        description = f"{backend}, quickstart, seed={seeds[0]}, SLO 50 ms"
        written += timeline(folder / f"seed={seeds[0]}", out / "plots", f"{folder.name}_seed{seeds[0]}", description)
    return written


def figures_line(out: Path) -> str:
    """How many figures are under ``out`` and which, counted from the files there (each a PNG and an SVG)."""
    figures = sorted(p for p in out.rglob("*.png") if p.with_suffix(".svg").exists())
    alone = sorted(p for p in out.rglob("*.png") if not p.with_suffix(".svg").exists())
    names = ", ".join(str(p.relative_to(out).with_suffix("")) for p in figures)
    return f"{len(figures)} figures, each as PNG and SVG: {names}" + (f"; {len(alone)} as PNG only" if alone else "")


def main(argv=None) -> pd.DataFrame:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate-rps", type=float, default=100.0)
    parser.add_argument("--duration-s", type=float, default=5.0, help="each run's length (s)")
    parser.add_argument("--seeds", type=int, default=3, help="runs per backend, with seeds 0, 1, ...")
    parser.add_argument("--tour-requests", type=int, default=20_000)
    parser.add_argument("--recalibrate", action="store_true", help="calibrate even if a calibration exists")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    # the runs' progress (a bar on a terminal, else a line every 5 s; experiments.progress): the rest is printed here
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    logging.getLogger("edgebatch.progress").setLevel(logging.INFO)
    started = time.perf_counter()
    out = args.out or RESULTS_DIR / "quickstart" / time.strftime("%Y-%m-%d_%H-%M-%S")
    out.mkdir(parents=True, exist_ok=True)
    seeds = list(range(args.seeds))

    print("== 1. calibration ==")
    if args.recalibrate or not calibrate.CALIBRATED.exists():
        calibrate.main(["--model", "wide_mlp", "--repeats", "30", "--cold-starts", "2", "--plots", str(out / "calibration")])
    else:
        print(f"using {calibrate.CALIBRATED} (edgebatch calibrate to measure again)")

    print(f"\n== 2. one workload on both backends, {len(seeds)} seeds each: Poisson {args.rate_rps:g} req/s for {args.duration_s:g} s, "
          "timeout batching (8 / 10 ms), one edge worker, SLO 50 ms ==")  # fmt: skip
    overrides = [
        "profile=calibrated", "cluster=edge_only", "workload=poisson", "policy/batching=timeout", "name=quickstart",
        f"rate_rps={args.rate_rps}", "slo_s=0.05", "workload.num_requests=null", f"workload.duration_s={args.duration_s}",
        "policy.batching.max_wait_s=0.01", "policy.batching.max_batch_size=8", "policy.batching.max_inflight=null",
    ]  # fmt: skip
    sim_dir, live_dir = run_repeated(overrides, out, seeds)
    table = report_repeated(sim_dir, live_dir, out, seeds)

    print(f"\n== 3. simulated: the real 49 req/s trace ({args.tour_requests} requests), one edge device "
          "(seed ResNet-50 profile), SLO 0.8 s ==")  # fmt: skip
    tour, tour_requests = batching_tour(args.tour_requests)
    with pd.option_context("display.float_format", "{:,.3f}".format, "display.width", 200):
        print(tour.to_string())
    tour.to_csv(out / "batching_tour.csv")
    plot_tour(tour_requests, out / "plots", num_requests=args.tour_requests)

    _figures(out, sim_dir, live_dir, seeds)
    print("\n" + figures_line(out))
    print(f"everything in {out} ({time.perf_counter() - started:.0f} s)")
    return table


if __name__ == "__main__":
    main()
