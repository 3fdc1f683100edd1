"""How far to trust the simulator: ``python -m experiments.fidelity``.

Runs a suite of configurations (``conf/fidelity/default.yaml``: every batching
policy, one worker, two replicas and an edge device with a serverless pool
behind a traced link; Poisson, bursty and trace arrivals; low to
near-saturation loads) on both backends, each with repeats: ``--live-repeats``
live runs (seeds 0..R-1) and ``--sim-repeats`` simulated ones (seeds 0..N-1,
so the live seeds' arrival schedules are among them). A seed varies the
arrival times, the service-time noise and cold starts (README, "Repeats").

Per configuration and metric it reports the simulated mean, the simulator's
90% prediction interval for one run (Student's t over the simulated repeats:
mean +/- t * s * sqrt(1 + 1/n)), the live mean with its 95% interval, and
the error of the simulated mean against the live mean (relative; in points
for SLO attainment). Over the configurations: the median and largest
|error| per metric, Kendall's tau between the backends' means (do they rank
configurations alike?) on p95 and on cost, and the share of live runs whose
value falls inside the simulator's 90% prediction interval. Everything is
compared with the targets of issue 15 (``TARGETS``) and saved under
``results/fidelity/<time>/``: ``runs.csv`` (one row per run),
``fidelity.csv`` (per configuration and metric), ``fidelity.json`` (the
headline and targets) and ``p95_sim_vs_live.png/.svg``.

``--analyze DIR`` recomputes the tables and plot from a finished suite's runs;
``--live-from DIR`` runs only the simulator, with the overrides given, against
DIR's live runs (an ablation: ``cluster.hosts=null`` leaves the host model out).
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from omegaconf import OmegaConf
from scipy import stats

from experiments.paths import REPO_ROOT, RESULTS_DIR

__all__ = ["FidelityCase", "load_suite", "held_out_cases", "prediction_interval", "analyze", "headline", "split_headlines", "TARGETS", "main"]

SUITE = REPO_ROOT / "conf" / "fidelity" / "default.yaml"
#: metric -> summary key; SLO attainment's error is in points (absolute), the others relative
METRICS = {"p50": "latency_p50_s", "p95": "latency_p95_s", "p99": "latency_p99_s",
           "slo_attainment": "slo_attainment", "cost": "total_cost"}  # fmt: skip
#: issue 15's targets: median |error| per metric, the worst p95, rank agreement, coverage
TARGETS = {"median_abs_error_p50": 0.05, "median_abs_error_p95": 0.08, "median_abs_error_p99": 0.12,
           "median_abs_error_slo_attainment": 0.01, "median_abs_error_cost": 0.05, "max_abs_error_p95": 0.25,
           "kendall_tau_p95": 0.9, "kendall_tau_cost": 0.9, "share_live_inside_sim_90pi_p95": 0.9}  # fmt: skip
_AT_LEAST = ("kendall_tau_p95", "kendall_tau_cost", "share_live_inside_sim_90pi_p95")


@dataclass(frozen=True, kw_only=True, slots=True)
class FidelityCase:
    """One configuration of the suite: a name, what it is in words, and its Hydra overrides."""

    name: str
    what: str
    overrides: tuple[str, ...]


def held_out_cases(path: Path = SUITE) -> list[str]:
    """The suite's ``held_out`` cases: reported apart, as configurations the model was not changed by."""
    suite = OmegaConf.to_container(OmegaConf.load(path), resolve=False)
    names = list(suite.get("held_out") or ())
    unknown = sorted(set(names) - set(suite["cases"]))
    if unknown:
        raise SystemExit(f"error: held_out case {unknown[0]!r} is not in {path}: one of {', '.join(suite['cases'])}")
    return names


def load_suite(path: Path = SUITE, only: Sequence[str] = ()) -> tuple[list[str], list[FidelityCase]]:
    """The suite's base overrides and its cases (``only``: these names, in the suite's order)."""
    suite = OmegaConf.to_container(OmegaConf.load(path), resolve=False)
    cases = [FidelityCase(name=name, what=str(case.get("what", name)), overrides=tuple(case.get("overrides", ())))
             for name, case in suite["cases"].items()]  # fmt: skip
    unknown = sorted(set(only) - {c.name for c in cases})
    if unknown:
        raise SystemExit(f"error: --cases {unknown[0]!r} is not in {path}: one of {', '.join(c.name for c in cases)}")
    return list(suite.get("base", ())), [c for c in cases if not only or c.name in only]


