"""Plots over results: ``python -m experiments.plot DIR... [--out DIR]``.

Draws, as PNG and SVG:

- ``latency_cdf``: latency CDF of every configuration (its repeats' requests pooled);
- ``load``: p50/p95/p99 latency, SLO attainment and cost per 1,000 requests against arrival rate, per policy;
- ``slo_cost``: SLO attainment and cost against SLO, and cost against SLO attainment with each policy's Pareto front;
- ``timeline_<run>``: arrival rate, link bandwidth (where the run has a link), batch sizes per executor and
  re-plan marks over time.

Every figure is headed by what it shows and what its runs share (``caption``:
backend, study, set-up, requests per run, SLO, fixed overrides, seeds); SLO
lines mark the latency axes; simulated and live series differ in line style
(and colour) and say which they are in the legend.

Points are means over a configuration's repeats (seeds); bands and error
bars are their 95% intervals (``experiments.collect.aggregate``). Each
series has one colour (and, past ten series, a line style and marker per
other dimension), a label unique in its legend, and the legend sits beside
the data. Figures that need a spread (several loads, several SLOs) are
skipped when the runs have none.
"""

from __future__ import annotations

import argparse
import json
import math
import textwrap
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; no display needed
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import yaml

from experiments.collect import aggregate, collect, config_columns, config_text, keyed

__all__ = ["main", "plot_all", "series_styles"]

#: (line style, marker) per value of the non-colour dimensions
STYLES = [("-", "o"), ("--", "s"), (":", "^"), ("-.", "D"), ((0, (5, 1)), "v"), ((0, (3, 1, 1, 1, 1, 1)), "P"),
          ((0, (1, 3)), "X"), ((0, (8, 2, 2, 2)), "*")]  # fmt: skip
#: preferred dimensions for colour (policies first)
_COLOUR_FIRST = ("strategy", "planner", "batching", "placement", "policy", "backend", "name")


def _minor_label(value: float, _position) -> str:
    """Label 2 and 5 of each decade on a log axis, so that a narrow range still reads."""
    return f"{value:g}" if value > 0 and round(value / 10 ** math.floor(math.log10(value))) in (2, 5) else ""


def plain_log_ticks(axis) -> None:
    """Plain numbers on a log axis (20, 50, 100), not powers of ten."""
    from matplotlib.ticker import FuncFormatter

    axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    axis.set_minor_formatter(FuncFormatter(_minor_label))



def _save(fig, out: Path, name: str) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / f"{name}.png", out / f"{name}.svg"]
    fig.tight_layout()
    for path in paths:
        fig.savefig(path, dpi=150, bbox_inches="tight")
    plt.close(fig)
    return paths


def _palette(count: int) -> list:
    if count <= 10:
        return list(plt.get_cmap("tab10").colors[:count])
    if count <= 20:
        return list(plt.get_cmap("tab20").colors[:count])
    return [plt.get_cmap("turbo")(x) for x in np.linspace(0.03, 0.97, count)]


def _varying(intervals: pd.DataFrame, exclude=()) -> list[str]:
    return [c for c in config_columns(intervals) if c not in exclude and intervals[c].astype(str).nunique() > 1]


