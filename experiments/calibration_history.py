"""Every calibration on this machine, kept: how much each parameter moves from one calibration to the next.

One calibration's rounds show its own noise; they are minutes apart at most.
Between calibrations this machine's batch-1 service moved far more than
any round-to-round spread suggests: 5.05-6.08 ms within 41 minutes one
evening, 3.28 ms an hour later. So ``experiments.calibrate``
appends each calibration's parameters to ``results/calibration/history.jsonl``
and records, in the profile it writes, each parameter's spread over the
calibrations of the same machine and model in the last ``WINDOW_H`` hours
(this one included); ``python -m experiments.calibrate --history`` prints it.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from experiments.paths import RESULTS_DIR

__all__ = ["HISTORY", "WINDOW_H", "parameters", "append", "load", "across", "table"]

HISTORY = RESULTS_DIR / "calibration" / "history.jsonl"
#: calibrations older than this are not compared (the machine, its load and its software change)
WINDOW_H = 24.0


def parameters(profile: Mapping) -> dict[str, float]:
    """The parameters of a calibrated profile worth comparing across calibrations, in the units named."""
    calibration, host = profile["calibration"], profile["hosts"]["local"]
    service = calibration["service"]
    edge, cloud = service[f"{calibration['edge_threads']}_threads"], service[f"{calibration['cloud_threads']}_threads"]
    out = {
        "service_edge_b1_ms": 1e3 * edge[1]["mean_s"],
        "service_edge_b8_ms": 1e3 * edge[8]["mean_s"],
        "service_cloud_b1_ms": 1e3 * cloud[1]["mean_s"],
        "cold_start_s": calibration["cold_start"]["alone"]["mean_s"],
        "cold_start_cores": host["cold_start_cores"],
        "hop_p50_ms": 1e3 * profile["hop_s"],
        "overhead_ms": 1e3 * profile["overhead_s"],
        "ingest_ms": 1e3 * profile["ingest_s"],
        "hop_MBps": profile.get("hop_MBps"),
        "contention_b8": calibration.get("contention", {}).get("by_batch_size", {}).get(8),
    }
    for role, cpu in host["roles"].items():
        out[f"{role}_us_per_request"] = 1e6 * cpu["cpu_s_per_request"]
    broker = host["roles"].get("broker", {})
    if "step_after_MB" in broker:
        out["broker_step_after_MB"], out["broker_step_factor"] = broker["step_after_MB"], broker["step_factor"]
    return {k: round(float(v), 6) for k, v in out.items() if v is not None and math.isfinite(float(v))}


def append(profile: Mapping, path: Path = HISTORY) -> dict:
    """Add this calibration to the history; returns its line."""
    calibration = profile["calibration"]
    machine = calibration["machine"]
    entry = {"measured_at": calibration["measured_at"], "unix_s": time.time(), "hostname": machine["hostname"],
             "cpu_model": machine["cpu_model"], "model": calibration["model"], "parameters": parameters(profile)}  # fmt: skip
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as fp:
        fp.write(json.dumps(entry) + "\n")
    return entry


def load(path: Path = HISTORY) -> list[dict]:
    """The history's entries (a line that does not parse is skipped: the file is this machine's own notes)."""
    if not path.exists():
        return []
    entries = []
    for line in path.read_text().splitlines():
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(entry, dict) and isinstance(entry.get("parameters"), dict):
            entries.append(entry)
    return entries


def across(entries: list[dict], like: Mapping, *, now_s: float | None = None, window_h: float = WINDOW_H) -> dict:
    """Each parameter's spread over the entries of ``like``'s machine and model within ``window_h`` hours of ``now_s``.

    Per parameter: ``n``, ``mean``, ``sd`` and ``cv`` (sample, ddof=1; None
    with one calibration), ``min`` and ``max``; and ``calibrations``, the
    number compared, with ``first`` and ``last`` (their times).
    """
    now_s = time.time() if now_s is None else now_s
    same = [e for e in entries if (e.get("hostname"), e.get("cpu_model"), e.get("model")) ==
            (like.get("hostname"), like.get("cpu_model"), like.get("model")) and now_s - e.get("unix_s", 0) <= 3600 * window_h]  # fmt: skip
    names = sorted({k for e in same for k in e["parameters"]})
    spread = {}
    for name in names:
        values = np.array([e["parameters"][name] for e in same if name in e["parameters"]], dtype=float)
        mean = float(values.mean())
        sd = float(values.std(ddof=1)) if len(values) > 1 else None
        spread[name] = {"n": int(len(values)), "mean": round(mean, 6), "sd": None if sd is None else round(sd, 6),
                        "cv": None if sd is None or mean == 0 else round(sd / abs(mean), 4),
                        "min": round(float(values.min()), 6), "max": round(float(values.max()), 6)}  # fmt: skip
    times = [e["measured_at"] for e in same]
    return {"calibrations": len(same), "window_h": window_h, "first": min(times, default=None), "last": max(times, default=None),
            "parameters": spread}  # fmt: skip


def table(summary: Mapping) -> str:
    """``across``'s result as a plain-text table, one parameter a line."""
    rows = [f"{summary['calibrations']} calibrations of this machine and model within {summary['window_h']:g} h "
            f"({summary['first']} to {summary['last']})",
            f"{'parameter':28s} {'n':>3s} {'mean':>12s} {'sd':>10s} {'cv':>7s} {'min':>12s} {'max':>12s}"]  # fmt: skip
    for name, s in summary["parameters"].items():
        sd = "-" if s["sd"] is None else f"{s['sd']:.4g}"
        cv = "-" if s["cv"] is None else f"{100 * s['cv']:.1f}%"
        rows.append(f"{name:28s} {s['n']:3d} {s['mean']:12.4g} {sd:>10s} {cv:>7s} {s['min']:12.4g} {s['max']:12.4g}")
    return "\n".join(rows)
