"""docs/PROTOCOL.md is enough to speak to a run: a worker written from it alone serves a real run."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
import time
from pathlib import Path

from live.deploy.local import run_live
from live.wire.messages import KEY_ENV
from tests.live.test_harness import edge_config

ROOT = Path(__file__).resolve().parents[2]
PLAIN_WORKER = ROOT / "docs" / "examples" / "plain_worker.py"


def test_the_plain_worker_imports_nothing_of_edgebatch():
    tree = ast.parse(PLAIN_WORKER.read_text())
    imported = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    imported |= {node.module.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module}
    assert imported <= {"__future__", "hashlib", "hmac", "json", "os", "struct", "sys", "time", "pulsar"}, imported


def test_a_worker_written_from_the_protocol_document_serves_a_signed_run(broker, tmp_path):
    run_id = "plain" + str(int(time.time() * 1000) % 10**8)
    key = os.urandom(32)
    env = {**os.environ, KEY_ENV: key.hex()}
    env.pop("PYTHONPATH", None)
    # started first: it subscribes, says ready, and waits for the run's start like any role
    worker = subprocess.Popen([sys.executable, "-I", str(PLAIN_WORKER), broker.url, run_id, "edge", "plain-worker"],
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)  # fmt: skip
    config = edge_config(num_requests=120, rate_rps=60.0)
    config["live"]["broker"] = {"url": broker.url}
    config["live"]["executors"] = {"edge": {"external": ["plain-worker"]}}  # no worker of ours
    os.environ[KEY_ENV] = key.hex()  # the run signs with the key the plain worker was given
    try:
        result = run_live(config, tmp_path / "run", run_id=run_id)
        output, _ = worker.communicate(timeout=30)  # it ends at the run's stop
    finally:
        del os.environ[KEY_ENV]
        if worker.poll() is None:
            worker.kill()
            worker.wait()
    assert worker.returncode == 0, output
    summary = result.summary
    assert summary["complete"] is True and summary["completed"] == summary["count"] == 120
    assert "worker-edge-0" not in result.extra["roles"]  # every answer came from the plain worker
    answered = int(output.split("answered ")[1].split()[0])
    assert answered == len(result.batches) >= 120 // 8
    assert (result.requests["service_s"] >= 0).all() and result.requests["latency_s"].notna().all()