def series_styles(series: pd.DataFrame) -> list[dict]:
    """Per row of ``series`` (one column per dimension, one row per series): colour, linestyle, marker and label.

    Up to ten series: ten distinct colours. More: one colour per value of the policy-like dimension and a line
    style and marker per combination of the others, where that fits; else a colormap with a colour per series.
    """
    dims = list(series.columns)
    ranked = sorted(dims, key=lambda d: next((i for i, word in enumerate(_COLOUR_FIRST) if word in d), len(_COLOUR_FIRST)))
    # the policy-like dimension first in every label
    labels = [config_text({d: row[d] for d in ranked}) for _, row in series.iterrows()] if dims else ["all"] * len(series)
    count = len(series)
    if count <= 10 or len(dims) < 2:
        # a marker per series too: series that coincide (two policies both at attainment 1) stay visible
        colours = _palette(count)
        return [{"color": colours[i], "linestyle": "-", "marker": STYLES[i % len(STYLES)][1], "label": labels[i]} for i in range(count)]
    colour_dim = ranked[0]
    others = [d for d in dims if d != colour_dim]
    colour_values = list(dict.fromkeys(series[colour_dim].astype(str)))
    other_values = list(dict.fromkeys(series[others].astype(str).apply(tuple, axis=1)))
    if len(colour_values) <= 10 and len(other_values) <= len(STYLES):
        colours = _palette(len(colour_values))
        styles = []
        for index, (_, row) in enumerate(series.iterrows()):
            line, marker = STYLES[other_values.index(tuple(row[others].astype(str)))]
            styles.append({"color": colours[colour_values.index(str(row[colour_dim]))], "linestyle": line, "marker": marker,
                           "label": labels[index]})  # fmt: skip
        return styles
    colours = _palette(count)
    return [{"color": colours[i], "linestyle": STYLES[i % 4][0], "marker": STYLES[i % len(STYLES)][1], "label": labels[i]}
            for i in range(count)]  # fmt: skip


def _legend_beside(fig, ax, handles=None, labels=None, title=None) -> None:
    """The legend in its own space right of ``ax`` (never over the data)."""
    if handles is None:
        handles, labels = ax.get_legend_handles_labels()
    if not handles:
        return
    columns = 1 if len(labels) <= 16 else 2
    ax.legend(handles, labels, fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0, ncol=columns,
              title=title, title_fontsize=7, frameon=False)  # fmt: skip


def _run_groups(table: pd.DataFrame) -> list[list[str]]:
    """The run folders of each configuration, in ``aggregate``'s order."""
    keys = config_columns(table)
    return [list(group["run_dir"]) for _, group in keyed(table, keys).groupby(keys, dropna=False, sort=False)]


def run_config_of(run_dir: Path | str) -> dict:
    """A run's composed and resolved config (``config.yaml``), or {} where there is none."""
    path = Path(run_dir) / "config.yaml"
    return (yaml.safe_load(path.read_text()) or {}) if path.exists() else {}


def setup_text(config: dict) -> str:
    """The executors, links and arrivals of a run config in a few words: what a figure's runs ran on."""
    cluster, workload = config.get("cluster") or {}, config.get("workload") or {}
    executors = []
    for name, executor in (cluster.get("executors") or {}).items():
        kind = executor.get("kind", "?")
        size = (f", {executor['slots']} slot{'s' if executor['slots'] != 1 else ''}" if executor.get("slots") else "") + (
            f", up to {executor['max_instances']} instances" if executor.get("max_instances") else "")  # fmt: skip
        executors.append(f"{name} ({kind}{size})" if name != kind or size else name)
    links = [f"uplink to {name}" + (" (bandwidth trace)" if link.get("bandwidth_trace") else "")
             for name, link in (cluster.get("links") or {}).items()]  # fmt: skip
    sources = workload.get("sources") or {}
    kinds = sorted({str((source.get("arrivals") or {}).get("kind", "?")) for source in sources.values()})
    parts = []
    if executors:
        parts.append(", ".join(executors))
    parts += links
    if kinds:
        parts.append(f"{len(sources)} source{'s' if len(sources) != 1 else ''}, {'/'.join(kinds)} arrivals")
    return "; ".join(parts)


def _constant(table: pd.DataFrame, column: str):
    values = table[column].dropna().unique() if column in table else []
    return values[0] if len(values) == 1 else None


