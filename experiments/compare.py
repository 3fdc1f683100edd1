"""Simulator against live: ``python -m experiments.compare [OVERRIDE...]`` or ``--dirs SIM_DIR LIVE_DIR``.

With overrides (Hydra syntax, as for ``experiments.run``), composes one
configuration and runs it on both backends with the same seed and workload,
into ``<out>/sim`` and ``<out>/live``. With ``--dirs`` it reads two finished
runs. Either way it prints, per metric, the simulated value, the live value
and the relative error (sim - live) / live, saves that table as
``compare.csv`` and draws both latency CDFs on one plot.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from hydra import compose, initialize_config_dir

from experiments.paths import REPO_ROOT, RESULTS_DIR
from experiments.run import run_config

__all__ = ["METRICS", "compare_dirs", "run_both", "main"]

#: metric -> (summary key, unit shown)
METRICS = {
    "p50 latency": ("latency_p50_s", "s"),
    "p95 latency": ("latency_p95_s", "s"),
    "p99 latency": ("latency_p99_s", "s"),
    "SLO attainment": ("slo_attainment", ""),
    "throughput": ("throughput_rps", "req/s"),
    "mean batch size": ("mean_batch_size", "req"),
    "cold starts": ("cold_starts", ""),
    "cost": ("total_cost", ""),
}


def compose_config(overrides: list[str]):
    with initialize_config_dir(config_dir=str(REPO_ROOT / "conf"), version_base="1.3"):
        return compose("config", overrides=list(overrides))


def run_both(overrides: list[str], out: Path) -> tuple[Path, Path]:
    """Run one configuration on the simulator and live, same seed and workload."""
    dirs = []
    for backend in ("sim", "live"):
        cfg = compose_config([*overrides, f"backend={backend}"])
        run_dir = out / backend
        run_dir.mkdir(parents=True, exist_ok=True)
        started = time.perf_counter()
        run_config(cfg, run_dir)
        print(f"  {backend}: done in {time.perf_counter() - started:.1f} s -> {run_dir}")
        dirs.append(run_dir)
    return dirs[0], dirs[1]


def _relative_error(sim: float, live: float) -> float:
    if live is None or sim is None or not math.isfinite(live) or not math.isfinite(sim):
        return math.nan
    if live == 0:
        return 0.0 if sim == 0 else math.inf
    return (sim - live) / abs(live)


def compare_dirs(sim_dir: Path, live_dir: Path) -> pd.DataFrame:
    """The per-metric table of two finished runs."""
    sim = json.loads((Path(sim_dir) / "summary.json").read_text())
    live = json.loads((Path(live_dir) / "summary.json").read_text())
    rows = []
    for metric, (key, unit) in METRICS.items():
        s, v = sim.get(key), live.get(key)
        s = math.nan if s is None else float(s)
        v = math.nan if v is None else float(v)
        rows.append({"metric": metric, "unit": unit, "sim": s, "live": v, "rel_error": _relative_error(s, v)})
    return pd.DataFrame(rows).set_index("metric")


def plot_cdfs(sim_dir: Path, live_dir: Path, path: Path) -> None:
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name, run_dir, style in (("simulated", sim_dir, "-"), ("live", live_dir, "--")):
        requests = pd.read_parquet(Path(run_dir) / "requests.parquet", columns=["latency_s", "dropped"])
        latency = np.sort(requests.loc[~requests["dropped"], "latency_s"].to_numpy())
        if len(latency):
            ax.plot(latency * 1000, np.arange(1, len(latency) + 1) / len(requests), style, label=name)
    ax.set_xlabel("latency (ms)")
    ax.set_ylabel("fraction of requests completed within")
    ax.set_title("Latency CDF: simulated against live")
    ax.grid(True, alpha=0.3)
    ax.legend()
    fig.tight_layout()
    for suffix in (".png", ".svg"):
        fig.savefig(path.with_suffix(suffix), dpi=120)
    plt.close(fig)


def report(sim_dir: Path, live_dir: Path, out: Path) -> pd.DataFrame:
    table = compare_dirs(sim_dir, live_dir)
    out.mkdir(parents=True, exist_ok=True)
    table.to_csv(out / "compare.csv")
    plot_cdfs(sim_dir, live_dir, out / "latency_cdf")
    shown = table.copy()
    shown["rel_error"] = shown["rel_error"].map(lambda e: "" if math.isnan(e) else f"{100 * e:+.1f}%")
    with pd.option_context("display.float_format", "{:,.4f}".format, "display.width", 200):
        print(shown.to_string())
    print(f"-> {out / 'compare.csv'}, {out / 'latency_cdf.png'}")
    return table


def compare_sweep(directory: Path) -> pd.DataFrame:
    """Pair a sweep's sim and live jobs by their other parameters; one row per pair and metric."""
    from experiments.collect import collect

    table = collect([directory])
    if "param.backend" not in table:
        raise SystemExit(f"{directory}: not a sweep over backend=sim,live")
    keys = [c for c in table.columns if c.startswith("param.") and c != "param.backend"]
    rows = []
    for values, group in table.groupby(keys, dropna=False):
        by_backend = {row["param.backend"]: row for _, row in group.iterrows()}
        if {"sim", "live"} - set(by_backend):
            continue
        config = ", ".join(f"{k.removeprefix('param.').split('/')[-1]}={v}" for k, v in zip(keys, values if isinstance(values, tuple) else (values,)))
        for metric, (key, _) in METRICS.items():
            sim, live = float(by_backend["sim"][key]), float(by_backend["live"][key])
            rows.append({"config": config, "metric": metric, "sim": sim, "live": live, "rel_error": _relative_error(sim, live)})
    return pd.DataFrame(rows)


