"""Predicted against observed latency percentiles, one point per plan window:
``python -m experiments.plot_predictions DIR... [--out FILE] [--by KEY]``.

Reads the ``plans.parquet`` (or live ``plans.jsonl``) of every run under the
folders, keeps the plans that predicted a percentile (checked against their
windows by ``spec.predictions``), and draws observed against predicted on
log axes with the line y = x and the SLO: a point right of the SLO's
vertical line and above its horizontal one is a plan predicted feasible that
missed. Plans flagged ``overloaded`` (no finite prediction) are drawn at the
right edge. One colour per value of ``--by`` (an override, e.g.
``param.workload.sources.cam0.arrivals.time_scale``; default: the run's label).
Also writes the points as ``<out>.csv``.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; no display needed
import matplotlib.pyplot as plt
from matplotlib.ticker import FormatStrFormatter, LogLocator, NullFormatter
import numpy as np
import pandas as pd

from experiments.collect import collect

__all__ = ["prediction_points", "plot_predictions", "main"]

_COLUMNS = ["at_s", "trigger", "feasible", "overloaded", "percentile", "slo_s", "predicted_p_s", "observed_p_s",
            "observed_requests", "missed_slo"]  # fmt: skip


def _plans(run: Path) -> pd.DataFrame:
    if (run / "plans.parquet").exists():
        return pd.read_parquet(run / "plans.parquet")
    if (run / "plans.jsonl").exists():
        lines = (run / "plans.jsonl").read_text().splitlines()
        return pd.DataFrame([json.loads(line) for line in lines if line.strip()])
    return pd.DataFrame()


def prediction_points(directories: list[Path], by: str | None = None) -> pd.DataFrame:
    """One row per checked plan window of every run under ``directories``: the run, ``group`` and ``_COLUMNS``."""
    runs = collect(directories)
    frames = []
    for row in runs.to_dict("records"):
        plans = _plans(Path(row["run_dir"]))
        if plans.empty or "observed_p_s" not in plans:
            continue
        plans = plans[plans["observed_requests"].fillna(0) > 0]
        points = pd.DataFrame({c: plans[c] if c in plans else None for c in _COLUMNS})
        points.insert(0, "run_dir", row["run_dir"])
        points.insert(1, "group", str(row.get(by)) if by else str(row.get("label", row["run_dir"])))
        frames.append(points)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=["run_dir", "group", *_COLUMNS])


def plot_predictions(points: pd.DataFrame, path: Path) -> Path:
    """Observed against predicted percentile per plan window; returns the figure's path."""
    fig, ax = plt.subplots(figsize=(6.0, 5.5))
    predicted = pd.to_numeric(points["predicted_p_s"], errors="coerce")
    observed = pd.to_numeric(points["observed_p_s"], errors="coerce").replace(np.inf, np.nan)
    finite = predicted[np.isfinite(predicted)]
    top = float(np.nanmax([finite.max() if len(finite) else 1.0, observed.max() if observed.notna().any() else 1.0]))
    low = float(np.nanmin([finite.min() if len(finite) else 0.01, observed.min() if observed.notna().any() else 0.01]))
    edge = top * 1.5  # where plans with no finite prediction (overloaded) are drawn
    for group, rows in points.groupby("group", sort=True):
        x = pd.to_numeric(rows["predicted_p_s"], errors="coerce").fillna(edge).to_numpy()
        y = pd.to_numeric(rows["observed_p_s"], errors="coerce").to_numpy()
        feasible = rows["feasible"].fillna(False).astype(bool).to_numpy()
        line = ax.scatter(x[feasible], y[feasible], s=14, alpha=0.7, label=f"{group} (n={len(rows)})")
        ax.scatter(x[~feasible], y[~feasible], s=18, alpha=0.7, marker="x", color=line.get_facecolor()[0])
    ax.plot([low, top], [low, top], color="black", lw=0.8, label="observed = predicted")
    slo = pd.to_numeric(points["slo_s"], errors="coerce").dropna().unique()
    for value in slo[:3]:
        ax.axhline(value, color="grey", ls="--", lw=0.8)
        ax.axvline(value, color="grey", ls=":", lw=0.8)
    ax.axvline(edge, color="red", lw=0.5)
    ax.set_xscale("log")
    ax.set_yscale("log")
    # labels at 1-2-5 steps over a narrow range, at whole decades over a wide one
    subs = (1.0, 2.0, 5.0) if math.log10(max(edge, 1e-9) / max(low, 1e-9)) < 2.5 else (1.0,)
    for axis in (ax.xaxis, ax.yaxis):
        axis.set_major_locator(LogLocator(subs=subs))
        axis.set_minor_formatter(NullFormatter())
        axis.set_major_formatter(FormatStrFormatter("%g"))
    percentile = pd.to_numeric(points["percentile"], errors="coerce").dropna()
    p = f"p{percentile.iloc[0] * 100:g}" if len(percentile) else "percentile"
    ax.set_xlabel(f"predicted {p} of the plan's window (s); red line: overloaded, no finite prediction")
    ax.set_ylabel(f"observed {p} of the requests arriving in the window (s)")
    ax.set_title("Every prediction checked (o: predicted feasible, x: best effort; dashed: SLO)", fontsize=9)
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.12), ncol=2, frameon=False)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=150, bbox_inches="tight")
    plt.close(fig)
    return path


def main(argv=None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("directories", nargs="+", type=Path)
    parser.add_argument("--out", type=Path, default=None, help="figure path (default: <first DIR>/predictions.png)")
    parser.add_argument("--by", default=None, help="a collected column to colour by (default: the run's label)")
    args = parser.parse_args(argv)
    points = prediction_points(args.directories, args.by)
    if points.empty:
        raise SystemExit(f"no plan predicted a percentile under {', '.join(map(str, args.directories))}")
    out = args.out or (args.directories[0] / "predictions.png")
    path = plot_predictions(points, out)
    points.to_csv(out.with_suffix(".csv"), index=False)
    ratio = pd.to_numeric(points["observed_p_s"], errors="coerce") / pd.to_numeric(points["predicted_p_s"], errors="coerce")
    feasible = points[points["feasible"].fillna(False).astype(bool)]
    missed = feasible["missed_slo"].dropna().astype(bool)
    median = ratio[np.isfinite(ratio)].median()
    share = missed.mean() if len(missed) else math.nan
    print(f"{len(points)} plan windows; median observed/predicted {median:.3g}; predicted feasible but missed {share:.1%} -> {path}")
    return path


if __name__ == "__main__":
    main()
