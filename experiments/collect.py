"""Gather many runs into tidy tables: ``python -m experiments.collect DIR... [--out FILE] [--paired KEY=BASE,CAND]``.

Per run: one row per run folder (any folder holding a ``summary.json``,
searched recursively): the parameters its Hydra overrides set, its ``seed``,
then the summary -> ``collected.csv/.parquet``.

Per configuration (every override except ``seed``, plus ``name`` and
``backend``): for every numeric summary metric the mean over the repeats, its
95% interval (``experiments.stats.interval``: Student's t for means, a
bootstrap for latency percentiles and SLO attainment) and ``n`` ->
``collected_intervals.csv/.parquet``, printed as mean ± half-width.

Failed jobs (a folder with ``error.json``, or a Hydra job folder with
``.hydra`` but neither ``summary.json`` nor ``error.json``: crashed or killed)
are listed with their error, and counted on the last line:
``N runs in M configurations, F failed``.

``--paired KEY=BASE,CAND`` also compares two values of one override run on
the same seeds (see ``experiments.paired``).
"""

from __future__ import annotations

import argparse
import json
import math
import re
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from experiments.stats import interval

__all__ = ["collect", "find_runs", "find_failures", "aggregate", "config_columns", "metric_columns", "config_text", "main",
           "NO_SUMMARY"]  # fmt: skip

#: summary columns printed by default (everything is saved)
SHOWN = ["label", "rate_rps", "slo_s", "completed", "dropped", "latency_p50_s", "latency_p95_s", "latency_p99_s",
         "slo_attainment", "total_cost", "cost_per_1k", "mean_batch_size", "cold_starts", "replans",
         "prediction_ratio_median", "prediction_feasible_missed_share"]  # fmt: skip
#: metrics whose intervals are printed by default (the prediction check: see spec.predictions; NaN for planners
#: that predict no percentile)
SHOWN_METRICS = ["completed", "dropped", "latency_p50_s", "latency_p95_s", "latency_p99_s", "slo_attainment",
                 "cost_per_1k", "mean_batch_size", "cold_starts", "replans", "prediction_ratio_median",
                 "prediction_feasible_missed_share"]  # fmt: skip
#: summary fields that say what was run, not what was measured
DESCRIPTIVE = ("run_dir", "label", "name", "backend", "seed", "rate_rps", "slo_s", "complete")
#: the error of a Hydra job folder with neither summary.json nor error.json
NO_SUMMARY = "no summary: crashed or killed"
_SEED_FOLDER = re.compile(r"^seed=(-?\d+)$")


def _run_order(path: Path):
    # job folders in their numeric order (2 before 10), repeats (seed=K) by seed
    name = path.name
    seed = _SEED_FOLDER.match(name)
    number = int(name) if name.isdigit() else int(seed.group(1)) if seed else -1
    return (str(path.parent), number, name)


def find_runs(directories: Iterable[Path]) -> list[Path]:
    """Every folder under ``directories`` holding a ``summary.json`` (and no ``error.json``), sorted."""
    runs: set[Path] = set()
    for directory in directories:
        directory = Path(directory)
        if not directory.exists():
            raise FileNotFoundError(f"results folder {directory} does not exist")
        runs.update(p.parent for p in directory.rglob("summary.json") if not (p.parent / "error.json").exists())
    return sorted(runs, key=_run_order)


def _override_text(value) -> str:
    if isinstance(value, (list, dict)):
        return yaml.safe_dump(value, default_flow_style=True, width=10_000).strip()
    return value


def parse_overrides(items: Sequence) -> dict:
    """``{key: value}`` of Hydra override strings (``+``/``~`` stripped; ``hydra.*`` and ``experiment`` left out)."""
    params = {}
    for item in items or []:
        key, _, value = str(item).partition("=")
        key = key.lstrip("+~")
        if key.startswith("hydra") or key == "experiment":
            continue
        try:
            params[key] = _override_text(yaml.safe_load(value))
        except yaml.YAMLError:
            params[key] = value
    return params