def caption(table: pd.DataFrame, intervals: pd.DataFrame | None = None) -> str:
    """What every run of ``table`` shares: backend, study, set-up, requests per run, SLO, fixed overrides, repeats."""
    backends = sorted(table["backend"].dropna().astype(str).unique()) if "backend" in table else []
    words = {"sim": "simulated", "live": "live"}
    parts = [" and ".join(words.get(b, b) for b in sorted(backends, key=lambda b: b != "sim"))]
    name = _constant(table, "name")
    if name not in (None, "run"):
        parts.append(str(name))
    setup = setup_text(run_config_of(table["run_dir"].iloc[0])) if "run_dir" in table and len(table) else ""
    if setup:
        parts.append(setup)
    count, slo_s = _constant(table, "count"), _constant(table, "slo_s")
    if count is not None:
        parts.append(f"{int(count):,} requests per run")
    if slo_s is not None:
        parts.append(f"SLO {1000 * float(slo_s):g} ms")
    shown = ("param.seed", "param.repeats", "param.backend", "param.name", "param.slo_s", "param.num_requests")
    fixed = [c for c in table.columns if c.startswith("param.") and c not in shown and table[c].astype(str).nunique() == 1]
    if fixed:
        parts.append(config_text({c: table[c].iloc[0] for c in fixed}))
    n = (intervals["n"] if intervals is not None else pd.Series([1])).astype(int)
    if n.max() > 1:
        parts.append(f"{n.min()} seeds per configuration" if n.min() == n.max() else f"{n.min()}-{n.max()} seeds per configuration")
    return ", ".join(p for p in parts if p)


def _headline(fig, what: str, text: str, width: int = 150) -> None:
    """The figure's title: what it shows, then the configuration its runs share (wrapped)."""
    lines = textwrap.wrap(text, width=width) if text else []
    fig.suptitle("\n".join([what, *lines]), fontsize=9, x=0.01, ha="left")


def _slo_lines(ax, table: pd.DataFrame, *, vertical: bool, scale: float = 1000.0) -> None:
    """Dashed lines at the runs' SLO(s), labelled (latency axes in ms)."""
    slos = sorted(table["slo_s"].dropna().astype(float).unique()) if "slo_s" in table else []
    for slo_s in slos:
        if not math.isfinite(slo_s):
            continue
        value = slo_s * scale
        if vertical:
            ax.axvline(value, color="black", linestyle="--", linewidth=0.9)
            ax.text(value, 0.99, f"SLO {slo_s * 1000:g} ms ", rotation=90, fontsize=7, va="top", ha="right",
                    transform=ax.get_xaxis_transform())  # fmt: skip
        else:
            ax.axhline(value, color="black", linestyle="--", linewidth=0.9)
            ax.text(0.42, value, f"SLO {slo_s * 1000:g} ms", transform=ax.get_yaxis_transform(), fontsize=7, va="bottom", ha="center")


def _cdf_styles(intervals: pd.DataFrame) -> list[dict]:
    """Per configuration: a colour per configuration apart from the backend, a line style per backend (sim solid, live
    dashed), and a label that names both."""
    dims = _varying(intervals)
    backend = "param.backend" if "param.backend" in dims else ("backend" if "backend" in dims else None)
    if "param.backend" in dims and "backend" in dims:
        dims.remove("backend")
    others = [d for d in dims if d != backend]
    styles = series_styles(intervals[others].drop_duplicates()) if others else [{"color": "tab:blue", "label": ""}]
    by_config = {tuple(row.astype(str)): style for (_, row), style in zip(intervals[others].drop_duplicates().iterrows(), styles)}
    result = []
    for _, row in intervals.iterrows():
        style = dict(by_config.get(tuple(row[others].astype(str)), styles[0]))
        if backend is not None:
            which = str(row[backend])
            style["linestyle"] = "-" if which == "sim" else "--"
            if not others:  # nothing but the backend tells the curves apart: a colour each too
                style["color"] = "tab:blue" if which == "sim" else "tab:orange"
            style["label"] = f"{which}: {style['label']}" if style["label"] else which
        style["label"] = style["label"] or "all runs"
        result.append(style)
    return result


