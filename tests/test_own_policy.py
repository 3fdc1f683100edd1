"""A user's own policy, in a module outside the package, plugs in through a config ``_target_``.

The class, its YAML file and the command are taken from the README's "Write
your own policy" section, so the example there cannot rot.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from experiments.paths import REPO_ROOT
from sim import simulate
from tests.sim.configs import single_queue


def readme_blocks() -> dict[str, str]:
    text = (REPO_ROOT / "README.md").read_text()
    blocks = dict(re.findall(r"<!-- own-policy:(\S+) -->\n```\w*\n(.*?)```", text, flags=re.S))
    assert {"my_policies.py", "my_conf/policy/batching/power_of_two.yaml", "command"} <= set(blocks)
    return blocks


@pytest.fixture
def user_project(tmp_path, monkeypatch):
    for name, body in readme_blocks().items():
        if name != "command":
            (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
            (tmp_path / name).write_text(body)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path
    sys.modules.pop("my_policies", None)


def test_readme_policy_runs_in_the_simulator(user_project):
    config = single_queue(rate_rps=500, service_s=0.0005, num_requests=3000,
                          batching={"_target_": "my_policies.PowerOfTwoBatching", "max_batch_size": 16, "max_wait_s": 0.02})  # fmt: skip
    result = simulate(config)
    sizes = set(result.batches["size"])
    assert sizes <= {1, 2, 4, 8, 16} and 16 in sizes
    assert result.summary["completed"] == 3000
    held = result.requests["dispatched_s"] - result.requests["arrival_s"]
    assert held.max() <= 0.02 + 1e-9


def test_readme_command_runs_the_policy_from_its_own_config_folder(user_project):
    command = shlex.split(readme_blocks()["command"].strip().replace("python", sys.executable, 1))
    env_vars = dict(arg.split("=", 1) for arg in command if re.fullmatch(r"[A-Z_]+=.*", arg))
    command = [arg for arg in command if not re.fullmatch(r"[A-Z_]+=.*", arg)]
    env = {**os.environ, **env_vars, "PYTHONPATH": os.pathsep.join([str(user_project), str(REPO_ROOT)])}
    # the README's relative folder, resolved against the user's project; a run folder of our own
    command = [arg.replace("file://my_conf", f"file://{user_project / 'my_conf'}") for arg in command]
    run_dir = user_project / "run"
    done = subprocess.run([*command, "num_requests=2000", f"hydra.run.dir={run_dir}"], cwd=REPO_ROOT, env=env,
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["completed"] == 2000
    import pandas as pd

    sizes = set(pd.read_parquet(Path(run_dir) / "batches.parquet")["size"])
    assert sizes <= {1, 2, 4, 8, 16} and len(sizes) > 1