def prediction_interval(values: Sequence[float], confidence: float = 0.90) -> tuple[float, float]:
    """Student's t prediction interval for one more run's value (NaN with fewer than 2 values)."""
    x = np.asarray(values, dtype=float)
    x = x[np.isfinite(x)]
    if len(x) < 2:
        return math.nan, math.nan
    t = stats.t.ppf(0.5 + confidence / 2, len(x) - 1)
    half = t * x.std(ddof=1) * math.sqrt(1 + 1 / len(x))
    return float(x.mean() - half), float(x.mean() + half)


# -- running -------------------------------------------------------------------------------
def _run(overrides: list[str], run_dir: Path) -> dict:
    """One run's summary; a run that ended early is kept out of the analysis, said, and the suite goes on."""
    from experiments.compare import compose_config
    from experiments.run import IncompleteRunError, run_config

    run_dir.mkdir(parents=True, exist_ok=True)
    try:
        return run_config(compose_config(overrides), run_dir)
    except IncompleteRunError as error:
        print(f"  left out: {error}", flush=True)
        return {**error.summary, "complete": False}


def run_suite(base: list[str], cases: list[FidelityCase], out: Path, *, sim_repeats: int, live_repeats: int,
              extra: Sequence[str] = (), backends: Sequence[str] = ("sim", "live")) -> pd.DataFrame:  # fmt: skip
    """Run every case on ``backends`` with repeats into ``out/runs``; one row per run."""
    rows = []
    for number, case in enumerate(cases, 1):
        started = time.perf_counter()
        for backend, repeats in (("sim", sim_repeats), ("live", live_repeats)):
            if backend not in backends:
                continue
            for seed in range(repeats):
                overrides = [*base, *case.overrides, *extra, f"backend={backend}", f"seed={seed}"]
                summary = _run(overrides, out / "runs" / case.name / backend / f"seed={seed}")
                rows.append({"case": case.name, "backend": backend, "seed": seed, "complete": summary.get("complete", True),
                             **{m: summary.get(k) for m, k in METRICS.items()}})  # fmt: skip
        print(f"[{number}/{len(cases)}] {case.name}: {case.what} ({time.perf_counter() - started:.0f} s)", flush=True)
    return pd.DataFrame(rows)


def read_runs(out: Path) -> pd.DataFrame:
    """The runs of a finished suite, from their ``summary.json`` files."""
    rows = []
    for path in sorted((out / "runs").glob("*/*/seed=*/summary.json")):
        summary = json.loads(path.read_text())
        case, backend, seed = path.parts[-4], path.parts[-3], int(path.parts[-2].split("=", 1)[1])
        rows.append({"case": case, "backend": backend, "seed": seed, "complete": summary.get("complete", True),
                     **{m: summary.get(k) for m, k in METRICS.items()}})  # fmt: skip
    if not rows:
        raise SystemExit(f"error: {out / 'runs'} holds no finished runs (runs/<case>/<backend>/seed=<k>/summary.json)")
    return pd.DataFrame(rows)


# -- analysis ------------------------------------------------------------------------------
def _error(metric: str, sim: float, live: float) -> float:
    """Relative, but in points for SLO attainment (a share already)."""
    from experiments.stats import relative_error

    if metric == "slo_attainment":
        return sim - live if math.isfinite(sim) and math.isfinite(live) else math.nan
    return relative_error(sim, live)


