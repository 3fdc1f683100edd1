"""Repeats become intervals: collect aggregates per configuration and lists failures, paired comparisons, plots."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from experiments import compare, plot
from experiments.collect import NO_SUMMARY, aggregate, collect, find_failures, metric_columns
from experiments.paired import paired_comparison, select
from experiments.paths import REPO_ROOT

SEEDS = [0, 1, 2]


@pytest.fixture(scope="module")
def sweep(tmp_path_factory) -> Path:
    """Three seeds of no batching and timeout batching at 20 and 60 req/s, plus two failed jobs."""
    sweep_dir = tmp_path_factory.mktemp("repeats") / "sweep"
    done = subprocess.run([sys.executable, "-m", "experiments.run", "--multirun", "seed=0,1,2", "rate_rps=20,60",
                           "policy/batching=none,timeout", "num_requests=300", f"hydra.sweep.dir={sweep_dir}"],
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    # a job that failed at run time (error.json), and one killed before it wrote anything (.hydra only)
    overrides = ["seed=3", "rate_rps=60", "policy/batching=timeout", "num_requests=300"]
    for job, error in (("12", {"error": "worker exited with code 1", "type": "RuntimeError", "overrides": overrides}), ("13", None)):
        (sweep_dir / job / ".hydra").mkdir(parents=True)
        (sweep_dir / job / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
        if error:
            (sweep_dir / job / "error.json").write_text(json.dumps(error))
    return sweep_dir


def test_collect_lists_failed_jobs_and_saves_both_tables(sweep, tmp_path):
    out = tmp_path / "collected"
    done = subprocess.run([sys.executable, "-m", "experiments.collect", str(sweep), "--out", str(out)],
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    assert lines[-1] == "12 runs in 4 configurations, 2 failed"
    assert "RuntimeError: worker exited with code 1" in done.stdout and NO_SUMMARY in done.stdout
    assert "±" in done.stdout
    for name in ("collected.csv", "collected.parquet", "collected_intervals.csv", "collected_intervals.parquet"):
        assert (tmp_path / name).stat().st_size > 0
    runs = pd.read_parquet(tmp_path / "collected.parquet")
    assert sorted(runs["seed"].unique()) == SEEDS
    failures = find_failures([sweep])
    assert sorted(Path(p).name for p in failures["run_dir"]) == ["12", "13"]


def test_one_row_per_configuration_with_its_interval(sweep):
    table = collect([sweep])
    assert len(table) == 12 and set(table["seed"]) == set(SEEDS)
    intervals = aggregate(table, find_failures([sweep]))
    assert len(intervals) == 4
    assert (intervals["n"] == len(SEEDS)).all()
    assert set(intervals["seeds"]) == {"0,1,2"}
    # the two failed jobs (seed 3 at 60 req/s with timeout batching) are counted against their configuration
    failed = intervals.set_index(["param.rate_rps", "param.policy/batching"])["failed"]
    assert failed[(60, "timeout")] == 2 and failed.sum() == 2
    for metric in metric_columns(table):
        rows = intervals[intervals[f"{metric}.low"].notna()]
        assert (rows[f"{metric}.low"] <= rows[f"{metric}.mean"] + 1e-12).all(), metric
        assert (rows[f"{metric}.mean"] <= rows[f"{metric}.high"] + 1e-12).all(), metric
        assert (intervals[f"{metric}.n"] <= len(SEEDS)).all()
    p95 = intervals["latency_p95_s.high"] - intervals["latency_p95_s.low"]
    assert (p95 > 0).all()  # the seeds do vary the runs


def test_a_configuration_against_itself_differs_by_nothing(sweep, tmp_path):
    comparison = compare.main(["--paired", str(sweep), str(sweep), "--out", str(tmp_path)])
    assert (tmp_path / "paired.csv").exists()
    assert set(comparison["n"]) == {len(SEEDS)}
    assert len(comparison["context"].unique()) == 4
    assert not comparison["excludes_zero"].any()
    finite = comparison[comparison["low"].notna()]
    assert ((finite["low"] <= 0) & (finite["high"] >= 0)).all()


def test_timeout_batching_beats_no_batching_at_high_load(sweep, tmp_path):
    comparison = compare.main(["--paired", str(sweep), "--baseline", "policy/batching=none", "--candidate", "policy/batching=timeout",
                               "--out", str(tmp_path)])  # fmt: skip
    saved = pd.read_csv(tmp_path / "paired.csv")
    assert len(saved) == len(comparison)
    high = comparison[comparison["context"] == "rate_rps=60"].set_index("metric")
    for metric in ("latency_p50_s", "latency_p95_s", "latency_p99_s"):
        assert high.loc[metric, "excludes_zero"], high.loc[metric]
        assert high.loc[metric, "high"] < 0  # lower latency with batching
        assert high.loc[metric, "baseline_mean"] > high.loc[metric, "candidate_mean"]
    assert (tmp_path / "paired.png").stat().st_size > 1000


def test_collect_paired_option_and_unpaired_seeds_are_reported(sweep, tmp_path):
    done = subprocess.run([sys.executable, "-m", "experiments.collect", str(sweep), "--out", str(tmp_path / "collected"),
                           "--paired", "rate_rps=20,60"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr
    saved = pd.read_csv(tmp_path / "paired" / "paired.csv")
    assert set(saved["context"]) == {"batching=none", "batching=timeout"}
    p95 = saved[(saved["context"] == "batching=none") & (saved["metric"] == "latency_p95_s")].iloc[0]
    assert p95["excludes_zero"] and p95["low"] > 0  # 60 req/s saturates the unbatched device
    table = collect([sweep])
    candidate = select(table, {"policy/batching": "timeout"})
    candidate = candidate[candidate["seed"] != 2]  # one seed missing on the candidate's side
    comparison, unpaired = paired_comparison(select(table, {"policy/batching": "none"}), candidate, selectors=["policy/batching"])
    assert set(comparison["n"]) == {2}
    assert len(unpaired) == 2 and set(unpaired["side"]) == {"baseline"} and set(unpaired["seed"]) == {"2"}


def test_sim_against_live_sweep_reports_the_live_spread(sweep, tmp_path):
    # a stand-in live sweep: the same runs marked live (the real one needs minutes of live runs)
    live = tmp_path / "live"
    for run in collect([sweep])["run_dir"]:
        shutil.copytree(run, live / Path(run).name)
        summary = json.loads((live / Path(run).name / "summary.json").read_text())
        (live / Path(run).name / "summary.json").write_text(json.dumps({**summary, "backend": "live"}))
    pairs = compare.compare_sweep([sweep, live])
    assert len(pairs["config"].unique()) == 4
    assert set(pairs["live_n"]) == {len(SEEDS)} and set(pairs["sim_n"]) == {len(SEEDS)}
    assert (pairs["rel_error"].abs() < 1e-12).all()
    p95 = pairs[pairs["metric"] == "p95 latency"]
    assert (p95["live_low"] < p95["live"]).all() and (p95["live_spread"] > 0).all()
    errors = compare.report_sweep([sweep, live], tmp_path / "compare")
    assert "median_live_spread" in errors
    assert (tmp_path / "compare" / "sweep_errors.png").stat().st_size > 1000


def _legend_texts(fig) -> list[list[str]]:
    legends = [ax.get_legend() for ax in fig.axes] + list(fig.legends)
    return [[t.get_text() for t in legend.get_texts()] for legend in legends if legend is not None]


def test_plots_of_repeats_have_intervals_and_unique_labels(sweep, tmp_path, monkeypatch):
    figures = {}
    save = plot._save

    def capture(fig, out, name):
        figures[name] = {
            "legends": _legend_texts(fig),
            "colours": [(tuple(line.get_color()) if not isinstance(line.get_color(), str) else line.get_color(), line.get_linestyle(),
                         line.get_marker()) for ax in fig.axes[:1] for line in ax.get_lines() if not line.get_label().startswith("_")],
            "bands": sum(len(ax.collections) for ax in fig.axes),
        }  # fmt: skip
        return save(fig, out, name)

    monkeypatch.setattr(plot, "_save", capture)
    written = plot.plot_all([sweep], tmp_path / "plots", timelines=1)
    assert {"latency_cdf.png", "load.png", "load.svg"} <= {p.name for p in written}
    assert all(p.stat().st_size > 1000 for p in written)
    for name, found in figures.items():
        for texts in found["legends"]:
            assert len(texts) == len(set(texts)), (name, texts)
    assert len(figures["latency_cdf"]["legends"][0]) == 4  # one CDF per configuration, not per run
    assert len(figures["load"]["legends"][0]) == 2  # one series per policy
    assert len(set(figures["latency_cdf"]["colours"])) == 4  # no style reused
    assert figures["load"]["bands"] > 0  # intervals drawn


def test_sides_that_swept_a_setting_differently_are_paired_without_a_crash():
    """One sweep varied slo_s (numbers), the other left it unset (text): they pair where they agree."""
    import pandas as pd

    def side(strategy, slo_values):
        return pd.DataFrame({"run_dir": [f"{strategy}/{k}" for k in range(len(slo_values))], "seed": [0] * len(slo_values),
                             "param.strategy": strategy, "param.slo_s": slo_values,
                             "latency_p95_s": [0.5 + 0.1 * k for k in range(len(slo_values))]})  # fmt: skip

    baseline = side("edge_first", [0.6, 0.8])
    candidate = side("tail_aware", ["0.8", "<unset>"])
    comparison, unpaired = paired_comparison(baseline, candidate, selectors=["strategy"], metrics=["latency_p95_s"])
    assert len(unpaired) == 2  # 0.6 and <unset> have no partner; 0.8 pairs
    assert set(comparison["n"]) == {1}
