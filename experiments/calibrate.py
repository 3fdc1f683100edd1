"""Calibrate the simulator from the live executors on this machine: ``python -m experiments.calibrate``.

Measures, with the live harness's own pieces, in CPU-seconds and cores where
the simulator's host model (``spec.host_cpu``) shares them:

- service time against batch size for each model and thread count, alone on
  the machine, timed exactly as a live worker times a batch
  (``live.roles.worker.ModelRunner.run``), in several rounds (interleaved over
  the batch sizes, so drift shows as spread): the mean, its 95% interval over
  the rounds and the coefficient of variation per batch size; the process CPU
  time of each batch gives the cores a batch keeps busy (``batch_cores``);
- its noise (each measurement over the mean of its batch size: residual ratios);
- its warm-up: batches of 1, 8 and 32 each after sleeping 2-100 ms, against
  back to back (``hosts.local.warmup``, ``spec.warmup``: a worker at low load
  starts every batch with cold caches and a slower clock);
- cold starts: serverless instance processes (``python -m live.roles.worker
  --stdio``) from spawn to their ``ready`` frame, one at a time (with their
  CPU time to ``ready``: the cores a cold start keeps busy,
  ``cold_start_cores``) and several at once (the check: the host model
  predicts them from the lone ones);
- the message hop through an idle embedded broker, and the broker's CPU per
  message from its process CPU time (``/proc/<pid>/stat``);
- five short live runs (unbatched, unbatched at a lower rate, fixed batches of 4 and of 8,
  and fixed batches of 16 at a high rate for the roles' wake-ups only): the return hop's distribution
  (``hop_samples_s``, resampled per message by the simulator), the worker's
  per-batch overhead outside the model (``overhead_samples_s``), the ingest
  delay, the hop's payload rate, and each harness role's CPU per request,
  per batch and per wake-up and its idle cores (broker from ``/proc``,
  gateway, source and sink from their own process CPU times in their
  stats), fitted from the runs' counts, message times and durations
  (``experiments.role_cpu_fit``);
- one long live run at a high rate (8x the short runs' requests, fixed batches of 16):
  the broker's CPU sampled over it, for its storage step (``experiments.storage_step``:
  its CPU per request rises once a run has stored enough; ``RoleCpu.step_after_MB``).

Writes ``conf/profile/calibrated.yaml`` (use it with ``profile=calibrated``):
the isolated profiles, the measured distributions, and ``hosts.local``: this
machine's cores with every executor and role on them, so that any cluster
file describes a local live run; and ``results/calibration/fit.png``. The
``calibration`` section records when, on what (host, CPU model, cores, torch,
threads, model) and how noisy. A parameter that cannot be fitted stops the
calibration with a one-line ``CalibrationError`` naming it.
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import matplotlib.ticker
import numpy as np
import yaml

from experiments import calibration_history, role_cpu_fit, storage_step
from experiments.paths import REPO_ROOT, RESULTS_DIR
from experiments.stats import t_interval

__all__ = ["CALIBRATED", "CalibrationError", "calibrate", "measure_service", "measure_cold_starts", "measure_hop",
           "fit_role_cpu", "spread", "run_to_run_cv", "main"]  # fmt: skip

CALIBRATED = REPO_ROOT / "conf" / "profile" / "calibrated.yaml"
BATCH_SIZES = (1, 2, 4, 8, 16, 32)
MEMORY_MB = (1024, 2048, 3072, 4096)
#: quantiles kept of a measured distribution (hops, overheads): 2.5% ... 97.5% and the extremes' neighbours
QUANTILES = np.linspace(0.005, 0.995, 40)
ROLES = role_cpu_fit.ROLES


class CalibrationError(RuntimeError):
    """A parameter could not be measured or fitted; the message names it and what to try."""


# -- spread -----------------------------------------------------------------------------------


def spread(rounds: list[np.ndarray]) -> dict:
    """Mean of all samples, 95% t interval over the round means, coefficient of variation (all samples)."""
    samples = np.concatenate(rounds)
    interval = t_interval([float(r.mean()) for r in rounds])
    mean = float(samples.mean())
    return {"mean_s": round(mean, 7), "ci95_s": [round(interval.low, 7), round(interval.high, 7)],
            "cv": round(float(samples.std(ddof=1) / mean), 4) if len(samples) > 1 and mean > 0 else None,
            "rounds": len(rounds), "n": int(len(samples))}  # fmt: skip


def run_to_run_cv(samples: dict[int, list[np.ndarray]]) -> float:
    """The machine's speed from round to round: the coefficient of variation of a round's mean beyond its own noise.

    A one-way random-effects estimate over the rounds, pooled over batch
    sizes in relative terms: per batch size, the variance of the round means
    (each over that size's mean) less the within-round variance over the
    round's batches (what the round means would vary with no drift at all);
    the mean over sizes, clipped at 0. The simulator draws the host's speed
    once per run with this spread (``spec.host_spec.HostSpec.run_cv``).
    Raises with fewer than 2 rounds of at least 2 batches each: no spread
    between rounds can be told then.
    """
    excess = []
    for size, rounds in samples.items():
        if len(rounds) < 2 or min(len(r) for r in rounds) < 2:
            raise CalibrationError(f"run_cv: batch size {size} has {len(rounds)} round(s) of {[len(r) for r in rounds]} batches; "
                                   "at least 2 rounds of 2 are needed to tell drift between rounds (raise --rounds or --repeats)")
        mean_s = float(np.concatenate(rounds).mean())
        if not mean_s > 0:
            raise CalibrationError(f"run_cv: batch size {size} measured a mean service of {mean_s} s")
        means = np.array([r.mean() for r in rounds]) / mean_s
        within = float(np.mean([(r / mean_s).var(ddof=1) / len(r) for r in rounds]))
        excess.append(means.var(ddof=1) - within)
    cv = math.sqrt(max(0.0, float(np.mean(excess))))
    if cv >= 1:
        raise CalibrationError(f"run_cv: round means vary by {cv:.2f} of the mean between rounds (>= 1): the machine changed "
                               "under the calibration; calibrate on a quieter machine")
    return round(cv, 4)


def _stat(pid: int) -> list[str] | None:
    """The fields of ``/proc/<pid>/stat`` after the command name (None: gone)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None


def _machine_busy_cpu_s() -> float:
    """CPU-seconds every core of the machine has spent busy since boot (``/proc/stat``: all but idle and iowait)."""
    fields = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    return (sum(fields[:8]) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")


def _proc_cpu_s(pid: int, tree: set[int] | None = None) -> float:
    """User plus system CPU-seconds of process ``pid`` and its descendants (``/proc``: the broker runs under a wrapper);
    ``tree``: those processes, found once (``_proc_tree``), for reads many times a second."""
    tree = _proc_tree(pid) if tree is None else tree
    ticks = 0
    for member in tree:
        fields = _stat(member)
        if fields is not None:
            ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def _proc_tree(pid: int) -> set[int]:
    """Process ``pid`` and its descendants now."""
    if _stat(pid) is None:
        raise CalibrationError(f"broker CPU: cannot read /proc/{pid}/stat (the broker's process); needs Linux /proc")
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (fields := _stat(int(entry.name))) is not None:
            parents[int(entry.name)] = int(fields[1])
    tree, grew = {pid}, True
    while grew:
        children = {child for child, parent in parents.items() if parent in tree} - tree
        tree |= children
        grew = bool(children)
    return tree


# -- service ----------------------------------------------------------------------------------


def measure_service(model: str, threads: int, batch_sizes=BATCH_SIZES, *, repeats: int, size_bytes: int,
                    rounds: int = 5) -> dict[int, dict[str, list[np.ndarray]]]:  # fmt: skip
    """Per batch size, ``rounds`` rounds of wall and CPU seconds per batch (``repeats`` in all), timed as a live worker times it.

    The rounds go over every batch size in turn, so that a slow spell of the
    machine shows up as spread between rounds rather than as a bent profile.
    """
    from live.wire.messages import decode, encode_batch
    from live.roles.worker import ModelRunner

    runner = ModelRunner(model, threads)
    rng = np.random.default_rng(0)
    messages = {}
    for size in batch_sizes:
        payloads = [rng.integers(0, 256, size_bytes, dtype=np.uint8).tobytes() for _ in range(size)]
        messages[size] = decode(encode_batch("calibration", [str(i) for i in range(size)], payloads, source="calibrate"))
        for _ in range(3):  # warm up this shape
            runner.run(messages[size], time.perf_counter)
    per_round = max(2, repeats // max(1, rounds))
    samples = {size: {"wall": [], "cpu": []} for size in batch_sizes}
    for _ in range(max(1, rounds)):
        for size in batch_sizes:
            wall, cpu = [], []
            for _ in range(per_round):
                cpu_start = time.process_time()
                _, _, start_s, end_s = runner.run(messages[size], time.perf_counter)
                cpu.append(time.process_time() - cpu_start)
                wall.append(end_s - start_s)
            samples[size]["wall"].append(np.asarray(wall))
            samples[size]["cpu"].append(np.asarray(cpu))
    return samples


#: the warm-up: batch sizes timed after sleeping each of these idle times (``spec.warmup``)
WARMUP_SIZES = (1, 8, 32)
WARMUP_IDLE_S = (0.002, 0.005, 0.01, 0.02, 0.05, 0.1)


def measure_warmup(model: str, threads: int, *, size_bytes: int, repeats: int = 12, sizes=WARMUP_SIZES,
                   idle_s=WARMUP_IDLE_S) -> dict:  # fmt: skip
    """The model's extra service after its worker slept, by batch size and idle time (``spec.warmup.WarmupTable``).

    Per size, the median of ``repeats`` batches back to back, then of
    ``repeats`` batches each after sleeping each idle time; the extra is the
    difference. Alone on the machine: the caches and the core's clock cool
    while the worker waits (a live worker at low load starts every batch
    cold; near saturation warm).
    """
    from live.wire.messages import decode, encode_batch
    from live.roles.worker import ModelRunner

    runner = ModelRunner(model, threads)
    rng = np.random.default_rng(1)
    extra = []
    for size in sizes:
        payloads = [rng.integers(0, 256, size_bytes, dtype=np.uint8).tobytes() for _ in range(size)]
        message = decode(encode_batch("calibration", [str(i) for i in range(size)], payloads, source="calibrate"))

        def timed(sleep_s: float) -> float:
            walls = []
            for _ in range(repeats + 2):  # the first two after a change of idle time settle it
                if sleep_s:
                    time.sleep(sleep_s)
                _, _, start_s, end_s = runner.run(message, time.perf_counter)
                walls.append(end_s - start_s)
            return float(np.median(walls[2:]))

        warm_s = timed(0.0)
        extra.append([round(timed(g) - warm_s, 6) for g in idle_s])
    return {"batch_sizes": list(sizes), "idle_s": list(idle_s), "extra_s": extra}


def _model_cpu(samples: dict, threads: int):
    """CPU-seconds the model needs for a batch of a size: the isolated profile's mean at its batch_cores."""
    from spec.profiles import TableProfile

    sizes, means = _table(_walls(samples))
    profile, cores = TableProfile(batch_sizes=sizes, latencies_s=means), batch_cores(samples, threads)
    return lambda size: profile.mean_s(size) * cores


def _walls(samples: dict) -> dict[int, np.ndarray]:
    return {size: np.concatenate(s["wall"]) for size, s in samples.items()}


def batch_cores(samples: dict, threads: int) -> float:
    """Cores a batch keeps busy: the median over batches of process CPU time over wall time (at most ``threads``).

    The median, not the ratio of sums: a batch descheduled by other work on
    the machine has a long wall time for its CPU, and should not count.
    """
    cpu = np.concatenate([np.concatenate(s["cpu"]) for s in samples.values()])
    wall = np.concatenate([np.concatenate(s["wall"]) for s in samples.values()])
    if wall.sum() <= 0 or cpu.sum() <= 0:
        raise CalibrationError(f"batch_cores: no CPU time measured for the model at {threads} thread(s) (process_time did not advance)")
    return round(min(float(threads), max(0.05, float(np.median(cpu / np.maximum(wall, 1e-9))))), 3)


# -- cold starts ------------------------------------------------------------------------------


def _spawn_instance(model: str, threads: int) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "live.roles.worker", "--stdio", "--model", model, "--threads", str(threads), "--epoch", str(time.time())],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, cwd=REPO_ROOT,
    )  # fmt: skip


def _wait_ready(proc: subprocess.Popen) -> None:
    from live.wire.messages import decode
    from live.roles.worker import read_frame

    frame = read_frame(proc.stdout)
    if frame is None or decode(frame).meta.get("pid") != proc.pid:
        raise CalibrationError(f"cold start: instance pid {proc.pid} did not report ready (python -m live.roles.worker --stdio)")


def measure_cold_starts(model: str, threads: int, count: int, *, together: bool = False, cpu: list | None = None) -> list[float]:
    """Spawn-to-ready seconds of ``count`` serverless instance processes, one at a time (or all at once).

    ``cpu``, when given, receives each instance's CPU-seconds from spawn to
    its ``ready`` frame (``/proc/<pid>/stat``, all its threads), not to its
    exit: an instance's exit (torch's teardown) costs about 0.5 CPU-s more
    on this machine, which a live pool pays when an instance is reaped, not
    while it starts (counted to the exit, a lone start read 1.41 cores
    instead of 1.13, and the host model made 4 at once on 2 cores 4.3 s
    against 3.2-3.3 s measured).
    """
    from concurrent.futures import ThreadPoolExecutor

    def ready_after(proc: subprocess.Popen, started: float) -> tuple[float, float]:
        _wait_ready(proc)
        wall_s = time.perf_counter() - started
        fields = _stat(proc.pid)
        if fields is None:
            raise CalibrationError(f"cold start: cannot read /proc/{proc.pid}/stat (the instance's process); needs Linux /proc")
        return wall_s, (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    results: list[float] = []
    for group in [list(range(count))] if together else [[i] for i in range(count)]:
        started = time.perf_counter()
        procs = [_spawn_instance(model, threads) for _ in group]
        try:
            with ThreadPoolExecutor(len(procs)) as pool:  # each instance's ready frame read as it comes
                measured = list(pool.map(lambda proc: ready_after(proc, started), procs))
        finally:
            for proc in procs:
                proc.stdin.close()
                proc.wait(timeout=30)
        results.extend(wall_s for wall_s, _ in measured)
        if cpu is not None:
            cpu.extend(cpu_s for _, cpu_s in measured)
    return results


def cold_start_cores(walls_s: list[float], cpu_s: list[float], cores: int) -> float:
    """Cores a lone cold start keeps busy: its CPU-seconds to ``ready`` over its wall seconds (at most the machine's cores)."""
    if not cpu_s or sum(cpu_s) <= 0:
        raise CalibrationError("cold_start_cores: no CPU time measured for the instance processes (/proc/<pid>/stat did not advance)")
    return round(min(float(cores), max(0.05, sum(cpu_s) / sum(walls_s))), 3)


# -- the broker -------------------------------------------------------------------------------


def measure_hop(messages: int = 300, size_bytes: int = 1024) -> tuple[list[float], float]:
    """One-way seconds of encoded messages through a fresh embedded broker, and its CPU-seconds per message."""
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
            cpu_start = _proc_cpu_s(broker.pid)
            for index in range(messages):
                producer.send(encode_request(str(index), payload, source="calibrate", sent_s=time.time()))
                message = consumer.receive(timeout_millis=5000)
                hops.append(time.time() - decode(message.data()).ts["sent_s"])
                consumer.acknowledge(message)
                time.sleep(0.002)
            return hops, (_proc_cpu_s(broker.pid) - cpu_start) / messages
        finally:
            client.close()


def measure_hop_sizes(small_bytes: int = 1024, large_bytes: int = 8 * 200 * 1024, messages: int = 100) -> dict:
    """One-way hops of small and large messages through an idle broker: the payload's share of a hop."""
    small, _ = measure_hop(messages, small_bytes)
    large, _ = measure_hop(messages, large_bytes)
    return {"size_mb": np.array([small_bytes] * len(small) + [large_bytes] * len(large)) / 2**20, "hop_s": np.array(small + large)}


# -- the live runs ----------------------------------------------------------------------------


def _live_run(model: str, threads: int, service_s: float, batching: dict, requests: int, load: float = 0.65,
              max_rate_rps: float | None = None, series_period_s: float | None = None):  # fmt: skip
    """One short live run of the calibration model; returns its RunResult, the broker's CPU-seconds during it and its config."""
    from live.deploy.local import run_live

    # about two-thirds of what one worker serves one at a time: backlogs come and
    # go (for the overhead) while the gateway keeps up (for the hops)
    # (at most 300 req/s: beyond that a tiny model's run measures the harness's own limits)
    rate_rps = min(load / service_s, 300.0 * load / 0.65, max_rate_rps or math.inf)
    config = {
        "seed": 0,
        "workload": {"num_requests": requests, "sources": [{"name": "cam", "size_bytes": 200 * 1024, "arrivals": {"kind": "poisson", "rate_rps": rate_rps}}]},
        "cluster": {"executors": [{"name": "edge", "kind": "edge", "gateway": "edge", "slots": 1,
                                   "profile": {"kind": "linear", "per_item_s": service_s, "base_s": 0.0}}]},
        "policy": {"placement": {"_target_": "policies.placement.StaticPlacement"}, "batching": batching},
        "live": {"model": model, "executors": {"edge": {"threads": threads, "replicas": 1}}, "timeout_s": 120},
    }  # fmt: skip

    def broker_cpu(handle) -> None:
        if handle.broker is None or handle.broker.pid is None:
            return
        tree = _proc_tree(handle.broker.pid)
        start, busy, started = _proc_cpu_s(handle.broker.pid, tree), _machine_busy_cpu_s(), time.monotonic()
        if series_period_s is None:
            handle.ending.wait()
        else:  # the broker's CPU over the run's clock (storage_step)
            series = handle.notes["broker_cpu_series"] = []
            while not handle.ending.wait(series_period_s):
                series.append((handle.now(), _proc_cpu_s(handle.broker.pid, tree) - start))
        handle.notes["broker_cpu_s"] = _proc_cpu_s(handle.broker.pid, tree) - start
        handle.notes["machine_busy_cpu_s"] = _machine_busy_cpu_s() - busy
        handle.notes["window_s"] = time.monotonic() - started

    with tempfile.TemporaryDirectory() as folder:
        result = run_live(config, Path(folder), on_start=broker_cpu)
    broker_cpu_s = result.extra.get("faults", {}).get("broker_cpu_s")
    if broker_cpu_s is None:
        raise CalibrationError("broker CPU: the live run reported none (an external broker? calibrate with the embedded one)")
    if broker_cpu_s <= 0:
        raise CalibrationError(f"broker CPU: 0 CPU-seconds measured over a live run of {requests} requests (the broker's process tree "
                               "from /proc); not its real cost")
    return result, float(broker_cpu_s), config


def _background_cores(result, broker_cpu_s: float) -> float:
    """Cores the machine spent on work outside the run (other tenants, the orchestrator) during it.

    The machine's busy CPU over the run's window (``/proc/stat``) less the
    broker's and every role's own CPU (workers included), over the window.
    """
    notes = result.extra.get("faults", {})
    ours = broker_cpu_s + sum(float(s.get("cpu_s", 0.0)) for s in result.extra.get("roles", {}).values())
    return max(0.0, (notes["machine_busy_cpu_s"] - ours) / notes["window_s"])


def _role_cpu(result, broker_cpu_s: float, model_cpu_s=None) -> dict:
    """Requests, batches and each role's CPU-seconds in one live run (from the roles' stats).

    The worker's is its process CPU less what the model itself needed for
    the run's batches (``model_cpu_s(size)``: the isolated profile at its
    ``batch_cores``): what the worker spends outside the model.
    """
    roles = result.extra.get("roles", {})
    found = {"broker": broker_cpu_s}
    # each role's window: the broker's from the clock's start to the run's end (on_start), the others' from the
    # start to the stop on the control topic (run_cpu_s: without the wait for the other roles before, and the
    # shutdown after, which would otherwise be a constant per run spread over its requests)
    windows = {"broker": float(result.extra.get("faults", {}).get("window_s") or float(result.requests["completed_s"].max()))}
    for role in ("gateway", "source", "sink", "worker"):
        mine = [s for s in roles.values() if s.get("role") == role]
        timed = all("run_cpu_s" in s for s in mine)
        values = [s["run_cpu_s"] if timed else s["cpu_s"] for s in mine if "cpu_s" in s]
        if not values:
            raise CalibrationError(f"{role} CPU: no cpu_s in the {role}'s stats (live.roles.role writes it); roles seen: {sorted(roles)}")
        found[role] = float(sum(values))
        windows[role] = max(s["run_window_s"] for s in mine) if timed else float(result.requests["completed_s"].max())
    worker_process_cpu_s = found["worker"]
    if model_cpu_s is not None:
        found["worker"] = max(0.0, found["worker"] - float(sum(model_cpu_s(int(b)) for b in result.batches["size"])))
    completed = int((~result.requests["dropped"]).sum())
    duration_s = float(result.requests["completed_s"].max())  # from the clock's start, as the broker's CPU
    sizes, counts = np.unique(result.batches["size"].to_numpy(dtype=int), return_counts=True)
    return {"requests": completed, "batches": int(len(result.batches)), "duration_s": round(duration_s, 3), "cpu_s": found,
            "window_s": {role: round(w, 3) for role, w in windows.items()},
            "background_cores": round(_background_cores(result, broker_cpu_s), 4), "worker_process_cpu_s": round(worker_process_cpu_s, 6),
            "batch_sizes": {int(b): int(c) for b, c in zip(sizes, counts)},
            # when each role handled each message (for the wake-ups; not saved: see measure_in_situ)
            "request_times_s": result.requests["arrival_s"].to_numpy(dtype=float), "batch_times_s": result.batches["end_s"].to_numpy(dtype=float)}  # fmt: skip


def fit_role_cpu(runs: list[dict]) -> tuple[dict[str, dict[str, float]], dict]:
    """``experiments.role_cpu_fit.fit_role_cpu``, its failure a ``CalibrationError``."""
    try:
        return role_cpu_fit.fit_role_cpu(runs)
    except role_cpu_fit.RoleFitError as error:
        raise CalibrationError(str(error)) from None


def _quantiles(values: np.ndarray, field: str) -> list[float]:
    values = np.asarray(values, dtype=float)
    values = values[np.isfinite(values)]
    if len(values) < 10:
        raise CalibrationError(f"{field}: only {len(values)} measurements in the live runs (at least 10; raise --in-situ-requests)")
    return [round(float(q), 7) for q in np.quantile(np.maximum(values, 0.0), QUANTILES)]


def _run_tables(result) -> dict:
    batches = result.batches.sort_values("start_s")
    requests = result.requests
    dispatched = requests.groupby("batch_id")["dispatched_s"].min().reindex(batches["batch_id"]).to_numpy()
    start, end = batches["start_s"].to_numpy(), batches["end_s"].to_numpy()
    return {"requests": requests, "batches": batches, "dispatched": dispatched, "start": start, "end": end,
            "backlogged": dispatched[1:] < end[:-1]}  # the next batch was already waiting  # fmt: skip


def _hop_rate(runs: list[dict], idle_broker: dict) -> tuple[float, float | None, dict]:
    """The hop's fixed part and its payload rate (MB/s) from idle batches of several sizes in the live runs.

    Every run's idle batches count (the unbatched runs' and the fixed
    batches of 4 and of 8: three sizes); one run of fixed batches alone has
    one size, so the fit fell back to the idle broker every time, whose
    small and large messages hold none of the gateway's encoding and the
    worker's decoding of a batch's payload (2026-12-02: 3.2 ms/MB there,
    against batches live that took 3-8 ms/MB more). Where the runs have too
    few (a fast model keeps the worker backlogged), the rate comes from the
    idle broker instead, and the calibration says so (``hop_fit.source``);
    where neither gives a positive slope it is left null with a warning,
    never silently.
    """
    size_mb = np.concatenate([r["batches"]["size"].to_numpy()[1:][~r["backlogged"]] for r in runs]) * 200 * 1024 / 2**20
    there_s = np.concatenate([(r["start"][1:] - r["dispatched"][1:])[~r["backlogged"]] for r in runs])
    sizes, per_size = np.unique(size_mb, return_counts=True)
    if (per_size >= 5).sum() < 2:
        print(f"note: hop_MBps: idle batches of {len(sizes)} size(s) in the live runs ({per_size.tolist()}; at least 5 of each of "
              "2 sizes needed); fitted from the idle broker's small and large messages instead", flush=True)
        size_mb, there_s = idle_broker["size_mb"], idle_broker["hop_s"]
        source = "idle broker, two message sizes"
    else:
        source = "live runs, idle batches of several sizes"
    slope_s_per_mb, intercept_s = np.polyfit(size_mb, there_s, 1)
    residual = there_s - (intercept_s + slope_s_per_mb * size_mb)
    slope_se = float(np.sqrt(residual.var(ddof=2) / max(1e-12, ((size_mb - size_mb.mean()) ** 2).sum())))
    note = {"source": source, "hop_s_per_MB": round(float(slope_s_per_mb), 7), "hop_s_per_MB_se": round(slope_se, 7),
            "points": int(len(there_s))}  # fmt: skip
    # a rate only where the slope is positive and clear of its noise (else the payload adds nothing measurable)
    rate = 1.0 / slope_s_per_mb if slope_s_per_mb > 2 * slope_se and slope_s_per_mb > 0 else None
    if rate is None:
        print(f"warning: hop_MBps: slope {slope_s_per_mb * 1000:.3f} ms/MB is within twice its standard error "
              f"({slope_se * 1000:.3f}); hop_MBps left null (the payload adds no measurable hop time)", flush=True)
    return float(max(0.0, intercept_s)), rate, note


def measure_in_situ(model: str, threads: int, service_s: float, requests: int = 500, idle_broker: dict | None = None,
                    model_cpu_s=None) -> dict:  # fmt: skip
    """Five short live runs: the worker's per-batch overhead, the hops, the roles' CPU, the contended service.

    With a backlog the worker starts its next batch as soon as it is free, so
    the gap between one batch's end and the next one's start is what the
    worker spends outside the model. A local executor's ``transfer_s`` is the
    result's way back. Without batching a request is dispatched the moment
    the gateway has it (the ingest delay). With timeout batching, batches of
    several sizes reach an idle worker: dispatch-to-start against the batch's
    bytes gives the hop's fixed part and its rate. The runs' request and
    batch counts and durations (a third run, unbatched at a lower rate, lasts
    longer for as many requests) against each role's CPU give its CPU per
    request, per batch and its idle cores; a fifth run at a high rate, where
    messages often find their role busy, its CPU per wake-up. That run is
    used for the roles' CPU only (the hops, overheads and contention come
    from the four at the rates they were always measured at).
    """
    runs, tables, contended = [], {}, []
    single = {"_target_": "policies.batching.NoBatching"}
    for name, batching, load in (("single", single, 0.65), ("slow", single, 0.2),
                                 # fixed batches of 4: a timeout batcher on a busy machine sees requests already past their
                                 # wait (ingest lag) and sends them one by one, and the fit needs batches > 1
                                 ("batched", {"_target_": "policies.batching.FixedBatching", "batch_size": 4, "max_wait_s": 0.1}, 0.65),
                                 # batches of 8 as well: the service per batch size under contention (calibrate_contention)
                                 ("batched8", {"_target_": "policies.batching.FixedBatching", "batch_size": 8, "max_wait_s": 0.2}, 0.65),
                                 # and fast: a role then often finds messages waiting (its wake-ups fewer than its messages);
                                 # a long wait, so that a lagging gateway still forms full batches (at most 250 req/s: at 200 KB a
                                 # request the roles' own CPU would otherwise saturate the machine)
                                 ("fast", {"_target_": "policies.batching.FixedBatching", "batch_size": 16, "max_wait_s": 0.5}, 2.5)):  # fmt: skip
        # the slow run shorter, the fast one longer: requests in different proportions to the runs' other counts
        count = {"slow": int(0.6 * requests), "fast": int(1.5 * requests)}.get(name, requests)
        result, broker_cpu_s, config = _live_run(model, threads, service_s, batching, count, load,
                                                 max_rate_rps=250.0 if name == "fast" else None)
        runs.append(_role_cpu(result, broker_cpu_s, model_cpu_s))
        if name != "fast":
            tables[name] = _run_tables(result)
            contended.append((config, result.batches[["size", "start_s", "end_s"]].copy()))
    one, many = tables["single"], tables["batched"]
    gaps = np.concatenate([(r["start"][1:] - r["end"][:-1])[r["backlogged"]] for r in tables.values()])
    there_s, hop_MBps, hop_note = _hop_rate(list(tables.values()), idle_broker or measure_hop_sizes())
    completed = {name: t["requests"].loc[~t["requests"]["dropped"]] for name, t in tables.items()}
    # the hops' distributions from the run at the lowest load: the others' tails hold the roles' CPU contention,
    # which the host model (hosts.local) adds on its own; from every run they would count it twice
    return_hops = completed["slow"]["transfer_s"].to_numpy()
    every_return_hop = np.concatenate([c["transfer_s"].to_numpy() for c in completed.values()])
    ingest = {name: (t["requests"]["dispatched_s"] - t["requests"]["arrival_s"]).to_numpy() for name, t in tables.items()}
    service = one["end"] - one["start"]
    roles, role_fit = fit_role_cpu(runs)
    storage = measure_storage_step(model, threads, service_s, requests=8 * requests, idle_cores=roles.get("broker", {}).get("idle_cores", 0.0))
    if storage["found"] and "broker" in roles:
        roles["broker"] = {**roles["broker"], "step_after_MB": storage["step_after_MB"], "step_factor": storage["step_factor"]}
    return {
        "storage_step": storage,
        # the mean, not the median: a queue's waits grow with the mean occupancy
        "overhead_s": float(np.mean(gaps)) if len(gaps) else 0.0,
        "overhead_samples_s": _quantiles(gaps, "overhead_samples_s"),
        "return_hop_s": float(np.median(return_hops)),
        "hop_samples_s": _quantiles(return_hops, "hop_samples_s"),
        "there_hop_s": there_s, "hop_MBps": hop_MBps, "hop_fit": hop_note,
        "ingest_s": float(np.median(ingest["slow"])),
        # unbatched, a request is dispatched as soon as its gateway has it: the source's hop, per request (low load)
        "ingest_samples_s": _quantiles(ingest["slow"], "ingest_samples_s"),
        # for ablations: the distributions from the runs at 0.65 load as well (the earlier calibration's)
        "every_run_samples_s": {"hop_samples_s": _quantiles(every_return_hop, "hop_samples_s"),
                                "ingest_samples_s": _quantiles(np.concatenate([ingest["single"], ingest["slow"]]), "ingest_samples_s")},
        "backlogged_batches": int(one["backlogged"].sum() + many["backlogged"].sum()),
        "service_p50_s": float(np.median(service)),
        "roles": roles, "role_fit": role_fit, "live_runs": contended,
        "role_runs": [{k: v for k, v in r.items() if not k.endswith("_times_s")} for r in runs],
        "background_cores": float(np.mean([r["background_cores"] for r in runs])),
        "return_hop_p95_s": float(np.percentile(return_hops, 95)),
    }  # fmt: skip


def measure_storage_step(model: str, threads: int, service_s: float, requests: int, idle_cores: float = 0.0) -> dict:
    """The broker's CPU over one long run at a high rate (``experiments.storage_step``); its step, if it has one."""
    batching = {"_target_": "policies.batching.FixedBatching", "batch_size": 16, "max_wait_s": 0.5}
    result, _, config = _live_run(model, threads, service_s, batching, requests, 2.5, max_rate_rps=250.0, series_period_s=0.25)
    series = result.extra.get("faults", {}).get("broker_cpu_series") or []
    size_bytes = config["workload"]["sources"][0]["size_bytes"]
    # the broker stores each request twice: on its way to the gateway, and in its batch to the worker
    fit = storage_step.fit_storage_step(series, result.requests["arrival_s"].to_numpy(), stored_bytes_per_request=2 * size_bytes,
                                        idle_cores=idle_cores)  # fmt: skip
    fit["requests"], fit["rate_rps"] = requests, config["workload"]["sources"][0]["arrivals"]["rate_rps"]
    print(f"  broker storage: {'x%.2f after %.0f MB' % (fit['step_factor'], fit['step_after_MB']) if fit['found'] else fit['note']}",
          flush=True)  # fmt: skip
    return fit


# -- the calibration --------------------------------------------------------------------------


def _table(samples: dict[int, np.ndarray]) -> tuple[list[int], list[float]]:
    sizes = sorted(samples)
    return sizes, [float(samples[s].mean()) for s in sizes]


def _ratios(samples: dict[int, np.ndarray], limit: int = 400) -> list[float]:
    ratios = np.concatenate([s / s.mean() for s in samples.values()])
    step = max(1, len(ratios) // limit)
    return [round(float(r), 4) for r in np.sort(ratios)[::step]]


def machine(model: str) -> dict:
    """What the calibration ran on: host, CPU model, cores, Python, torch and its threads."""
    cpu_model = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import torch

    return {"hostname": socket.gethostname(), "cpu_model": cpu_model, "cores": os.cpu_count() or 1, "platform": platform.platform(),
            "python": platform.python_version(), "torch": torch.__version__, "torch_threads_default": torch.get_num_threads(),
            "model": model}  # fmt: skip


def _measure(model: str, edge_threads: int, cloud_threads: int, mb_per_thread: int, repeats: int, rounds: int, size_bytes: int,
             cold_starts: int, in_situ_requests: int) -> dict:  # fmt: skip
    """Every measurement, in order; the raw material of the profile."""
    cores = os.cpu_count() or 1
    load_before = os.getloadavg()
    if load_before[0] > 0.5 * cores:
        print(f"warning: the machine is busy (load average {load_before[0]:.1f} on {cores} cores): the measurements will include "
              "other work; calibrate on a quiet machine (the file records the load)", flush=True)  # fmt: skip
    memory_threads = [max(1, min(cores, m // mb_per_thread)) for m in MEMORY_MB]
    thread_counts = sorted({edge_threads, cloud_threads, *memory_threads})
    print(f"calibrating {model!r}: service time against batch size, {rounds} rounds, threads {thread_counts} ...", flush=True)
    by_threads = {t: measure_service(model, t, repeats=repeats, rounds=rounds, size_bytes=size_bytes) for t in thread_counts}
    print("the warm-up after idling ...", flush=True)
    warmup = {"edge": measure_warmup(model, edge_threads, size_bytes=size_bytes),
              "cloud": measure_warmup(model, cloud_threads, size_bytes=size_bytes)}  # fmt: skip
    print("cold starts, one at a time and all at once ...", flush=True)
    cold_cpu: list[float] = []
    together_cpu: list[float] = []
    colds = measure_cold_starts(model, edge_threads, cold_starts, cpu=cold_cpu)
    together = measure_cold_starts(model, edge_threads, max(2, 2 * cores), together=True, cpu=together_cpu)
    print("broker hop and CPU per message ...", flush=True)
    hops, broker_cpu_per_message_s = measure_hop()
    idle_broker = measure_hop_sizes()
    print("five short live runs: overhead, hops, the roles' CPU, the contended service; one long one: the broker's storage ...",
          flush=True)  # fmt: skip
    edge_mean_s = float(np.concatenate(by_threads[edge_threads][1]["wall"]).mean())
    in_situ = measure_in_situ(model, edge_threads, edge_mean_s, requests=in_situ_requests, idle_broker=idle_broker,
                              model_cpu_s=_model_cpu(by_threads[edge_threads], edge_threads))  # fmt: skip
    return {"cores": cores, "memory_threads": memory_threads, "by_threads": by_threads, "warmup": warmup, "colds": colds, "together": together,
            "cold_start_cores": cold_start_cores(colds, cold_cpu, cores),
            "cold_cpu_s": {"alone": [round(c, 4) for c in cold_cpu], "together": [round(c, 4) for c in together_cpu]},
            "load_average": {"before": [round(v, 2) for v in load_before], "after": [round(v, 2) for v in os.getloadavg()]},
            "hops": hops, "broker_cpu_per_message_s": broker_cpu_per_message_s, "in_situ": in_situ}  # fmt: skip


def _profile(m: dict, *, model: str, edge_threads: int, cloud_threads: int, mb_per_thread: int, repeats: int, size_bytes: int) -> dict:
    """The profile config from the measurements: isolated profiles, measured distributions, this host."""
    walls = {t: _walls(samples) for t, samples in m["by_threads"].items()}
    cores, in_situ = m["cores"], m["in_situ"]

    def server(threads: int) -> dict:
        sizes, means = _table(walls[threads])
        return {"kind": "table", "batch_sizes": sizes, "latencies_s": [round(v, 7) for v in means]}

    sizes = list(BATCH_SIZES)
    serverless_table = [[round(float(walls[t][s].mean()), 7) for t in m["memory_threads"]] for s in sizes]
    default_threads = m["memory_threads"][MEMORY_MB.index(2048)]
    lone_s, together_s, cold_cores = float(np.mean(m["colds"])), m["together"], m["cold_start_cores"]
    isolated_edge_s = float(np.median(walls[edge_threads][1]))
    return {
        "edge": server(edge_threads),
        "edge_noise": {"kind": "residual", "ratios": _ratios(walls[edge_threads])},
        "cloud": server(cloud_threads),
        "cloud_noise": {"kind": "residual", "ratios": _ratios(walls[cloud_threads])},
        "serverless": {"kind": "table", "batch_sizes": sizes, "latencies_s": serverless_table, "memory_mb": list(MEMORY_MB)},
        "serverless_noise": {"kind": "residual", "ratios": _ratios(walls[m["memory_threads"][0]])},
        "cold_start": {"kind": "empirical", "samples_s": [round(c, 4) for c in m["colds"]]},
        "hop_s": round(in_situ["return_hop_s"], 6),
        "hop_samples_s": in_situ["hop_samples_s"],
        "overhead_s": round(in_situ["overhead_s"], 6),
        "overhead_samples_s": in_situ["overhead_samples_s"],
        "hop_MBps": None if in_situ["hop_MBps"] is None else round(in_situ["hop_MBps"], 2),
        "ingest_s": round(in_situ["ingest_s"], 6),
        "ingest_samples_s": in_situ["ingest_samples_s"],
        "hosts": {"local": {"cores": cores, "executors": "*", "roles": in_situ["roles"], "cold_start_cores": cold_cores,
                            # other work on the machine during the live runs (0 on a quiet one)
                            "background_cores": round(min(in_situ["background_cores"], 0.9 * cores), 3),
                            # per-run random effects: the machine's speed between service rounds, the other work between live runs
                            "run_cv": run_to_run_cv({b: s["wall"] for b, s in m["by_threads"][edge_threads].items()}),
                            "background_cores_sd": round(min(float(np.std([r["background_cores"] for r in in_situ["role_runs"]], ddof=1)),
                                                             0.5 * cores), 4),
                            # the extra service after a worker idled, measured alone (spec.warmup)
                            "warmup": m["warmup"],
                            "batch_cores": {"edge": batch_cores(m["by_threads"][edge_threads], edge_threads),
                                            "cloud": batch_cores(m["by_threads"][cloud_threads], cloud_threads),
                                            "serverless": batch_cores(m["by_threads"][default_threads], default_threads)}}},
        "calibration": {
            "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "machine": machine(model),
            "model": model, "edge_threads": edge_threads, "cloud_threads": cloud_threads, "mb_per_thread": mb_per_thread,
            "payload_bytes": size_bytes, "repeats": repeats, "cores": cores,
            # 1, 5 and 15 minute load averages before and after: a busy machine makes every figure here noisier
            "load_average": m["load_average"],
            "service": {f"{t}_threads": {int(b): spread(s["wall"]) for b, s in samples.items()} for t, samples in m["by_threads"].items()},
            "cold_start": {"alone": spread([np.asarray([c]) for c in m["colds"]]),
                           # CPU-seconds per instance to its ready frame, alone and together (cold_start_cores: the lone ones)
                           "cpu_s_per_instance": m["cold_cpu_s"],
                           "together": {"count": len(together_s),
                           "mean_s": round(float(np.mean(together_s)), 4), "max_s": round(float(np.max(together_s)), 4),
                           # the host model's prediction from the lone ones: count jobs of lone_s at cold_start_cores on `cores`
                           "host_model_s": round(lone_s * max(1.0, len(together_s) * cold_cores / cores), 4)}},
            "broker": {"idle_hop_p50_s": round(float(np.median(m["hops"])), 6), "idle_hop_p95_s": round(float(np.percentile(m["hops"], 95)), 6),
                       "cpu_s_per_message_idle": round(m["broker_cpu_per_message_s"], 9)},
            "in_situ": {"return_hop_p50_s": round(in_situ["return_hop_s"], 6), "return_hop_p95_s": round(in_situ["return_hop_p95_s"], 6),
                        "there_hop_s": round(in_situ["there_hop_s"], 6), "hop_fit": in_situ["hop_fit"],
                        "backlogged_batches": in_situ["backlogged_batches"], "role_runs": in_situ["role_runs"],
                        "storage_step": in_situ["storage_step"],
                        "role_fit": in_situ["role_fit"], "every_run_samples_s": in_situ["every_run_samples_s"],
                        # a diagnostic, not applied: the host model (hosts.local) is what makes a live run slower
                        "service_p50_s": round(in_situ["service_p50_s"], 7),
                        "slowdown_vs_isolated": round(in_situ["service_p50_s"] / isolated_edge_s, 4)},
        },
    }  # fmt: skip


def calibrate(*, model: str, edge_threads: int, cloud_threads: int, mb_per_thread: int, repeats: int, size_bytes: int,
              cold_starts: int, out: Path, plot_dir: Path, in_situ_requests: int = 500, rounds: int = 5,
              history: Path = calibration_history.HISTORY) -> dict:  # fmt: skip
    """Measure everything and write the profile config and the figure; returns the profile."""
    started = time.perf_counter()
    measured = _measure(model, edge_threads, cloud_threads, mb_per_thread, repeats, rounds, size_bytes, cold_starts, in_situ_requests)
    profile = _profile(measured, model=model, edge_threads=edge_threads, cloud_threads=cloud_threads, mb_per_thread=mb_per_thread,
                       repeats=repeats, size_bytes=size_bytes)  # fmt: skip
    apply_contention(profile, measured["in_situ"]["live_runs"], edge_threads)
    profile["calibration"]["took_s"] = round(time.perf_counter() - started, 1)
    # this calibration beside the others of this machine and model (experiments.calibration_history)
    entry = calibration_history.append(profile, history)
    profile["calibration"]["across_calibrations"] = calibration_history.across(calibration_history.load(history), entry)
    out.parent.mkdir(parents=True, exist_ok=True)
    header = (
        "# Measured on this machine by `python -m experiments.calibrate` (do not edit by hand; re-run it).\n"
        "# Use with profile=calibrated; live runs use model '" + model + "' (live.model).\n"
        "# hosts.local puts every executor and role of any cluster file on this machine's cores (spec.host_spec).\n"
    )
    out.write_text(header + yaml.safe_dump(_plain(profile), sort_keys=False, default_flow_style=None, width=120))
    _plot(measured, profile, plot_dir)
    return profile


def apply_contention(profile: dict, live_runs: list, threads: int) -> dict[int, float]:
    """The edge table under contention: calibration's live runs against their simulated twins (``calibrate_contention``).

    Each twin has its run's own measured background load. Sets ``edge`` to
    the contended table (the isolated one stays as ``edge_isolated``, for
    ablations) and records the factors. The worker's CPU outside the model
    is left as fitted: on this machine the worker's process CPU in the live
    runs was less than the contended table's time, so the excess is not CPU
    the worker spent (it waited: memory, or other tenants' threads getting
    more of the cores than their average). Raises when no batch size has
    enough batches in both backends.
    """
    from experiments.calibrate_contention import contended_table, contention_by_size, simulated_twin
    from sim import simulate

    runs = profile["calibration"]["in_situ"]["role_runs"]
    # the role runs start with the live runs' own (the fast one, for the roles' CPU only, comes last)
    backgrounds = [run.get("background_cores") for run in runs[: len(live_runs)]] if len(runs) >= len(live_runs) else [None] * len(live_runs)
    simulated = [simulate(simulated_twin(config, profile, background)).batches for (config, _), background in zip(live_runs, backgrounds)]
    factors = contention_by_size([batches for _, batches in live_runs], simulated)
    if not factors:
        raise CalibrationError("edge contention: no batch size had enough batches in both the live runs and their simulation "
                               "(raise --in-situ-requests)")
    isolated = profile["edge"]
    profile["edge_isolated"] = isolated
    profile["edge"] = {**isolated, "latencies_s": contended_table(isolated["batch_sizes"], isolated["latencies_s"], factors)}
    profile["calibration"]["contention"] = {"by_batch_size": factors, "source": "calibration's live runs over their simulation"}
    return factors


def _plain(value):
    """YAML-safe plain data (numpy scalars to Python numbers)."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, str):
        return str(value)  # torch.__version__ is a str subclass YAML cannot name
    return value


def _plot(measured: dict, profile: dict, plot_dir: Path) -> None:
    """Three panels, one time unit each: service against batch size (ms), hops (ms), cold starts (s)."""
    plot_dir.mkdir(parents=True, exist_ok=True)
    info = profile["calibration"]["machine"]
    fig, (fit_ax, hop_ax, cold_ax) = plt.subplots(1, 3, figsize=(16, 4.8))
    for index, (threads, samples) in enumerate(measured["by_threads"].items()):
        color = f"C{index}"
        sizes = sorted(samples)
        for size in sizes:
            wall = np.concatenate(samples[size]["wall"]) * 1000
            fit_ax.scatter(np.full(len(wall), size), wall, s=3, alpha=0.15, color=color)
        stats = [spread(samples[s]["wall"]) for s in sizes]
        means = np.array([s["mean_s"] for s in stats]) * 1000
        errors = np.abs(np.array([s["ci95_s"] for s in stats]).T * 1000 - means)
        fit_ax.errorbar(sizes, means, yerr=np.nan_to_num(errors), fmt="o-", color=color, capsize=3, ms=4,
                        label=f"{threads} thread(s): mean, 95% interval over rounds")  # fmt: skip
    fit_ax.set_xscale("log", base=2)
    fit_ax.set_xticks(list(BATCH_SIZES), [str(b) for b in BATCH_SIZES])
    fit_ax.set_ylim(bottom=0)
    fit_ax.set_xlabel("batch size (requests)")
    fit_ax.set_ylabel("service time per batch, alone (ms)")
    fit_ax.set_title("Service time (dots: each batch)")
    fit_ax.legend(fontsize=7)
    idle = np.sort(np.asarray(measured["hops"])) * 1000
    hop_ax.plot(idle, np.linspace(0, 1, len(idle)), label="idle broker, one-way (ms)")
    hop_ax.plot(np.asarray(profile["hop_samples_s"]) * 1000, QUANTILES, "o-", ms=3, label="live run: result hop (hop_samples_s)")
    hop_ax.plot(np.asarray(profile["overhead_samples_s"]) * 1000, QUANTILES, "s-", ms=3, label="live run: worker overhead per batch")
    hop_ax.set_xscale("log")
    hop_ax.xaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
    hop_ax.set_xlabel("delay (ms)")
    hop_ax.set_ylabel("fraction of messages at most this")
    hop_ax.set_title("Hops and overheads (CDF)")
    hop_ax.legend(fontsize=7)
    cold = profile["calibration"]["cold_start"]
    cold_ax.scatter(np.zeros(len(measured["colds"])), measured["colds"], label="one at a time")
    cold_ax.scatter(np.ones(len(measured["together"])), measured["together"], label=f"{len(measured['together'])} at once")
    cold_ax.hlines(cold["together"]["host_model_s"], 0.7, 1.3, colors="k", linestyles="--",
                   label=f"host model from the lone ones ({measured['cores']} cores)")  # fmt: skip
    cold_ax.set_xticks([0, 1], ["alone", "together"])
    cold_ax.set_xlim(-0.5, 1.5)
    top_s = max([*measured["colds"], *measured["together"], cold["together"]["host_model_s"]])
    cold_ax.set_ylim(0, 1.35 * top_s)  # room above the points for the legend: the model's line stays visible
    cold_ax.set_ylabel("spawn to ready (s)")
    cold_ax.set_title("Serverless cold starts")
    cold_ax.legend(fontsize=7, loc="upper left")
    for ax in (fit_ax, hop_ax, cold_ax):
        ax.grid(True, alpha=0.3)
    load = profile["calibration"]["load_average"]["before"][0]
    fig.suptitle(f"Calibration of {info['model']!r} on {info['hostname']} ({info['cpu_model']}, {info['cores']} cores, "
                 f"torch {info['torch']}), {profile['calibration']['measured_at']}, load average {load:.1f} before")  # fmt: skip
    fig.tight_layout()
    for suffix in (".png", ".svg"):
        fig.savefig(plot_dir / f"fit{suffix}", dpi=110)
    plt.close(fig)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="mlp", help="live.models name (mlp, cnn, wide_mlp)")
    parser.add_argument("--edge-threads", type=int, default=1)
    parser.add_argument("--cloud-threads", type=int, default=2)
    parser.add_argument("--mb-per-thread", type=int, default=1024)
    parser.add_argument("--repeats", type=int, default=60, help="batches timed per batch size and thread count, over all rounds")
    parser.add_argument("--rounds", type=int, default=5, help="rounds over the batch sizes (the spread between rounds is reported)")
    parser.add_argument("--size-bytes", type=int, default=200 * 1024)
    parser.add_argument("--cold-starts", type=int, default=3)
    parser.add_argument("--in-situ-requests", type=int, default=500, help="requests in each of the two short live runs")
    parser.add_argument("--out", type=Path, default=CALIBRATED)
    parser.add_argument("--plots", type=Path, default=RESULTS_DIR / "calibration")
    parser.add_argument("--history", action="store_true",
                        help="print each parameter's spread over this machine's calibrations of --model in the last 24 h, and exit")
    args = parser.parse_args(argv)
    if args.history:
        like = {"hostname": socket.gethostname(), "cpu_model": machine(args.model)["cpu_model"], "model": args.model}
        print(calibration_history.table(calibration_history.across(calibration_history.load(), like)))
        return {}
    try:
        profile = calibrate(model=args.model, edge_threads=args.edge_threads, cloud_threads=args.cloud_threads,
                            mb_per_thread=args.mb_per_thread, repeats=args.repeats, size_bytes=args.size_bytes,
                            cold_starts=args.cold_starts, out=args.out, plot_dir=args.plots,
                            in_situ_requests=args.in_situ_requests, rounds=args.rounds)  # fmt: skip
    except CalibrationError as error:
        raise SystemExit(f"error: calibration failed: {error}") from None
    _report(profile, args)
    return profile


def _report(profile: dict, args) -> None:
    calibration = profile["calibration"]
    one = calibration["service"][f"{args.edge_threads}_threads"][1]
    print(f"batch-1 service ({args.edge_threads} thread): {1000 * one['mean_s']:.3f} ms, 95% interval "
          f"[{1000 * one['ci95_s'][0]:.3f}, {1000 * one['ci95_s'][1]:.3f}] ms over {one['rounds']} rounds, cv {one['cv']}")  # fmt: skip
    cold = calibration["cold_start"]
    print(f"cold starts: alone {cold['alone']['mean_s']:.2f} s at {profile['hosts']['local']['cold_start_cores']} cores; "
          f"{cold['together']['count']} at once {cold['together']['mean_s']:.2f} s (host model: {cold['together']['host_model_s']:.2f} s)")  # fmt: skip
    warm = profile["hosts"]["local"]["warmup"]["edge"]
    print("warm-up after idling (edge, ms more at " + ", ".join(f"{1000 * g:g}" for g in warm["idle_s"]) + " ms idle): "
          + "; ".join(f"batch {b}: " + " ".join(f"{1000 * e:.2f}" for e in row) for b, row in zip(warm["batch_sizes"], warm["extra_s"])))
    print(f"hop p50 {1000 * profile['hop_s']:.2f} ms, p95 {1000 * calibration['in_situ']['return_hop_p95_s']:.2f} ms; "
          f"worker overhead {1000 * profile['overhead_s']:.2f} ms/batch; hop_MBps {profile['hop_MBps']}")
    host = profile["hosts"]["local"]
    print(f"run to run: speed cv {host['run_cv']}, background sd {host['background_cores_sd']} cores; edge service under contention "
          f"over the host model, by batch size: {calibration['contention']['by_batch_size']}")
    print(f"host: {host['cores']} cores ({host['background_cores']} busy with other work), batch_cores {host['batch_cores']}; role CPU (us per request / per batch / per wake-up, "
          "idle cores): " + ", ".join(f"{r} {1e6 * c['cpu_s_per_request']:.0f}/{1e6 * c['cpu_s_per_batch']:.0f}/"
                                      f"{1e6 * c.get('cpu_s_per_wakeup', 0.0):.0f}/{c['idle_cores']:.3f}" for r, c in host["roles"].items()))
    not_separable = calibration["in_situ"].get("role_fit", {}).get("wakeups_not_separable")
    if not_separable:
        print(f"warning: role CPU per wake-up not separable for {', '.join(not_separable)} (the runs' rates too alike): left 0")
    across = calibration["across_calibrations"]
    if across["calibrations"] > 1:
        service = across["parameters"]["service_edge_b1_ms"]
        print(f"across {across['calibrations']} calibrations of this machine in {across['window_h']:g} h: batch-1 service "
              f"{service['min']:.3f}-{service['max']:.3f} ms (cv {100 * service['cv']:.1f}%); every parameter: --history")  # fmt: skip
    print(f"wrote {args.out} and {args.plots / 'fit.png'} in {calibration['took_s']} s")


if __name__ == "__main__":
    main()
