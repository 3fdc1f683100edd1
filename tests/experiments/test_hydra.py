"""Hydra configs compose, sweeps run on the basic and joblib launchers, collect and plot find them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

import experiments.run  # noqa: F401  (schema and resolvers)
from experiments.collect import collect
from experiments.paths import REPO_ROOT
from experiments.plot import plot_all
from experiments.run import to_run_config
from sim import build_simulation

CONF = REPO_ROOT / "conf"
EXPERIMENTS = sorted(p.stem for p in (CONF / "experiment").glob("*.yaml"))
GROUP_OPTIONS = {
    group: sorted(p.stem for p in (CONF / group).glob("*.yaml"))
    for group in ("workload", "cluster", "profile", "cost", "policy/batching", "policy/placement", "policy/planner")
}


def composed(overrides: list[str]):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose("config", overrides=overrides)


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_every_experiment_composes_and_builds(experiment, tmp_path):
    overrides = [f"+experiment={experiment}"]
    if not (CONF / "profile" / "calibrated.yaml").exists():
        # a fresh clone has no calibration (it is measured per machine, and git-ignored):
        # stand one in, from a file of the same shape, on a search path of its own
        (tmp_path / "profile").mkdir()
        (tmp_path / "profile" / "calibrated.yaml").write_text((CONF / "profile" / "fast.yaml").read_text())
        overrides.append(f"hydra.searchpath=[file://{tmp_path}]")
    cfg = composed(overrides)
    build_simulation(to_run_config(cfg))  # every field checked; nothing runs


@pytest.mark.parametrize(("group", "option"), [(g, o) for g, options in GROUP_OPTIONS.items() for o in options])
def test_every_group_option_composes(group, option):
    overrides = [f"{group}={option}"]
    if group.startswith("policy/") and group != "policy/placement":
        overrides.append("cluster=edge_serverless")  # planners and some batchers want a remote executor
    cfg = composed(overrides)
    assert to_run_config(cfg)["policy"]["placement"]["_target_"]


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "experiments.run", *args], cwd=cwd, capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("launcher", ["basic", "joblib"])
def test_small_multirun_sweep_is_collected_and_plotted(launcher, tmp_path):
    sweep_dir = tmp_path / "sweep"
    args = ["--multirun", "num_requests=300", "rate_rps=20,40", "policy/batching=none,timeout", f"hydra.sweep.dir={sweep_dir}"]
    if launcher == "joblib":
        args += ["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"]
    done = run_cli(*args, cwd=REPO_ROOT)
    assert done.returncode == 0, done.stderr[-2000:]
    table = collect([sweep_dir])
    assert len(table) == 4
    assert set(table["param.rate_rps"]) == {20, 40}
    assert set(table["param.policy/batching"]) == {"none", "timeout"}
    assert (table["count"] == 300).all()
    for run_dir in table["run_dir"]:
        for name in ("requests.parquet", "batches.parquet", "plans.parquet", "summary.json", "config.yaml"):
            assert (Path(run_dir) / name).stat().st_size > 0
        summary = json.loads((Path(run_dir) / "summary.json").read_text())
        assert {"latency_p95_s", "slo_attainment", "cost_per_1k", "replans", "drops_by_reason"} <= set(summary)
    figures = plot_all([sweep_dir], tmp_path / "plots", timelines=1)
    names = {p.name for p in figures}
    assert {"latency_cdf.png", "latency_cdf.svg", "load.png", "load.svg"} <= names
    assert any(n.startswith("timeline_") for n in names)
    assert all(p.stat().st_size > 1000 for p in figures)


def test_collect_and_plot_commands(tmp_path):
    sweep_dir = tmp_path / "sweep"
    done = run_cli("--multirun", "num_requests=200", "slo_s=0.2,0.8", f"hydra.sweep.dir={sweep_dir}", cwd=REPO_ROOT)
    assert done.returncode == 0, done.stderr[-2000:]
    collected = subprocess.run([sys.executable, "-m", "experiments.collect", str(sweep_dir)], capture_output=True, text=True, cwd=REPO_ROOT)
    assert collected.returncode == 0, collected.stderr
    assert "2 runs" in collected.stdout
    assert (sweep_dir / "collected.csv").exists() and (sweep_dir / "collected.parquet").exists()
    plotted = subprocess.run([sys.executable, "-m", "experiments.plot", str(sweep_dir)], capture_output=True, text=True, cwd=REPO_ROOT)
    assert plotted.returncode == 0, plotted.stderr
    assert (sweep_dir / "plots" / "slo_cost.png").stat().st_size > 1000


@pytest.mark.parametrize(
    ("override", "named"),
    [
        ("policy/batching=nope", "policy/batching"),
        ("rate_rps=-5", "workload.sources[0].arrivals.rate_rps"),
        ("workload.sources.cam0.size_byte=5", "size_byte"),
        ("num_requests=abc", "num_requests"),
        ("cluster.executors.edge.slots=0", "cluster.executors.edge.slots"),
        ("backend.kind=cloud", "backend.kind"),
    ],
)
def test_bad_override_fails_naming_the_field(override, named, tmp_path):
    done = run_cli(override, f"hydra.run.dir={tmp_path / 'run'}", cwd=REPO_ROOT)
    assert done.returncode != 0
    assert named in done.stderr + done.stdout


def test_the_console_command_runs_from_any_folder(tmp_path):
    command = Path(sys.executable).parent / "edgebatch"
    assert command.exists(), "the edgebatch console script is installed with the package"
    done = subprocess.run([str(command), "num_requests=100", f"hydra.run.dir={tmp_path / 'run'}"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert "100/100 completed" in done.stdout
    assert (tmp_path / "run" / "summary.json").is_file()


@pytest.mark.parametrize(
    ("override", "named"),
    [("rate_rps=-5", "workload.sources[0].arrivals.rate_rps"), ("cluster.executors.edge.slots=0", "cluster.executors.edge.slots")],
)
def test_a_bad_value_is_one_line_and_status_2_with_no_results_folder(override, named, tmp_path):
    done = run_cli(override, f"hydra.run.dir={tmp_path / 'run'}", cwd=REPO_ROOT)
    assert done.returncode == 2, done.stderr[-2000:]
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and named in lines[0], done.stderr
    assert "Traceback" not in done.stderr + done.stdout
    assert not (tmp_path / "run").exists()


@pytest.mark.live
def test_a_live_run_that_ends_early_never_exits_0(tmp_path):
    """A live run cut short (here by its own time limit) keeps its records but fails: status 1, one line, complete false."""
    run_dir = tmp_path / "run"
    done = run_cli("backend=live", "workload.num_requests=null", "workload.duration_s=30", "rate_rps=20", "live.timeout_s=2",
                   f"hydra.run.dir={run_dir}", cwd=REPO_ROOT)  # fmt: skip
    assert done.returncode == 1, done.stderr[-2000:]
    errors = [line for line in done.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "ended before every request did" in errors[0] and "timed out" in errors[0], done.stderr[-2000:]
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["complete"] is False and summary["completed"] < summary["count"]
    assert json.loads((run_dir / "error.json").read_text())["type"] == "IncompleteRunError"
