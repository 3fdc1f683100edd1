"""Paired comparisons: two strategies run on the same seeds, the per-seed difference and its 95% interval.

Used by ``python -m experiments.compare --paired DIR [DIR2] [--baseline k=v] [--candidate k=v]``
and ``python -m experiments.collect DIR --paired KEY=BASE,CAND``.

The baseline and the candidate are the runs matching their selectors (``k=v``
overrides; with two folders and no selectors, the first folder against the
second). The treatment is what the selectors name, plus any configuration
column constant on each side and different between them; runs are paired by
every other configuration column (each distinct set of them is one
*context*, e.g. one load) and by seed. Per context and metric: baseline
mean, candidate mean, the mean of candidate - baseline with its interval
(``experiments.stats.paired_difference``) and whether it excludes zero.
Seeds with no partner are reported, never silently dropped.
"""

from __future__ import annotations

import math
import textwrap
from collections.abc import Iterable, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from experiments.collect import config_columns, config_text, keyed, metric_columns, parse_overrides
from experiments.stats import paired_difference

__all__ = ["paired_comparison", "paired_option", "report_paired", "select", "SHOWN_METRICS", "PairedResult"]

#: metrics printed and drawn by default (every numeric metric is saved)
SHOWN_METRICS = ["latency_p50_s", "latency_p95_s", "latency_p99_s", "latency_mean_s", "slo_attainment", "throughput_rps",
                 "cost_per_1k", "mean_batch_size", "dropped", "cold_starts", "replans"]  # fmt: skip


class PairedResult(tuple):
    """``(comparison, unpaired)``: the per context and metric table, and the runs with no partner."""

    @property
    def comparison(self) -> pd.DataFrame:
        return self[0]

    @property
    def unpaired(self) -> pd.DataFrame:
        return self[1]


def paired_option(text: str) -> tuple[dict, dict]:
    """``KEY=BASE,CAND`` -> ``({KEY: BASE}, {KEY: CAND})``."""
    key, _, values = text.partition("=")
    parts = values.split(",")
    if not key or len(parts) != 2 or not all(parts):
        raise SystemExit(f"--paired {text!r}: expected KEY=BASELINE,CANDIDATE (e.g. policy/batching=none,timeout)")
    return parse_overrides([f"{key}={parts[0]}"]), parse_overrides([f"{key}={parts[1]}"])


def _column(table: pd.DataFrame, key: str) -> str:
    for column in (f"param.{key}", key):
        if column in table.columns:
            return column
    raise SystemExit(f"no run sets {key!r}; configuration columns: {', '.join(c.removeprefix('param.') for c in config_columns(table))}")


def select(table: pd.DataFrame, selectors: dict) -> pd.DataFrame:
    """The rows of ``table`` whose configuration matches every ``key: value`` of ``selectors``."""
    mask = pd.Series(True, index=table.index)
    for key, value in selectors.items():
        column = _column(table, key)
        mask &= table[column].map(lambda v, want=value: _same(v, want))
    return table[mask]


def _same(value, wanted) -> bool:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return False
    if isinstance(value, (int, float)) and isinstance(wanted, (int, float)) and not isinstance(value, bool):
        return float(value) == float(wanted)
    return str(value) == str(wanted)


def _infer_sides(table: pd.DataFrame) -> tuple[dict, dict]:
    # the one configuration column with exactly two values is the treatment
    two = [c for c in config_columns(table) if keyed(table, [c])[c].nunique() == 2]
    if len(two) != 1:
        options = ", ".join(f"{c.removeprefix('param.')} ({', '.join(map(str, keyed(table, [c])[c].unique()))})" for c in config_columns(table)
                            if keyed(table, [c])[c].nunique() > 1) or "none"  # fmt: skip
        raise SystemExit(f"name the baseline and the candidate (--baseline k=v --candidate k=v); columns that vary: {options}")
    column = two[0]
    values = sorted(keyed(table, [column])[column].unique(), key=str)
    key = column.removeprefix("param.")
    return {key: values[0]}, {key: values[1]}


