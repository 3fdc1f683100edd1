"""A user's own policy, in a module outside the package, plugs in through a config ``_target_``.

The class, its YAML file and the command are taken from the README's "Write
your own policy" section, so the example there cannot rot.
"""

from __future__ import annotations

import json
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


def edgebatch_command(text: str) -> list[str]:
    """The README's command, run with this environment's ``edgebatch``."""
    command = shlex.split(text.strip())
    assert command[:2] == ["edgebatch", "run"], command
    return [str(Path(sys.executable).parent / "edgebatch"), *command[1:]]


def test_readme_command_runs_the_policy_from_its_own_config_folder(user_project):
    run_dir = user_project / "run"
    # from the user's folder, as the README says: my_policies.py and my_conf/ are there
    done = subprocess.run([*edgebatch_command(readme_blocks()["command"]), "num_requests=2000", f"hydra.run.dir={run_dir}"],
                          cwd=user_project, capture_output=True, text=True, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["completed"] + summary["dropped"] == 2000 and summary["rate_rps"] == 200
    import pandas as pd

    sizes = set(pd.read_parquet(Path(run_dir) / "batches.parquet")["size"])
    assert sizes <= {1, 2, 4, 8, 16} and len(sizes) > 1


def _batches_with_dispatch(result):
    dispatched = result.requests.groupby("batch_id")["dispatched_s"].min()
    return result.batches.set_index("batch_id").join(dispatched).sort_values("dispatched_s")


def _edge(batching: dict, rate_rps: float) -> dict:
    """The README's table's set-up: one edge device with the seed's profile (5,000 requests here)."""
    config = single_queue(rate_rps=rate_rps, service_s=0.008165, num_requests=5000, batching=batching)
    config["cluster"]["executors"][0]["profile"]["base_s"] = 0.04234
    config["workload"]["sources"][0]["slo_s"] = 0.8
    return config


def test_readme_policy_forms_a_batch_only_on_a_free_slot(user_project):
    result = simulate(_edge({"_target_": "my_policies.PowerOfTwoBatching", "max_batch_size": 16, "max_wait_s": 0.01}, 200))
    batches = _batches_with_dispatch(result)
    # one slot: no batch leaves while the one before it still runs
    assert (batches["dispatched_s"].to_numpy()[1:] >= batches["end_s"].to_numpy()[:-1] - 1e-9).all()


def test_readme_policy_beside_timeout_batching_at_200_rps(user_project):
    """The README's table: overloaded, it serves more than timeout batching, and the queue bound keeps latency finite."""
    own = simulate(_edge({"_target_": "my_policies.PowerOfTwoBatching", "max_batch_size": 16, "max_wait_s": 0.01, "max_queue": 200}, 200))
    timeout = simulate(_edge({"_target_": "policies.batching.TimeoutBatching", "max_batch_size": 8, "max_wait_s": 0.05,
                              "max_inflight": "executor", "max_queue": 200}, 200))  # fmt: skip
    assert own.summary["throughput_rps"] > 88 > 78 > timeout.summary["throughput_rps"]
    assert own.summary["latency_p95_s"] < 2.6  # about 200 waiting / 93 req/s: bounded, not growing with the run
    assert own.summary["dropped"] > 0