def summarize_errors(pairs: pd.DataFrame) -> pd.DataFrame:
    """Median and largest absolute relative error per metric over the configurations."""
    errors = pairs.assign(abs_error=pairs["rel_error"].abs())
    return errors.groupby("metric", sort=False)["abs_error"].agg(["median", "max"]).rename(
        columns={"median": "median_abs_error", "max": "max_abs_error"}
    )


def report_sweep(directory: Path, out: Path) -> pd.DataFrame:
    pairs = compare_sweep(directory)
    out.mkdir(parents=True, exist_ok=True)
    pairs.to_csv(out / "pairs.csv", index=False)
    wide = pairs.pivot_table(index="config", columns="metric", values="rel_error", sort=False)
    shown_metrics = ["p50 latency", "p95 latency", "SLO attainment", "mean batch size"]
    with pd.option_context("display.float_format", "{:+.1%}".format, "display.width", 220):
        print("relative error (sim - live) / live per configuration:")
        print(wide[[m for m in shown_metrics if m in wide]].to_string())
        errors = summarize_errors(pairs)
        print("\nover all configurations:")
        print(errors.to_string())
    errors.to_csv(out / "errors.csv")
    return errors


def main(argv=None) -> pd.DataFrame:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("overrides", nargs="*", help="Hydra overrides of the configuration to run on both backends")
    parser.add_argument("--dirs", nargs=2, type=Path, metavar=("SIM_DIR", "LIVE_DIR"), help="compare two finished runs instead")
    parser.add_argument("--sweep", type=Path, help="a multirun folder swept over backend=sim,live: compare every pair")
    parser.add_argument("--out", type=Path, default=None, help="output folder (default results/compare/<time>)")
    args = parser.parse_args(argv)
    out = args.out or RESULTS_DIR / "compare" / time.strftime("%Y-%m-%d_%H-%M-%S")
    if args.sweep:
        return report_sweep(args.sweep, args.out or args.sweep / "compare")
    if args.dirs:
        sim_dir, live_dir = args.dirs
    else:
        sim_dir, live_dir = run_both(args.overrides, out)
    return report(sim_dir, live_dir, out)


if __name__ == "__main__":
    main()