def _case_metric(metric: str, sim: np.ndarray, live: np.ndarray) -> dict:
    from experiments.stats import t_interval

    low, high = prediction_interval(sim)
    live_mean = t_interval(live)
    sim_mean = float(np.nanmean(sim)) if len(sim) else math.nan
    inside = [bool(low <= v <= high) for v in live if math.isfinite(v)] if math.isfinite(low) else []
    return {"metric": metric, "sim_mean": sim_mean, "sim_pi90_low": low, "sim_pi90_high": high, "sim_n": len(sim),
            "live_mean": live_mean.mean, "live_ci95_low": live_mean.low, "live_ci95_high": live_mean.high,
            "live_n": live_mean.n, "error": _error(metric, sim_mean, live_mean.mean),
            "live_runs_inside_sim_pi90": sum(inside), "live_runs_compared": len(inside)}  # fmt: skip


def analyze(runs: pd.DataFrame) -> pd.DataFrame:
    """Per case and metric: simulated mean and 90% prediction interval, live mean and 95% interval, the error."""
    rows = []
    if "complete" in runs:
        runs = runs[runs["complete"].fillna(True).astype(bool)]  # a run that ended early measures nothing
    for case, group in runs.groupby("case", sort=False):
        sides = {b: g for b, g in group.groupby("backend")}
        if {"sim", "live"} - set(sides):
            continue
        for metric in METRICS:
            sim = sides["sim"][metric].to_numpy(dtype=float)
            live = sides["live"][metric].to_numpy(dtype=float)
            rows.append({"case": case, **_case_metric(metric, sim, live)})
    return pd.DataFrame(rows)


def _kendall(table: pd.DataFrame, metric: str) -> float:
    part = table[table["metric"] == metric].dropna(subset=["sim_mean", "live_mean"])
    if len(part) < 3 or part["live_mean"].nunique() < 2:
        return math.nan  # too few distinct configurations to rank (e.g. cost 0 almost everywhere)
    return float(stats.kendalltau(part["sim_mean"], part["live_mean"]).statistic)


def headline(table: pd.DataFrame) -> dict:
    """Medians and worst |error| per metric, Kendall's tau, coverage of the prediction interval, targets."""
    out: dict = {"configurations": int(table["case"].nunique())}
    for metric in METRICS:
        part = table[table["metric"] == metric]
        if metric == "cost":  # a configuration that costs nothing live has no relative cost error
            part = part[part["live_mean"].abs() > 0]
        errors = part["error"].abs().replace(np.inf, np.nan).dropna()
        out[f"median_abs_error_{metric}"] = float(errors.median()) if len(errors) else math.nan
        out[f"max_abs_error_{metric}"] = float(errors.max()) if len(errors) else math.nan
        out[f"worst_{metric}"] = str(part.loc[errors.idxmax(), "case"]) if len(errors) else ""
        out[f"n_{metric}"] = int(len(errors))
    out["kendall_tau_p95"] = _kendall(table, "p95")
    out["kendall_tau_cost"] = _kendall(table, "cost")
    p95 = table[table["metric"] == "p95"]
    compared = int(p95["live_runs_compared"].sum())
    out["share_live_inside_sim_90pi_p95"] = float(p95["live_runs_inside_sim_pi90"].sum() / compared) if compared else math.nan
    out["targets"] = {key: {"target": target, "value": out[key], "met": _met(key, out[key], target)}
                      for key, target in TARGETS.items()}  # fmt: skip
    return out


def _met(key: str, value: float, target: float) -> bool | None:
    if not math.isfinite(value):
        return None
    return bool(value >= target) if key in _AT_LEAST else bool(value <= target)


# -- reporting -----------------------------------------------------------------------------
def _cell(metric: str, row) -> str:
    unit = 1.0 if metric in ("slo_attainment", "cost") else 1000.0
    error = row.error
    shown = "-" if not math.isfinite(error) else (f"{100 * error:+.1f} pt" if metric == "slo_attainment" else f"{100 * error:+.0f}%")
    return (f"{unit * row.sim_mean:.4g} [{unit * row.sim_pi90_low:.3g}, {unit * row.sim_pi90_high:.3g}] | "
            f"{unit * row.live_mean:.4g} [{unit * row.live_ci95_low:.3g}, {unit * row.live_ci95_high:.3g}] | {shown}")


