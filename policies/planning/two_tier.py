"""What the edge-plus-serverless planners share: the decision space and the cluster's two tiers."""

from __future__ import annotations

from collections.abc import Sequence

from policies.placement.base import ClusterView
from spec.validation import ConfigError, check_int_at_least

__all__ = [
    "SEED_EDGE_BATCH_SIZES",
    "SEED_SERVERLESS_BATCH_SIZES",
    "SEED_MEMORY_SIZES_MB",
    "SEED_REQUEST_SIZE_BYTES",
    "check_grid",
    "find_tiers",
]

#: the serverless-edge-batching seed's grids
SEED_EDGE_BATCH_SIZES = (1, 5, 10, 15, 20, 30, 40, 50, 60, 70, 80, 90, 100, 200)
SEED_SERVERLESS_BATCH_SIZES = (1, 2, 3, 4, 5, 10, 15, 20)
SEED_MEMORY_SIZES_MB = (1024, 2048, 3072, 4096)
#: one request's upload in the seed: 200 KiB
SEED_REQUEST_SIZE_BYTES = 200 * 1024


def check_grid(field: str, values: Sequence[int]) -> tuple[int, ...]:
    """Sorted distinct integers >= 1, or ``ConfigError`` naming ``field``."""
    if isinstance(values, (str, bytes)) or not isinstance(values, Sequence) or not len(values):
        raise ConfigError(field, values, "a non-empty list of integers >= 1")
    return tuple(sorted({check_int_at_least(field, v, 1) for v in values}))


def find_tiers(view: ClusterView, field: str, edge: str | None, serverless: str | None) -> tuple[str, str]:
    """Names of the edge executor and the serverless executor a planner plans for.

    Given names are checked; otherwise the one executor of each kind among
    those the gateway reaches is taken, and anything else is a ``ConfigError``.
    """
    executors = view.executors
    out = []
    for kind, given in (("edge", edge), ("serverless", serverless)):
        if given is not None:
            if given not in executors or executors[given].kind != kind:
                names = [n for n, e in executors.items() if e.kind == kind]
                raise ConfigError(f"{field}.{kind}_executor", given, f"a reachable {kind} executor among {names}")
            out.append(given)
            continue
        names = [n for n, e in executors.items() if e.kind == kind]
        if len(names) != 1:
            raise ConfigError(
                f"{field}.{kind}_executor", names, f"exactly one reachable {kind} executor (or name one with {kind}_executor)"
            )
        out.append(names[0])
    return out[0], out[1]
