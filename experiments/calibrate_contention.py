"""Service per batch size under the contention it will see: calibration's live runs against its own simulation.

The isolated profile times batches alone on the machine. In a live run the
same batches share the machine with the broker, gateway, source and sink:
the host model (``spec.host_cpu``) accounts for the cores they take, but not
for what they do to the memory system (``wide_mlp`` streams 84 MB of weights
per batch, more than the last-level cache: its speed is the memory
bandwidth the other cores leave it). So calibration simulates each of its
own short live runs with everything else it measured (the isolated table,
hosts and cores, roles' CPU, hops, overheads) and takes, per batch size,
the ratio of the live median service to the simulated one: the contention
factor the host model leaves out. The simulator's table is the isolated one
times that factor (``contended_table``): sizes between measured ones take a
factor interpolated in log batch size, sizes beyond them the nearest one's.

Only calibration's own runs are used (never a suite's live runs), and a
size needs ``MIN_BATCHES`` batches in both backends to count.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping, Sequence

import numpy as np

__all__ = ["MIN_BATCHES", "simulated_twin", "contention_by_size", "contended_table"]

#: batches of a size, in each backend, for its factor to count
MIN_BATCHES = 10


def simulated_twin(live_config: Mapping, profile: Mapping, background_cores: float | None = None) -> dict:
    """The simulator's config of one of calibration's live runs, with everything calibration measured (isolated table).

    The machine as that run found it: its own measured ``background_cores``
    when given, and no per-run random effects (the factor is measured
    against the expected machine, not one seed's draw of it).
    """
    config = copy.deepcopy(dict(live_config))
    config.pop("live", None)
    for executor in config["cluster"]["executors"]:
        executor.update(profile=profile["edge"], noise=profile["edge_noise"], hop_s=profile["hop_s"], overhead_s=profile["overhead_s"],
                        hop_MBps=profile["hop_MBps"], hop_samples_s=profile["hop_samples_s"],
                        overhead_samples_s=profile["overhead_samples_s"])  # fmt: skip
    for source in config["workload"]["sources"]:
        source.update(hop_s=profile["ingest_s"], hop_samples_s=profile["ingest_samples_s"])
    hosts = copy.deepcopy(dict(profile["hosts"]))
    for host in hosts.values():
        host.update(run_cv=0.0, background_cores_sd=0.0)
        if background_cores is not None:
            host["background_cores"] = min(float(background_cores), 0.9 * float(host["cores"]))
    config["cluster"]["hosts"] = hosts
    return config


def _medians(batches_list: Sequence) -> dict[int, tuple[float, int]]:
    """Median service (end - start) and count per batch size, over the runs' batch tables."""
    frames = [b[["size", "start_s", "end_s"]] for b in batches_list if len(b)]
    if not frames:
        return {}
    sizes = np.concatenate([f["size"].to_numpy() for f in frames]).astype(int)
    service = np.concatenate([(f["end_s"] - f["start_s"]).to_numpy() for f in frames])
    return {int(s): (float(np.median(service[sizes == s])), int((sizes == s).sum())) for s in np.unique(sizes)}


def contention_by_size(live_batches: Sequence, sim_batches: Sequence, min_batches: int = MIN_BATCHES) -> dict[int, float]:
    """Per batch size: live median service over simulated median service, where both have ``min_batches``."""
    live, sim = _medians(live_batches), _medians(sim_batches)
    found = {}
    for size in sorted(set(live) & set(sim)):
        (live_s, live_n), (sim_s, sim_n) = live[size], sim[size]
        if live_n >= min_batches and sim_n >= min_batches and sim_s > 0 and math.isfinite(live_s / sim_s):
            found[size] = round(live_s / sim_s, 4)
    return found


def contended_table(batch_sizes: Sequence[int], latencies_s: Sequence[float], factors: Mapping[int, float]) -> list[float]:
    """The isolated table times each size's contention factor (log-size interpolation between measured sizes, flat beyond)."""
    if not factors:
        raise ValueError("contended_table: no contention factor measured")
    known = sorted(factors)
    logs, values = np.log([float(s) for s in known]), np.array([factors[s] for s in known])
    scaled = np.interp(np.log(np.asarray(batch_sizes, dtype=float)), logs, values)  # flat beyond the ends
    return [round(float(v * f), 7) for v, f in zip(latencies_s, scaled)]
