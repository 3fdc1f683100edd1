"""The design's one-way imports and a simulator that runs without the live stack."""

from __future__ import annotations

import subprocess
import sys
import textwrap

from importlinter.cli import lint_imports

from experiments.paths import REPO_ROOT


def test_the_import_contracts_of_the_design_hold(monkeypatch):
    # contracts in pyproject.toml ([tool.importlinter]): layers spec < policies < sim|live < experiments
    # < benchmarks, sim and live independent, no I/O or backend in policies/ and spec/, no torch or pulsar in sim/
    monkeypatch.chdir(REPO_ROOT)
    assert lint_imports(config_filename=str(REPO_ROOT / "pyproject.toml"), no_cache=True) == 0


_WITHOUT_LIVE_STACK = textwrap.dedent(
    """
    import importlib.abc, sys

    class Refuse(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in ("torch", "torchvision", "pulsar", "pulsar_lite", "_pulsar"):
                raise ImportError(f"{name} is not installed here")
            return None

    sys.meta_path.insert(0, Refuse())
    from sim import simulate
    result = simulate({
        "seed": 1,
        "workload": {"num_requests": 500, "sources": [{"name": "cam", "arrivals": {"kind": "poisson", "rate_rps": 50}}]},
        "cluster": {"executors": [{"name": "edge", "kind": "edge", "profile": {"kind": "linear", "per_item_s": 0.001, "base_s": 0.002}}]},
        "policy": {"placement": {"_target_": "policies.placement.StaticPlacement"},
                   "batching": {"_target_": "policies.batching.TimeoutBatching", "max_batch_size": 4, "max_wait_s": 0.01}},
    })
    assert result.summary["completed"] == 500, result.summary
    loaded = sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "pulsar", "live"))
    assert not loaded, loaded
    print("ok")
    """
)


def test_the_simulator_runs_where_torch_and_pulsar_cannot_be_imported():
    done = subprocess.run([sys.executable, "-c", _WITHOUT_LIVE_STACK], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "ok"
