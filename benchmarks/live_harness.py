"""The live harness's own cost (issue 5): added latency, sustained rate, decision time.

Everything runs on one embedded pulsar-lite broker started here, and every
figure has its baseline measured in the same run, on the same broker:

1. Added latency at low load. A live run (tiny ``mlp`` model, no batching,
   ``--requests`` requests at ``--low-rate`` req/s, 1 KB payloads): each
   request's end-to-end latency less the model's own time (``service_s``),
   against a plain pulsar-client round trip (a producer on topic A, a
   consumer thread echoing to topic B, a consumer on B; 1 KB, same rate).
   The harness path has one broker hop more than the round trip (source ->
   gateway -> worker -> gateway, against A -> echo -> B). Target: under 2 ms
   of added p50.
2. Sustained rate. Short live runs at increasing offered rates (timeout
   batching up to 32 requests / 5 ms, 1 KB, ``--duration-s`` seconds each):
   achieved throughput (completions over the span from the first arrival to
   the last completion), p50/p99 latency, and whether the run sustained the
   rate (every request completed, p99 under ``--p99-limit-s``, throughput
   within 5 % of the offered rate). Baseline: the plain echo pipeline's
   throughput (sent as fast as they come back, at most 500 on their way).
   Target: 2,000 req/s. Also the timeout batching's ``max_inflight`` is
   ``executor``: a batch forms when the worker is free (as in
   conf/policy/batching/timeout.yaml), so batches grow with the load.
3. Decision time. ``Scheduler.handle`` timed per event over a synthetic
   stream of ``--events`` events (Poisson arrivals, timeout batching 32 /
   5 ms, timers and finished batches of a 1-slot executor) and over the
   event log the lowest-rate run of part 2 recorded (``live.event_log``).
   Baseline: a no-op handler timed the same way (the timer's own floor).
   Target: under 20 us median.

    python -m benchmarks.live_harness [--rates 500,1000,2000,3000,4000,6000,8000] [--duration-s 4] [--out DIR]

Prints one table (pandas ``to_string``). Timings depend on the machine and on
whatever else runs on it: the figures are for this machine, this run.
"""

from __future__ import annotations

import argparse
import heapq
import math
import os
import shutil
import struct
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd

from live.wire.broker import EmbeddedBroker, connect, topic
from live.eventlog import first_mismatch, log_path, read_log
from live.deploy.local import run_live

PAYLOAD_BYTES = 1024
_STAMP = struct.Struct("<qd")  # sequence number, send time (perf_counter)


def _pct(values, q) -> float:
    values = np.asarray(values, dtype=float)
    values = values[np.isfinite(values)]
    return float(np.percentile(values, q)) if len(values) else math.nan


# ---------------------------------------------------------------------------
# The plain pulsar-client baseline: A -> echo -> B
# ---------------------------------------------------------------------------


class _Echo:
    """A producer on A, a consumer thread echoing A to B, a consumer thread on B timing each message."""

    def __init__(self, url: str, run_id: str):
        import pulsar

        self.client, _ = connect(url)
        a, b = topic(run_id, "echo-a"), topic(run_id, "echo-b")
        shared = dict(consumer_type=pulsar.ConsumerType.Shared, initial_position=pulsar.InitialPosition.Earliest)
        producer_kw = dict(batching_enabled=False, block_if_queue_full=True, send_timeout_millis=0)
        self.consumer_a = self.client.subscribe(a, "echo", receiver_queue_size=1000, **shared)
        self.consumer_b = self.client.subscribe(b, "timer", receiver_queue_size=1000, **shared)
        self.producer_a = self.client.create_producer(a, **producer_kw)
        self.producer_b = self.client.create_producer(b, **producer_kw)
        self.stop = threading.Event()
        self.received: dict[int, float] = {}
        self.done = threading.Event()
        self.expected = 0
        self._threads = [threading.Thread(target=self._echo, daemon=True), threading.Thread(target=self._time, daemon=True)]
        for thread in self._threads:
            thread.start()

    def _echo(self) -> None:
        import pulsar

        consumer, producer = self.consumer_a, self.producer_b
        while not self.stop.is_set():
            try:
                msg = consumer.receive(timeout_millis=100)
            except pulsar.Timeout:
                continue
            producer.send_async(msg.data(), None)
            consumer.acknowledge(msg)

    def _time(self) -> None:
        import pulsar

        consumer, received = self.consumer_b, self.received
        while not self.stop.is_set():
            try:
                msg = consumer.receive(timeout_millis=100)
            except pulsar.Timeout:
                continue
            now = time.perf_counter()
            seq, sent = _STAMP.unpack_from(msg.data())
            received.setdefault(seq, now - sent)
            consumer.acknowledge(msg)
            if len(received) >= self.expected:
                self.done.set()

    def round_trips(self, count: int, rate_rps: float, *, first_seq: int = 0, timeout_s: float = 60.0, window: int | None = None) -> np.ndarray:
        """Round trips (s) of ``count`` messages sent at ``rate_rps`` (inf: as fast as the client takes them),
        with at most ``window`` messages on their way at a time (None: no bound)."""
        self.received.clear()
        self.done.clear()
        self.expected = count
        pad = b"\0" * (PAYLOAD_BYTES - _STAMP.size)
        start = time.perf_counter()
        for k in range(count):
            if math.isfinite(rate_rps):
                due = start + k / rate_rps
                while (wait := due - time.perf_counter()) > 0:
                    time.sleep(wait)
            if window is not None:
                while k - len(self.received) >= window and not self.stop.is_set():
                    time.sleep(0.0002)
            self.producer_a.send_async(_STAMP.pack(first_seq + k, time.perf_counter()) + pad, None)
        self.done.wait(timeout_s)
        return np.array([self.received[s] for s in sorted(self.received)])

    def close(self) -> None:
        self.stop.set()
        for thread in self._threads:
            thread.join(timeout=2)
        self.client.close()


