"""The record schema shared by the simulator and the live harness, and the summary.

One row per request and one per batch, with the same columns in both
backends, so every downstream command works on either. Times are seconds from
the start of the run; costs are in the pricing config's currency.

The request table (``REQUEST_COLUMNS``), derived once in ``request_table``:

=============== =====================================================================
request_id      the request's id (its index in the run's arrivals)
source          the source (device) that sent it
arrival_s       when the source sent it
dispatched_s    when its gateway sent its batch on (NaN: never dispatched)
executor        where its (last) batch ran; ``executor_kind`` its kind
batch_id        that batch (-1: never dispatched); ``batch_size`` its size
memory_mb       the batch's memory size (serverless; 0 otherwise)
transfer_s      time on links: the uplink, waiting for the link included, and the
                result's way back over the link
hop_s           time on message hops outside any link: the source's hop to its gateway
                and the executor's hops there and back (the simulator's ``hop_s`` /
                ``hop_MBps``; 0 where a backend cannot time them apart, see below)
queue_s         time waiting in a queue: for its batch to form and leave (at the
                gateway) and for a free slot or instance (at the executor)
cold_start_s    the instance's cold start, when the batch paid one
service_s       the batch's service time (start to end)
completed_s     when the result was back at the gateway (NaN: dropped)
latency_s       ``completed_s - arrival_s`` =
                ``transfer_s + hop_s + queue_s + cold_start_s + service_s``
deadline_s      ``arrival_s`` plus the source's SLO; ``met_slo`` completed by then
dropped         ended without a result; ``drop_reason`` why (``DropReason``)
cost            the batch's cost shared equally among its requests
=============== =====================================================================

The live harness times hops only as far as its records allow: a local
executor's result hop is in ``transfer_s`` there (completed minus end of
service), and the broker hops towards the executor in ``queue_s``.

A run with a ``pipeline:`` block (``spec.pipeline``) keeps one row per input
(a fired join is one task, one request to the scheduler, of several inputs)
and adds, in both backends (``spec.pipeline_ledger.PIPELINE_COLUMNS``):

=============== =====================================================================
task_id         the task the input was part of (the id of the input that completed its
                join; its own id without a join; -1: it never reached a scheduler)
join_wait_s     its wait in the join buffer, from when its gateway took it to the join
                firing (in ``queue_s`` too); 0 without a join
escalated       its task's cheap output escalated to the cascade's big model (the row's
                batch, executor and service are then the big model's)
payload_bytes   bytes it moved over links: its payload per link crossed, or lazily its
                reference plus the payload when read (``spec.lazy_payload``)
=============== =====================================================================

Its summary adds ``link_bytes`` (bytes over each link, ``<gateway>-><executor>``),
``bytes_moved``, ``escalated_share``, ``join_wait_mean_s``, ``join_expired``
and ``stale_dropped``; drop reasons add ``join_superseded``, ``join_skew``,
``join_unmatched`` (``spec.join_buffer``). ``batch_size`` counts tasks, and a
task's share of its batch's cost goes to each of its inputs' rows.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

__all__ = ["REQUEST_COLUMNS", "BATCH_COLUMNS", "DropReason", "DROP_REASONS", "summarize", "empty_requests", "empty_batches", "request_table"]

REQUEST_COLUMNS = (
    "request_id", "source", "arrival_s", "dispatched_s", "executor", "executor_kind", "batch_id",
    "batch_size", "memory_mb", "transfer_s", "hop_s", "queue_s", "cold_start_s", "service_s", "completed_s",
    "latency_s", "deadline_s", "met_slo", "dropped", "drop_reason", "cost",
)  # fmt: skip

#: ``attempt``: 0 for a batch's first dispatch, k for the scheduler's k-th retry of a failed batch;
#: ``redelivered``: how many times the broker delivered the batch again after an executor
#: died holding it (at-least-once delivery; always 0 in the simulator, which has no broker)
BATCH_COLUMNS = ("batch_id", "executor", "size", "memory_mb", "start_s", "end_s", "cold", "cost", "attempt", "redelivered")


class DropReason:
    """The reasons a request can end without a result."""

    QUEUE_FULL = "queue_full"
    DEADLINE = "deadline"
    INFEASIBLE = "infeasible"
    NO_EXECUTOR = "no_executor"
    EXECUTOR_FAILED = "executor_failed"
    RETRIES_EXHAUSTED = "retries_exhausted"
    RUN_ENDED = "run_ended"
    STALE = "stale"


#: the known drop reasons in the order both backends' request tables list them (a policy's own come after)
DROP_REASONS = (
    DropReason.QUEUE_FULL,
    DropReason.DEADLINE,
    DropReason.INFEASIBLE,
    DropReason.NO_EXECUTOR,
    DropReason.EXECUTOR_FAILED,
    DropReason.RETRIES_EXHAUSTED,
    DropReason.RUN_ENDED,
    DropReason.STALE,
)


def empty_requests() -> pd.DataFrame:
    """A request table with no rows and the schema's columns."""
    return pd.DataFrame({c: [] for c in REQUEST_COLUMNS})


def empty_batches() -> pd.DataFrame:
    """A batch table with no rows and the schema's columns."""
    return pd.DataFrame({c: [] for c in BATCH_COLUMNS})