def latency_cdf(table: pd.DataFrame, out: Path, intervals: pd.DataFrame | None = None) -> list[Path]:
    """One CDF per configuration, its repeats' requests pooled; the SLO marked."""
    intervals = aggregate(table) if intervals is None else intervals
    styles = _cdf_styles(intervals)
    fig, ax = plt.subplots(figsize=(9, 4.8))
    for style, runs, n in zip(styles, _run_groups(table), intervals["n"]):
        frames = [pd.read_parquet(Path(r) / "requests.parquet", columns=["latency_s", "dropped"]) for r in runs]
        label = style["label"] + (f" (n={n})" if n > 1 and intervals["n"].nunique() > 1 else "")
        for requests, width, alpha, name in [(pd.concat(frames), 1.3, 1.0, label)] + [(f, 0.6, 0.35, None) for f in frames if len(frames) > 1]:
            latency = np.sort(requests.loc[~requests["dropped"].astype(bool), "latency_s"].to_numpy())
            if len(latency):  # dropped requests never complete: the CDF tops out at the completed fraction
                ax.plot(latency * 1000, np.arange(1, len(latency) + 1) / len(requests), color=style["color"],
                        linestyle=style.get("linestyle", "-"), linewidth=width, alpha=alpha, label=name)  # fmt: skip
    _slo_lines(ax, table, vertical=True)
    ax.set_xscale("log")
    plain_log_ticks(ax.xaxis)
    ax.set_xlabel("latency (ms, log scale)")
    ax.set_ylabel("fraction of requests completed within")
    repeated = int(intervals["n"].max()) > 1
    pooled = f"n={int(intervals['n'].iloc[0])}" if intervals["n"].nunique() == 1 else "n"
    _headline(fig, "Latency CDF per configuration" + (f" (requests of its {pooled} repeats pooled; thin: each repeat)" if repeated else "")
              + "; a curve ends below 1 by the share dropped", caption(table, intervals), width=110)  # fmt: skip
    ax.set_ylim(0, 1.02)
    ax.grid(True, which="both", alpha=0.3)
    _legend_beside(fig, ax)
    return _save(fig, out, "latency_cdf")


def _line_with_band(ax, x, frame: pd.DataFrame, metric: str, style: dict, scale: float = 1.0, label=None) -> None:
    mean = frame[f"{metric}.mean"].to_numpy(dtype=float) * scale
    low = frame[f"{metric}.low"].to_numpy(dtype=float) * scale
    high = frame[f"{metric}.high"].to_numpy(dtype=float) * scale
    ax.plot(x, mean, color=style["color"], linestyle=style["linestyle"], marker=style["marker"], markersize=4, linewidth=1.3, label=label)
    if np.isfinite(low).any():
        ax.fill_between(x, low, high, color=style["color"], alpha=0.18, linewidth=0)
        ax.errorbar(x, mean, yerr=np.vstack([np.nan_to_num(mean - low), np.nan_to_num(high - mean)]), fmt="none",
                    ecolor=style["color"], elinewidth=0.8, capsize=2)  # fmt: skip


def _series(intervals: pd.DataFrame, axis: str):
    """(style, rows sorted by ``axis``) per series: configurations that differ only in ``axis``."""
    dims = _varying(intervals, exclude={f"param.{axis}", axis})
    keyed_rows = keyed(intervals, dims)
    groups = list(keyed_rows.groupby(dims, dropna=False, sort=False)) if dims else [((), keyed_rows)]
    heads = pd.DataFrame([group[dims].iloc[0] for _, group in groups], columns=dims)
    return [(style, group.sort_values(axis)) for style, (_, group) in zip(series_styles(heads), groups)]


def _interval_note(intervals: pd.DataFrame) -> str:
    n = intervals["n"]
    if n.max() <= 1:
        return "one run per point"
    spread = f"n={n.min()}" if n.min() == n.max() else f"n={n.min()}-{n.max()}"
    return f"mean over repeats ({spread}); band: 95% interval"