def plain_round_trip(url: str, count: int, rate_rps: float) -> np.ndarray:
    echo = _Echo(url, "bench-rtt" + str(os.getpid()))
    try:
        echo.round_trips(50, rate_rps * 5 if math.isfinite(rate_rps) else rate_rps, first_seq=10**9)  # warm-up
        return echo.round_trips(count, rate_rps)
    finally:
        echo.close()


def plain_throughput(url: str, count: int, window: int = 500) -> float:
    """Messages per second through A -> echo -> B, sent as fast as they come back (at most ``window`` on their way:
    an unbounded backlog stalls the embedded broker)."""
    echo = _Echo(url, "bench-tput" + str(os.getpid()))
    try:
        echo.round_trips(200, math.inf, first_seq=10**9, window=window)  # warm-up
        start = time.perf_counter()
        trips = echo.round_trips(count, math.inf, timeout_s=60, window=window)
        return len(trips) / (time.perf_counter() - start)
    finally:
        echo.close()


# ---------------------------------------------------------------------------
# Live runs
# ---------------------------------------------------------------------------


def live_config(*, url: str, num_requests: int, rate_rps: float, batching: dict, event_log: bool = False, seed: int = 0) -> dict:
    return {
        "seed": seed,
        "workload": {
            "num_requests": int(num_requests),
            "sources": [{"name": "cam", "size_bytes": PAYLOAD_BYTES, "slo_s": 1.0, "gateway": "edge",
                         "arrivals": {"kind": "poisson", "rate_rps": float(rate_rps)}}],
        },
        "cluster": {"executors": [{"name": "edge", "kind": "edge", "gateway": "edge",
                                   "profile": {"kind": "linear", "per_item_s": 0.00002, "base_s": 0.0002}}]},
        "policy": {"placement": {"_target_": "policies.placement.StaticPlacement"}, "batching": batching},
        "live": {"broker": {"url": url}, "model": "mlp", "timeout_s": 120, "startup_timeout_s": 90, "event_log": event_log},
    }  # fmt: skip


def low_load_run(url: str, out: Path, count: int, rate_rps: float) -> dict:
    config = live_config(url=url, num_requests=count, rate_rps=rate_rps, batching={"_target_": "policies.batching.NoBatching"})
    result = run_live(config, out)
    done = result.requests[result.requests["completed_s"].notna()]
    batches = result.batches.set_index("batch_id")
    start_s = batches.loc[done["batch_id"], "start_s"].to_numpy()
    end_s = batches.loc[done["batch_id"], "end_s"].to_numpy()
    return {
        "result": result,
        # the three hops: source -> gateway (to the dispatch), gateway -> worker (to the model's start),
        # worker -> gateway (from the model's end to the completion)
        "hops_s": [(done["dispatched_s"] - done["arrival_s"]).to_numpy(), start_s - done["dispatched_s"].to_numpy(),
                   done["completed_s"].to_numpy() - end_s],
        "source_lag_s": result.extra["roles"].get("source-cam", {}).get("send_lag_s", {}).get("p50", math.nan),
        "latency_s": done["latency_s"].to_numpy(),
        "service_s": done["service_s"].to_numpy(),
        "overhead_s": (done["latency_s"] - done["service_s"]).to_numpy(),
    }