def request_table(
    arrivals,
    *,
    batch_id: np.ndarray,
    completed: np.ndarray,
    drop_codes: np.ndarray,
    drop_reasons: list[str],
    executor_codes: np.ndarray,
    executor_names: list[str],
    executor_kinds: list[str],
    size: np.ndarray,
    memory_mb: np.ndarray,
    batch_cost: np.ndarray,
    dispatched_s: np.ndarray,
    arrived_s: np.ndarray,
    start_s: np.ndarray,
    end_s: np.ndarray,
    completed_s: np.ndarray,
    cold_start_s: np.ndarray,
    hop_s: np.ndarray | None = None,
    hop_back_s: np.ndarray | None = None,
    first_id: int = 0,
) -> pd.DataFrame:
    """The request table of both backends, from each request's batch columns.

    Every array has one entry per request (its batch's value; ``batch_id`` -1
    for a request never dispatched). ``completed`` says which requests got a
    result, ``drop_codes`` index ``drop_reasons`` (-1: not dropped).
    ``arrived_s`` is when the batch came off its link (before any hop to the
    executor); ``hop_s`` each request's hops in all (its source's, its
    executor's there and back; None: no hops), ``hop_back_s`` the part of it
    between ``end_s`` and ``completed_s``. Derived here once, so the backends
    cannot drift apart: ``transfer_s`` (uplink, waiting for the link
    included, plus the result's way back over the link), ``service_s``,
    ``latency_s``, ``queue_s`` (the rest: waiting), the per-request cost,
    and ``met_slo``. ``completed_s`` is overwritten in place. ``first_id``
    is the first row's request id (a streamed slice of a run's requests).
    """
    completed_s[~completed] = np.nan
    arrival_s = arrivals.arrival_s
    transfer_s = (arrived_s - dispatched_s) + (completed_s - end_s)
    if hop_back_s is not None:
        transfer_s -= hop_back_s
    if hop_s is None:
        hop_s = np.zeros(len(arrival_s))
    service_s = end_s - start_s
    latency_s = completed_s - arrival_s
    queue_s = latency_s - transfer_s - hop_s - cold_start_s - service_s
    deadline_s = arrivals.deadline_s
    with np.errstate(invalid="ignore", divide="ignore"):
        cost = batch_cost / np.maximum(size, 1)
    kinds = sorted(set(executor_kinds))
    kind_codes = np.array([kinds.index(k) for k in executor_kinds] + [-1], dtype=np.int8)[executor_codes]
    table = {
        "request_id": np.arange(first_id, first_id + len(arrival_s), dtype=np.int64),
        "source": pd.Categorical.from_codes(arrivals.source_index, [s.name for s in arrivals.sources]),
        "arrival_s": arrival_s,
        "dispatched_s": dispatched_s,
        "executor": pd.Categorical.from_codes(executor_codes, executor_names),
        "executor_kind": pd.Categorical.from_codes(kind_codes, kinds),
        "batch_id": batch_id,
        "batch_size": size,
        "memory_mb": memory_mb,
        "transfer_s": transfer_s,
        "hop_s": hop_s,
        "queue_s": queue_s,
        "cold_start_s": cold_start_s,
        "service_s": service_s,
        "completed_s": completed_s,
        "latency_s": latency_s,
        "deadline_s": deadline_s,
        "met_slo": completed & (completed_s <= deadline_s),
        "dropped": drop_codes >= 0,
        "drop_reason": pd.Categorical.from_codes(drop_codes, drop_reasons),
        "cost": cost,
    }
    # copy=False: hand the columns over instead of holding two copies at the peak
    return pd.DataFrame(table, copy=False)[list(REQUEST_COLUMNS)]


def _percentile(values: np.ndarray, q: float) -> float:
    return float(np.percentile(values, q)) if len(values) else math.nan


def summarize(requests: pd.DataFrame, batches: pd.DataFrame, *, span_s: float, standing_cost: float = 0.0) -> dict:
    """The summary of a run, from its two tables.

    ``span_s`` is the run's length (first arrival to last completion) used for
    throughput; ``standing_cost`` is what idle servers cost on top of batches.
    SLO attainment counts dropped requests as misses. ``retries`` counts
    batches dispatched again after a failure, ``redelivered`` the broker's
    redeliveries of batches (both from the batch table).
    """
    count = int(len(requests))
    dropped_mask = requests["dropped"].to_numpy(dtype=bool) if count else np.zeros(0, bool)
    completed = requests.loc[~dropped_mask] if count else requests
    latency = completed["latency_s"].to_numpy(dtype=float) if len(completed) else np.zeros(0)
    met = requests["met_slo"].to_numpy(dtype=bool) if count else np.zeros(0, bool)
    batch_cost = float(batches["cost"].sum()) if len(batches) else 0.0
    total_cost = batch_cost + standing_cost
    reasons = requests.loc[dropped_mask, "drop_reason"].value_counts() if count else pd.Series(dtype=int)
    return {
        "count": count,
        "completed": int(len(completed)),
        "dropped": int(dropped_mask.sum()),
        "drops_by_reason": {str(k): int(v) for k, v in reasons.items() if v},
        "span_s": float(span_s),
        "throughput_rps": float(len(completed) / span_s) if span_s > 0 else math.nan,
        "latency_mean_s": float(latency.mean()) if len(latency) else math.nan,
        "latency_p50_s": _percentile(latency, 50),
        "latency_p95_s": _percentile(latency, 95),
        "latency_p99_s": _percentile(latency, 99),
        "slo_attainment": float(met.mean()) if count else math.nan,
        "batch_cost": batch_cost,
        "total_cost": total_cost,
        "cost_per_1k": float(total_cost / count * 1000) if count else math.nan,
        "cold_starts": int(batches["cold"].sum()) if len(batches) else 0,
        "batches": int(len(batches)),
        "mean_batch_size": float(batches["size"].mean()) if len(batches) else math.nan,
        "retries": int((batches["attempt"] > 0).sum()) if len(batches) and "attempt" in batches else 0,
        "redelivered": int(batches["redelivered"].sum()) if len(batches) and "redelivered" in batches else 0,
    }
