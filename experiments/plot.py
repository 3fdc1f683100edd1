"""Plots over results: ``python -m experiments.plot DIR... [--out DIR]``.

Draws, as PNG and SVG:

- ``latency_cdf``: latency CDF of every run;
- ``load``: p50/p95/p99 latency and cost per 1,000 requests against arrival rate, per policy;
- ``slo_cost``: cost against SLO, and cost against SLO attainment with each policy's Pareto front;
- ``timeline_<run>``: arrival rate, link bandwidth, batch sizes per executor, plans and re-plans over time.

Figures that need a spread (several loads, several SLOs) are skipped when the
runs have none.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; no display needed
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import yaml

from experiments.collect import collect

__all__ = ["main", "plot_all"]


def _save(fig, out: Path, name: str) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / f"{name}.png", out / f"{name}.svg"]
    fig.tight_layout()
    for path in paths:
        fig.savefig(path, dpi=120)
    plt.close(fig)
    return paths


def latency_cdf(table: pd.DataFrame, out: Path) -> list[Path]:
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for _, run in table.iterrows():
        requests = pd.read_parquet(Path(run["run_dir"]) / "requests.parquet", columns=["latency_s", "dropped"])
        latency = np.sort(requests.loc[~requests["dropped"], "latency_s"].to_numpy())
        if len(latency) == 0:
            continue
        # dropped requests never complete: the CDF tops out at the completed fraction
        fraction = np.arange(1, len(latency) + 1) / len(requests)
        ax.plot(latency * 1000, fraction, label=f"{run['label']} @ {run.get('rate_rps', '')} req/s"[:70])
    ax.set_xscale("log")
    ax.set_xlabel("latency (ms, log scale)")
    ax.set_ylabel("fraction of requests completed within")
    ax.set_title("Latency CDF per run")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)
    return _save(fig, out, "latency_cdf")


def against_load(table: pd.DataFrame, out: Path) -> list[Path]:
    if table["rate_rps"].nunique() < 2:
        return []
    fig, (lat, cost) = plt.subplots(1, 2, figsize=(12, 4.5))
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for index, (label, runs) in enumerate(table.groupby("label")):
        colour = colours[index % len(colours)]
        runs = runs.groupby("rate_rps").mean(numeric_only=True).reset_index()
        # one colour per policy; the line style tells the quantile
        for quantile, style in (("p50", ":"), ("p95", "-"), ("p99", "--")):
            lat.plot(runs["rate_rps"], runs[f"latency_{quantile}_s"] * 1000, style, marker="o", markersize=3, color=colour,
                     label=label[:60] if quantile == "p95" else None)  # fmt: skip
        cost.plot(runs["rate_rps"], runs["cost_per_1k"], marker="o", color=colour, label=label[:60])
    lat.plot([], [], "k:", label="p50")
    lat.plot([], [], "k-", label="p95")
    lat.plot([], [], "k--", label="p99")
    lat.set_yscale("log")
    lat.set_xlabel("arrival rate (req/s)")
    lat.set_ylabel("latency (ms, log scale)")
    lat.set_title("p50 / p95 / p99 latency against load")
    cost.set_xlabel("arrival rate (req/s)")
    cost.set_ylabel("cost per 1,000 requests")
    cost.set_title("Cost against load")
    for ax in (lat, cost):
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=6)
    return _save(fig, out, "load")


def _pareto(points: pd.DataFrame) -> pd.DataFrame:
    """Runs not beaten by another on both SLO attainment (higher) and cost (lower)."""
    ordered = points.sort_values(["cost_per_1k", "slo_attainment"], ascending=[True, False])
    front, best = [], -np.inf
    for _, row in ordered.iterrows():
        if row["slo_attainment"] > best:
            front.append(row)
            best = row["slo_attainment"]
    return pd.DataFrame(front)


def slo_cost(table: pd.DataFrame, out: Path) -> list[Path]:
    if table["slo_s"].nunique() < 2:
        return []
    fig, (by_slo, front) = plt.subplots(1, 2, figsize=(12, 4.5))
    for label, runs in table.groupby("label"):
        mean = runs.groupby("slo_s").mean(numeric_only=True).reset_index()
        by_slo.plot(mean["slo_s"] * 1000, mean["cost_per_1k"], marker="o", label=label[:60])
        points = front.scatter(runs["slo_attainment"], runs["cost_per_1k"], s=14, alpha=0.6)
        pareto = _pareto(runs)
        front.step(pareto["slo_attainment"], pareto["cost_per_1k"], where="post", color=points.get_facecolor()[0], label=label[:60])
    by_slo.set_xlabel("SLO (ms)")
    by_slo.set_ylabel("cost per 1,000 requests")
    by_slo.set_title("Cost against SLO")
    front.set_xlabel("SLO attainment (fraction of requests)")
    front.set_ylabel("cost per 1,000 requests")
    front.set_title("Cost against SLO attainment: Pareto front per policy")
    for ax in (by_slo, front):
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=6)
    return _save(fig, out, "slo_cost")


def _bandwidth_traces(run_dir: Path) -> dict[str, tuple[np.ndarray, float]]:
    config_path = run_dir / "config.yaml"
    if not config_path.exists():
        return {}
    config = yaml.safe_load(config_path.read_text())
    traces = {}
    for name, link in ((config.get("cluster") or {}).get("links") or {}).items():
        if link.get("bandwidth_trace"):
            samples = np.asarray(json.loads(Path(link["bandwidth_trace"]).read_text()), dtype=float) * link.get("bandwidth_scale", 1.0)
            traces[name] = (np.roll(samples, -int(link.get("trace_offset_s", 0))), 0.0)
        elif link.get("bandwidth_MBps"):
            traces[name] = (np.array([link["bandwidth_MBps"] * link.get("bandwidth_scale", 1.0)]), 0.0)
    return traces


def timeline(run_dir: Path, out: Path, name: str) -> list[Path]:
    requests = pd.read_parquet(run_dir / "requests.parquet", columns=["arrival_s"])
    batches = pd.read_parquet(run_dir / "batches.parquet")
    plans_path = run_dir / "plans.parquet"
    plans = pd.read_parquet(plans_path) if plans_path.exists() else pd.DataFrame()
    end_s = float(np.ceil(requests["arrival_s"].max() or 1.0))
    fig, (rate_ax, bw_ax, batch_ax) = plt.subplots(3, 1, figsize=(11, 8), sharex=True)
    counts, edges = np.histogram(requests["arrival_s"], bins=np.arange(0, end_s + 1.0, 1.0))
    rate_ax.step(edges[:-1], counts, where="post")
    rate_ax.set_ylabel("arrival rate (req/s)")
    rate_ax.set_title(f"Timeline of {run_dir.parent.name}/{run_dir.name}: arrivals, uplink, batches and re-plans")
    for link, (samples, _) in _bandwidth_traces(run_dir).items():
        seconds = np.arange(0, int(end_s) + 1)
        bw_ax.step(seconds, samples[seconds % len(samples)], where="post", label=f"uplink to {link}")
    bw_ax.set_ylabel("bandwidth (MB/s)")
    if bw_ax.get_legend_handles_labels()[0]:
        bw_ax.legend(fontsize=7)
    for executor, group in batches.groupby("executor", observed=True):
        batch_ax.scatter(group["start_s"], group["size"], s=4, alpha=0.5, label=str(executor))
    batch_ax.set_ylabel("batch size (requests)")
    batch_ax.set_xlabel("time since start (s)")
    if len(batches):
        batch_ax.legend(fontsize=7, markerscale=3)
    if len(plans) and "at_s" in plans:
        for _, plan in plans.iterrows():
            colour = "tab:red" if plan.get("trigger") == "changepoint" else "tab:grey"
            for ax in (rate_ax, bw_ax, batch_ax):
                ax.axvline(plan["at_s"], color=colour, alpha=0.25, linewidth=0.8)
        rate_ax.plot([], [], color="tab:grey", label="re-plan (periodic / initial)")
        rate_ax.plot([], [], color="tab:red", label="re-plan (changepoint)")
        rate_ax.legend(fontsize=7)
    for ax in (rate_ax, bw_ax, batch_ax):
        ax.grid(True, alpha=0.3)
    return _save(fig, out, f"timeline_{name}")


def plot_all(directories, out: Path, timelines: int = 4) -> list[Path]:
    """Every figure the runs under ``directories`` allow; returns the files written."""
    table = collect(directories)
    if table.empty:
        raise SystemExit("no runs (summary.json) to plot")
    written = latency_cdf(table, out)
    written += against_load(table, out)
    written += slo_cost(table, out)
    for index, run in enumerate(table.head(timelines).itertuples()):
        written += timeline(Path(run.run_dir), out, f"{index}_{Path(run.run_dir).name}")
    return written


def main(argv=None) -> list[Path]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("directories", nargs="+", type=Path)
    parser.add_argument("--out", type=Path, default=None, help="figure folder (default: <first DIR>/plots)")
    parser.add_argument("--timelines", type=int, default=4, help="timelines for at most this many runs")
    args = parser.parse_args(argv)
    out = args.out or args.directories[0] / "plots"
    written = plot_all(args.directories, out, args.timelines)
    for path in written:
        print(path)
    return written


if __name__ == "__main__":
    main()
