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
every fault's window against the fault-free run's p99 over the same
arrivals, with the ratio.

A fault's window is observed, not fixed: from 1 s before the fault struck
(the time the injector struck it, which on a loaded machine can be seconds
after the planned time; a link outage's from its trace) until the run has
recovered, read from its records: the first moment after the fault (after
the outage's end) from which the backlog (requests arrived and not yet
ended) stays at or under the fault-free run's p99 backlog (at least 5)
for ``--settle-s``. A run that never recovers has its window run to the end
(and the table says how much of the run the windows cover). Then, per
window and outside them, which requests form the tail (those over the
fault-free p99): how many, and how long after the previous window's end.
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


def backlog(requests: pd.DataFrame, grid_s: np.ndarray) -> np.ndarray:
    """Requests arrived by each time of ``grid_s`` and not ended by then (a drop ends a request at its arrival)."""
    arrived = np.sort(requests["arrival_s"].to_numpy())
    ended = np.sort(requests["completed_s"].fillna(requests["arrival_s"]).to_numpy())
    return np.searchsorted(arrived, grid_s, side="right") - np.searchsorted(ended, grid_s, side="right")


def struck_times(faults: list[tuple[str, float]], notes: dict) -> list[tuple[str, float]]:
    """(fault, when it struck): the injector's note (a link outage: its trace's start)."""
    return [(name, at_s if name == "link_outage" else float(notes.get(f"{name}@{at_s:.0f}", at_s))) for name, at_s in faults]


def fault_windows(requests: pd.DataFrame, struck: list[tuple[str, float]], threshold: float, settle_s: float,
                  step_s: float = 0.1) -> list[tuple[str, float, float]]:  # fmt: skip
    """(fault, start, end) per fault: from 1 s before it to the recovery its run's backlog shows (see the module doc)."""
    end_of_run_s = float(requests["arrival_s"].max())
    grid_s = np.arange(0.0, end_of_run_s + step_s, step_s)
    over = backlog(requests, grid_s) > threshold
    windows = []
    for name, at_s in struck:
        after_s = at_s + (OUTAGE_S if name == "link_outage" else 0.0)
        end_s = end_of_run_s
        calm = 0
        for k in np.flatnonzero(grid_s >= after_s):
            calm = 0 if over[k] else calm + 1
            if calm * step_s >= settle_s:
                end_s = float(grid_s[k])
                break
        windows.append((name, at_s - 1.0, end_s))
    return windows


def outside_windows(requests: pd.DataFrame, windows: list[tuple[str, float, float]]) -> pd.Series:
    keep = pd.Series(True, index=requests.index)
    for _, start_s, end_s in windows:
        keep &= ~requests["arrival_s"].between(start_s, end_s)
    return keep


def tail_table(requests: pd.DataFrame, windows, limit_s: float) -> pd.DataFrame:
    """Per window and per gap after it: requests, how many over ``limit_s`` (the fault-free p99), their latest."""
    rows = []
    ends = [0.0] + [end_s for _, _, end_s in windows]
    starts = [start_s for _, start_s, _ in windows] + [np.inf]
    for k, (name, start_s, end_s) in enumerate([("before the first", 0.0, 0.0)] + list(windows)):
        for where, lo, hi in (("inside", start_s, end_s), ("after", end_s, starts[k])):
            if where == "inside" and k == 0:
                continue
            part = requests[requests["arrival_s"].between(lo, hi, inclusive="left")]
            slow = part[part["latency_s"] > limit_s]
            rows.append({"window": f"{name} ({lo:.1f}-{hi:.1f} s)", "where": where, "requests": len(part), "over p99": len(slow),
                         "slow arrive after window end (s)": float(slow["arrival_s"].min() - ends[k]) if len(slow) and where == "after" else np.nan,
                         "worst (s)": float(part["latency_s"].max()) if len(part) else np.nan})  # fmt: skip
    return pd.DataFrame(rows)


def _row(result, windows, count_faults: bool) -> dict:
    requests = result.requests
    keep = outside_windows(requests, windows)
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
        "arrivals outside windows": int(keep.sum()),
        "p99 outside faults (s)": float(done["latency_s"].quantile(0.99)) if len(done) else float("nan"),
        "p99 all (s)": float(requests["latency_s"].quantile(0.99)),
        "sink duplicates": int(sink.get("duplicates", 0)),
        "faults": len(windows) if count_faults else 0,
    }


def _run(label: str, args, root: Path, duration_s: float, faults) -> tuple:
    trace = root / f"trace-{label.replace(' ', '-')}.json"
    write_trace(trace, duration_s, faults)
    started = time.perf_counter()
    load = os.getloadavg()[0]
    result = run_live(soak_config(args.rate, duration_s, trace), root / label.replace(" ", "-"),
                      on_start=injector(faults) if faults else None)  # fmt: skip
    return result, {"wall (s)": round(time.perf_counter() - started, 1), "load avg 1 min (start / end)": f"{load:.1f} / {os.getloadavg()[0]:.1f}"}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--rate", type=float, default=140.0, help="requests per second (about 70%% of the sustained rate)")
    parser.add_argument("--period-s", type=float, default=60.0, help="one fault this often")
    parser.add_argument("--settle-s", type=float, default=2.0, help="the backlog stays low this long to count as recovered")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    duration_s = 60.0 * args.minutes
    faults = fault_times(duration_s, args.period_s)
    root = args.out or Path(tempfile.mkdtemp(prefix="edgebatch-soak-"))
    root.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault(KEY_ENV, os.urandom(32).hex())  # the fuzz is unsigned: it must be dead-lettered
    clean, clean_extra = _run("fault-free", args, root, duration_s, [])
    faulty, faulty_extra = _run("with faults", args, root, duration_s, faults)
    threshold = max(5.0, float(np.quantile(backlog(clean.requests, np.arange(0.0, duration_s, 0.1)), 0.99)))
    windows = fault_windows(faulty.requests, struck_times(faults, faulty.extra["faults"]), threshold, args.settle_s)
    rows = {"fault-free": {**_row(clean, windows, False), **clean_extra}, "with faults": {**_row(faulty, windows, True), **faulty_extra}}
    print(f"faults (struck at, window end; backlog threshold {threshold:.0f} requests):")
    for name, start_s, end_s in windows:
        print(f"  {name:15s} struck {start_s + 1.0:7.1f} s  recovered {end_s:7.1f} s  window {end_s - start_s:5.1f} s")
    covered_s = sum(end_s - start_s for _, start_s, end_s in windows)
    print(f"windows cover {covered_s:.0f} s of {duration_s:.0f} s")
    table = pd.DataFrame(rows)
    print(table.to_string())
    limit_s = rows["fault-free"]["p99 outside faults (s)"]
    print(f"\nwhere the tail is (requests over the fault-free p99 of {limit_s * 1000:.1f} ms, with faults):")
    print(tail_table(faulty.requests, windows, limit_s).to_string(index=False))
    faulty_p99 = rows["with faults"]["p99 outside faults (s)"]
    print(f"p99 outside the fault windows: {faulty_p99:.4f} s against {limit_s:.4f} s fault-free: ratio {faulty_p99 / limit_s:.2f} (target <= 1.20)")
    table.to_csv(root / "soak.csv")
    print(f"-> {root}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
