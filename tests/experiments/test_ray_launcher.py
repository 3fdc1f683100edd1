"""A multirun sweep on a local Ray cluster (hydra/launcher=ray_local): results land where collect finds them."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys

import pytest

from experiments.collect import collect
from experiments.paths import REPO_ROOT

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("hydra_plugins.hydra_ray_launcher") is None or importlib.util.find_spec("ray") is None,
    reason="the optional 'ray' extra is not installed (pip install -e '.[ray]'; CI installs it)",
)


def test_ray_sweep_runs_every_job_and_collect_finds_them(tmp_path):
    sweep_dir = tmp_path / "sweep"
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"}
    done = subprocess.run(
        [sys.executable, "-m", "experiments.run", "--multirun", "hydra/launcher=ray_local",
         "num_requests=300", "rate_rps=20,40", "policy/batching=none,timeout", f"hydra.sweep.dir={sweep_dir}"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=420, env=env,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    table = collect([sweep_dir])
    assert len(table) == 4
    assert sorted(table["param.rate_rps"].tolist()) == [20, 20, 40, 40]
    assert (table["completed"] == 300).all()