def _overrides_file(run: Path) -> Path | None:
    path = run / ".hydra" / "overrides.yaml"
    if path.exists():
        return path
    if _SEED_FOLDER.match(run.name):  # a repeat inside a single run's folder: <run dir>/seed=K/
        parent = run.parent / ".hydra" / "overrides.yaml"
        if parent.exists():
            return parent
    return None


def _overrides(run: Path) -> dict:
    path = _overrides_file(run)
    if path is None:
        return {}
    params = parse_overrides(yaml.safe_load(path.read_text()) or [])
    seed = _SEED_FOLDER.match(run.name)
    if seed and "seed" not in params:
        params["seed"] = int(seed.group(1))
    return params


def _label(params: dict, summary: dict, axes: set[str]) -> str:
    parts = [f"{k.split('/')[-1]}={v}" for k, v in params.items() if k not in axes and k not in ("seed", "name")]
    return ", ".join(parts) if parts else str(summary.get("name", "run"))


def collect(directories: Iterable[Path]) -> pd.DataFrame:
    """The tidy table of every run under ``directories``: one row per run, with its ``seed``."""
    rows = []
    for run in find_runs(directories):
        summary = json.loads((run / "summary.json").read_text())
        params = _overrides(run)
        row = {"run_dir": str(run), **{f"param.{k}": v for k, v in params.items()}}
        for key, value in summary.items():
            if key == "drops_by_reason":
                row.update({f"drops.{reason}": count for reason, count in (value or {}).items()})
            elif not isinstance(value, (dict, list)):
                row[key] = value
        if "seed" in params:
            row["seed"] = params["seed"]
        row.setdefault("seed", None)
        row["label"] = _label(params, summary, axes={"rate_rps", "slo_s", "num_requests"})
        rows.append(row)
    table = pd.DataFrame(rows)
    if len(table):
        drop_columns = [c for c in table.columns if c.startswith("drops.")]
        table[drop_columns] = table[drop_columns].fillna(0).astype(int)
    return table


def find_failures(directories: Iterable[Path]) -> pd.DataFrame:
    """Every failed job under ``directories``: ``run_dir``, ``error``, ``type``, ``overrides`` (a list)."""
    failed: dict[Path, dict] = {}
    for directory in directories:
        directory = Path(directory)
        for path in directory.rglob("error.json"):
            try:
                error = json.loads(path.read_text())
            except (OSError, ValueError) as unreadable:
                error = {"error": f"unreadable error.json: {unreadable}", "type": type(unreadable).__name__}
            overrides = error.get("overrides")
            if overrides is None:
                file = _overrides_file(path.parent)
                overrides = (yaml.safe_load(file.read_text()) or []) if file else []
            failed[path.parent] = {"run_dir": str(path.parent), "error": str(error.get("error", "")),
                                   "type": str(error.get("type", "")), "overrides": [str(o) for o in overrides]}  # fmt: skip
        for hydra_dir in directory.rglob(".hydra"):
            job = hydra_dir.parent
            if not hydra_dir.is_dir() or job in failed or (job / "summary.json").exists():
                continue
            # a single run's folder whose repeats live in seed=K/ subfolders is not a job of its own
            if any(p != job / "error.json" for name in ("summary.json", "error.json") for p in job.rglob(name)):
                continue
            overrides = yaml.safe_load((hydra_dir / "overrides.yaml").read_text()) if (hydra_dir / "overrides.yaml").exists() else []
            failed[job] = {"run_dir": str(job), "error": NO_SUMMARY, "type": "", "overrides": [str(o) for o in overrides or []]}
    rows = [failed[job] for job in sorted(failed, key=_run_order)]
    return pd.DataFrame(rows, columns=["run_dir", "error", "type", "overrides"])


