"""Gather many runs into one tidy table: ``python -m experiments.collect DIR... [--out FILE]``.

One row per run folder (any folder holding a ``summary.json``, searched
recursively): the parameters its Hydra overrides set, then the summary.
Saved as CSV and Parquet next to ``--out``.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterable
from pathlib import Path

import pandas as pd
import yaml

__all__ = ["collect", "find_runs", "main"]

#: summary columns printed by default (everything is saved)
SHOWN = ["label", "rate_rps", "slo_s", "completed", "dropped", "latency_p50_s", "latency_p95_s", "latency_p99_s",
         "slo_attainment", "total_cost", "cost_per_1k", "mean_batch_size", "cold_starts", "replans"]  # fmt: skip


def find_runs(directories: Iterable[Path]) -> list[Path]:
    """Every folder under ``directories`` holding a ``summary.json``, sorted."""
    runs: set[Path] = set()
    for directory in directories:
        directory = Path(directory)
        if not directory.exists():
            raise FileNotFoundError(f"results folder {directory} does not exist")
        runs.update(p.parent for p in directory.rglob("summary.json"))
    # job folders in their numeric order (2 before 10)
    return sorted(runs, key=lambda p: (str(p.parent), int(p.name) if p.name.isdigit() else -1, p.name))


def _overrides(run: Path) -> dict:
    path = run / ".hydra" / "overrides.yaml"
    if not path.exists():
        return {}
    params = {}
    for item in yaml.safe_load(path.read_text()) or []:
        key, _, value = str(item).partition("=")
        key = key.lstrip("+~")
        if key.startswith("hydra") or key == "experiment":
            continue
        try:
            params[key] = yaml.safe_load(value)
        except yaml.YAMLError:
            params[key] = value
    return params


def _label(params: dict, summary: dict, axes: set[str]) -> str:
    parts = [f"{k.split('/')[-1]}={v}" for k, v in params.items() if k not in axes and k not in ("seed", "name")]
    return ", ".join(parts) if parts else str(summary.get("name", "run"))


def collect(directories: Iterable[Path]) -> pd.DataFrame:
    """The tidy table of every run under ``directories``."""
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
        row["label"] = _label(params, summary, axes={"rate_rps", "slo_s", "num_requests"})
        rows.append(row)
    table = pd.DataFrame(rows)
    if len(table):
        drop_columns = [c for c in table.columns if c.startswith("drops.")]
        table[drop_columns] = table[drop_columns].fillna(0).astype(int)
    return table


def main(argv=None) -> pd.DataFrame:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("directories", nargs="+", type=Path)
    parser.add_argument("--out", type=Path, default=None, help="table path without extension (default: <first DIR>/collected)")
    args = parser.parse_args(argv)
    table = collect(args.directories)
    if table.empty:
        raise SystemExit(f"no runs (summary.json) under {', '.join(map(str, args.directories))}")
    out = args.out or (args.directories[0] / "collected")
    out.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(out.with_suffix(".csv"), index=False)
    table.to_parquet(out.with_suffix(".parquet"), index=False)
    shown = [c for c in SHOWN if c in table.columns]
    with pd.option_context("display.float_format", "{:,.4g}".format, "display.width", 250, "display.max_colwidth", 60):
        print(table[shown].to_string(index=False))
    print(f"\n{len(table)} runs -> {out.with_suffix('.csv')} and .parquet")
    return table


if __name__ == "__main__":
    main()
