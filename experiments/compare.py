"""Simulator against live: ``python -m experiments.compare [OVERRIDE...]``, ``--dirs SIM_DIR LIVE_DIR`` or ``--sweep DIR...``; paired strategies: ``--paired DIR``.

With overrides (Hydra syntax, as for ``experiments.run``), composes one
configuration and runs it on both backends with the same seed and workload,
into ``<out>/sim`` and ``<out>/live``. With ``--dirs`` it reads two finished
runs. Either way it prints, per metric, the simulated value, the live value
and the relative error (sim - live) / live, saves that table as
``compare.csv`` and draws both latency CDFs on one plot.

With ``--sweep DIR [DIR2]`` (one sweep over ``backend=sim,live``, or a sim
sweep and a live sweep) it pairs every configuration's sim and live runs;
where a side has several repeats (seeds) it compares their means and reports
the live run-to-run spread (the 95% interval of the live mean, and its
half-width relative to the live mean) next to each error.

With ``--paired DIR [DIR2] [--baseline k=v] [--candidate k=v]`` it compares
two strategies run on the same seeds: per metric the baseline mean, the
candidate mean and the mean per-seed difference with its 95% interval
(``experiments.paired``), saved as ``paired.csv``.
"""

from __future__ import annotations

import argparse
import json
import math
import textwrap
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from hydra import compose, initialize_config_dir

from experiments.paths import REPO_ROOT, RESULTS_DIR
from experiments.plot import plain_log_ticks
from experiments.stats import relative_error
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


def compare_dirs(sim_dir: Path, live_dir: Path) -> pd.DataFrame:
    """The per-metric table of two finished runs."""
    sim = json.loads((Path(sim_dir) / "summary.json").read_text())
    live = json.loads((Path(live_dir) / "summary.json").read_text())
    rows = []
    for metric, (key, unit) in METRICS.items():
        s, v = sim.get(key), live.get(key)
        s = math.nan if s is None else float(s)
        v = math.nan if v is None else float(v)
        rows.append({"metric": metric, "unit": unit, "sim": s, "live": v, "rel_error": relative_error(s, v)})
    return pd.DataFrame(rows).set_index("metric")


def plot_cdfs(sim_dir: Path, live_dir: Path, path: Path) -> None:
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name, run_dir, style in (("simulated", sim_dir, "-"), ("live", live_dir, "--")):
        requests = pd.read_parquet(Path(run_dir) / "requests.parquet", columns=["latency_s", "dropped"])
        latency = np.sort(requests.loc[~requests["dropped"], "latency_s"].to_numpy())
        if len(latency):
            ax.plot(latency * 1000, np.arange(1, len(latency) + 1) / len(requests), style, label=name)
    slo_s = json.loads((Path(sim_dir) / "summary.json").read_text()).get("slo_s")
    if isinstance(slo_s, (int, float)) and math.isfinite(slo_s):
        ax.axvline(slo_s * 1000, color="black", linestyle=":", linewidth=0.9, label=f"SLO {slo_s * 1000:g} ms")
    ax.set_xscale("log")
    plain_log_ticks(ax.xaxis)
    ax.set_xlabel("latency (ms, log scale)")
    ax.set_ylabel("fraction of requests completed within")
    setup = sweep_caption([sim_dir, live_dir])
    ax.set_title("\n".join(["Latency CDF: simulated against live, one run each (no spread)", *textwrap.wrap(setup, 90)]),
                 fontsize=8, loc="left")  # fmt: skip
    ax.grid(True, which="both", alpha=0.3)
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
    print("one run per backend: no run-to-run spread, and live runs of one configuration vary (README, "
          "\"Simulator against live\"); for errors beside the live spread run both with repeats=5 and use --sweep")
    print(f"-> {out / 'compare.csv'}, {out / 'latency_cdf.png'}")
    return table