def print_report(table: pd.DataFrame, head: dict, cases: dict[str, str]) -> None:
    print("\nper configuration: simulated mean [90% prediction interval] | live mean [95% interval] | error"
          " (latencies in ms; SLO attainment error in points)")
    for case, group in table.groupby("case", sort=False):
        print(f"\n{case}: {cases.get(case, '')}")
        for row in group.itertuples():
            print(f"  {row.metric:<15} {_cell(row.metric, row)}   live runs inside: {row.live_runs_inside_sim_pi90}/{row.live_runs_compared}")
    print(f"\nover {head['configurations']} configurations:")
    for key, entry in head["targets"].items():
        value, verdict = entry["value"], {True: "met", False: "MISSED", None: "n/a"}[entry["met"]]
        worst = head.get(key.replace("max_abs_error", "worst"), "") if key.startswith("max_") else ""
        print(f"  {key:<34} {value:8.3f}   target {'>=' if key in _AT_LEAST else '<='} {entry['target']:<5} {verdict}"
              + (f" ({worst})" if worst else ""))


def _log_error_bars(centre: np.ndarray, bounds: np.ndarray) -> np.ndarray:
    """Error-bar lengths below and above ``centre``; a bound at or below 0 (t intervals of few runs) stops at a tenth."""
    low = np.where(np.isfinite(bounds[0]) & (bounds[0] > 0), bounds[0], centre / 10)
    high = np.where(np.isfinite(bounds[1]), bounds[1], centre)
    return np.vstack([np.maximum(centre - low, 0), np.maximum(high - centre, 0)])


#: label offsets (points) taken in turn along the configurations sorted by live p95: neighbours get different sides
_LABEL_OFFSETS = ((5, 4), (-13, -11), (5, -11), (-13, 4))


def plot_p95(table: pd.DataFrame, path: Path, title: str, held_out: Sequence[str] = ()) -> list[Path]:
    """Simulated against live p95 per configuration, log-log, with the diagonal and a +/-25% band (held-out ones open)."""
    part = table[table["metric"] == "p95"].dropna(subset=["sim_mean", "live_mean"]).sort_values("live_mean")
    if part.empty:
        return []
    from experiments.plot import plain_log_ticks

    fig, (ax, key_ax) = plt.subplots(1, 2, figsize=(11.5, 6.4), gridspec_kw={"width_ratios": [2.1, 1]})
    live, sim = 1000 * part["live_mean"].to_numpy(), 1000 * part["sim_mean"].to_numpy()
    xerr = _log_error_bars(live, 1000 * part[["live_ci95_low", "live_ci95_high"]].to_numpy().T)
    yerr = _log_error_bars(sim, 1000 * part[["sim_pi90_low", "sim_pi90_high"]].to_numpy().T)
    held = part["case"].isin(list(held_out)).to_numpy()
    for mask, face, label in ((~held, "tab:blue", "development configuration"), (held, "white", "held-out configuration")):
        if mask.any():
            ax.errorbar(live[mask], sim[mask], xerr=np.nan_to_num(xerr[:, mask]), yerr=np.nan_to_num(yerr[:, mask]), fmt="o", ms=5,
                        capsize=2.5, mfc=face, mec="tab:blue", color="tab:blue", ecolor="0.6", elinewidth=1, label=label)  # fmt: skip
    for number, (x, y) in enumerate(zip(live, sim), 1):  # numbers, not names: clustered points stay readable
        ax.annotate(str(number), (x, y), textcoords="offset points", xytext=_LABEL_OFFSETS[(number - 1) % len(_LABEL_OFFSETS)],
                    fontsize=8, color="tab:blue")  # fmt: skip
    key = [f"{n:>2}  {case:<27}{' *' if h else '  '} {100 * e:+5.0f}%" for n, (case, e, h) in enumerate(zip(part["case"], part["error"], held), 1)]
    key_ax.axis("off")
    note = "\n\n* held out: not looked at while the model changed" if held.any() else ""
    key_ax.text(0.0, 1.0, "configuration (by live p95), p95 error\n(sim - live) / live\n\n" + "\n".join(key) + note, va="top", ha="left",
                family="monospace", fontsize=8, transform=key_ax.transAxes)  # fmt: skip
    low, high = 0.7 * min(live.min(), sim.min()), 1.4 * max(live.max(), sim.max())
    grid = np.array([low, high])
    ax.plot(grid, grid, "k-", lw=1, label="simulated = live")
    ax.fill_between(grid, 0.75 * grid, 1.25 * grid, color="tab:green", alpha=0.12, label="within 25%")
    ax.set(xscale="log", yscale="log", xlim=(low, high), ylim=(low, high), xlabel="live p95 latency (ms): mean, 95% CI of the mean",
           ylabel="simulated p95 latency (ms): mean, 90% prediction interval", title=title)  # fmt: skip
    for axis in (ax.xaxis, ax.yaxis):
        plain_log_ticks(axis)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    paths = [path.with_suffix(s) for s in (".png", ".svg")]
    for p in paths:
        fig.savefig(p, dpi=130)
    plt.close(fig)
    return paths