def rate_run(url: str, out: Path, rate_rps: float, duration_s: float, *, event_log: bool, p99_limit_s: float) -> dict:
    count = int(round(rate_rps * duration_s))
    batching = {"_target_": "policies.batching.TimeoutBatching", "max_batch_size": 32, "max_wait_s": 0.005, "max_inflight": "executor"}
    config = live_config(url=url, num_requests=count, rate_rps=rate_rps, batching=batching, event_log=event_log)
    result = run_live(config, out)
    summary, roles = result.summary, result.extra["roles"]
    gateway, source = roles.get("gateway-edge", {}), roles.get("source-cam", {})
    throughput = float(summary["throughput_rps"])
    # the offered rate of this run's own arrivals (Poisson: not exactly rate_rps)
    offered = count / max(float(result.requests["arrival_s"].max() - result.requests["arrival_s"].min()), 1e-9)
    p99 = float(summary["latency_p99_s"])
    sustained = bool(summary["completed"] == count and p99 <= p99_limit_s and throughput >= 0.95 * offered)
    return {
        "count": count,
        "offered_rps": offered,
        "throughput_rps": throughput,
        "completed": int(summary["completed"]),
        "p50_s": float(summary["latency_p50_s"]),
        "p99_s": p99,
        "mean_batch": float(summary["mean_batch_size"]),
        "sustained": sustained,
        "source_lag_p99_s": float(source.get("send_lag_s", {}).get("p99", math.nan)),
        "ingest_lag_p99_s": float(gateway.get("ingest_lag_s", {}).get("p99", math.nan)),
        "timer_late_p99_s": float(gateway.get("timer_late_s", {}).get("p99", math.nan)),
        "out": out,
    }


# ---------------------------------------------------------------------------
# Decision time
# ---------------------------------------------------------------------------


def synthetic_events(num_events: int, *, rate_rps: float = 1000.0, seed: int = 0):
    """An event stream a 1-slot executor under timeout batching (32 / 5 ms) would produce, with its scheduler's config."""
    from policies.events import BatchFinished, Request, RequestArrived, TimerFired
    from policies.factory import make_scheduler_factory
    from spec.build import build_cluster

    cluster_config = {"executors": [{"name": "edge", "kind": "edge", "gateway": "edge",
                                     "profile": {"kind": "linear", "per_item_s": 0.0002, "base_s": 0.001}}]}  # fmt: skip
    policy = {"placement": {"_target_": "policies.placement.StaticPlacement"},
              "batching": {"_target_": "policies.batching.TimeoutBatching", "max_batch_size": 32, "max_wait_s": 0.005,
                           "max_inflight": 1}}  # fmt: skip

    def make():
        return make_scheduler_factory(policy)("edge", build_cluster(cluster_config))

    scheduler = make()
    gaps = np.random.default_rng(seed).exponential(1.0 / rate_rps, num_events)
    arrivals = np.cumsum(gaps).tolist()
    heap: list = []  # (due, seq, kind, item)
    timers: dict[str, tuple[float, int]] = {}
    events = []
    seq = 0
    next_arrival = 0
    while len(events) < num_events:
        due = heap[0][0] if heap else math.inf
        if next_arrival < len(arrivals) and arrivals[next_arrival] <= due:
            t = arrivals[next_arrival]
            event = RequestArrived(now_s=t, request=Request(request_id=next_arrival, source="cam", arrival_s=t, size_bytes=1024, deadline_s=t + 1.0))
            next_arrival += 1
        elif heap:
            t, _, kind, item = heapq.heappop(heap)
            if kind == "timer":
                if timers.get(item[0]) != (t, item[1]):
                    continue
                del timers[item[0]]
                event = TimerFired(now_s=t, timer_id=item[0])
            else:
                event = BatchFinished(now_s=t, batch_id=item[0], executor="edge", service_s=item[1])
        else:
            break
        events.append(event)
        for action in scheduler.handle(event):
            name = type(action).__name__
            if name == "StartTimer":
                seq += 1
                timers[action.timer_id] = (action.at_s, seq)
                heapq.heappush(heap, (action.at_s, seq, "timer", (action.timer_id, seq)))
            elif name == "CancelTimer":
                timers.pop(action.timer_id, None)
            elif name == "DispatchBatch":
                service = 0.001 + 0.0002 * len(action.request_ids)
                seq += 1
                heapq.heappush(heap, (t + service, seq, "done", (action.batch_id, service)))
    return events, make