def paired_comparison(baseline: pd.DataFrame, candidate: pd.DataFrame, selectors: Iterable[str] = (),
                      metrics: Sequence[str] | None = None) -> PairedResult:  # fmt: skip
    """Pair ``baseline`` and ``candidate`` runs (tables from ``collect``) by seed and context; the per-metric differences.

    ``selectors``: the keys that tell the two sides apart (left out of the pairing).
    """
    columns = sorted(set(config_columns(baseline)) | set(config_columns(candidate)), key=lambda c: (not c.startswith("param."), c))
    baseline, candidate = baseline.reindex(columns=baseline.columns.union(columns, sort=False)), candidate.reindex(
        columns=candidate.columns.union(columns, sort=False))  # fmt: skip
    baseline, candidate = keyed(baseline, columns), keyed(candidate, columns)
    treatment = {_column(baseline, k) if any(c in baseline for c in (f"param.{k}", k)) else f"param.{k}" for k in selectors}
    for column in columns:  # constant on each side, different between them: part of the treatment
        b, c = baseline[column].astype(str).unique(), candidate[column].astype(str).unique()
        if len(b) == 1 and len(c) == 1 and b[0] != c[0]:
            treatment.add(column)
    context = [c for c in columns if c not in treatment]
    if metrics is None:
        metrics = [m for m in metric_columns(baseline) if m in candidate.columns]
    on = [*context, "seed"]
    baseline, candidate = keyed(baseline, ["seed"]), keyed(candidate, ["seed"])
    for side, frame in (("baseline", baseline), ("candidate", candidate)):
        repeated = frame[frame.duplicated(on, keep=False)]
        if len(repeated):
            raise SystemExit(f"{side}: {len(repeated)} runs share a configuration and seed; narrow the selection, e.g. "
                             f"{repeated['run_dir'].iloc[0]} and {repeated['run_dir'].iloc[1]}")  # fmt: skip
    baseline["seed"], candidate["seed"] = baseline["seed"].astype(str), candidate["seed"].astype(str)
    for column in context:  # swept (numbers) on one side, unset (text) on the other: compare them as text
        if baseline[column].dtype != candidate[column].dtype:
            baseline[column], candidate[column] = baseline[column].astype(str), candidate[column].astype(str)
    merged = baseline.merge(candidate, on=on, how="outer", suffixes=(".baseline", ".candidate"), indicator=True)
    unpaired = [{"side": "baseline" if row["_merge"] == "left_only" else "candidate",
                 "context": config_text({c: row[c] for c in context if _varies(merged, c)}),
                 "seed": row["seed"], "run_dir": row["run_dir.baseline" if row["_merge"] == "left_only" else "run_dir.candidate"]}
                for _, row in merged[merged["_merge"] != "both"].iterrows()]  # fmt: skip
    pairs = merged[merged["_merge"] == "both"]
    rows = []
    shown_context = [c for c in context if _varies(pairs, c)]
    for values, group in pairs.groupby(context, dropna=False, sort=False) if context else [((), pairs)]:
        values = values if isinstance(values, tuple) else (values,)
        label = config_text({c: v for c, v in zip(context, values) if c in shown_context}) or "all"
        for metric in metrics:
            a = group[f"{metric}.baseline"].to_numpy(dtype=float)
            b = group[f"{metric}.candidate"].to_numpy(dtype=float)
            difference = paired_difference(a, b)
            base_mean = float(np.nanmean(a)) if np.isfinite(a).any() else math.nan
            rows.append({"context": label, "metric": metric, "baseline_mean": base_mean,
                         "candidate_mean": float(np.nanmean(b)) if np.isfinite(b).any() else math.nan,
                         "difference": difference.mean, "low": difference.low, "high": difference.high, "n": difference.n,
                         "relative": difference.mean / abs(base_mean) if base_mean and math.isfinite(base_mean) else math.nan,
                         "excludes_zero": difference.excludes_zero, "seeds": ",".join(sorted(group["seed"], key=_num))})  # fmt: skip
    comparison = pd.DataFrame(rows, columns=["context", "metric", "baseline_mean", "candidate_mean", "difference", "low", "high",
                                             "n", "relative", "excludes_zero", "seeds"])  # fmt: skip
    comparison.attrs["baseline"] = config_text({c: baseline[c].iloc[0] for c in sorted(treatment) if c in baseline and len(baseline)})
    comparison.attrs["candidate"] = config_text({c: candidate[c].iloc[0] for c in sorted(treatment) if c in candidate and len(candidate)})
    return PairedResult((comparison, pd.DataFrame(unpaired, columns=["side", "context", "seed", "run_dir"])))


def _varies(frame: pd.DataFrame, column: str) -> bool:
    return frame[column].astype(str).nunique() > 1


def _num(text: str):
    try:
        return (0, float(text), text)
    except ValueError:
        return (1, 0.0, text)


def _fmt(value: float) -> str:
    return "-" if not math.isfinite(value) else f"{value:.4g}"


def format_comparison(comparison: pd.DataFrame, metrics: Sequence[str] = SHOWN_METRICS) -> pd.DataFrame:
    shown = comparison[comparison["metric"].isin(metrics)]
    return pd.DataFrame({
        "context": shown["context"], "metric": shown["metric"],
        "baseline": shown["baseline_mean"].map(_fmt), "candidate": shown["candidate_mean"].map(_fmt),
        "difference [95% interval]": [f"{_fmt(d)} [{_fmt(lo)}, {_fmt(hi)}]" for d, lo, hi in zip(shown["difference"], shown["low"], shown["high"])],
        "relative": shown["relative"].map(lambda r: "-" if not math.isfinite(r) else f"{100 * r:+.1f}%"),
        "n": shown["n"], "excludes 0": shown["excludes_zero"].map({True: "yes", False: "no"}),
    })  # fmt: skip


