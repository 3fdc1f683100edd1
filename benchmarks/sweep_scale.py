"""How many simulator configurations an hour one machine runs, by launcher, and their memory.

Every configuration is the reference scenario of ``benchmarks/sim_throughput.py``
(Poisson arrivals at 300 req/s, timeout batching up to 8 requests with a 5 ms
wait, one edge server with a linear latency profile of 0.5 ms per item plus
2 ms, no noise) with 100,000 requests; the sweep varies the seed. It runs as
``python -m experiments.run --multirun`` (Hydra composes, the simulator runs,
results/-style tables and a summary are written per configuration) with:

- the basic launcher: one process, one configuration after another (the baseline);
- the joblib launcher with 2 local workers (loky processes);
- the Ray launcher (``hydra/launcher=ray_local``, a Ray cluster started on this
  machine) with 1 and with 2 workers;

plus, for reference, a plain loop of ``sim.simulate`` in one process (no Hydra,
no tables written). All in the same invocation, so the ratios compare like with
like on whatever machine runs it::

    python -m benchmarks.sweep_scale [--configs 8] [--requests 100000] [--skip-ray]

Per launcher: wall time of the whole sweep; "startup", from the command's start
to the first configuration's start (interpreter, Hydra, worker pool or Ray
cluster); "steady", configurations per hour from the first start to the last
end (what a long sweep approaches); the ratio of steady rates to the basic
launcher's; the peak resident memory of one job process (the largest of the
processes that ran configurations) and of the whole process tree (every worker,
raylet and GCS included), sampled from /proc every 100 ms; and the disk written
per configuration. Memory needs Linux's /proc. Each sweep runs ``--repeat``
times, interleaved with the others, and the best repetition counts (other
work on a shared machine only ever slows a sweep down); the load average
before and after is printed for context.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import tracemalloc
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

#: Hydra overrides that turn conf/config.yaml into the reference scenario
SCENARIO = [
    "backend=sim",
    "workload=poisson",
    "cluster=edge_only",
    "profile=fast",  # edge: 0.5 ms per item + 2 ms
    "profile.edge_noise.kind=none",
    "~profile.edge_noise.cv",
    "policy/batching=timeout",
    "policy.batching.max_batch_size=8",
    "policy.batching.max_wait_s=0.005",
    "rate_rps=300",
]

LAUNCHERS = [
    ("basic, 1 process", ["hydra/launcher=basic"], "basic"),
    ("joblib, 2 workers", ["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"], "joblib"),
    ("ray_local, 1 worker", ["hydra/launcher=ray_local", "hydra.launcher.ray.init.num_cpus=1"], "ray"),
    ("ray_local, 2 workers", ["hydra/launcher=ray_local", "hydra.launcher.ray.init.num_cpus=2"], "ray"),
]


# ---------------------------------------------------------------------------
# memory of a process tree, from /proc
# ---------------------------------------------------------------------------


def _children(pid: int) -> list[int]:
    out = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            try:
                out += [int(c) for c in Path(f"/proc/{pid}/task/{task}/children").read_text().split()]
            except OSError:
                pass
    except OSError:
        pass
    return out


def _rss_bytes(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _cpu_s(pid: int) -> float | None:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / _TICK  # utime, stime
    except (OSError, IndexError, ValueError):
        return None


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


@dataclass
class TreeMonitor:
    """Samples the RSS of ``root`` and its descendants until stopped."""

    root: int
    period_s: float = 0.1
    peak_total: int = 0
    peak_by_pid: dict = field(default_factory=dict)
    cmd_by_pid: dict = field(default_factory=dict)
    cpu_by_pid: dict = field(default_factory=dict)  # user + system seconds, last seen

    def __post_init__(self):
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> TreeMonitor:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.is_set():
            pids, frontier = [], [self.root]
            while frontier:
                pid = frontier.pop()
                pids.append(pid)
                frontier += _children(pid)
            total = 0
            for pid in pids:
                rss = _rss_bytes(pid)
                total += rss
                if rss > self.peak_by_pid.get(pid, 0):
                    self.peak_by_pid[pid] = rss
                cpu = _cpu_s(pid)
                if cpu is not None:
                    self.cpu_by_pid[pid] = cpu
                if pid not in self.cmd_by_pid or self.cmd_by_pid[pid].startswith("ray::IDLE") or not self.cmd_by_pid[pid]:
                    self.cmd_by_pid[pid] = _cmdline(pid)
            self.peak_total = max(self.peak_total, total)
            self._stop.wait(self.period_s)

    def peak_job_process(self, kind: str) -> int:
        """Peak RSS of the largest process that ran configurations."""
        if kind == "basic":
            return self.peak_by_pid.get(self.root, 0)
        if kind == "joblib":
            chosen = [p for p, c in self.cmd_by_pid.items() if "loky" in c or "joblib" in c]
        else:
            chosen = [p for p, c in self.cmd_by_pid.items() if c.startswith("ray::") or "default_worker.py" in c]
        return max((self.peak_by_pid[p] for p in chosen), default=0)


# ---------------------------------------------------------------------------
# one sweep
# ---------------------------------------------------------------------------


@dataclass
class Row:
    name: str
    configs: int
    wall_s: float
    startup_s: float
    span_s: float
    job_s: float
    job_peak_mb: float
    tree_peak_mb: float
    disk_mb_per_config: float
    cpu_s: float = float("nan")  # CPU time of every process of the sweep (user + system), reaped children included
    ok: bool = True
    note: str = ""

    @property
    def steady_per_hour(self) -> float:
        return self.configs / self.span_s * 3600.0 if self.span_s > 0 else float("nan")

    @property
    def cpu_per_config(self) -> float:
        return self.cpu_s / self.configs

    @property
    def wall_per_hour(self) -> float:
        return self.configs / self.wall_s * 3600.0


def _children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _dir_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def hydra_sweep(name: str, launcher: list[str], kind: str, configs: int, requests: int, out: Path, timeout_s: float) -> Row:
    sweep_dir = out / name.replace(",", "").replace(" ", "_")
    seeds = ",".join(str(s) for s in range(configs))
    cmd = [sys.executable, "-m", "experiments.run", "--multirun", *SCENARIO, f"num_requests={requests}", f"seed={seeds}",
           "name=scale", f"hydra.sweep.dir={sweep_dir}", *launcher]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(ROOT) + (os.pathsep + os.environ["PYTHONPATH"] if os.environ.get("PYTHONPATH") else "")}
    env.setdefault("RAY_DEDUP_LOGS", "0")
    log_path = out / (sweep_dir.name + ".log")
    cpu_before = _children_cpu_s()
    started_wall = time.time()
    started = time.perf_counter()
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        monitor = TreeMonitor(proc.pid).start()
        try:
            code = proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            code = None
        finally:
            monitor.stop()
    wall_s = time.perf_counter() - started
    # both are lower bounds: rusage misses processes not reaped under us (Ray's workers), the samples miss
    # the last 100 ms of each process
    cpu_s = max(_children_cpu_s() - cpu_before, sum(monitor.cpu_by_pid.values()))
    starts, ends, done = [], [], 0
    for k in range(configs):
        job = sweep_dir / str(k)
        summary = job / "summary.json"
        hydra_cfg = job / ".hydra" / "config.yaml"
        if summary.is_file() and hydra_cfg.is_file():
            if json.loads(summary.read_text()).get("completed") == requests:
                done += 1
            starts.append(hydra_cfg.stat().st_mtime)
            ends.append(summary.stat().st_mtime)
    ok = code == 0 and done == configs
    note = "" if ok else f"exit {code}, {done}/{configs} configurations done; log {log_path}"
    span_s = (max(ends) - min(starts)) if starts else float("nan")
    job_s = (sum(e - s for s, e in zip(starts, ends)) / len(starts)) if starts else float("nan")
    disk = _dir_bytes(sweep_dir) / max(1, len(starts)) / 1e6 if sweep_dir.exists() else float("nan")
    return Row(name, configs, wall_s, (min(starts) - started_wall) if starts else float("nan"), span_s, job_s,
               monitor.peak_job_process(kind) / 1e6, monitor.peak_total / 1e6, disk, cpu_s, ok, note)  # fmt: skip


# ---------------------------------------------------------------------------
# the plain loop (run in a fresh interpreter by the parent)
# ---------------------------------------------------------------------------


def _run_config(requests: int, seed: int) -> dict:
    from hydra import compose, initialize_config_dir

    from experiments.run import to_run_config

    with initialize_config_dir(version_base=None, config_dir=str(ROOT / "conf")):
        cfg = compose("config", overrides=[*SCENARIO, f"num_requests={requests}", f"seed={seed}"])
    return to_run_config(cfg)


def plain_loop(configs: int, requests: int) -> dict:
    from sim import simulate

    started = time.perf_counter()
    composed = _run_config(requests, 0)
    run_configs = [{**composed, "seed": seed} for seed in range(configs)]
    compose_s = time.perf_counter() - started
    times = []
    for config in run_configs:
        gc.collect()
        t = time.perf_counter()
        result = simulate(config)
        times.append(time.perf_counter() - t)
        assert result.summary["completed"] == requests
        del result
    gc.collect()
    maxrss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e6
    traced = time.perf_counter()
    tracemalloc.start()
    base, _ = tracemalloc.get_traced_memory()
    simulate(run_configs[0])  # the peak is what counts
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return {"compose_s": compose_s, "times": times, "traced_peak_mb": (peak - base) / 1e6, "traced_s": time.perf_counter() - traced,
            "maxrss_mb": maxrss_mb}  # fmt: skip


def plain_row(configs: int, requests: int, timeout_s: float) -> tuple[Row, float]:
    cpu_before = _children_cpu_s()
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "benchmarks.sweep_scale", "--_plain", str(configs), "--requests", str(requests)],
                          cwd=ROOT, capture_output=True, text=True, timeout=timeout_s)  # fmt: skip
    if proc.returncode != 0:
        raise RuntimeError(f"plain loop failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    data = json.loads(proc.stdout.strip().splitlines()[-1])
    wall_s = time.perf_counter() - started - data["traced_s"]  # without the extra traced run
    span = sum(data["times"])
    cpu_s = _children_cpu_s() - cpu_before - data["traced_s"]  # the traced run: about its wall time in CPU
    row = Row("sim.simulate loop (no Hydra, no tables)", configs, wall_s, wall_s - span, span, span / configs,
              data["maxrss_mb"], data["maxrss_mb"], 0.0, cpu_s)  # fmt: skip
    return row, data["traced_peak_mb"]


# ---------------------------------------------------------------------------
# the table
# ---------------------------------------------------------------------------


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--configs", type=int, default=8, help="configurations per sweep (seeds 0..N-1)")
    parser.add_argument("--requests", type=int, default=100_000, help="requests per configuration")
    parser.add_argument("--repeat", type=int, default=2, help="runs of each sweep (interleaved); the best counts")
    parser.add_argument("--skip-ray", action="store_true")
    parser.add_argument("--only", help="comma-separated launcher kinds to run besides basic: joblib, ray")
    parser.add_argument("--timeout-s", type=float, default=600.0, help="per sweep")
    parser.add_argument("--keep", help="keep the sweeps' output here (default: a temporary folder, removed)")
    parser.add_argument("--_plain", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args._plain:
        print(json.dumps(plain_loop(args._plain, args.requests)))
        return 0

    out = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="edgebatch-sweep-scale-"))
    out.mkdir(parents=True, exist_ok=True)
    launchers = [entry for entry in LAUNCHERS if not (args.skip_ray and entry[2] == "ray")]
    if args.only:
        kinds = {"basic", *args.only.split(",")}
        launchers = [entry for entry in launchers if entry[2] in kinds]
    best: dict[str, Row] = {}
    plain = None
    load_before = os.getloadavg()
    try:
        print(f"sweep scale: {args.configs} configurations x {args.requests:,} requests (Poisson 300 rps, timeout batching 8/5 ms, "
              f"one edge server); {os.cpu_count()} CPUs; best of {args.repeat}; output {out}", flush=True)  # fmt: skip
        for repeat in range(args.repeat):
            row, traced_mb = plain_row(args.configs, args.requests, args.timeout_s)
            print(f"  [{repeat + 1}/{args.repeat}] {row.name}: {row.wall_s:.1f}s", flush=True)
            if plain is None or row.steady_per_hour > plain.steady_per_hour:
                plain = row
            for name, launcher, kind in launchers:
                sweep_out = out / f"repeat{repeat}"
                sweep_out.mkdir(exist_ok=True)
                row = hydra_sweep(name, launcher, kind, args.configs, args.requests, sweep_out, args.timeout_s)
                print(f"  [{repeat + 1}/{args.repeat}] {name}: {row.wall_s:.1f}s, {row.steady_per_hour:.0f} configs/h steady"
                      + ("" if row.ok else "  FAILED: " + row.note), flush=True)  # fmt: skip
                kept = best.get(name)
                if kept is None or (row.ok, row.steady_per_hour) > (kept.ok, kept.steady_per_hour):
                    best[name] = row
    finally:
        if not args.keep:
            shutil.rmtree(out, ignore_errors=True)
    rows = [best[name] for name, _, _ in launchers]
    print(f"load average (1, 5, 15 min) before {tuple(round(x, 2) for x in load_before)}, "
          f"after {tuple(round(x, 2) for x in os.getloadavg())}")  # fmt: skip

    base = rows[0]
    header = (f"{'launcher':<42} {'wall s':>7} {'startup s':>9} {'s/config':>8} {'configs/h':>9} {'configs/h':>9} {'ratio':>6} "
              f"{'CPU s':>6} {'job RSS':>8} {'tree RSS':>8} {'disk':>6}")  # fmt: skip
    sub = (f"{'':<42} {'':>7} {'':>9} {'(job)':>8} {'(wall)':>9} {'(steady)':>9} {'steady':>6} {'/cfg':>6} {'MB':>8} {'MB':>8} "
           f"{'MB/cfg':>6}")  # fmt: skip
    print()
    print(header)
    print(sub)
    print("-" * len(header))
    for row in [plain, *rows]:
        ratio = row.steady_per_hour / base.steady_per_hour
        print(f"{row.name:<42} {row.wall_s:>7.1f} {row.startup_s:>9.1f} {row.job_s:>8.2f} {row.wall_per_hour:>9.0f} "
              f"{row.steady_per_hour:>9.0f} {ratio:>6.2f} {row.cpu_per_config:>6.2f} {row.job_peak_mb:>8.0f} {row.tree_peak_mb:>8.0f} {row.disk_mb_per_config:>6.1f}"
              + ("" if row.ok else f"  FAILED ({row.note})"))  # fmt: skip
    print()
    print("CPU s/cfg: user + system time of every process of the sweep (startup included) per configuration; unlike wall "
          "time, other work on the machine does not inflate it.")
    print(f"ratio: steady configurations/hour against the basic launcher (one process) measured in this run. "
          f"Peak traced memory of one configuration inside the simulator (tracemalloc): {traced_mb:.0f} MB.")  # fmt: skip
    best = max((r for r in rows if r.ok), key=lambda r: r.steady_per_hour)
    per_day = best.steady_per_hour * 24
    per_core = best.steady_per_hour / (os.cpu_count() or 1)
    print(f"\nFor the docs: on this {os.cpu_count()}-CPU machine the fastest launcher ({best.name}) runs about "
          f"{best.steady_per_hour:,.0f} configurations of {args.requests:,} requests an hour (~{per_core:,.0f} per core), about "
          f"{per_day:,.0f} in a day. Memory is not the limit: a job process peaks at ~{best.job_peak_mb:.0f} MB resident "
          f"(the whole tree at {best.tree_peak_mb:,.0f} MB), so one worker per core fits in ~{best.job_peak_mb / 1e3:.2f} GB per core. "
          f"Disk is: each configuration writes ~{best.disk_mb_per_config:.1f} MB of tables, {per_day * best.disk_mb_per_config / 1e3:,.0f} GB "
          f"a day at this rate, so the largest sweep on one machine is about (free disk / {best.disk_mb_per_config:.1f} MB) configurations, "
          f"run at ~{per_core:,.0f} configurations per core-hour.")  # fmt: skip
    return 0 if all(r.ok for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
