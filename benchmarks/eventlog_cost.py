"""What the gateway's event log costs, and how long a restarted gateway takes to replay it.

``python -m benchmarks.eventlog_cost [--requests 20000] [--repeat 5]``

One in-process gateway (``live.roles.gateway.Gateway``, the soak's config:
timeout batching to a cloud server behind an emulated link), no broker: its
sends go to a list, its clock is advanced by hand, each batch answered at
once. The same request stream goes through it without a log and with the
log (``live.recovery_log``: every event and its actions encoded, committed
every 50 ms of run time, as ``gateway._Acks`` does). Printed: the gateway's
own CPU time per request either way, the difference per request and per
logged call, the log's bytes per request, and the replay
(``live.roles.gateway_replay``) time per logged call and for the whole log.
The gateway's in-process time is only part of a request's cost in a live run
(the broker, the worker, the sink), so the ratio is an upper bound on the
share the log adds there. Median and range over ``--repeat`` runs, measured
in the same process.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import pandas as pd

from live.config import Topics, build_run
from live.eventlog import EventLog
from live.roles.gateway import Gateway
from live.roles.gateway_replay import open_event_log
from live.wire.messages import Kind, decode, encode_request, encode_result


def _config(num_requests: int) -> dict:
    return {
        "seed": 11,
        "workload": {"num_requests": num_requests, "sources": [{"name": "cam", "size_bytes": 2048, "slo_s": 0.5, "gateway": "edge",
                                                               "arrivals": {"kind": "poisson", "rate_rps": 140.0}}]},
        "cluster": {"executors": [{"name": "cloud", "kind": "cloud", "slots": 2,
                                   "profile": {"kind": "linear", "per_item_s": 0.0005, "base_s": 0.002}}],
                    "links": {"cloud": {"delay_s": 0.005, "bandwidth_MBps": 10.0}}},
        "policy": {"placement": {"_target_": "policies.placement.StaticPlacement"},
                   "batching": {"_target_": "policies.batching.TimeoutBatching", "max_batch_size": 8, "max_wait_s": 0.01}},
    }  # fmt: skip


class _Clock:
    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t


def _drive(spec, messages, path: Path | None) -> tuple[float, int, int]:
    """(gateway CPU seconds, logged calls, log bytes) for the whole stream."""
    clock, sent = _Clock(), []
    gateway = Gateway(spec, "edge", Topics("bench"), lambda topic, data, properties=None: sent.append(data), clock)
    if path is not None:
        gateway.event_log = EventLog(path, "edge")
    next_commit_s = 0.05
    started = time.process_time()
    for arrival_s, raw in messages + [(messages[-1][0] + k, None) for k in (1.0, 2.0, 3.0)]:  # then drained
        clock.t = max(clock.t, arrival_s)
        if raw is not None:
            gateway.on_request(raw)
        gateway.poll()  # timers, the uplink, results coming back
        for data in sent:
            message = decode(data)
            if message.kind is Kind.BATCH:  # answered at once
                gateway.on_result(encode_result(message.batch_id, list(message.ids), source="w", meta={"executor": "cloud"},
                                                ts={"start_s": clock.t, "end_s": clock.t, "service_s": 0.002}))  # fmt: skip
        sent.clear()
        if gateway.event_log is not None and clock.t >= next_commit_s:
            gateway.event_log.commit()
            next_commit_s = clock.t + 0.05
    elapsed = time.process_time() - started
    assert gateway.ended == len(messages), (gateway.ended, len(messages))
    if gateway.event_log is None:
        return elapsed, 0, 0
    gateway.event_log.close()
    return elapsed, gateway.event_log.entries, path.stat().st_size


def _replay_s(spec, path: Path) -> float:
    gateway = Gateway(spec, "edge", Topics("bench"), lambda topic, data, properties=None: None, _Clock(), incarnation=1)
    started = time.perf_counter()
    log, stats = open_event_log(gateway, path, 1, ended_before=[])
    elapsed = time.perf_counter() - started
    log.close()
    assert stats["status"] == "replayed", stats
    return elapsed


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=20000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args(argv)
    spec = build_run(_config(args.requests))
    arrivals = spec.arrivals.arrival_s
    messages = [(float(a), encode_request(str(i), b"x" * 2048, source="cam", sent_s=float(a), ts={"arrival_s": float(a)}))
                for i, a in enumerate(arrivals)]  # fmt: skip
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for k in range(args.repeat):
            plain_s, _, _ = _drive(spec, messages, None)
            path = Path(tmp) / f"log-{k}.jsonl"
            logged_s, calls, size = _drive(spec, messages, path)
            replay_s = _replay_s(spec, path)
            n = args.requests
            rows.append({"gateway us/request, no log": 1e6 * plain_s / n, "gateway us/request, log": 1e6 * logged_s / n,
                         "log us/request": 1e6 * (logged_s - plain_s) / n, "log us/logged call": 1e6 * (logged_s - plain_s) / calls,
                         "ratio (log / no log)": logged_s / plain_s, "logged calls/request": calls / n, "log bytes/request": size / n,
                         "replay us/logged call": 1e6 * replay_s / calls, "replay s (whole log)": replay_s})  # fmt: skip
    table = pd.DataFrame(rows)
    summary = pd.DataFrame({"median": table.median(), "min": table.min(), "max": table.max()})
    print(f"{args.requests} requests, {args.repeat} repeats (each: no log, then log, then its replay)")
    print(summary.to_string(float_format=lambda v: f"{v:.3f}"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
