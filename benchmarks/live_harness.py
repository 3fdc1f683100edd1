"""The live harness's own cost (issues 5 and 19): added latency, sustained rate, decision time.

Everything runs on one embedded pulsar-lite broker started here, every
message is signed (HMAC-SHA256, the default), and every figure has its
baseline measured in the same run, on the same broker:

1. Added latency at low load. Live runs (tiny ``mlp`` model, no batching,
   ``--requests`` requests at ``--low-rate`` req/s, 1 KB payloads), one per
   executor mode (``--modes``): ``worker`` (a worker process: source ->
   gateway -> worker -> gateway, three broker hops) and ``inline``
   (``live.executors.edge.inline``: the model on a thread of the gateway's
   process, one broker hop). Each request's end-to-end latency less the
   model's own time (``service_s``), against a plain pulsar-client round trip
   (a producer on topic A, a consumer thread echoing to topic B, a consumer
   on B; 1 KB, same rate, two hops). Targets (issue 19): added p50 at most
   1 ms, added p99 at most 5 ms. Then where each leg's time goes, from the
   completion records' timestamps (read off the records topic by a
   subscription of this benchmark's own) and the roles' statistics: the
   source's sleep overshoot, sent -> taken by the gateway's loop, the
   scheduler, dispatch -> the executor has the batch, decoding it, the
   model's end -> completion; and the cold cost of encoding+signing and
   decoding+verifying each kind of message (one per wake-up, as at low load).
2. Sustained rate. Short live runs at increasing offered rates (timeout
   batching up to 32 requests / 5 ms, 1 KB, ``--duration-s`` seconds each),
   per mode: achieved throughput (completions over the span from the first
   arrival to the last completion), p50/p99 latency, and whether the run
   sustained the rate (every request completed, p99 under ``--p99-limit-s``,
   throughput within 5 % of the offered rate). Baseline: the plain echo
   pipeline's throughput (sent as fast as they come back, at most 500 on
   their way). Target (issue 19): 4,000 req/s. The timeout batching's
   ``max_inflight`` is ``executor``: a batch forms when the executor is free
   (as in conf/policy/batching/timeout.yaml), so batches grow with the load.
3. Decision time. ``Scheduler.handle`` timed per event over a synthetic
   stream of ``--events`` events (Poisson arrivals, timeout batching 32 /
   5 ms, timers and finished batches of a 1-slot executor) and over the
   event log the lowest-rate run of part 2 recorded (``live.event_log``).
   Baseline: a no-op handler timed the same way (the timer's own floor).
   Target: under 20 us median.

    python -m benchmarks.live_harness [--short] [--modes worker,inline] [--rates 500,1000,...] [--duration-s 4] [--out DIR]

``--short`` (about a minute): part 1 at 250 requests at 50 req/s, part 2 at
4,000 req/s only, for 2.5 s; no part 3. Prints one table (pandas
``to_string``) with the load average before and after. Timings depend on
the machine and on whatever else runs on it: the figures are for this
machine, this run.
"""

from __future__ import annotations

import argparse
import heapq
import math
import os
import shutil
import struct
import secrets
import tempfile
import threading
import time
import uuid
from pathlib import Path

import numpy as np
import pandas as pd

from live.config import Topics
from live.wire.broker import EmbeddedBroker, connect, topic
from live.wire.messages import KEY_ENV, DecodeError, Kind, decode, encode_batch, encode_request, encode_result, key_from_env
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


def live_config(*, url: str, num_requests: int, rate_rps: float, batching: dict, event_log: bool = False, seed: int = 0,
                inline: bool = False) -> dict:
    """The benchmark's run: one source, one edge executor (``inline``: run in the gateway's process, no worker hop)."""
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
        "live": {"broker": {"url": url}, "model": "mlp", "timeout_s": 120, "startup_timeout_s": 90, "event_log": event_log,
                 "executors": {"edge": {"inline": True}} if inline else {}},
    }  # fmt: skip