def split_headlines(table: pd.DataFrame, held_out: Sequence[str]) -> dict:
    """The headline over the development configurations and over the held-out ones (not looked at while changing the model)."""
    if not held_out:
        return {}
    inside = table["case"].isin(list(held_out))
    return {"held_out_cases": list(held_out), "development": headline(table[~inside]), "held_out": headline(table[inside])}


def _print_splits(splits: dict) -> None:
    keys = ("median_abs_error_p50", "median_abs_error_p95", "median_abs_error_p99", "median_abs_error_slo_attainment",
            "median_abs_error_cost", "max_abs_error_p95", "kendall_tau_p95", "share_live_inside_sim_90pi_p95")  # fmt: skip
    print(f"\nsplits (held out: {', '.join(splits['held_out_cases'])}):")
    print("  " + " ".join(f"{k.replace('median_abs_error_', 'med_').replace('share_live_inside_sim_90pi_p95', 'inside90'):>12}" for k in keys))
    for name in ("development", "held_out"):
        part = splits[name]
        print(f"  {name:<12}" + " ".join(f"{part[k]:12.3f}" for k in keys) + f"   ({part['configurations']} configurations)")


def report(runs: pd.DataFrame, out: Path, cases: dict[str, str], meta: dict, held_out: Sequence[str] = ()) -> dict:
    """Write ``fidelity.csv``, ``fidelity.json`` and the plot; print the report; return the headline."""
    runs.to_csv(out / "runs.csv", index=False)
    table = analyze(runs)
    incomplete = runs.loc[~runs["complete"].fillna(True).astype(bool), ["case", "backend", "seed"]] if "complete" in runs else runs.iloc[:0]
    splits = split_headlines(table, [c for c in held_out if c in set(table["case"])])
    head = {**headline(table), "incomplete_runs": incomplete.to_dict("records"), **meta, **({"splits": splits} if splits else {})}
    table.to_csv(out / "fidelity.csv", index=False)
    (out / "fidelity.json").write_text(json.dumps(head, indent=2, default=str))
    print_report(table, head, cases)
    if splits:
        _print_splits(splits)
    live_n = int(runs[runs["backend"] == "live"].groupby("case").size().min())
    sim_n = int(runs[runs["backend"] == "sim"].groupby("case").size().min())
    title = f"Simulator against live: p95 latency of {head['configurations']} configurations\n({sim_n} simulated and {live_n} live runs each)"
    figures = plot_p95(table, out / "p95_sim_vs_live", title, held_out)
    print(f"-> {out / 'fidelity.csv'}, {out / 'fidelity.json'}" + (f", {figures[0]}" if figures else ""))
    return head