def compare_sweep(directory: Path | list[Path]) -> pd.DataFrame:
    """Pair a sweep's sim and live jobs by their other parameters; one row per configuration and metric.

    ``directory``: one folder swept over ``backend=sim,live``, or several (a sim sweep and a live sweep).
    With several repeats (seeds) per side the means are compared; ``live_low``/``live_high``/``live_n`` are the
    95% interval of the live mean over its repeats and ``live_spread`` its half-width relative to the live mean
    (``sim_low``/``sim_high``: the simulated mean's).
    """
    from experiments.collect import collect, config_columns, config_text, keyed
    from experiments.stats import interval

    directories = [directory] if isinstance(directory, (str, Path)) else list(directory)
    table = collect(directories)
    if table.empty or "backend" not in table or not {"sim", "live"} <= set(table["backend"]):
        raise SystemExit(f"{', '.join(map(str, directories))}: not a sweep over backend=sim,live (or a sim and a live sweep)")
    keys = [c for c in config_columns(table) if c not in ("param.backend", "backend")]
    # a sim sweep and a live sweep may carry different names: then the name does not tell configurations apart
    if "name" in keys and any(set(g["backend"]) != {"sim", "live"} for _, g in table.groupby("name")):
        keys.remove("name")
    table = keyed(table, keys)
    varying = [k for k in keys if table[k].astype(str).nunique() > 1]
    rows = []
    for values, group in table.groupby(keys, dropna=False, sort=False) if keys else [((), table)]:
        values = values if isinstance(values, tuple) else (values,)
        sides = {backend: runs for backend, runs in group.groupby("backend")}
        if {"sim", "live"} - set(sides):
            continue
        config = config_text({k: v for k, v in zip(keys, values) if k in varying}) or "all"
        for metric, (key, _) in METRICS.items():
            sim_values = sides["sim"][key].to_numpy(dtype=float) if key in sides["sim"] else np.array([math.nan])
            live_values = sides["live"][key].to_numpy(dtype=float) if key in sides["live"] else np.array([math.nan])
            sim, live = interval(key, sim_values), interval(key, live_values)
            spread = live.half_width / abs(live.mean) if live.mean and math.isfinite(live.mean) else math.nan
            rows.append({"config": config, "metric": metric, "sim": sim.mean, "live": live.mean,
                         "rel_error": relative_error(sim.mean, live.mean), "sim_n": sim.n, "sim_low": sim.low, "sim_high": sim.high,
                         "live_low": live.low, "live_high": live.high, "live_n": live.n, "live_spread": spread})  # fmt: skip
    return pd.DataFrame(rows)


def summarize_errors(pairs: pd.DataFrame) -> pd.DataFrame:
    """Median and largest absolute relative error per metric over the configurations."""
    errors = pairs.assign(abs_error=pairs["rel_error"].abs())
    return errors.groupby("metric", sort=False)["abs_error"].agg(["median", "max"]).rename(
        columns={"median": "median_abs_error", "max": "max_abs_error"}
    )


def report_sweep(directory: Path | list[Path], out: Path) -> pd.DataFrame:
    pairs = compare_sweep(directory)
    out.mkdir(parents=True, exist_ok=True)
    pairs.to_csv(out / "pairs.csv", index=False)
    shown_metrics = ["p50 latency", "p95 latency", "SLO attainment", "mean batch size"]
    repeated = bool((pairs["live_n"] > 1).any())
    cells = pairs.assign(cell=[_error_cell(e, s if repeated else math.nan) for e, s in zip(pairs["rel_error"], pairs["live_spread"])])
    wide = cells.pivot_table(index="config", columns="metric", values="cell", aggfunc="first", sort=False)
    with pd.option_context("display.float_format", "{:+.1%}".format, "display.width", 220):
        print("relative error (sim - live) / live per configuration"
              + (" (± the live run-to-run spread: half-width of the 95% interval of the live mean):" if repeated else ":"))
        print(wide[[m for m in shown_metrics if m in wide]].to_string())
        errors = summarize_errors(pairs)
        if repeated:
            errors["median_live_spread"] = pairs.groupby("metric", sort=False)["live_spread"].median()
        print("\nover all configurations:")
        print(errors.to_string())
    errors.to_csv(out / "errors.csv")
    figures = plot_sweep(pairs, out / "sweep_errors", shown_metrics, setup=sweep_caption(directory))
    print(f"-> {out / 'pairs.csv'}, {out / 'errors.csv'}" + (f", {figures[0]}" if figures else ""))
    return errors


def sweep_caption(directory: Path | list[Path]) -> str:
    """What every run of a sim-vs-live comparison shares (``experiments.plot.caption``)."""
    from experiments.collect import collect
    from experiments.plot import caption

    return caption(collect([directory] if isinstance(directory, (str, Path)) else list(directory)))


def _error_cell(error: float, spread: float) -> str:
    if not math.isfinite(error):
        return "-"
    return f"{100 * error:+.1f}%" + (f" (±{100 * spread:.1f}%)" if math.isfinite(spread) else "")