def against_load(table: pd.DataFrame, out: Path, intervals: pd.DataFrame | None = None) -> list[Path]:
    intervals = aggregate(table) if intervals is None else intervals
    if intervals["rate_rps"].nunique() < 2:
        return []
    panels = [("latency_p50_s", "p50 latency (ms, log scale)", 1000.0, True), ("latency_p95_s", "p95 latency (ms, log scale)", 1000.0, True),
              ("latency_p99_s", "p99 latency (ms, log scale)", 1000.0, True), ("slo_attainment", "SLO attainment (fraction of requests)", 1.0, False),
              ("cost_per_1k", "cost per 1,000 requests (USD)", 1.0, False)]  # fmt: skip
    fig, axes = plt.subplots(2, 3, figsize=(13, 7.5))
    flat = axes.ravel()
    for style, rows in _series(intervals, "rate_rps"):
        for ax, (metric, _, scale, _) in zip(flat, panels):
            if f"{metric}.mean" in rows:
                _line_with_band(ax, rows["rate_rps"].to_numpy(dtype=float), rows, metric, style, scale, label=style["label"])
    slos = intervals["slo_s"].dropna().unique() if "slo_s" in intervals else []
    for ax, (metric, ylabel, scale, log) in zip(flat, panels):
        if metric.startswith("latency") and len(slos) == 1:  # one SLO for every run: draw it
            ax.axhline(float(slos[0]) * scale, color="black", linestyle="--", linewidth=0.9)
            ax.text(0.42, float(slos[0]) * scale, f"SLO {float(slos[0]) * 1000:g} ms", transform=ax.get_yaxis_transform(),
                    fontsize=7, va="bottom", ha="center")  # fmt: skip
        if log:
            ax.set_yscale("log")
            plain_log_ticks(ax.yaxis)
        ax.set_xlabel("arrival rate (req/s)")
        ax.set_ylabel(ylabel)
        ax.set_title(ylabel.split(" (")[0] + " against load", fontsize=10)
        ax.grid(True, which="both" if log else "major", alpha=0.3)
    _note_zero_cost(flat[4], intervals)
    legend_ax = flat[-1]
    legend_ax.axis("off")
    handles, labels = flat[0].get_legend_handles_labels()
    legend_ax.legend(handles, labels, loc="center left", fontsize=7, frameon=False, ncol=1 if len(labels) <= 14 else 2,
                     title=_interval_note(intervals), title_fontsize=7)  # fmt: skip
    _headline(fig, "Latency, SLO attainment and cost against the arrival rate", caption(table, intervals), width=170)
    return _save(fig, out, "load")


def _note_zero_cost(ax, intervals: pd.DataFrame) -> None:
    """Say so where every run cost nothing (edge devices only, or no price), instead of a bare line at 0."""
    if "cost_per_1k.mean" in intervals and (intervals["cost_per_1k.mean"].fillna(0) == 0).all():
        ax.text(0.5, 0.5, "every run cost 0 USD\n(no priced executor was used)", transform=ax.transAxes, ha="center",
                va="center", fontsize=8, color="dimgrey")  # fmt: skip


def _pareto(points: pd.DataFrame) -> pd.DataFrame:
    """Configurations not beaten by another on both mean SLO attainment (higher) and mean cost (lower)."""
    ordered = points.sort_values(["cost_per_1k.mean", "slo_attainment.mean"], ascending=[True, False])
    front, best = [], -np.inf
    for _, row in ordered.iterrows():
        if row["slo_attainment.mean"] > best:
            front.append(row)
            best = row["slo_attainment.mean"]
    return pd.DataFrame(front)