def _meta(args) -> dict:
    from experiments import calibrate

    calibration = {}
    if calibrate.CALIBRATED.exists():  # when, on what and how noisy the profile the suite ran on was measured
        calibration = (OmegaConf.to_container(OmegaConf.load(calibrate.CALIBRATED)) or {}).get("calibration", {})
    return {"calibration": calibration, "machine": f"{platform.node()}, {platform.processor() or platform.machine()}", "measured_at": time.strftime("%Y-%m-%d %H:%M:%S"),
            "sim_repeats": args.sim_repeats, "live_repeats": args.live_repeats, "extra_overrides": list(args.overrides)}  # fmt: skip


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m experiments.fidelity", description=__doc__.split("\n\n")[0])
    parser.add_argument("overrides", nargs="*", help="Hydra overrides added to every run (e.g. live.model=cnn)")
    parser.add_argument("--suite", type=Path, default=SUITE, help=f"the suite file (default {SUITE.relative_to(REPO_ROOT)})")
    parser.add_argument("--cases", default="", help="comma-separated case names (default: all)")
    parser.add_argument("--sim-repeats", type=int, default=10, help="simulated runs per case (seeds 0..N-1; default 10)")
    parser.add_argument("--live-repeats", type=int, default=3, help="live runs per case (seeds 0..R-1; default 3)")
    parser.add_argument("--out", type=Path, default=None, help="output folder (default results/fidelity/<time>)")
    parser.add_argument("--recalibrate", action="store_true", help="calibrate again before the suite (else only when missing)")
    parser.add_argument("--model", default="wide_mlp", help="the model to calibrate when calibrating (default wide_mlp)")
    parser.add_argument("--analyze", type=Path, default=None, metavar="DIR", help="only re-analyze a finished suite in DIR")
    parser.add_argument("--live-from", type=Path, default=None, metavar="DIR",
                        help="run only the simulator (with the overrides given, e.g. an ablation of the model) against DIR's live runs")
    return parser


def main(argv=None) -> dict:
    args = _parser().parse_args(argv)
    if args.sim_repeats < 2 or args.live_repeats < 1:
        raise SystemExit("error: --sim-repeats must be >= 2 (for a prediction interval) and --live-repeats >= 1")
    base, cases = load_suite(args.suite, [c for c in args.cases.split(",") if c])
    described = {c.name: c.what for c in cases}
    held_out = held_out_cases(args.suite)
    if args.analyze is not None:
        return report(read_runs(args.analyze), args.analyze, described, _meta(args), held_out)
    out = args.out or RESULTS_DIR / "fidelity" / time.strftime("%Y-%m-%d_%H-%M-%S")
    out.mkdir(parents=True, exist_ok=True)
    if args.live_from is not None:  # an ablation of the model: new simulated runs against live runs already made
        _copy_live_runs(args.live_from, out, [c.name for c in cases])
    else:
        _calibrate_if_needed(base, args, out)
    _check_cases(base, cases, args.overrides)
    backends = ("sim",) if args.live_from is not None else ("sim", "live")
    run_suite(base, cases, out, sim_repeats=args.sim_repeats, live_repeats=args.live_repeats, extra=args.overrides, backends=backends)
    return report(read_runs(out), out, described, _meta(args), held_out)


def _copy_live_runs(source: Path, out: Path, names: list[str]) -> None:
    import shutil

    for name in names:
        live = source / "runs" / name / "live"
        if not live.is_dir():
            raise SystemExit(f"error: --live-from {source}: no live runs of case {name} ({live})")
        shutil.copytree(live, out / "runs" / name / "live", dirs_exist_ok=True)


def _calibrate_if_needed(base: list[str], args, out: Path) -> None:
    """The suite runs on the calibrated profile: measure it first when there is none (or ``--recalibrate``)."""
    from experiments import calibrate

    profiles = [o.split("=", 1)[1] for o in [*base, *args.overrides] if o.startswith("profile=")]
    if not profiles or profiles[-1] != "calibrated":
        return
    if args.recalibrate or not calibrate.CALIBRATED.exists():
        print(f"calibrating {args.model} first ({calibrate.CALIBRATED} {'is old' if args.recalibrate else 'is missing'}) ...", flush=True)
        calibrate.main(["--model", args.model, "--plots", str(out / "calibration")])


def _check_cases(base: list[str], cases: list[FidelityCase], extra: Sequence[str]) -> None:
    """Compose and check every case on both backends before the first run (a bad one names its case)."""
    from experiments.compare import compose_config
    from experiments.run import check_config

    for case in cases:
        for backend in ("sim", "live"):
            try:
                check_config(compose_config([*base, *case.overrides, *extra, f"backend={backend}"]))
            except Exception as error:  # Hydra's composition errors as well as ours: name the case
                raise SystemExit(f"error: case {case.name} ({backend}): {error}") from None


if __name__ == "__main__":
    main()
