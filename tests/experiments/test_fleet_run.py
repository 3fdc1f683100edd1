"""``cluster=fleet cluster.devices=N`` is one line on the command line; a run beyond the memory limit streams."""

from __future__ import annotations

import json
import subprocess
import sys

import pandas as pd
from hydra import compose, initialize_config_dir

import experiments.run  # noqa: F401  (schema and resolvers)
from experiments.paths import REPO_ROOT
from experiments.run import to_run_config
from sim import simulate


def test_a_fleet_composes_from_one_override():
    with initialize_config_dir(config_dir=str(REPO_ROOT / "conf"), version_base="1.3"):
        cfg = compose("config", overrides=["cluster=fleet", "cluster.devices=25", "num_requests=8"])
    result = simulate(to_run_config(cfg))
    assert result.summary["count"] == 25 * 8 and result.summary["completed"] + result.summary["dropped"] == 200
    assert result.requests["source"].nunique() == 25 and result.requests["executor"].nunique() == 25
    assert set(result.requests["executor"].astype(str)) == {f"edge-{i:02d}" for i in range(25)}


def test_a_run_beyond_the_memory_limit_streams_into_its_folder(tmp_path):
    run_dir = tmp_path / "run"
    done = subprocess.run([sys.executable, "-m", "experiments.run", "cluster=fleet_cloud", "cluster.devices=40", "num_requests=10",
                           "policy/placement=round_robin", "sim.max_records_in_memory=100", f"hydra.run.dir={run_dir}"],
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["count"] == 400 and summary["percentiles"].startswith("sketch")
    requests = pd.read_parquet(run_dir / "requests.parquet")
    assert len(requests) == 400 and requests["request_id"].tolist() == list(range(400))
    assert summary["batches"] == len(pd.read_parquet(run_dir / "batches.parquet"))
