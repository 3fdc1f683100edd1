"""Calibrate the simulator from the live executors on this machine: ``python -m experiments.calibrate``.

Measures, with the live harness's own pieces:

- service time against batch size for each model and thread count, timed
  exactly as a live worker times a batch (``live.roles.worker.ModelRunner.run``:
  payload bytes to tensor, forward pass, outputs to records);
- its noise (each measurement over the mean of its batch size: residual ratios);
- cold starts: a serverless instance process (``python -m live.roles.worker --stdio``)
  from spawn to its ``ready`` frame (process start, torch import, model load);
- the message hop: one-way latency of an encoded message through the embedded
  broker (producer to consumer) on an idle machine, and, from a short live
  run at overload, the hop a result really takes back to the gateway
  (``hop_s``, which the simulator adds per hop) and the worker's per-batch
  overhead outside the model (``overhead_s``: the slot stays busy that long
  after each service), the delay from a request's making to its dispatch
  (``ingest_s``: source hop and gateway), and how much slower the model runs
  beside the other roles on these cores (``contention_factor``, applied to
  the isolated measurements).

Writes ``conf/profile/calibrated.yaml`` (use it with ``profile=calibrated``)
and ``results/calibration/fit.png`` (measurements against the fitted profile).
The server profiles (edge and cloud) come from ``--edge-threads`` and
``--cloud-threads``; the serverless profile is a table over memory sizes,
each run at ``memory_mb / mb_per_thread`` threads as the live pool runs it.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import yaml

from experiments.paths import REPO_ROOT, RESULTS_DIR

__all__ = ["CALIBRATED", "calibrate", "measure_service", "measure_cold_starts", "measure_hop", "main"]

CALIBRATED = REPO_ROOT / "conf" / "profile" / "calibrated.yaml"
BATCH_SIZES = (1, 2, 4, 8, 16, 32)
MEMORY_MB = (1024, 2048, 3072, 4096)


def measure_service(model: str, threads: int, batch_sizes=BATCH_SIZES, *, repeats: int, size_bytes: int) -> dict[int, np.ndarray]:
    """Seconds per batch, ``repeats`` times per batch size, timed as a live worker times it."""
    from live.wire.messages import decode, encode_batch
    from live.roles.worker import ModelRunner

    runner = ModelRunner(model, threads)
    rng = np.random.default_rng(0)
    samples = {}
    for size in batch_sizes:
        payloads = [rng.integers(0, 256, size_bytes, dtype=np.uint8).tobytes() for _ in range(size)]
        message = decode(encode_batch("calibration", [str(i) for i in range(size)], payloads, source="calibrate"))
        for _ in range(3):  # warm up this shape
            runner.run(message, time.perf_counter)
        times = []
        for _ in range(repeats):
            _, _, start_s, end_s = runner.run(message, time.perf_counter)
            times.append(end_s - start_s)
        samples[size] = np.asarray(times)
    return samples


def measure_cold_starts(model: str, threads: int, count: int) -> list[float]:
    """Spawn-to-ready seconds of ``count`` serverless instance processes, one at a time."""
    from live.wire.messages import decode
    from live.roles.worker import read_frame

    results = []
    for _ in range(count):
        started = time.perf_counter()
        proc = subprocess.Popen(
            [sys.executable, "-m", "live.roles.worker", "--stdio", "--model", model, "--threads", str(threads), "--epoch", str(time.time())],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, cwd=REPO_ROOT,
        )  # fmt: skip
        try:
            frame = read_frame(proc.stdout)
            if frame is None or decode(frame).meta.get("pid") != proc.pid:
                raise RuntimeError("the instance did not report ready")
            results.append(time.perf_counter() - started)
        finally:
            proc.stdin.close()
            proc.wait(timeout=30)
    return results


def measure_hop(messages: int = 300, size_bytes: int = 1024) -> list[float]:
    """One-way seconds of encoded messages through a fresh embedded broker."""
    import pulsar

    from live.wire.broker import EmbeddedBroker, connect
    from live.wire.messages import decode, encode_request

    with tempfile.TemporaryDirectory() as folder, EmbeddedBroker(folder) as broker:
        client, _ = connect(broker.url)
        try:
            consumer = client.subscribe("calibration-hop", "hop", consumer_type=pulsar.ConsumerType.Shared)
            producer = client.create_producer("calibration-hop", batching_enabled=False)
            payload = bytes(size_bytes)
            hops = []
            for index in range(messages):
                producer.send(encode_request(str(index), payload, source="calibrate", sent_s=time.time()))
                message = consumer.receive(timeout_millis=5000)
                hops.append(time.time() - decode(message.data()).ts["sent_s"])
                consumer.acknowledge(message)
                time.sleep(0.002)
            return hops
        finally:
            client.close()


def _live_run(model: str, threads: int, service_s: float, batching: dict, requests: int):
    """One short live run of the calibration model; returns its RunResult."""
    from live.deploy.local import run_live

    # about two-thirds of what one worker serves one at a time: backlogs come and
    # go (for the overhead) while the gateway keeps up (for the hops)
    # (at most 300 req/s: beyond that a tiny model's run measures the harness's own limits)
    rate_rps = min(0.65 / service_s, 300.0)
    config = {
        "seed": 0,
        "workload": {"num_requests": requests, "sources": [{"name": "cam", "size_bytes": 200 * 1024, "arrivals": {"kind": "poisson", "rate_rps": rate_rps}}]},
        "cluster": {"executors": [{"name": "edge", "kind": "edge", "gateway": "edge", "slots": 1,
                                   "profile": {"kind": "linear", "per_item_s": service_s, "base_s": 0.0}}]},
        "policy": {"placement": {"_target_": "policies.placement.StaticPlacement"}, "batching": batching},
        "live": {"model": model, "executors": {"edge": {"threads": threads, "replicas": 1}}, "timeout_s": 120},
    }  # fmt: skip
    with tempfile.TemporaryDirectory() as folder:
        result = run_live(config, Path(folder))
    return result


def measure_in_situ(model: str, threads: int, service_s: float, requests: int = 500) -> dict:
    """Two short live runs: the worker's per-batch overhead, the hops, the in-situ noise.

    With a backlog the worker starts its next batch as soon as it is free, so
    the gap between one batch's end and the next one's start is what the
    worker spends outside the model (publishing, acknowledging, receiving,
    decoding). A local executor's ``transfer_s`` is the result's way back.
    Without batching a request is dispatched the moment the gateway has it
    (the ingest delay). With timeout batching, batches of several sizes reach
    an idle worker: the time from dispatch to start against the batch's bytes
    gives the hop's fixed part and its rate (payload through the broker,
    copying and decoding).
    """
    single = _live_run(model, threads, service_s, {"_target_": "policies.batching.NoBatching"}, requests)
    batched = _live_run(model, threads, service_s, {"_target_": "policies.batching.TimeoutBatching", "max_batch_size": 8,
                                                    "max_wait_s": 0.01}, requests)  # fmt: skip
    out = {}
    for name, result in (("single", single), ("batched", batched)):
        batches = result.batches.sort_values("start_s")
        requests_table = result.requests
        dispatched = requests_table.groupby("batch_id")["dispatched_s"].min().reindex(batches["batch_id"]).to_numpy()
        start, end = batches["start_s"].to_numpy(), batches["end_s"].to_numpy()
        backlogged = dispatched[1:] < end[:-1]  # the next batch was already waiting
        out[name] = {"requests": requests_table, "batches": batches, "dispatched": dispatched, "start": start, "end": end,
                     "backlogged": backlogged}  # fmt: skip
    one, many = out["single"], out["batched"]
    gaps = np.concatenate([(r["start"][1:] - r["end"][:-1])[r["backlogged"]] for r in (one, many)])
    idle = ~many["backlogged"]
    size_mb = many["batches"]["size"].to_numpy()[1:][idle] * 200 * 1024 / 2**20
    there_s = (many["start"][1:] - many["dispatched"][1:])[idle]
    if len(np.unique(size_mb)) > 1:
        slope_s_per_mb, intercept_s = np.polyfit(size_mb, there_s, 1)
    else:  # too few idle batches of different sizes to fit a rate
        slope_s_per_mb, intercept_s = 0.0, float(np.median(there_s)) if len(there_s) else 0.0
    completed = one["requests"].loc[~one["requests"]["dropped"]]
    service = one["end"] - one["start"]
    return {
        # the mean, not the median: a queue's waits grow with the mean occupancy
        "overhead_s": float(np.mean(gaps)) if len(gaps) else 0.0,
        "return_hop_s": float(completed["transfer_s"].median()),
        "there_hop_s": float(max(0.0, intercept_s)),
        "hop_s_per_MB": float(max(0.0, slope_s_per_mb)),
        "ingest_s": float((one["requests"]["dispatched_s"] - one["requests"]["arrival_s"]).median()),
        "backlogged_batches": int(one["backlogged"].sum() + many["backlogged"].sum()),
        "service_p50_s": float(np.median(service)),
        "service_ratios": (service / np.median(service)).tolist(),
    }


def _table(samples: dict[int, np.ndarray]) -> tuple[list[int], list[float]]:
    sizes = sorted(samples)
    return sizes, [float(samples[s].mean()) for s in sizes]


def _ratios(samples: dict[int, np.ndarray], limit: int = 400) -> list[float]:
    ratios = np.concatenate([s / s.mean() for s in samples.values()])
    step = max(1, len(ratios) // limit)
    return [round(float(r), 4) for r in np.sort(ratios)[::step]]


def calibrate(*, model: str, edge_threads: int, cloud_threads: int, mb_per_thread: int, repeats: int, size_bytes: int,
              cold_starts: int, out: Path, plot_dir: Path, in_situ_requests: int = 500) -> dict:  # fmt: skip
    """Measure everything and write the profile config; returns it."""
    cores = os.cpu_count() or 1
    started = time.perf_counter()
    print(f"calibrating {model!r}: service time against batch size ...", flush=True)
    thread_counts = sorted({edge_threads, cloud_threads} | {max(1, min(cores, m // mb_per_thread)) for m in MEMORY_MB})
    by_threads = {t: measure_service(model, t, repeats=repeats, size_bytes=size_bytes) for t in thread_counts}
    print("cold starts ...", flush=True)
    colds = measure_cold_starts(model, edge_threads, cold_starts)
    print("broker hop ...", flush=True)
    hops = measure_hop()

    print("a short live run for the worker's overhead and the in-situ hop ...", flush=True)
    in_situ = measure_in_situ(model, edge_threads, float(by_threads[edge_threads][1].mean()), requests=in_situ_requests)
    # the in-situ hop (a loaded machine, the gateway's own loop) is what a run sees
    hop_s = in_situ["return_hop_s"]
    hop_MBps = 1.0 / in_situ["hop_s_per_MB"] if in_situ["hop_s_per_MB"] > 0 else None
    # the model runs slower beside the broker, gateway, source and sink on the same
    # cores: scale the isolated measurements by what the live run showed at batch 1
    isolated_s = float(np.median(by_threads[edge_threads][1]))
    contention = max(1.0, in_situ["service_p50_s"] / isolated_s)
    by_threads = {t: {b: v * contention for b, v in samples.items()} for t, samples in by_threads.items()}

    def server(threads: int) -> dict:
        sizes, means = _table(by_threads[threads])
        return {"kind": "table", "batch_sizes": sizes, "latencies_s": [round(m, 7) for m in means]}

    sizes = list(BATCH_SIZES)
    memory_threads = [max(1, min(cores, m // mb_per_thread)) for m in MEMORY_MB]
    serverless_table = [[round(float(by_threads[t][s].mean()), 7) for t in memory_threads] for s in sizes]
    profile = {
        "edge": server(edge_threads),
        # the noise a live run shows (other processes on the cores), not the isolated one
        "edge_noise": {"kind": "residual", "ratios": _ratios({1: np.asarray(in_situ["service_ratios"])})},
        "cloud": server(cloud_threads),
        "cloud_noise": {"kind": "residual", "ratios": _ratios(by_threads[cloud_threads])},
        "serverless": {"kind": "table", "batch_sizes": sizes, "latencies_s": serverless_table, "memory_mb": list(MEMORY_MB)},
        "serverless_noise": {"kind": "residual", "ratios": _ratios(by_threads[memory_threads[0]])},
        "cold_start": {"kind": "empirical", "samples_s": [round(c, 4) for c in colds]},
        "hop_s": round(hop_s, 6),
        "overhead_s": round(in_situ["overhead_s"], 6),
        "hop_MBps": None if hop_MBps is None else round(hop_MBps, 2),
        "ingest_s": round(in_situ["ingest_s"], 6),
        "calibration": {
            "model": model, "edge_threads": edge_threads, "cloud_threads": cloud_threads, "mb_per_thread": mb_per_thread,
            "payload_bytes": size_bytes, "repeats": repeats, "cores": cores, "measured_at": time.strftime("%Y-%m-%d %H:%M:%S"),
            "hop_p95_s": round(float(np.percentile(hops, 95)), 6),
            "broker_hop_p50_s": round(float(statistics.median(hops)), 6),
            "contention_factor": round(contention, 4),
            "in_situ": {k: round(v, 6) if isinstance(v, float) else v for k, v in in_situ.items() if k != "service_ratios"}, "took_s": round(time.perf_counter() - started, 1),
        },
    }  # fmt: skip
    out.parent.mkdir(parents=True, exist_ok=True)
    header = (
        "# Measured on this machine by `python -m experiments.calibrate` (do not edit by hand; re-run it).\n"
        "# Use with profile=calibrated; live runs use model '" + model + "' (live.model).\n"
    )
    out.write_text(header + yaml.safe_dump(profile, sort_keys=False, default_flow_style=None, width=120))
    _plot(by_threads, profile, colds, hops, plot_dir)
    return profile


def _plot(by_threads: dict, profile: dict, colds: list[float], hops: list[float], plot_dir: Path) -> None:
    from spec.profiles import TableProfile

    plot_dir.mkdir(parents=True, exist_ok=True)
    fig, (fit_ax, other_ax) = plt.subplots(1, 2, figsize=(12, 4.5))
    for threads, samples in by_threads.items():
        sizes = sorted(samples)
        for size in sizes:
            fit_ax.scatter([size] * len(samples[size]), samples[size] * 1000, s=3, alpha=0.25)
        table = TableProfile(batch_sizes=sizes, latencies_s=[samples[s].mean() for s in sizes])
        grid = np.arange(1, max(sizes) + 1)
        fit_ax.plot(grid, [table.mean_s(int(b)) * 1000 for b in grid], label=f"{threads} thread(s): profile")
        slope, intercept = np.polyfit(sizes, [samples[s].mean() for s in sizes], 1)
        fit_ax.plot(grid, (intercept + slope * grid) * 1000, ":", label=f"{threads} thread(s): linear fit")
    fit_ax.set_xlabel("batch size (requests)")
    fit_ax.set_ylabel("service time per batch (ms)")
    fit_ax.set_title(f"{profile['calibration']['model']}: measured (dots) against fitted profile")
    fit_ax.grid(True, alpha=0.3)
    fit_ax.legend(fontsize=7)
    other_ax.hist(np.asarray(hops) * 1000, bins=40, alpha=0.7, label="broker hop (ms)")
    for cold in colds:
        other_ax.axvline(cold * 1000 / 1000, color="tab:red", alpha=0.6)
    other_ax.set_xlabel("one-way broker hop (ms); red lines: cold starts (s)")
    other_ax.set_ylabel("messages")
    other_ax.set_title("Broker hop and cold starts")
    other_ax.grid(True, alpha=0.3)
    other_ax.legend(fontsize=7)
    fig.tight_layout()
    for suffix in (".png", ".svg"):
        fig.savefig(plot_dir / f"fit{suffix}", dpi=120)
    plt.close(fig)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="mlp", help="live.models name (mlp, cnn, wide_mlp)")
    parser.add_argument("--edge-threads", type=int, default=1)
    parser.add_argument("--cloud-threads", type=int, default=2)
    parser.add_argument("--mb-per-thread", type=int, default=1024)
    parser.add_argument("--repeats", type=int, default=60)
    parser.add_argument("--size-bytes", type=int, default=200 * 1024)
    parser.add_argument("--cold-starts", type=int, default=3)
    parser.add_argument("--in-situ-requests", type=int, default=500, help="requests in each of the two short live runs")
    parser.add_argument("--out", type=Path, default=CALIBRATED)
    parser.add_argument("--plots", type=Path, default=RESULTS_DIR / "calibration")
    args = parser.parse_args(argv)
    profile = calibrate(model=args.model, edge_threads=args.edge_threads, cloud_threads=args.cloud_threads,
                        mb_per_thread=args.mb_per_thread, repeats=args.repeats, size_bytes=args.size_bytes,
                        cold_starts=args.cold_starts, out=args.out, plot_dir=args.plots,
                        in_situ_requests=args.in_situ_requests)  # fmt: skip
    edge = profile["edge"]
    print(f"edge ({args.edge_threads} thread): " + ", ".join(f"b={b}: {1000 * t:.3f} ms" for b, t in zip(edge["batch_sizes"], edge["latencies_s"])))
    print(f"cold starts: {', '.join(f'{c:.2f} s' for c in profile['cold_start']['samples_s'])}; hop p50 {1000 * profile['hop_s']:.2f} ms "
          f"(idle broker {1000 * profile['calibration']['broker_hop_p50_s']:.2f} ms); worker overhead {1000 * profile['overhead_s']:.2f} ms/batch")
    print(f"wrote {args.out} and {args.plots / 'fit.png'} in {profile['calibration']['took_s']} s")
    return profile


if __name__ == "__main__":
    main()