def _tap_records(url: str, run_id: str):
    """A subscription of our own on the run's records topic (made before the run, drained after it)."""
    import pulsar

    client, _ = connect(url)
    consumer = client.subscribe(Topics(run_id).records, "bench-tap", consumer_type=pulsar.ConsumerType.Shared,
                                initial_position=pulsar.InitialPosition.Earliest, receiver_queue_size=1000)  # fmt: skip
    return client, consumer


def _drain_stamps(client, consumer, key: bytes) -> dict[int, dict]:
    """Request id -> the timestamps of its completion record (the gateway's and the executor's)."""
    import pulsar

    stamps: dict[int, dict] = {}
    try:
        while True:
            try:
                msg = consumer.receive(timeout_millis=500)
            except pulsar.Timeout:
                break
            consumer.acknowledge(msg)
            try:
                record = decode(msg.data(), key=key)
            except DecodeError:
                continue
            if record.kind is Kind.RESULT:
                for request_id in record.ids:
                    stamps.setdefault(int(request_id), dict(record.ts))
    finally:
        client.close()
    return stamps


def low_load_run(url: str, out: Path, count: int, rate_rps: float, *, inline: bool = False) -> dict:
    config = live_config(url=url, num_requests=count, rate_rps=rate_rps, batching={"_target_": "policies.batching.NoBatching"},
                         inline=inline)  # fmt: skip
    run_id = "bench" + uuid.uuid4().hex[:10]
    tap = _tap_records(url, run_id)
    result = run_live(config, out, run_id=run_id)
    stamps = _drain_stamps(*tap, key=key_from_env())
    done = result.requests[result.requests["completed_s"].notna()]
    ts = pd.DataFrame([stamps.get(int(r), {}) for r in done["request_id"]], index=done.index)
    col = lambda name: ts[name].to_numpy(dtype=float) if name in ts else np.full(len(ts), math.nan)  # noqa: E731
    roles = result.extra["roles"]
    gateway, source = roles.get("gateway-edge", {}), roles.get("source-cam", {})
    arrival, dispatched, completed = (done[c].to_numpy(dtype=float) for c in ("arrival_s", "dispatched_s", "completed_s"))
    received, start, end = col("received_s"), col("start_s"), col("end_s")
    return {
        "result": result,
        # the three legs: source -> gateway (to the dispatch), gateway -> executor (to the model's start),
        # executor -> gateway (from the model's end to the completion); stamps from the completion records
        "hops_s": [dispatched - arrival, start - dispatched, completed - end],
        "legs_s": {"dispatch_to_received": received - dispatched, "received_to_start": start - received},
        "source_lag_s": source.get("send_lag_s", {}).get("p50", math.nan),
        "ingest_lag_s": gateway.get("ingest_lag_s", {}).get("p50", math.nan),
        "latency_s": done["latency_s"].to_numpy(),
        "service_s": done["service_s"].to_numpy(),
        "overhead_s": (done["latency_s"] - done["service_s"]).to_numpy(),
    }


def rate_run(url: str, out: Path, rate_rps: float, duration_s: float, *, event_log: bool, p99_limit_s: float, inline: bool = False) -> dict:
    count = int(round(rate_rps * duration_s))
    batching = {"_target_": "policies.batching.TimeoutBatching", "max_batch_size": 32, "max_wait_s": 0.005, "max_inflight": "executor"}
    config = live_config(url=url, num_requests=count, rate_rps=rate_rps, batching=batching, event_log=event_log, inline=inline)
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
        # CPU-seconds per request of each role (all its threads; the gateway's loop thread alone too): robust
        # to other work on the machine where wall-clock rates are not
        "cpu_us": {name.split("-")[0]: float(stats["cpu_s"]) / count * 1e6 for name, stats in roles.items() if "cpu_s" in stats},
        "loop_cpu_us": float(gateway.get("loop_cpu_s", math.nan)) / count * 1e6,
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
    parser.add_argument("--modes", default="worker,inline",
                        help="executor modes to run: worker (a worker process, the gateway->worker->gateway hops) and/or inline "
                             "(live.executors.edge.inline: the model on a thread of the gateway's process)")
    parser.add_argument("--codec-samples", type=int, default=100, help="cold encode/decode samples per message kind")
    parser.add_argument("--short", action="store_true",
                        help="about a minute: part 1 at 250 requests at 50 req/s, part 2 at 4,000 req/s for 2.5 s, no part 3 "
                             "(explicit flags still win)")
    return parser


