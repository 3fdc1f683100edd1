"""Run configs for the pipeline tests of both backends (joins, cascades, lazy routing, stale drops)."""

from __future__ import annotations

import json
from pathlib import Path

STATIC = {"_target_": "policies.placement.StaticPlacement"}


def trace(tmp_path: Path, name: str, gaps_s: list[float]) -> dict:
    """Arrivals at fixed gaps (a trace replayed from its start): hand-computable times."""
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps(gaps_s))
    return {"kind": "trace", "path": str(path), "start_offset_s": 0}


def executor(name: str, kind: str, service_s: float, **extra) -> dict:
    spec = {"name": name, "kind": kind, "slots": 1, "profile": {"kind": "linear", "per_item_s": service_s, "base_s": 0.0},
            "noise": {"kind": "none"}, **extra}  # fmt: skip
    if kind == "edge":
        spec["gateway"] = "edge"
    return spec


def pipeline_config(sources: list[dict], pipeline: dict, *, cloud: bool = True, placement: dict | None = None, seed: int = 0,
                    num_requests: int | None = None, link: dict | None = None, batching: dict | None = None) -> dict:  # fmt: skip
    """Sources at gateway ``edge``; an edge executor and (``cloud``) a cloud one over a link."""
    executors = [executor("edge", "edge", 0.002)] + ([executor("cloud", "cloud", 0.001)] if cloud else [])
    return {
        "seed": seed,
        "workload": {"num_requests": num_requests, "sources": sources},
        "cluster": {"executors": executors, "links": {"cloud": link or {"delay_s": 0.01, "bandwidth_MBps": 50.0}} if cloud else {}},
        "policy": {"placement": placement or STATIC, "batching": batching or {"_target_": "policies.batching.NoBatching"}},
        "pipeline": pipeline,
    }


CASCADE_PLACEMENT = {"_target_": "policies.placement.cascade.CascadePlacement", "cheap": "edge", "big": "cloud"}
