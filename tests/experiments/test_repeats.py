"""Repeats (one job per seed), a sweep checked before it runs, failed jobs' error.json, what a seed varies."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from hydra import compose, initialize_config_dir

import experiments.run  # noqa: F401  (schema and resolvers)
from experiments.paths import DATA_DIR, REPO_ROOT
from experiments.run import to_run_config
from policies.run_spec import build_run_spec

CONF = REPO_ROOT / "conf"


def run_cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "experiments.run", *args], cwd=REPO_ROOT, capture_output=True, text=True,
                          timeout=300, env=env)  # fmt: skip


def overrides(run_dir: Path) -> dict[str, str]:
    items = yaml.safe_load((run_dir / ".hydra" / "overrides.yaml").read_text())
    return dict(str(item).split("=", 1) for item in items)


def arrivals(run_dir: Path) -> np.ndarray:
    return pd.read_parquet(run_dir / "requests.parquet")["arrival_s"].to_numpy()


def test_repeats_in_a_sweep_make_one_job_per_seed(tmp_path):
    sweep = tmp_path / "sweep"
    done = run_cli("--multirun", "num_requests=100", "rate_rps=20,40", "repeats=3", f"hydra.sweep.dir={sweep}")
    assert done.returncode == 0, done.stderr[-2000:]
    jobs = sorted(p for p in sweep.iterdir() if p.is_dir())
    assert len(jobs) == 6
    seeds: dict[str, list[int]] = {}
    tables: dict[str, list[np.ndarray]] = {}
    for job in jobs:
        params = overrides(job)
        seeds.setdefault(params["rate_rps"], []).append(int(params["seed"]))
        tables.setdefault(params["rate_rps"], []).append(arrivals(job))
        assert json.loads((job / "summary.json").read_text())["seed"] == int(params["seed"])
    assert seeds == {"20": [0, 1, 2], "40": [0, 1, 2]}
    for runs in tables.values():
        assert not any(np.array_equal(a, b) for i, a in enumerate(runs) for b in runs[i + 1 :])


def test_a_single_run_with_repeats_fills_one_folder_per_seed(tmp_path):
    run_dir = tmp_path / "run"
    done = run_cli("num_requests=100", "repeats=2", "seed=3", f"hydra.run.dir={run_dir}")
    assert done.returncode == 0, done.stderr[-2000:]
    assert not (run_dir / "summary.json").exists()
    for seed in (3, 4):
        folder = run_dir / f"seed={seed}"
        for name in ("config.yaml", "requests.parquet", "batches.parquet", "plans.parquet", "summary.json"):
            assert (folder / name).stat().st_size > 0
        assert overrides(folder) == {"num_requests": "100", "repeats": "2", "seed": str(seed)}
        assert json.loads((folder / "summary.json").read_text())["seed"] == seed
        assert yaml.safe_load((folder / "config.yaml").read_text())["seed"] == seed
    assert not np.array_equal(arrivals(run_dir / "seed=3"), arrivals(run_dir / "seed=4"))


@pytest.mark.parametrize(
    ("sweep", "named"),
    [
        (["rate_rps=-5,40"], "workload.sources[0].arrivals.rate_rps"),
        (["rate_rps=20,40", "repeats=0"], "repeats=0 is not allowed: an integer >= 1"),
        (["policy/batching=timeout,nope"], "policy/batching"),
    ],
)
def test_a_sweep_with_a_bad_job_runs_nothing_and_names_the_field(sweep, named, tmp_path):
    sweep_dir = tmp_path / "sweep"
    done = run_cli("--multirun", "num_requests=100", *sweep, f"hydra.sweep.dir={sweep_dir}")
    assert done.returncode != 0
    assert named in done.stderr
    assert "nothing was run" in done.stderr
    assert not sweep_dir.exists() or not any(sweep_dir.rglob("summary.json"))
    assert "Traceback" not in done.stderr


FAILING_POLICY = '''
from policies.batching import NoBatching


class Boom(NoBatching):
    """A valid config that fails once the run starts."""

    def decide(self, now_s):
        raise RuntimeError("boom at run time")
'''


def test_a_job_that_fails_at_run_time_writes_error_json(tmp_path):
    (tmp_path / "failing_policy.py").write_text(FAILING_POLICY)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(REPO_ROOT)])}
    sweep_dir = tmp_path / "sweep"
    done = run_cli("--multirun", "num_requests=50", "policy/batching=none", "policy.batching._target_=failing_policy.Boom",
                   "slo_s=0.5,0.8", f"hydra.sweep.dir={sweep_dir}", env=env)  # fmt: skip
    assert done.returncode != 0
    error = json.loads((sweep_dir / "0" / "error.json").read_text())
    assert error["type"] == "RuntimeError" and "boom at run time" in error["error"]
    assert "policy.batching._target_=failing_policy.Boom" in error["overrides"] and "slo_s=0.5" in error["overrides"]
    assert not list(sweep_dir.rglob("summary.json"))


def trace_arrivals(seed: int, *overrides: str) -> np.ndarray:
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("config", overrides=["workload=trace", "num_requests=200", f"seed={seed}", *overrides])
    return build_run_spec(to_run_config(cfg)).arrivals.arrival_s


def test_a_trace_workload_starts_at_an_offset_its_seed_picks():
    first, again, second = trace_arrivals(0), trace_arrivals(0), trace_arrivals(1)
    assert np.array_equal(first, again)
    assert not np.array_equal(first, second)
    assert not np.allclose(np.diff(first), np.diff(second))  # not merely shifted: another part of the trace


def test_a_fixed_trace_offset_is_the_same_for_every_seed():
    fixed = "workload.sources.cam0.arrivals.start_offset_s=12.5"
    assert np.array_equal(trace_arrivals(0, fixed), trace_arrivals(1, fixed))
    from_start = trace_arrivals(1, "workload.sources.cam0.arrivals.start_offset_s=0")
    gaps = np.array(json.loads((DATA_DIR / "interarrivals_49rps_s.json").read_text()))
    np.testing.assert_array_equal(from_start, np.cumsum(gaps[:200]))