#: what --short changes, unless the flag is given on the command line
SHORT = {"requests": 250, "low_rate": 50.0, "rates": "4000", "duration_s": 2.5, "echo_messages": 5000, "codec_samples": 40,
         "skip": "decision"}  # fmt: skip


def parse_args(argv=None) -> argparse.Namespace:
    """The command line, with --short's settings for every flag not given."""
    parser = _parser()
    args = parser.parse_args(argv)
    if args.short:
        given = parser.parse_args(argv, namespace=argparse.Namespace(**{k: None for k in SHORT}))
        for key, value in SHORT.items():
            if getattr(given, key) is None:
                setattr(args, key, value)
    args.modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    bad = [m for m in args.modes if m not in ("worker", "inline")]
    if bad or not args.modes:
        parser.error(f"--modes: {bad or args.modes!r} is not allowed: a comma-separated list of worker, inline")
    return args


class _Rows(list):
    """The result table's rows: harness against baseline, in milliseconds unless ``scale`` says otherwise."""

    def add(self, part, metric, harness, baseline=math.nan, target="", note="", scale=1e3) -> None:
        ratio = harness / baseline if baseline and math.isfinite(baseline) and math.isfinite(harness) else math.nan
        self.append({"part": part, "metric": metric, "harness": harness * scale, "baseline": baseline * scale,
                     "ratio": ratio, "target": target, "note": note})  # fmt: skip


def codec_costs(count: int, gap_s: float = 0.01) -> dict[str, np.ndarray]:
    """Encode+sign and decode+verify times (s) of the three messages of a request's path, signed with a run key.

    One operation per wake-up, ``gap_s`` apart, round robin: at low load every message finds the process
    asleep and its caches cold, which costs several times a hot loop's figure."""
    from live.wire.messages import WireSettings, configure

    pad = b"\1" * PAYLOAD_BYTES
    makers = {
        "request": lambda: encode_request("7", pad, source="cam", sent_s=1.0, ts={"arrival_s": 1.0}),
        "batch": lambda: encode_batch("edge:7", ["7"], [pad], source="edge", ts={"dispatched_s": 1.0},
                                      meta={"executor": "edge", "memory_mb": None, "local_id": 7, "attempt": 0}),
        "result": lambda: encode_result("edge:7", ["7"], [b"\0" * 40], source="worker-edge-0", labels=[3],
                                        ts={"received_s": 1.0, "start_s": 1.0, "end_s": 1.0, "service_s": 0.001},
                                        meta={"executor": "edge", "cost": 0.0, "cold_start_s": 0.0, "threads": 1, "redelivered": 0}),
    }  # fmt: skip
    before = configure(WireSettings(key=secrets.token_bytes(32)))
    try:
        samples = {f"{kind} {op}": [] for kind in makers for op in ("encode+sign", "decode+verify")}
        clock = time.perf_counter_ns
        for _ in range(count):
            for kind, make in makers.items():
                time.sleep(gap_s)
                t0 = clock()
                data = make()
                samples[f"{kind} encode+sign"].append(clock() - t0)
                time.sleep(gap_s)
                t0 = clock()
                decode(data)
                samples[f"{kind} decode+verify"].append(clock() - t0)
    finally:
        configure(before)
    return {name: np.array(values) / 1e9 for name, values in samples.items()}


def _verdict(value: float, limit: float) -> str:
    return "PASS" if value <= limit else "FAIL"