def slo_cost(table: pd.DataFrame, out: Path, intervals: pd.DataFrame | None = None) -> list[Path]:
    intervals = aggregate(table) if intervals is None else intervals
    if intervals["slo_s"].nunique() < 2:
        return []
    fig, axes = plt.subplots(2, 2, figsize=(11, 7.5))
    attain, by_slo, front, legend_ax = axes.ravel()
    fronts = 0
    for style, rows in _series(intervals, "slo_s"):
        slo_ms = rows["slo_s"].to_numpy(dtype=float) * 1000
        _line_with_band(attain, slo_ms, rows, "slo_attainment", style, label=style["label"])
        _line_with_band(by_slo, slo_ms, rows, "cost_per_1k", style)
        x, y = rows["slo_attainment.mean"].to_numpy(dtype=float), rows["cost_per_1k.mean"].to_numpy(dtype=float)
        xerr = np.vstack([np.nan_to_num(x - rows["slo_attainment.low"]), np.nan_to_num(rows["slo_attainment.high"] - x)])
        yerr = np.vstack([np.nan_to_num(y - rows["cost_per_1k.low"]), np.nan_to_num(rows["cost_per_1k.high"] - y)])
        front.errorbar(x, y, xerr=xerr, yerr=yerr, fmt=style["marker"], color=style["color"], markersize=4, elinewidth=0.8, capsize=2,
                       alpha=0.8)  # fmt: skip
        pareto = _pareto(rows)
        if len(pareto) < 2:  # a front of one point is the point itself
            continue
        fronts += 1
        front.step(pareto["slo_attainment.mean"], pareto["cost_per_1k.mean"], where="post", color=style["color"],
                   linestyle=style["linestyle"], linewidth=1.2)  # fmt: skip
    attain.set_xlabel("SLO (ms)")
    attain.set_ylabel("SLO attainment (fraction of requests)")
    attain.set_title("SLO attainment against SLO", fontsize=10)
    by_slo.set_xlabel("SLO (ms)")
    by_slo.set_ylabel("cost per 1,000 requests (USD)")
    by_slo.set_title("Cost against SLO", fontsize=10)
    front.set_xlabel("SLO attainment (fraction of requests)")
    front.set_ylabel("cost per 1,000 requests (USD)")
    front.set_title("Cost against SLO attainment, one point per SLO"
                    + ("\n(line: a policy's Pareto front, where it has two or more points)" if fronts else ""), fontsize=10)  # fmt: skip
    for ax in (attain, by_slo, front):
        ax.grid(True, alpha=0.3)
    _note_zero_cost(by_slo, intervals)
    legend_ax.axis("off")
    handles, labels = attain.get_legend_handles_labels()
    legend_ax.legend(handles, labels, loc="center left", fontsize=7, frameon=False, ncol=1 if len(labels) <= 14 else 2,
                     title=_interval_note(intervals).replace("band:", "bands and error bars:"), title_fontsize=7)  # fmt: skip
    _headline(fig, "SLO attainment and cost against the SLO", caption(table, intervals), width=140)
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


def _replan_marks(plans: pd.DataFrame, axes, legend_ax) -> None:
    """A vertical line per re-plan on every panel (red: changepoint-triggered), and their counts in a legend."""
    if not len(plans) or "at_s" not in plans:
        return
    changepoint = (plans["trigger"] == "changepoint").to_numpy() if "trigger" in plans else np.zeros(len(plans), bool)
    for at_s, is_changepoint in zip(plans["at_s"], changepoint):
        for ax in axes:
            ax.axvline(at_s, color="tab:red" if is_changepoint else "tab:purple", alpha=0.35, linewidth=0.8, linestyle=":")
    # a legend entry only for the kinds of re-plan this run has
    if (~changepoint).any():
        legend_ax.plot([], [], color="tab:purple", linestyle=":", label=f"re-plan, periodic or initial ({int((~changepoint).sum())})")
    if changepoint.any():
        legend_ax.plot([], [], color="tab:red", linestyle=":", label=f"re-plan, changepoint ({int(changepoint.sum())})")


