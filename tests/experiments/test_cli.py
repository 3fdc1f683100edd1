"""The ``edgebatch`` command: subcommands with --help, from any folder, with the configs inside the package."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from experiments.cli import COMMANDS
from experiments.paths import REPO_ROOT

EDGEBATCH = Path(sys.executable).parent / "edgebatch"


def edgebatch(*args: str, cwd: Path, env=None) -> subprocess.CompletedProcess:
    assert EDGEBATCH.exists(), "the edgebatch console script is installed with the package (pip install -e .)"
    return subprocess.run([str(EDGEBATCH), *args], cwd=cwd, capture_output=True, text=True, timeout=300, env=env)


def test_help_lists_every_command(tmp_path):
    done = edgebatch("--help", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    for name in ("run", "collect", "plot", "compare", "calibrate", "quickstart", "testbed"):
        assert f"\n  {name} " in done.stdout


@pytest.mark.parametrize("command", list(COMMANDS))
def test_every_command_has_its_help_from_any_folder(command, tmp_path):
    done = edgebatch(command, "--help", cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "Traceback" not in done.stderr
    if command == "run":
        assert "edgebatch run:" in done.stdout and "policy/batching: aimd, deadline, fixed, none, timeout" in done.stdout
    else:
        assert "usage:" in done.stdout and "-h, --help" in done.stdout


def test_a_mistyped_command_is_named_with_the_nearest(tmp_path):
    done = edgebatch("plto", "x", cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "error: 'plto' is not a command: one of run, collect, plot, compare, calibrate, quickstart, testbed; did you mean 'plot'?"
    ]


OWN_POLICY = '''
from policies.batching import TimeoutBatching


class Fours(TimeoutBatching):
    """Timeout batching in batches of at most four."""

    def __init__(self, *, max_wait_s: float = 0.01):
        super().__init__(max_batch_size=4, max_wait_s=max_wait_s)
'''


@pytest.mark.parametrize("how", ["--config-dir", "hydra.searchpath"])
def test_a_users_own_folder_of_configs_and_policies(how, tmp_path):
    (tmp_path / "mine" / "policy" / "batching").mkdir(parents=True)
    (tmp_path / "mine" / "policy" / "batching" / "fours.yaml").write_text("_target_: fours.Fours\nmax_wait_s: 0.02\n")
    (tmp_path / "fours.py").write_text(OWN_POLICY)
    where = ["--config-dir", "mine"] if how == "--config-dir" else [f"hydra.searchpath=[file://{tmp_path / 'mine'}]"]
    done = edgebatch("run", *where, "policy/batching=fours", "num_requests=300", "hydra.run.dir=run", cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["completed"] == 300 and 1 < summary["mean_batch_size"] <= 4
    assert (tmp_path / "run" / "run.log").stat().st_size > 0


def test_the_configs_ship_inside_the_package(tmp_path):
    """A wheel (not the checkout) holds every config; run from a folder with nothing else on the path."""
    setuptools = pytest.importorskip("setuptools", reason="builds the wheel here, without build isolation (no index)")
    if tuple(int(p) for p in setuptools.__version__.split(".")[:2]) < (70, 1):
        pytest.importorskip("wheel", reason="an older setuptools builds wheels with the wheel package")
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(tmp_path / "wheel"),
                            str(REPO_ROOT)], capture_output=True, text=True, timeout=300, cwd=tmp_path)  # fmt: skip
    assert built.returncode == 0, built.stderr[-2000:]
    target = tmp_path / "site"
    wheel = next((tmp_path / "wheel").glob("edgebatch-*.whl"))
    installed = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target), str(wheel)],
                               capture_output=True, text=True, timeout=300)  # fmt: skip
    assert installed.returncode == 0, installed.stderr[-2000:]
    assert (target / "conf" / "config.yaml").is_file() and (target / "conf" / "policy" / "batching" / "timeout.yaml").is_file()
    env = {**os.environ, "PYTHONPATH": str(target)}
    (tmp_path / "elsewhere").mkdir()
    probe = "import conf, experiments; print(conf.__file__); print(experiments.__file__)"
    where = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path / "elsewhere", env=env, capture_output=True, text=True)
    assert all(line.startswith(str(target)) for line in where.stdout.split()), where.stdout + where.stderr
    done = subprocess.run([sys.executable, "-m", "experiments.cli", "run", "num_requests=100", "hydra.run.dir=run"],
                          cwd=tmp_path / "elsewhere", env=env, capture_output=True, text=True, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert "100/100 completed" in done.stdout
    hydra = (tmp_path / "elsewhere" / "run" / ".hydra" / "hydra.yaml").read_text()
    assert "- path: conf\n      schema: pkg\n      provider: main" in hydra  # the primary configs: pkg://conf


def test_a_config_error_in_another_command_is_short_too(tmp_path):
    done = edgebatch("compare", "rate_rsp=5", "--out", str(tmp_path / "out"), cwd=tmp_path)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines()[0].startswith("error: rate_rsp=5 is not allowed") and "did you mean 'rate_rps'?" in done.stderr