def _latency_part(url: str, root: Path, args, rows: _Rows) -> None:
    """1. added latency at low load, per executor mode, with where each leg's time goes."""
    rtt = plain_round_trip(url, args.requests, args.low_rate)
    codec = codec_costs(args.codec_samples)
    for mode in args.modes:
        low = low_load_run(url, root / f"low-load-{mode}", args.requests, args.low_rate, inline=mode == "inline")
        part = f"1 latency @{args.low_rate:g} rps, {mode}"
        _added_rows(rows, part, low, rtt, args.requests)
        _hop_rows(rows, part, low, rtt, codec, inline=mode == "inline")
    part = "1 codec (cold, 1 KB)"
    for name, values in codec.items():
        rows.add(part, f"{name} p50 (ms)", _pct(values, 50), note=f"p99 {_pct(values, 99) * 1e3:.3f} ms; one per wake-up")


def _added_rows(rows: _Rows, part: str, low: dict, rtt: np.ndarray, requested: int) -> None:
    overhead = low["overhead_s"]
    added_p50 = _pct(overhead, 50) - _pct(rtt, 50)
    added_p99 = _pct(overhead, 99) - _pct(rtt, 99)
    rows.add(part, "latency p50 (ms)", _pct(low["latency_s"], 50), note="end to end, model included")
    rows.add(part, "service_s p50 (ms)", _pct(low["service_s"], 50), note="the model's own time")
    rows.add(part, "latency - service p50 (ms)", _pct(overhead, 50), _pct(rtt, 50), note="baseline: plain A->echo->B round trip")
    rows.add(part, "latency - service p99 (ms)", _pct(overhead, 99), _pct(rtt, 99), note="baseline: plain round trip p99")
    rows.add(part, "added p50 (ms)", added_p50, target="<= 1 ms", note=_verdict(added_p50, 0.001))
    rows.add(part, "added p99 (ms)", added_p99, target="<= 5 ms", note=_verdict(added_p99, 0.005))
    rows.add(part, "completed", float(len(overhead)), float(len(rtt)), note=f"of {requested}", scale=1.0)


def _hop_rows(rows: _Rows, part: str, low: dict, rtt: np.ndarray, codec: dict, *, inline: bool) -> None:
    """Each leg's p50, and its pieces from the records' stamps and the roles' statistics."""
    hops, legs = low["hops_s"], low["legs_s"]
    half = _pct(rtt, 50) / 2
    enc = {k: _pct(codec[f"{k} encode+sign"], 50) for k in ("request", "batch", "result")}
    dec = {k: _pct(codec[f"{k} decode+verify"], 50) for k in ("request", "batch", "result")}
    lag, ingest = low["source_lag_s"], low["ingest_lag_s"]
    rows.add(part, "leg p50: source->gateway (ms)", _pct(hops[0], 50), half, note="arrival to dispatch; baseline: half the round trip")
    rows.add(part, "  source sleep overshoot p50 (ms)", lag, note="sent_s - arrival_s (the source's send_lag_s)")
    rows.add(part, "  sent -> gateway took it p50 (ms)", ingest - lag, half,
             note=f"encode+sign {enc['request'] * 1e3:.3f}, broker hop, receiving thread->loop queue, decode+verify {dec['request'] * 1e3:.3f} "
                  "(ingest_lag_s - send_lag_s, p50s)")  # fmt: skip
    rows.add(part, "  took it -> dispatched p50 (ms)", _pct(hops[0], 50) - ingest, note="scheduler and admission (p50 difference)")
    where = "inline thread" if inline else "worker"
    rows.add(part, f"leg p50: gateway->{where} (ms)", _pct(hops[1], 50), 0.0 if inline else half, note="dispatch to the model's start")
    rows.add(part, f"  dispatched -> {where} has it p50 (ms)", _pct(legs["dispatch_to_received"], 50),
             note=f"encode+sign {enc['batch'] * 1e3:.3f}, " + ("hand-off to the thread" if inline else "broker hop, worker receive"))
    rows.add(part, f"  {where} has it -> model starts p50 (ms)", _pct(legs["received_to_start"], 50),
             note=f"decode+verify+check (cold codec alone {dec['batch'] * 1e3:.3f})")
    rows.add(part, f"leg p50: {where}->gateway (ms)", _pct(hops[2], 50), 0.0 if inline else half,
             note=f"model end to completion: encode+sign {enc['result'] * 1e3:.3f}, "
                  + ("hand-off to the loop" if inline else "broker hop, listener->loop queue")
                  + f", decode+verify {dec['result'] * 1e3:.3f}")  # fmt: skip