def timeline(run_dir: Path, out: Path, name: str, description: str | None = None) -> list[Path]:
    """One run over time: arrivals, the uplink's bandwidth (where the run has a link), batch sizes, re-plans.

    ``description`` (its configuration and seed) heads the figure with the run's set-up."""
    requests = pd.read_parquet(run_dir / "requests.parquet", columns=["arrival_s"])
    batches = pd.read_parquet(run_dir / "batches.parquet")
    plans_path = run_dir / "plans.parquet"
    plans = pd.read_parquet(plans_path) if plans_path.exists() else pd.DataFrame()
    end_s = float(np.ceil(requests["arrival_s"].max() or 1.0))
    traces = _bandwidth_traces(run_dir)
    if traces:
        fig, (rate_ax, bw_ax, batch_ax) = plt.subplots(3, 1, figsize=(11, 8), sharex=True)
    else:  # no link: no bandwidth to show
        fig, (rate_ax, batch_ax) = plt.subplots(2, 1, figsize=(11, 5.8), sharex=True)
        bw_ax = None
    counts, edges = np.histogram(requests["arrival_s"], bins=np.arange(0, end_s + 1.0, 1.0))
    rate_ax.stairs(counts, edges, baseline=None, label="arrivals per second")
    rate_ax.set_ylabel("arrival rate (req/s)")
    rate_ax.set_ylim(bottom=0)
    for link, (samples, _) in traces.items():
        seconds = np.arange(0, int(end_s) + 1)
        bw_ax.step(seconds, samples[seconds % len(samples)], where="post", label=f"uplink to {link} (from the run's bandwidth trace)")
        bw_ax.set_ylabel("bandwidth (MB/s)")
        bw_ax.set_ylim(bottom=0)
        bw_ax.legend(fontsize=7, loc="best")
    for executor, group in batches.groupby("executor", observed=True):
        batch_ax.scatter(group["start_s"], group["size"], s=4, alpha=0.5, label=str(executor))
    batch_ax.set_ylabel("batch size (requests)")
    batch_ax.set_ylim(bottom=0, top=max(2, int(batches["size"].max()) + 1) if len(batches) else 2)
    batch_ax.set_xlabel("time since start (s)")
    if len(batches):
        batch_ax.legend(fontsize=7, markerscale=3, title="executor", title_fontsize=7, loc="upper right")
    panels = [ax for ax in (rate_ax, bw_ax, batch_ax) if ax is not None]
    _replan_marks(plans, panels, rate_ax)
    rate_ax.legend(fontsize=7, loc="lower left")
    for ax in panels:
        ax.grid(True, alpha=0.3)
    config = run_config_of(run_dir)
    what = "One run over time: arrivals, " + ("the uplink's bandwidth, " if traces else "") + "batch sizes and re-plans"
    setup = ", ".join(p for p in (description or f"{run_dir.parent.name}/{run_dir.name}", setup_text(config),
                                  "no uplink in this set-up" if not traces else "") if p)  # fmt: skip
    _headline(fig, what, setup, width=150)
    return _save(fig, out, f"timeline_{name}")


def _seed_text(seed) -> str:
    if seed is None or (isinstance(seed, float) and np.isnan(seed)):
        return ""
    return f"seed={int(seed) if isinstance(seed, float) and seed.is_integer() else seed}"


def plot_all(directories, out: Path, timelines: int = 4) -> list[Path]:
    """Every figure the runs under ``directories`` allow; returns the files written."""
    table = collect(directories)
    if table.empty:
        raise SystemExit("no runs (summary.json) to plot")
    intervals = aggregate(table)
    written = latency_cdf(table, out, intervals)
    written += against_load(table, out, intervals)
    written += slo_cost(table, out, intervals)
    for index, run in enumerate(table.head(timelines).itertuples()):
        label = ", ".join(part for part in str(run.label).split(", ") if not part.startswith("repeats="))
        backend = {"sim": "simulated", "live": "live"}.get(str(getattr(run, "backend", "")), "")
        slo = f"SLO {1000 * float(run.slo_s):g} ms" if "slo_s" in table and pd.notna(run.slo_s) else ""
        description = ", ".join(part for part in (backend, label, _seed_text(run.seed), slo) if part)
        written += timeline(Path(run.run_dir), out, f"{index}_{Path(run.run_dir).name}", description)
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
