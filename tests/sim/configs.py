"""Config builders for simulator tests."""

from __future__ import annotations

import copy

STATIC = {"_target_": "policies.placement.StaticPlacement"}
NO_BATCHING = {"_target_": "policies.batching.NoBatching"}


def timeout_batching(max_batch_size: int = 8, max_wait_s: float = 0.005) -> dict:
    return {"_target_": "policies.batching.TimeoutBatching", "max_batch_size": max_batch_size, "max_wait_s": max_wait_s}


def single_queue(
    *,
    rate_rps: float,
    service_s: float,
    noise: dict | None = None,
    slots: int = 1,
    num_requests: int = 10_000,
    seed: int = 0,
    batching: dict | None = None,
    arrivals: dict | None = None,
) -> dict:
    """One source, one edge server; a batch of one takes ``service_s`` on average."""
    return {
        "seed": seed,
        "workload": {
            "num_requests": num_requests,
            "sources": [{"name": "src", "arrivals": arrivals or {"kind": "poisson", "rate_rps": rate_rps}}],
        },
        "cluster": {
            "executors": [
                {
                    "name": "edge",
                    "kind": "edge",
                    "gateway": "edge",
                    "slots": slots,
                    "profile": {"kind": "linear", "per_item_s": service_s, "base_s": 0.0},
                    "noise": noise or {"kind": "none"},
                }
            ]
        },
        "policy": {"placement": STATIC, "batching": batching or NO_BATCHING},
    }


def with_changes(config: dict, **changes) -> dict:
    """A deep copy of ``config`` with dotted keys replaced: with_changes(c, **{"workload.num_requests": 5})."""
    config = copy.deepcopy(config)
    for dotted, value in changes.items():
        node = config
        *path, leaf = dotted.split(".")
        for key in path:
            node = node[int(key)] if isinstance(node, list) else node[key]
        if isinstance(node, list):
            node[int(leaf)] = value
        else:
            node[leaf] = value
    return config
