"""The ``edgeserve`` study: EdgeServe's pipelines, simulated and live, with the comparison error.

    python -m experiments.edgeserve [--repeats 3] [--out results/edgeserve] [--sim-only]

Three questions, each point on both backends with the same seeds (``conf/experiment/edgeserve.yaml``):

- *lazy against eager routing*: two cameras joined at their gateway, the model in the cloud over
  the uplink; bytes over the uplink and p95 latency;
- *the join placed decentralized or central*: the joined task's model on the edge device next
  to the cameras (nothing crosses the uplink) or in the cloud (every payload does);
- *a cascade threshold sweep*: the edge model first, the cloud's for outputs less confident than
  the threshold; thresholds at quantiles of the cheap model's confidences measured live (the
  simulator draws from those measurements, live uses each request's logits); p95 and the share
  escalated.

Per point and backend: the mean over the repeats with its 95% interval (``experiments.stats``),
and the simulator's relative error against live. Writes ``edgeserve.csv`` (one row per run),
``edgeserve_table.md`` and ``edgeserve.png`` under ``--out``.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np
import pandas as pd

from experiments.compare import compose_config
from experiments.paths import RESULTS_DIR
from experiments.run import run_config
from experiments.stats import interval, relative_error

__all__ = ["points", "measure_confidences", "run_study", "table", "main"]

UPLINK = "edge->cloud"
#: the cheap model's confidences are measured on this many payloads per seed (request ids past the run's)
SAMPLES = 300
QUANTILES = (0.2, 0.5, 0.8)
METRICS = {"p95 latency (s)": "latency_p95_s", "uplink (MB)": "uplink_MB", "escalated share": "escalated_share"}


def measure_confidences(seed: int, size_bytes: int, model: str = "wide_mlp", count: int = SAMPLES) -> list[float]:
    """The cheap model's top softmax probabilities on ``count`` payloads like the run's (the live worker's weights)."""
    import torch

    from live import models
    from live.roles.source import payload_for
    from spec.cascade import softmax_confidence

    net = models.build_model(model, seed=seed)
    payloads = [payload_for(seed, 10_000_000 + i, size_bytes) for i in range(count)]  # not the run's own requests
    with torch.inference_mode():
        logits = models.run_batch(net, models.payload_to_tensor(model, payloads)).numpy()
    return [round(float(c), 6) for c in softmax_confidence(logits)]


def points(quantiles) -> list[tuple[str, str, list[str]]]:
    """(study, point, overrides) of every configuration (a cascade's threshold is set per seed, at a quantile)."""
    cascade = ["pipeline=cascade", "policy/placement=cascade", "~policy.placement.executor"]
    return [
        ("lazy vs eager", "lazy (read 30%)", ["pipeline=join_lazy"]),
        ("lazy vs eager", "eager", ["pipeline=join_eager"]),
        ("join placement", "decentralized (edge)", ["pipeline=join_eager", "policy.placement.executor=edge"]),
        ("join placement", "central (cloud)", ["pipeline=join_eager", "policy.placement.executor=cloud"]),
        *[("cascade", f"threshold at quantile {round(100 * q)}", cascade) for q in quantiles],
    ]


def _row(summary: dict, study: str, point: str, backend: str, seed: int) -> dict:
    return {"study": study, "point": point, "backend": backend, "seed": seed, "latency_p95_s": summary["latency_p95_s"],
            "latency_p50_s": summary["latency_p50_s"], "uplink_MB": summary.get("link_bytes", {}).get(UPLINK, 0) / 1e6,
            "escalated_share": summary.get("escalated_share", math.nan), "join_expired": summary.get("join_expired", 0),
            "completed": summary["completed"], "count": summary["count"]}  # fmt: skip


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-." else "_" for c in text)


def run_study(out: Path, seeds: list[int], backends: tuple[str, ...]) -> pd.DataFrame:
    """Every point on every backend and seed; one row per run."""
    base = compose_config(["+experiment=edgeserve"])
    size_bytes = int(base.workload.sources.cam0.size_bytes)
    confidences = {seed: measure_confidences(seed, size_bytes, str(base.live.model)) for seed in seeds}
    rows = []
    for study, point, overrides in points(QUANTILES):
        for backend in backends:
            for seed in seeds:
                extra = []
                if study == "cascade":  # the threshold at this seed's model's measured quantile (its weights are the seed's)
                    threshold = round(float(np.quantile(confidences[seed], float(point.split()[-1]) / 100)), 6)
                    extra = [f"pipeline.cascade.threshold={threshold}", f"+pipeline.cascade.confidence_samples={confidences[seed]}"]
                cfg = compose_config(["+experiment=edgeserve", f"backend={backend}", f"seed={seed}", *overrides, *extra])
                run_dir = out / "runs" / _slug(f"{study}-{point}") / backend / f"seed={seed}"
                run_dir.mkdir(parents=True, exist_ok=True)
                summary = run_config(cfg, run_dir)
                rows.append(_row(summary, study, point, backend, seed))
                print(f"{study:15s} {point:22s} {backend:4s} seed={seed}: p95 {summary['latency_p95_s']:.4f} s, "
                      f"uplink {rows[-1]['uplink_MB']:.3f} MB, escalated {rows[-1]['escalated_share']:.3f}", flush=True)
    return pd.DataFrame(rows)


def _cell(values) -> tuple[float, str]:
    ci = interval("mean", list(values))  # Student's t over the seeds
    if not math.isfinite(ci.mean):
        return ci.mean, "-"
    if not math.isfinite(ci.low) or ci.low == ci.high:
        return ci.mean, f"{ci.mean:.4g}"
    return ci.mean, f"{ci.mean:.4g} [{ci.low:.4g}, {ci.high:.4g}]"


def table(runs: pd.DataFrame) -> pd.DataFrame:
    """Per point and metric: sim and live means with 95% intervals (Student's t over the seeds), and the error."""
    out = []
    for (study, point), group in runs.groupby(["study", "point"], sort=False):
        for label, column in METRICS.items():
            if study != "cascade" and column == "escalated_share":
                continue
            row = {"study": study, "point": point, "metric": label}
            means = {}
            for backend in ("sim", "live"):
                values = group.loc[group["backend"] == backend, column]
                means[backend], row[backend] = _cell(values) if len(values) else (math.nan, "-")
            row["error"] = relative_error(means["sim"], means["live"])
            out.append(row)
    return pd.DataFrame(out)


def markdown(frame: pd.DataFrame) -> str:
    lines = ["| study | point | metric | sim | live | sim error |", "|---|---|---|---|---|---|"]
    for r in frame.itertuples():
        error = "-" if not math.isfinite(r.error) else f"{100 * r.error:+.1f}%"
        lines.append(f"| {r.study} | {r.point} | {r.metric} | {r.sim} | {r.live} | {error} |")
    return "\n".join(lines)


def figure(runs: pd.DataFrame, path: Path) -> None:
    """Three panels: lazy vs eager and the join's placement (p95, uplink MB), the cascade sweep (p95, share)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 5.2))
    for ax, study in zip(axes[:2], ("lazy vs eager", "join placement")):
        _bars(ax, runs[runs["study"] == study], study)
    _sweep(axes[2], runs[runs["study"] == "cascade"])
    fig.suptitle("EdgeServe pipelines: simulated and live (mean over seeds, 95% interval)")
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)


def _mean_ci(values) -> tuple[float, float]:
    ci = interval("mean", list(values))
    half = (ci.high - ci.low) / 2 if math.isfinite(ci.low) else 0.0
    return ci.mean, half


def _bars(ax, runs: pd.DataFrame, title: str) -> None:
    labels = list(dict.fromkeys(runs["point"]))
    x = np.arange(len(labels))
    twin = ax.twinx()
    for k, (backend, color) in enumerate((("sim", "tab:blue"), ("live", "tab:orange"))):
        stats = [_mean_ci(runs[(runs["point"] == p) & (runs["backend"] == backend)]["latency_p95_s"] * 1000) for p in labels]
        ax.bar(x + (k - 0.5) * 0.35, [m for m, _ in stats], 0.35, yerr=[h for _, h in stats], color=color, label=f"{backend} p95", capsize=3)
        mb = [_mean_ci(runs[(runs["point"] == p) & (runs["backend"] == backend)]["uplink_MB"])[0] for p in labels]
        twin.plot(x + (k - 0.5) * 0.35, mb, "D", color="k" if backend == "sim" else "tab:red", label=f"{backend} uplink MB")
    ax.set_xticks(x, labels)
    ax.set_ylabel("p95 latency (ms)")
    twin.set_ylabel("bytes over the uplink (MB)")
    twin.set_ylim(bottom=0)
    ax.set_title(title)
    handles = ax.get_legend_handles_labels()[0] + twin.get_legend_handles_labels()[0]
    ax.legend(handles, [h.get_label() for h in handles], fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.1), ncol=2)


def _sweep(ax, runs: pd.DataFrame) -> None:
    twin = ax.twinx()
    for backend, color in (("sim", "tab:blue"), ("live", "tab:orange")):
        mine = runs[runs["backend"] == backend]
        points_ = list(dict.fromkeys(mine["point"]))
        t = [float(p.split()[-1]) / 100 for p in points_]
        p95 = [_mean_ci(mine[mine["point"] == p]["latency_p95_s"] * 1000) for p in points_]
        share = [_mean_ci(mine[mine["point"] == p]["escalated_share"]) for p in points_]
        ax.errorbar(t, [m for m, _ in p95], yerr=[h for _, h in p95], marker="o", color=color, capsize=3, label=f"{backend} p95")
        twin.errorbar(t, [m for m, _ in share], yerr=[h for _, h in share], marker="s", ls="--", color=color, capsize=3,
                      label=f"{backend} share escalated")  # fmt: skip
    ax.set_xlabel("threshold: quantile of the cheap model's measured confidence")
    ax.set_ylabel("p95 latency (ms)")
    twin.set_ylabel("share escalated")
    twin.set_ylim(0, 1)
    ax.set_title("cascade threshold sweep")
    handles = ax.get_legend_handles_labels()[0] + twin.get_legend_handles_labels()[0]
    ax.legend(handles, [h.get_label() for h in handles], fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=2)
    twin.plot([0, 1], [0, 1], ":", color="grey", lw=0.8)  # the share a threshold at quantile q escalates, in theory


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3, help="seeds 0..R-1 per point and backend (default 3)")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR / "edgeserve")
    parser.add_argument("--sim-only", action="store_true", help="the simulator only (no live runs)")
    parser.add_argument("--from-csv", type=Path, help="table and figure from a finished study's edgeserve.csv (runs nothing)")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    if args.from_csv is not None:
        runs = pd.read_csv(args.from_csv)
    else:
        runs = run_study(args.out, list(range(args.repeats)), ("sim",) if args.sim_only else ("sim", "live"))
        runs.to_csv(args.out / "edgeserve.csv", index=False)
    summary = table(runs)
    text = markdown(summary)
    (args.out / "edgeserve_table.md").write_text(text + "\n")
    figure(runs, args.out / "edgeserve.png")
    print(text)
    print(f"wrote {args.out / 'edgeserve.csv'}, {args.out / 'edgeserve_table.md'}, {args.out / 'edgeserve.png'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