def time_handle(events, scheduler) -> np.ndarray:
    """Per-event wall time (s) of ``scheduler.handle`` (or any callable's ``handle``)."""
    clock = time.perf_counter_ns
    handle = scheduler.handle
    out = np.empty(len(events), dtype=np.int64)
    for k, event in enumerate(events):
        t0 = clock()
        handle(event)
        out[k] = clock() - t0
    return out / 1e9


class _NoOp:
    def handle(self, event):
        return []


# ---------------------------------------------------------------------------
# The table
# ---------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=300, help="requests of the low-load run (part 1)")
    parser.add_argument("--low-rate", type=float, default=20.0, help="req/s of the low-load run and the round trips")
    parser.add_argument("--rates", default="500,1000,2000,3000,4000,6000,8000", help="offered rates of part 2 (req/s, comma-separated)")
    parser.add_argument("--duration-s", type=float, default=4.0, help="seconds of arrivals per rate run")
    parser.add_argument("--p99-limit-s", type=float, default=1.0, help="a run sustains its rate only with p99 under this")
    parser.add_argument("--events", type=int, default=100_000, help="events of the synthetic decision-time stream")
    parser.add_argument("--echo-messages", type=int, default=20_000, help="messages of the plain echo throughput baseline")
    parser.add_argument("--out", help="keep the runs' folders here (default: a temporary folder, removed)")
    parser.add_argument("--skip", default="", help="parts to skip: latency,rate,decision")
    return parser


class _Rows(list):
    """The result table's rows: harness against baseline, in milliseconds unless ``scale`` says otherwise."""

    def add(self, part, metric, harness, baseline=math.nan, target="", note="", scale=1e3) -> None:
        ratio = harness / baseline if baseline and math.isfinite(baseline) and math.isfinite(harness) else math.nan
        self.append({"part": part, "metric": metric, "harness": harness * scale, "baseline": baseline * scale,
                     "ratio": ratio, "target": target, "note": note})  # fmt: skip


def _latency_part(url: str, root: Path, args, rows: _Rows) -> None:
    """1. added latency at low load."""
    rtt = plain_round_trip(url, args.requests, args.low_rate)
    low = low_load_run(url, root / "low-load", args.requests, args.low_rate)
    overhead = low["overhead_s"]
    added = _pct(overhead, 50) - _pct(rtt, 50)
    part = f"1 latency @{args.low_rate:g} rps"
    rows.add(part, "latency p50 (ms)", _pct(low["latency_s"], 50), note="end to end, model included")
    rows.add(part, "service_s p50 (ms)", _pct(low["service_s"], 50), note="the model's own time")
    rows.add(part, "latency - service p50 (ms)", _pct(overhead, 50), _pct(rtt, 50), note="baseline: plain A->echo->B round trip")
    rows.add(part, "latency - service p95 (ms)", _pct(overhead, 95), _pct(rtt, 95), note="baseline: plain round trip p95")
    rows.add(part, "added p50 (ms)", added, target="< 2 ms", note="PASS" if added < 0.002 else "FAIL")
    hops = low["hops_s"]
    rows.add(part, "hop p50: source->gateway (ms)", _pct(hops[0], 50), _pct(rtt, 50) / 2,
             note=f"arrival to dispatch; source send lag p50 {low['source_lag_s'] * 1e3:.2f} ms; baseline: half the round trip")
    rows.add(part, "hop p50: gateway->worker (ms)", _pct(hops[1], 50), _pct(rtt, 50) / 2, note="dispatch to the model's start")
    rows.add(part, "hop p50: worker->gateway (ms)", _pct(hops[2], 50), _pct(rtt, 50) / 2, note="the model's end to completion")
    rows.add(part, "completed", float(len(overhead)), float(len(rtt)), note=f"of {args.requests}", scale=1.0)