def config_columns(table: pd.DataFrame) -> list[str]:
    """The columns that name a configuration: every override but the seed, then ``name`` and ``backend``."""
    params = [c for c in table.columns if c.startswith("param.") and c != "param.seed"]
    return params + [c for c in ("name", "backend") if c in table.columns]


def metric_columns(table: pd.DataFrame) -> list[str]:
    """The numeric summary metrics of ``table`` (booleans, parameters and descriptive fields left out)."""
    return [c for c in table.columns
            if c not in DESCRIPTIVE and not c.startswith("param.")
            and pd.api.types.is_numeric_dtype(table[c]) and not pd.api.types.is_bool_dtype(table[c])]  # fmt: skip


_UNSET = "<unset>"


def keyed(table: pd.DataFrame, columns: Sequence[str]) -> pd.DataFrame:
    """``table`` with ``columns`` made hashable and comparable (unset -> ``<unset>``), for grouping and merging."""
    table = table.copy()
    for column in columns:
        table[column] = table[column].map(lambda v: _UNSET if v is None or (isinstance(v, float) and math.isnan(v)) else v)
        table[column] = table[column].astype(str) if table[column].map(type).nunique() > 1 else table[column]
    return table


def config_text(values: dict, skip: Iterable[str] = ()) -> str:
    """``k=v, ...`` of a configuration's (column -> value) mapping; unset values left out."""
    skip = set(skip)
    parts = [f"{c.removeprefix('param.').split('/')[-1]}={v}" for c, v in values.items() if c not in skip and v != _UNSET]
    return ", ".join(parts)


def _seed_sort(value):
    try:
        return (0, float(value), "")
    except (TypeError, ValueError):
        return (1, 0.0, str(value))


