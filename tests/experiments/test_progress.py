"""Progress while a run goes (a bar on a terminal, log lines otherwise) and messages in Hydra's run.log."""

from __future__ import annotations

import io
import logging
import math
import re
import shutil
import subprocess
import sys
import time

import pytest

import experiments.run  # noqa: F401  (schema and resolvers)
from experiments.paths import REPO_ROOT
from experiments.progress import RunProgress, progress_line
from sim import build_simulation

PROGRESS = re.compile(r"\[run sim seed=0\] (\d+)/50000 requests \(\d+%\), \d+ dropped, [\d,]+ req/s, p50 [\d.,]+ ms")


def run_cli(*args: str, cwd) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "experiments.run", *args], cwd=cwd, capture_output=True, text=True, timeout=300)


def test_a_run_writes_its_messages_to_run_log(tmp_path):
    done = run_cli("num_requests=200", f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    log = (tmp_path / "run" / "run.log").read_text()
    assert "[edgebatch.run][INFO] [run] 200/200 completed" in log
    assert "200/200 completed" in done.stdout


def test_progress_lines_when_not_a_tty(tmp_path):
    done = run_cli("num_requests=50000", "progress.after_s=0", "progress.period_s=0.05", f"hydra.run.dir={tmp_path / 'run'}",
                   cwd=tmp_path)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    lines = [m for m in map(PROGRESS.search, done.stdout.splitlines()) if m]
    assert lines, done.stdout[-2000:]
    assert all(0 <= int(m.group(1)) <= 50000 for m in lines)
    assert PROGRESS.search((tmp_path / "run" / "run.log").read_text())  # in run.log too
    assert "\r" not in done.stdout + done.stderr  # no bar when not on a terminal


def test_a_short_run_shows_no_progress(tmp_path):
    done = run_cli("num_requests=200", f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path)
    assert "requests (" not in done.stdout


def test_on_a_terminal_a_bar_with_the_running_p50(monkeypatch):
    stream = io.StringIO()
    monkeypatch.setattr(sys, "stderr", stream)
    state = {"done": 0}

    def snapshot():
        state["done"] = min(state["done"] + 100, 1000)
        return state["done"], 0, 0.0123

    with RunProgress(snapshot, 1000, label="t", after_s=0.0, terminal=True) as progress:
        time.sleep(1.2)
    assert progress.shown >= 2
    text = stream.getvalue()
    assert "p50 12.3 ms" in text and "/1000" in text and "req/s" in text


def test_no_log_lines_before_after_s(caplog):
    caplog.set_level(logging.INFO, "edgebatch.progress")
    with RunProgress(lambda: (1, 0, 0.1), 10, label="t", after_s=5.0, terminal=False) as progress:
        time.sleep(0.2)
    assert progress.shown == 0 and not caplog.records


def test_the_running_p50_is_the_recorders_and_ends_at_the_summarys():
    simulation = build_simulation({
        "seed": 1,
        "workload": {"num_requests": 3000, "sources": [{"name": "cam", "arrivals": {"kind": "poisson", "rate_rps": 40}}]},
        "cluster": {"executors": [{"name": "edge", "kind": "edge", "profile": {"kind": "linear", "per_item_s": 0.008, "base_s": 0.04}}]},
        "policy": {"placement": {"_target_": "policies.placement.StaticPlacement"},
                   "batching": {"_target_": "policies.batching.TimeoutBatching", "max_batch_size": 8, "max_wait_s": 0.05}},
    })  # fmt: skip
    assert simulation.recorder.progress()[:2] == (0, 0) and math.isnan(simulation.recorder.progress()[2])
    result = simulation.run()
    completed, dropped, p50_s = simulation.recorder.progress()
    assert completed == result.summary["completed"] and dropped == result.summary["dropped"]
    assert p50_s == pytest.approx(result.summary["latency_p50_s"], rel=1e-9)


def test_a_progress_line_says_done_of_total_rate_and_p50():
    line = progress_line("x", 120, 30, 600, 2.0, 0.25)
    assert line == "[x] 150/600 requests (25%), 30 dropped, 75 req/s, p50 250.0 ms, 2.0 s"


def test_the_live_sink_writes_its_progress_for_the_harness(tmp_path):
    from experiments.progress import live_snapshot
    from live.config import build_run
    from live.roles.sink import ProgressFile, SinkState

    state = SinkState(build_run({
        "workload": {"num_requests": 3, "sources": [{"name": "cam", "arrivals": {"kind": "poisson", "rate_rps": 10}}]},
        "cluster": {"executors": [{"name": "edge", "kind": "edge", "profile": {"kind": "linear", "per_item_s": 0.008, "base_s": 0.04}}]},
        "policy": {"placement": {"_target_": "policies.placement.StaticPlacement"}, "batching": {"_target_": "policies.batching.NoBatching"}},
    }))  # fmt: skip
    (tmp_path / "stats").mkdir()
    assert live_snapshot(tmp_path)()[:2] == (0, 0)  # nothing written yet
    state.recorder.dropped(1, "queue_full")
    ProgressFile(tmp_path / "stats" / "progress.json", state).maybe_write()
    assert live_snapshot(tmp_path)()[:2] == (0, 1)


def test_a_sweep_says_which_job_of_how_many_is_done(tmp_path):
    done = run_cli("--multirun", "rate_rps=20,40,60", "num_requests=100", f"hydra.sweep.dir={tmp_path / 'sweep'}", cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    for k in (1, 2, 3):
        assert f"[run] job {k} of 3: 100/100 completed" in done.stdout
    assert "job 1 of 3" in (tmp_path / "sweep" / "0" / "run.log").read_text()


@pytest.mark.skipif(shutil.which("script") is None, reason="needs script(1) for a pseudo-terminal")
def test_on_a_real_terminal_the_run_shows_a_bar(tmp_path):
    command = f"stty cols 120 rows 40; {sys.executable} -m experiments.run num_requests=300000 progress.after_s=0.2 hydra.run.dir={tmp_path / 'run'}"
    done = subprocess.run(["script", "-qec", command, str(tmp_path / "typescript")], cwd=REPO_ROOT, capture_output=True, timeout=300)
    assert done.returncode == 0, done.stdout[-2000:]
    screen = (tmp_path / "typescript").read_bytes().decode(errors="replace")
    assert "run sim seed=0:" in screen and "/300000 [" in screen and "req/s, p50 " in screen, screen[-2000:]
    assert "\r" in screen  # redrawn in place