def _rate_part(url: str, root: Path, args, rates: list[float], record_first: bool, rows: _Rows) -> Path | None:
    """2. sustained rate; returns the event log of the first rate's run (recorded when ``record_first``)."""
    echo_rps = plain_throughput(url, args.echo_messages)
    best = 0.0
    recorded_log = None
    for k, rate in enumerate(rates):
        record = k == 0 and record_first
        run = rate_run(url, root / f"rate-{int(rate)}", rate, args.duration_s, event_log=record, p99_limit_s=args.p99_limit_s)
        if record:
            recorded_log = log_path(run["out"], "edge")
        part = f"2 rate {rate:g} rps"
        rows.add(part, "throughput (req/s)", run["throughput_rps"], echo_rps, scale=1.0,
                 note=f"offered {run['offered_rps']:.0f}; baseline: plain echo pipeline msgs/s")  # fmt: skip
        rows.add(part, "latency p50 (ms)", run["p50_s"], note=f"mean batch {run['mean_batch']:.1f}")
        rows.add(part, "latency p99 (ms)", run["p99_s"], target=f"<= {args.p99_limit_s * 1e3:g} ms")
        rows.add(part, "sustained (1 yes, 0 no)", float(run["sustained"]), scale=1.0,
                 note=f"{run['completed']}/{run['count']} done; lag p99: source {run['source_lag_p99_s'] * 1e3:.1f} ms, "
                      f"ingest {run['ingest_lag_p99_s'] * 1e3:.1f} ms, timers {run['timer_late_p99_s'] * 1e3:.1f} ms"
                      + ("; event log on" if record else ""))  # fmt: skip
        if run["sustained"]:
            best = max(best, rate)
    rows.add("2 rate", "highest sustained (req/s)", best, echo_rps, target=">= 2000", note="PASS" if best >= 2000 else "FAIL", scale=1.0)
    return recorded_log


def _decision_part(args, rates: list[float], recorded_log: Path | None, rows: _Rows) -> None:
    """3. decision time: a synthetic event stream, and the live run's recorded one (replayed, checked)."""
    events, make = synthetic_events(args.events)
    floor = time_handle(events, _NoOp())
    took = time_handle(events, make())
    part = f"3 decision ({len(events)} synthetic events)"
    rows.add(part, "handle median (us)", _pct(took, 50), _pct(floor, 50), scale=1e6, target="< 20 us",
             note=("PASS" if _pct(took, 50) < 20e-6 else "FAIL") + "; baseline: a no-op handle, timed the same way")  # fmt: skip
    rows.add(part, "handle p99 (us)", _pct(took, 99), _pct(floor, 99), scale=1e6)
    if recorded_log is None or not recorded_log.is_file():
        return
    import json

    from policies.factory import make_scheduler_factory
    from spec.build import build_cluster

    config = json.loads((recorded_log.parent.parent / "config.json").read_text())  # the recorded run's own config
    _, entries = read_log(recorded_log)
    logged = [e.event for e in entries if e.event is not None]
    floor = time_handle(logged, _NoOp())
    took = time_handle(logged, make_scheduler_factory(config["policy"])("edge", build_cluster(config["cluster"])))
    part = f"3 decision ({len(logged)} events, live log @{rates[0]:g} rps)"
    same = first_mismatch(entries, make_scheduler_factory(config["policy"])("edge", build_cluster(config["cluster"]))) is None
    rows.add(part, "handle median (us)", _pct(took, 50), _pct(floor, 50), scale=1e6, target="< 20 us",
             note="PASS" if _pct(took, 50) < 20e-6 else "FAIL")  # fmt: skip
    rows.add(part, "handle p99 (us)", _pct(took, 99), _pct(floor, 99), scale=1e6,
             note="replayed actions identical to the logged ones: " + ("yes" if same else "NO"))


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    rates = [float(r) for r in args.rates.split(",") if r.strip()]
    keep = args.out is not None
    root = Path(args.out) if keep else Path(tempfile.mkdtemp(prefix="edgebatch-bench-"))
    root.mkdir(parents=True, exist_ok=True)
    rows = _Rows()
    started = time.perf_counter()
    broker = EmbeddedBroker(root / "broker", keep_data=False).start()
    recorded_log = None
    try:
        if "latency" not in skip:
            _latency_part(broker.url, root, args, rows)
        if "rate" not in skip:
            recorded_log = _rate_part(broker.url, root, args, rates, "decision" not in skip, rows)
        if "decision" not in skip:
            _decision_part(args, rates, recorded_log, rows)
    finally:
        broker.close()
        if not keep:
            shutil.rmtree(root, ignore_errors=True)

    table = pd.DataFrame(rows).set_index(["part", "metric"])
    with pd.option_context("display.width", 250, "display.max_colwidth", 120, "display.float_format", "{:,.3f}".format):
        print(f"Live harness on this machine ({os.cpu_count()} cores), one embedded pulsar-lite broker, "
              f"{PAYLOAD_BYTES} B payloads, mlp model; {time.perf_counter() - started:.0f} s")  # fmt: skip
        print(table.to_string())
    return 0

if __name__ == "__main__":
    raise SystemExit(main())