def aggregate(table: pd.DataFrame, failures: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per configuration: its columns, ``label``, ``config``, ``n``, ``seeds``, ``failed``, and per metric
    ``<metric>.mean``, ``.low``, ``.high``, ``.n`` (the 95% interval over the repeats; NaN bounds with one repeat)."""
    if table.empty:
        return pd.DataFrame()
    keys = config_columns(table)
    metrics = metric_columns(table)
    varying = [c for c in keys if table[c].astype(str).nunique(dropna=False) > 1]
    failed_keys = _failed_keys(failures, [c for c in keys if c.startswith("param.")])
    rows = []
    for values, group in keyed(table, keys).groupby(keys, dropna=False, sort=False):
        config = dict(zip(keys, values if isinstance(values, tuple) else (values,)))
        seeds = sorted({s for s in group["seed"] if s is not None and not (isinstance(s, float) and math.isnan(s))}, key=_seed_sort)
        row = {**config, "label": group["label"].iloc[0], "config": config_text({c: config[c] for c in varying}) or config_text(config),
               "n": len(group), "seeds": ",".join(str(s) for s in seeds),
               "failed": failed_keys.get(tuple(str(config[c]) for c in keys if c.startswith("param.")), 0)}  # fmt: skip
        for column in ("rate_rps", "slo_s"):
            if column in group:
                row[column] = group[column].iloc[0]
        for metric in metrics:
            found = interval(metric, group[metric].to_numpy(dtype=float))
            row.update({f"{metric}.mean": found.mean, f"{metric}.low": found.low, f"{metric}.high": found.high, f"{metric}.n": found.n})
        rows.append(row)
    return pd.DataFrame(rows)


def _failed_keys(failures: pd.DataFrame | None, params: list[str]) -> dict[tuple, int]:
    counts: dict[tuple, int] = {}
    if failures is None:
        return counts
    for overrides in failures["overrides"]:
        found = {f"param.{k}": v for k, v in parse_overrides(overrides).items()}
        if set(found) - {"param.seed"} - set(params):
            continue  # sets an override no successful run has: not one of these configurations
        key = tuple(str(found.get(c, _UNSET)) for c in params)
        counts[key] = counts.get(key, 0) + 1
    return counts


def _plus_minus(mean: float, low: float, high: float) -> str:
    if not math.isfinite(mean):
        return "-"
    if not (math.isfinite(low) and math.isfinite(high)):
        return f"{mean:.4g}"
    return f"{mean:.4g} ± {(high - low) / 2:.2g}"


def format_intervals(intervals: pd.DataFrame, metrics: Sequence[str] = SHOWN_METRICS) -> pd.DataFrame:
    """The printable table: configuration, n, and ``mean ± half-width`` per shown metric."""
    shown = pd.DataFrame({"configuration": intervals["config"], "n": intervals["n"]})
    if intervals["failed"].any():
        shown["failed"] = intervals["failed"]
    for metric in metrics:
        if f"{metric}.mean" in intervals:
            shown[metric] = [_plus_minus(m, lo, hi) for m, lo, hi in
                             zip(intervals[f"{metric}.mean"], intervals[f"{metric}.low"], intervals[f"{metric}.high"])]  # fmt: skip
    return shown


def print_failures(failures: pd.DataFrame) -> None:
    if failures.empty:
        return
    print(f"\nfailed jobs ({len(failures)}):")
    for failure in failures.itertuples():
        kind = f"{failure.type}: " if failure.type else ""
        print(f"  {failure.run_dir} [{' '.join(failure.overrides)}]\n    {kind}{failure.error}".rstrip())


def main(argv=None) -> pd.DataFrame:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("directories", nargs="+", type=Path)
    parser.add_argument("--out", type=Path, default=None, help="table path without extension (default: <first DIR>/collected)")
    parser.add_argument("--runs", action="store_true", help="also print one row per run")
    parser.add_argument("--paired", metavar="KEY=BASE,CAND", help="compare two values of one override, paired by seed")
    args = parser.parse_args(argv)
    table = collect(args.directories)
    failures = find_failures(args.directories)
    if table.empty:
        print_failures(failures)
        raise SystemExit(f"no runs (summary.json) under {', '.join(map(str, args.directories))}; {len(failures)} failed")
    out = args.out or (args.directories[0] / "collected")
    out.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(out.with_suffix(".csv"), index=False)
    _to_parquet(table, out.with_suffix(".parquet"))
    intervals = aggregate(table, failures)
    intervals_out = out.with_name(out.name + "_intervals")
    intervals.to_csv(intervals_out.with_suffix(".csv"), index=False)
    _to_parquet(intervals, intervals_out.with_suffix(".parquet"))
    with pd.option_context("display.float_format", "{:,.4g}".format, "display.width", 250, "display.max_colwidth", 60):
        if args.runs:
            print(table[[c for c in ["seed", *SHOWN] if c in table.columns]].to_string(index=False))
            print()
        print("mean ± half-width of the 95% interval over repeats:")
        print(format_intervals(intervals).to_string(index=False))
    print_failures(failures)
    if len(failures):
        failures.assign(overrides=failures["overrides"].map(" ".join)).to_csv(out.with_name(out.name + "_failed.csv"), index=False)
    if args.paired:
        from experiments.paired import paired_option, report_paired

        baseline, candidate = paired_option(args.paired)
        report_paired(table, baseline, candidate, out.parent / "paired")
    print(f"-> {out.with_suffix('.csv')}, {intervals_out.with_suffix('.csv')} and .parquet")
    print(f"{len(table)} runs in {len(intervals)} configurations, {len(failures)} failed")
    return table


def _to_parquet(table: pd.DataFrame, path: Path) -> None:
    # a parameter swept over values of several types (20 and 'auto') is saved as text
    table = table.copy()
    for column in table.columns:
        if table[column].dtype == object and table[column].dropna().map(type).nunique() > 1:
            table[column] = table[column].map(lambda v: v if v is None or (isinstance(v, float) and np.isnan(v)) else str(v))
    table.to_parquet(path, index=False)


if __name__ == "__main__":
    main()