def plot_sweep(pairs: pd.DataFrame, path: Path, metrics: list[str], setup: str = "") -> list[Path]:
    """Per metric, the relative error of every configuration, with the live spread as its error bar; ``setup``
    (what every run shares, ``experiments.plot.caption``) under the title."""
    metrics = [m for m in metrics if m in set(pairs["metric"])]
    if not metrics:
        return []
    configs = list(dict.fromkeys(pairs["config"]))
    fig, axes = plt.subplots(1, len(metrics), figsize=(3.2 * len(metrics) + 2.5, 2.2 + 0.4 * len(configs)), sharey=True, squeeze=False)
    y = np.arange(len(configs))
    for ax, metric in zip(axes[0], metrics):
        rows = pairs[pairs["metric"] == metric].set_index("config").reindex(configs)
        error = rows["rel_error"].astype(float) * 100
        spread = rows["live_spread"].astype(float).fillna(0) * 100
        ax.errorbar(error, y, xerr=spread, fmt="o", color="tab:blue", ecolor="tab:grey", capsize=3)
        ax.axvline(0, color="black", linewidth=0.8)
        ax.set_title(metric, fontsize=10)
        ax.set_xlabel("(sim - live) / live (%)")
        ax.grid(True, axis="x", alpha=0.3)
    axes[0][0].set_yticks(y, configs, fontsize=8)
    axes[0][0].invert_yaxis()
    n = int(pairs["live_n"].max()) if "live_n" in pairs and len(pairs) else 1
    title = "Simulator against live: relative error of the simulated mean; bars: live run-to-run spread (95% interval of the live mean"
    title += f", {n} live runs)" if n > 1 else "; one live run: no spread)"
    wrapped = textwrap.wrap(setup, width=int(45 * len(metrics))) if setup else []
    fig.suptitle("\n".join([title, *wrapped]), fontsize=9, x=0.01, ha="left")
    path.parent.mkdir(parents=True, exist_ok=True)
    written = [path.with_suffix(".png"), path.with_suffix(".svg")]
    fig.tight_layout()
    for file in written:
        fig.savefig(file, dpi=150, bbox_inches="tight")
    plt.close(fig)
    return written


def main(argv=None) -> pd.DataFrame:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("overrides", nargs="*", help="Hydra overrides of the configuration to run on both backends")
    parser.add_argument("--dirs", nargs=2, type=Path, metavar=("SIM_DIR", "LIVE_DIR"), help="compare two finished runs instead")
    parser.add_argument("--sweep", nargs="+", type=Path, metavar="DIR",
                        help="a multirun folder swept over backend=sim,live (or a sim sweep and a live sweep): compare every pair")
    parser.add_argument("--paired", nargs="+", type=Path, metavar="DIR",
                        help="two strategies run on the same seeds (in one folder, or the baseline's and the candidate's)")
    parser.add_argument("--baseline", action="append", default=[], metavar="K=V", help="selects the baseline runs (repeatable)")
    parser.add_argument("--candidate", action="append", default=[], metavar="K=V", help="selects the candidate runs (repeatable)")
    parser.add_argument("--out", type=Path, default=None, help="output folder (default results/compare/<time>)")
    args = parser.parse_args(argv)
    out = args.out or RESULTS_DIR / "compare" / time.strftime("%Y-%m-%d_%H-%M-%S")
    if args.paired:
        return report_paired_dirs(args.paired, args.baseline, args.candidate, args.out or args.paired[0] / "compare_paired")
    if args.sweep:
        return report_sweep(args.sweep, args.out or args.sweep[0] / "compare")
    if args.dirs:
        sim_dir, live_dir = args.dirs
    else:
        sim_dir, live_dir = run_both(args.overrides, out)
    return report(sim_dir, live_dir, out)


def report_paired_dirs(directories: list[Path], baseline: list[str], candidate: list[str], out: Path) -> pd.DataFrame:
    """``--paired``: one folder (sides told apart by the selectors) or two (the baseline's, then the candidate's)."""
    from experiments.collect import collect, find_failures, parse_overrides, print_failures
    from experiments.paired import report_paired

    if len(directories) > 2:
        raise SystemExit("--paired takes one folder, or two (the baseline's and the candidate's)")
    tables = [collect([d]) for d in directories]
    for directory, table in zip(directories, tables):
        if table.empty:
            raise SystemExit(f"no runs (summary.json) under {directory}")
    print_failures(find_failures(directories))
    base, cand = parse_overrides(baseline), parse_overrides(candidate)
    if len(tables) == 2:
        return report_paired(tables[0], base, cand, out, candidate_table=tables[1]).comparison
    return report_paired(tables[0], base, cand, out).comparison


if __name__ == "__main__":
    main()