def _rate_part(url: str, root: Path, args, rates: list[float], record_first: bool, rows: _Rows) -> Path | None:
    """2. sustained rate; returns the event log of the first rate's run (recorded when ``record_first``)."""
    echo_rps = plain_throughput(url, args.echo_messages)
    recorded_log = None
    for mode in args.modes:
        inline = mode == "inline"
        best = 0.0
        for k, rate in enumerate(rates):
            record = k == 0 and record_first and recorded_log is None
            run = rate_run(url, root / f"rate-{mode}-{int(rate)}", rate, args.duration_s, event_log=record, p99_limit_s=args.p99_limit_s,
                           inline=inline)  # fmt: skip
            if record:
                recorded_log = log_path(run["out"], "edge")
            if run["sustained"]:
                best = max(best, rate)
            _rate_rows(rows, f"2 rate {rate:g} rps, {mode}", run, echo_rps, args.p99_limit_s, record)
        rows.add(f"2 rate, {mode}", "highest sustained (req/s)", best, echo_rps, target=">= 4000", note=_verdict(-best, -4000), scale=1.0)
    return recorded_log


def _rate_rows(rows: _Rows, part: str, run: dict, echo_rps: float, p99_limit_s: float, record: bool) -> None:
    """One rate run's rows: throughput against the echo pipeline's, latency, and whether it sustained the rate."""
    rows.add(part, "throughput (req/s)", run["throughput_rps"], echo_rps, scale=1.0,
             note=f"offered {run['offered_rps']:.0f}; baseline: plain echo pipeline msgs/s")  # fmt: skip
    rows.add(part, "latency p50 (ms)", run["p50_s"], note=f"mean batch {run['mean_batch']:.1f}")
    rows.add(part, "latency p99 (ms)", run["p99_s"], target=f"<= {p99_limit_s * 1e3:g} ms")
    rows.add(part, "sustained (1 yes, 0 no)", float(run["sustained"]), scale=1.0,
             note=f"{run['completed']}/{run['count']} done; lag p99: source {run['source_lag_p99_s'] * 1e3:.1f} ms, "
                  f"ingest {run['ingest_lag_p99_s'] * 1e3:.1f} ms, timers {run['timer_late_p99_s'] * 1e3:.1f} ms"
                  + ("; event log on" if record else ""))  # fmt: skip
    cpu = run["cpu_us"]
    rows.add(part, "gateway CPU per request (us)", cpu.get("gateway", math.nan), scale=1.0,
             note=f"its loop thread alone {run['loop_cpu_us']:.0f} us; " + ", ".join(f"{k} {v:.0f}" for k, v in sorted(cpu.items()) if k != "gateway")
                  + " us (all threads, CPU time)")  # fmt: skip


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
    args = parse_args(argv)
    os.environ.setdefault(KEY_ENV, secrets.token_hex(32))  # the runs' key: the records tap verifies what it reads
    load_before = os.getloadavg()
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
              f"{PAYLOAD_BYTES} B payloads, mlp model, every message signed; {time.perf_counter() - started:.0f} s"
              + (" (--short)" if args.short else "")
              + "; load average (1 min) before / after: {:.2f} / {:.2f}".format(load_before[0], os.getloadavg()[0]))  # fmt: skip
        print(table.to_string())
    return 0

if __name__ == "__main__":
    raise SystemExit(main())
