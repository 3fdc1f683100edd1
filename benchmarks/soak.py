"""A live soak with a fault every period: ``python -m benchmarks.soak [--minutes 10] [--rate 140]``.

Two live runs of the same workload (Poisson arrivals at ``--rate``, 2 KB
payloads, timeout batching, a cloud server with two worker replicas behind
an emulated 10 MB/s link): one without faults, one with a fault every
``--period-s`` (default 60 s) in turn: a worker SIGKILLed, the broker
restarted, the gateway SIGKILLed, the sink SIGKILLed, a burst of 1,000
fuzzed messages on every topic, a 10 s link outage. It prints, per fault,
when it struck, and for the run: requests lost (not in the records, or
dropped as ``run_ended``), recorded twice, run again, bad messages
dead-lettered, and the p99 latency of the requests that arrived outside
every fault's window (from 1 s before it to ``--recovery-s`` after)
against the fault-free run's p99 over the same arrivals, with the ratio.
``--rate`` should be about 70% of what ``benchmarks.live_harness`` sustains
on the machine (the default is meant for a 2-core one). A script, not a
test: it takes twice ``--minutes``.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from live.deploy.local import run_live
from live.wire.broker import connect, topic
from live.wire.messages import KEY_ENV

FAULTS = ("worker_kill", "broker_restart", "gateway_kill", "sink_kill", "fuzz_burst", "link_outage")
OUTAGE_S = 10.0


def soak_config(rate_rps: float, duration_s: float, trace_path: Path) -> dict:
    return {
        "seed": 11,
        "workload": {"duration_s": duration_s, "sources": [{"name": "cam", "size_bytes": 2048, "slo_s": 0.5, "gateway": "edge",
                                                           "arrivals": {"kind": "poisson", "rate_rps": rate_rps}}]},
        "cluster": {"executors": [{"name": "cloud", "kind": "cloud", "slots": 2,
                                   "profile": {"kind": "linear", "per_item_s": 0.0005, "base_s": 0.002}}],
                    "links": {"cloud": {"delay_s": 0.005, "bandwidth_trace": str(trace_path)}}},
        "policy": {"placement": {"_target_": "policies.placement.StaticPlacement"},
                   "batching": {"_target_": "policies.batching.TimeoutBatching", "max_batch_size": 8, "max_wait_s": 0.01}},
        "live": {"model": "mlp", "timeout_s": duration_s + 180.0, "startup_timeout_s": 60, "max_restarts": 5},
    }  # fmt: skip


def fault_times(duration_s: float, period_s: float) -> list[tuple[str, float]]:
    """(fault, at_s): one every ``period_s``, half a period in, the kinds in turn."""
    times = np.arange(period_s / 2, duration_s - period_s / 4, period_s)
    return [(FAULTS[k % len(FAULTS)], float(t)) for k, t in enumerate(times)]


def write_trace(path: Path, duration_s: float, faults: list[tuple[str, float]]) -> None:
    """10 MB/s every second, 0 during each link outage."""
    samples = [10.0] * (int(duration_s) + 240)
    for name, at_s in faults:
        if name == "link_outage":
            for second in range(int(at_s), int(at_s + OUTAGE_S)):
                samples[second] = 0.0
    path.write_text(json.dumps(samples))


def _fuzz(handle, count: int = 1000) -> None:
    rng = np.random.default_rng(7)
    client, _ = connect(handle.broker_url)
    try:
        for name in ("requests-edge", "batches-cloud", "results-edge", "records", "control"):
            producer = client.create_producer(topic(handle.run_id, name), batching_enabled=False)
            for k in range(count // 5):
                producer.send_async(rng.bytes(int(rng.integers(0, 400))), None)
            producer.flush()
            producer.close()
    finally:
        client.close()


def injector(faults: list[tuple[str, float]]):
    """The ``on_start`` hook that strikes each fault at its time."""

    def strike(handle) -> None:
        for name, at_s in faults:
            if not handle.sleep_until(at_s):
                return
            if name == "worker_kill":
                os.kill(handle.pid("worker-cloud-0"), signal.SIGKILL)
            elif name == "broker_restart":
                handle.broker.restart()
            elif name == "gateway_kill":
                os.kill(handle.pid("gateway-edge"), signal.SIGKILL)
            elif name == "sink_kill":
                os.kill(handle.pid("sink"), signal.SIGKILL)
            elif name == "fuzz_burst":
                _fuzz(handle)
            handle.notes[f"{name}@{at_s:.0f}"] = round(handle.now(), 3)  # link_outage: in the trace already

    return strike


def outside_windows(requests: pd.DataFrame, faults: list[tuple[str, float]], recovery_s: float) -> pd.Series:
    keep = pd.Series(True, index=requests.index)
    for name, at_s in faults:
        end_s = at_s + recovery_s + (OUTAGE_S if name == "link_outage" else 0.0)
        keep &= ~requests["arrival_s"].between(at_s - 1.0, end_s)
    return keep


def _row(result, faults, recovery_s: float, count_faults: bool) -> dict:
    requests = result.requests
    keep = outside_windows(requests, faults, recovery_s)
    done = requests[keep & requests["completed_s"].notna()]
    finished = result.batches[result.batches["start_s"].notna()]
    sink = result.extra["roles"].get("sink", {})
    return {
        "requests": len(requests),
        "lost": int(len(requests) - requests["request_id"].nunique() + (requests["drop_reason"] == "run_ended").sum()),
        "recorded twice": int(requests["request_id"].duplicated().sum()),
        "run again": int(finished["size"].sum() - requests["completed_s"].notna().sum()),
        "dead-lettered": int(sum(r.get("dead_letters", 0) for r in result.extra["roles"].values())),
        "restarts": int(result.summary.get("restarts", 0)),
        "p99 outside faults (s)": float(done["latency_s"].quantile(0.99)) if len(done) else float("nan"),
        "sink duplicates": int(sink.get("duplicates", 0)),
        "faults": len(faults) if count_faults else 0,
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--rate", type=float, default=140.0, help="requests per second (about 70%% of the sustained rate)")
    parser.add_argument("--period-s", type=float, default=60.0, help="one fault this often")
    parser.add_argument("--recovery-s", type=float, default=10.0, help="a fault's window lasts this long after it")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    duration_s = 60.0 * args.minutes
    faults = fault_times(duration_s, args.period_s)
    root = args.out or Path(tempfile.mkdtemp(prefix="edgebatch-soak-"))
    root.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault(KEY_ENV, os.urandom(32).hex())  # the fuzz is unsigned: it must be dead-lettered
    rows = {}
    for label, injected in (("fault-free", []), ("with faults", faults)):
        trace = root / f"trace-{label.replace(' ', '-')}.json"
        write_trace(trace, duration_s, injected)
        started = time.perf_counter()
        result = run_live(soak_config(args.rate, duration_s, trace), root / label.replace(" ", "-"),
                          on_start=injector(injected) if injected else None)  # fmt: skip
        rows[label] = _row(result, faults, args.recovery_s, bool(injected))
        rows[label]["wall (s)"] = round(time.perf_counter() - started, 1)
        if injected:
            print("faults struck at (s):", json.dumps(result.extra["faults"]))
    table = pd.DataFrame(rows)
    clean, faulty = rows["fault-free"]["p99 outside faults (s)"], rows["with faults"]["p99 outside faults (s)"]
    print(table.to_string())
    print(f"p99 outside the fault windows: {faulty:.4f} s against {clean:.4f} s fault-free: ratio {faulty / clean:.2f} (target <= 1.20)")
    table.to_csv(root / "soak.csv")
    print(f"-> {root}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