def plot_comparison(comparison: pd.DataFrame, path: Path, metrics: Sequence[str] = SHOWN_METRICS, setup: str = "") -> list[Path]:
    """A forest plot: per metric the mean difference relative to the baseline mean, with its 95% interval; ``setup``
    (what the runs share: ``experiments.plot.caption``) under the title."""
    shown = comparison[comparison["metric"].isin(metrics) & np.isfinite(comparison["relative"].astype(float))]
    order = [m for m in metrics if m in set(shown["metric"])]
    if not order:
        return []
    contexts = list(dict.fromkeys(shown["context"]))
    colours = _colours(len(contexts))
    markers = ["o", "s", "^", "D", "v", "P", "X", "*"]
    fig, ax = plt.subplots(figsize=(7.5, 0.5 + 0.45 * len(order) * max(1, min(len(contexts), 4))))
    step = 0.8 / max(len(contexts), 1)
    for index, context in enumerate(contexts):
        rows = shown[shown["context"] == context].set_index("metric").reindex(order)
        y = np.arange(len(order)) + (index - (len(contexts) - 1) / 2) * step
        scale = 100 / rows["baseline_mean"].abs()
        mean = rows["relative"] * 100
        low, high = rows["low"] * scale, rows["high"] * scale
        err = np.vstack([(mean - low).fillna(0).clip(lower=0), (high - mean).fillna(0).clip(lower=0)])
        ax.errorbar(mean, y, xerr=err, fmt=markers[index % len(markers)], color=colours[index], capsize=3, label=context)
    ax.axvline(0, color="black", linewidth=0.8)
    ax.set_yticks(np.arange(len(order)), order)
    ax.invert_yaxis()
    ax.set_xlabel("candidate - baseline (% of the baseline mean; 95% interval over paired seeds)")
    title = f"{comparison.attrs.get('candidate', 'candidate')} against {comparison.attrs.get('baseline', 'baseline')}"
    ax.set_title("\n".join([title[:90], *textwrap.wrap(setup, 80)]), fontsize=9 if setup else 10, loc="left" if setup else "center")
    ax.grid(True, axis="x", alpha=0.3)
    if len(contexts) > 1:
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), title="paired within", title_fontsize=7)
    path.parent.mkdir(parents=True, exist_ok=True)
    written = [path.with_suffix(".png"), path.with_suffix(".svg")]
    for file in written:
        fig.savefig(file, dpi=150, bbox_inches="tight")
    plt.close(fig)
    return written


def _colours(count: int) -> list:
    if count <= 10:
        return list(plt.get_cmap("tab10").colors[:count])
    if count <= 20:
        return list(plt.get_cmap("tab20").colors[:count])
    return [plt.get_cmap("turbo")(x) for x in np.linspace(0.05, 0.95, count)]


def report_paired(table: pd.DataFrame, baseline: dict | None, candidate: dict | None, out: Path,
                  candidate_table: pd.DataFrame | None = None) -> PairedResult:  # fmt: skip
    """Select, pair, print and save (``out/paired.csv``, ``paired_unpaired.csv``, ``paired.png``)."""
    if candidate_table is None and not (baseline or candidate):
        baseline, candidate = _infer_sides(table)
    elif candidate_table is None and not (baseline and candidate):
        raise SystemExit("give both --baseline and --candidate (or neither, when one override takes two values)")
    baseline, candidate = baseline or {}, candidate or {}
    base_rows = select(table, baseline)
    cand_rows = select(candidate_table if candidate_table is not None else table, candidate)
    for side, rows, selectors in (("baseline", base_rows, baseline), ("candidate", cand_rows, candidate)):
        if rows.empty:
            raise SystemExit(f"no run matches the {side} ({' '.join(f'{k}={v}' for k, v in selectors.items())})")
    result = paired_comparison(base_rows, cand_rows, selectors=[*baseline, *candidate])
    comparison, unpaired = result
    out.mkdir(parents=True, exist_ok=True)
    comparison.to_csv(out / "paired.csv", index=False)
    print(f"\npaired: candidate ({comparison.attrs['candidate'] or 'second'}) - baseline ({comparison.attrs['baseline'] or 'first'}), "
          "mean over seeds and its 95% interval:")  # fmt: skip
    with pd.option_context("display.width", 250, "display.max_colwidth", 60):
        print(format_comparison(comparison).to_string(index=False))
    if len(unpaired):
        unpaired.to_csv(out / "paired_unpaired.csv", index=False)
        print(f"\n{len(unpaired)} runs with no partner on the same seed (left out of the differences):")
        print(unpaired.to_string(index=False))
    from experiments.plot import caption

    figures = plot_comparison(comparison, out / "paired", setup=caption(pd.concat([base_rows, cand_rows], ignore_index=True)))
    print(f"-> {out / 'paired.csv'}" + (f", {figures[0]}" if figures else ""))
    return result
