"""The recorder of a run and its summary: one sans-I/O model for both backends.

The recorder is fed facts (a batch was dispatched, a batch ended finished or
failed with its timestamps, a request was dropped with a reason) and turns
them into the request and batch tables of ``spec.records``. The simulator
feeds it from SimPy events; the live sink from the records topic (after its
own deduplication: delivery there is at-least-once, which is a live concern,
not a recording one).

Per request only what differs between requests of one batch is stored while
the run goes (the batch, the drop reason); per batch the rest, in compact
``array`` columns (the simulator's hot path). The request table is expanded
from these at the end, so a run of a million requests costs a few tens of
bytes per request until then.

``summary`` is the one summary of both backends: ``spec.records.summarize``
over the span of the run, plus the standing cost of servers paid by the hour
(``standing_cost``, from the batch table), the number of replans and whether
the run completed.
"""

from __future__ import annotations

import math
from array import array
from collections.abc import Iterable, Mapping

import numpy as np
import pandas as pd

from spec.predictions import check_predictions
from spec.records import BATCH_COLUMNS, DROP_REASONS, DropReason, request_table, summarize
from spec.topology import Cluster, ServerlessSpec
from spec.workload import Arrivals

__all__ = ["Recorder", "FINISHED", "FAILED", "run_span_s", "busy_s", "busy_by_executor", "hourly_servers", "standing_cost", "summary"]

#: a batch's end state in ``Recorder.batch_finished``
FINISHED, FAILED = 1, 2

#: drop reasons by code; code 0 means not dropped
_REASON_BY_CODE = ("", *DROP_REASONS)


class Recorder:
    """Collects what happens to every request and batch of one run.

    Batch ids are the recorder's own, numbered as batches are opened (a
    driver maps its own ids onto them). A request ends either completed (the
    batch it was last attributed to finished) or dropped with a reason;
    ``unfinished()`` lists those that did neither. Drop reasons outside
    ``spec.records.DROP_REASONS`` (a user's policy's own) are kept by name,
    after the listed ones, in the order they first occur.
    """

    def __init__(self, arrivals: Arrivals, executor_names: list[str], executor_kinds: list[str]):
        count = len(arrivals)
        self.arrivals = arrivals
        self.executor_names = list(executor_names)
        self.executor_kinds = list(executor_kinds)
        # per request only its batch (an array.array: cheaper to set one item than numpy);
        # everything else is per batch, expanded at the end
        self._batch_of = array("i", [-1]) * count
        self.drop_code = np.zeros(count, dtype=np.int8)
        self._reason_code = {reason: code for code, reason in enumerate(_REASON_BY_CODE) if code}
        # batch columns, appended when a batch is opened (dispatched) and filled in as the batch goes
        self.b_executor = array("h")
        self.b_size = array("i")
        self.b_memory_mb = array("i")
        self.b_dispatched_s = array("d")
        self.b_attempt = array("i")
        self._redelivered: dict[int, int] = {}  # batch id -> count, only where not 0 (no broker in the simulator)
        # the rest, appended when a batch ends (in the order they end; e_batch says which)
        self.e_batch = array("i")
        self.b_arrived_s = array("d")  # at the executor, after the uplink
        self.b_start_s = array("d")
        self.b_end_s = array("d")
        self.b_completed_s = array("d")  # result back at the gateway
        self.b_cold_start_s = array("d")
        self.b_cost = array("d")
        # the executor's hops there and back, and the part of them between end_s and completed_s (the
        # simulator's; never live): None until a batch has one, so that a run without hops stores nothing
        self.b_hop_s: array | None = None
        self.b_hop_back_s: array | None = None
        self.b_state = array("b")  # FINISHED or FAILED; batches that never ended have no entry

    # -- during the run ------------------------------------------------------
    def batch_dispatched(self, now_s: float, executor_index: int, request_ids, memory_mb: int | None, attempt: int = 0) -> int:
        """A batch of ``request_ids`` left for an executor; each request's batch is now this one."""
        # batch_opened inlined: this is the simulator's hot path
        batch_id = len(self.b_size)
        self.b_attempt.append(attempt)
        self.b_executor.append(executor_index)
        self.b_size.append(len(request_ids))
        self.b_memory_mb.append(memory_mb or 0)
        self.b_dispatched_s.append(now_s)
        batch_of = self._batch_of
        for request_id in request_ids:
            batch_of[request_id] = batch_id
        return batch_id

    def batch_opened(self, dispatched_s: float, executor_index: int, size: int, memory_mb: int | None, attempt: int = 0) -> int:
        """A batch of ``size`` requests, without saying which (``attribute`` does): its id."""
        batch_id = len(self.b_size)
        self.b_attempt.append(attempt)
        self.b_executor.append(executor_index)
        self.b_size.append(size)
        self.b_memory_mb.append(memory_mb or 0)
        self.b_dispatched_s.append(dispatched_s)
        return batch_id

    def attribute(self, request_ids: Iterable[int], batch_id: int) -> None:
        """``request_ids`` were (last) tried in ``batch_id``."""
        batch_of = self._batch_of
        for request_id in request_ids:
            batch_of[request_id] = batch_id

    def batches_dispatched_bulk(self, dispatched_s, executor_index, sizes, request_ids, memory_mb) -> int:
        """``batch_dispatched`` for consecutive batches at once (first tries): batch k holds the next
        ``sizes[k]`` of ``request_ids`` and left at ``dispatched_s[k]`` (``executor_index`` and ``memory_mb``: one
        for all, or one per batch; memory None: 0). Returns the first one's id."""
        first = len(self.b_size)
        count = len(sizes)
        self.b_attempt.frombytes(bytes(self.b_attempt.itemsize * count))  # attempt 0
        self.b_executor.frombytes(np.full(count, executor_index, np.int16).tobytes())
        self.b_size.frombytes(np.asarray(sizes, np.int32).tobytes())
        self.b_memory_mb.frombytes(np.full(count, 0 if memory_mb is None else memory_mb, np.int32).tobytes())
        self.b_dispatched_s.frombytes(np.asarray(dispatched_s, np.float64).tobytes())
        self.batch_of[np.asarray(request_ids)] = np.repeat(np.arange(first, first + count, dtype=np.int32), sizes)
        return first

    def batches_finished_bulk(self, batch_ids, arrived_s, start_s, end_s, completed_s, cold_start_s, cost) -> None:
        """``batch_finished`` (``FINISHED``, no hops) for many batches at once, arrays in the same order."""
        count = len(batch_ids)
        self.e_batch.frombytes(np.asarray(batch_ids, np.int32).tobytes())
        for column, values in ((self.b_arrived_s, arrived_s), (self.b_start_s, start_s), (self.b_end_s, end_s),
                               (self.b_completed_s, completed_s), (self.b_cold_start_s, cold_start_s), (self.b_cost, cost)):  # fmt: skip
            column.frombytes(np.asarray(values, np.float64).tobytes())
        self.b_state.frombytes(np.full(count, FINISHED, np.int8).tobytes())
        if self.b_hop_s is not None:
            self.b_hop_s.frombytes(bytes(8 * count))
            self.b_hop_back_s.frombytes(bytes(8 * count))

    def batch_finished(self, batch_id: int, arrived_s, start_s, end_s, completed_s, cold_start_s, cost, state: int = FINISHED,
                       hop_s: float = 0.0, hop_back_s: float = 0.0) -> None:  # fmt: skip
        """A batch ended (``FINISHED`` or ``FAILED``); columns kept in the order batches end.

        ``arrived_s``: when it came off its link; ``hop_s``: the executor's
        message hops outside the link, there and back, ``hop_back_s`` of it
        after ``end_s`` (``spec.records``: they go to the ``hop_s`` column).
        """
        self.e_batch.append(batch_id)
        self.b_arrived_s.append(arrived_s)
        self.b_start_s.append(start_s)
        self.b_end_s.append(end_s)
        self.b_completed_s.append(completed_s)
        self.b_cold_start_s.append(cold_start_s)
        self.b_cost.append(cost)
        self.b_state.append(state)
        if self.b_hop_s is not None:
            self.b_hop_s.append(hop_s)
            self.b_hop_back_s.append(hop_back_s)
        elif hop_s or hop_back_s:
            # the first batch with hops: zeros for those that ended before it
            self.b_hop_s = array("d", bytes(8 * (len(self.e_batch) - 1)))
            self.b_hop_back_s = array("d", bytes(8 * (len(self.e_batch) - 1)))
            self.b_hop_s.append(hop_s)
            self.b_hop_back_s.append(hop_back_s)

    def batch_failed(self, batch_id: int, *, cost: float = 0.0, arrived_s: float = math.nan, cold_start_s: float = 0.0) -> None:
        """A batch was lost (its requests are retried or dropped); no service times."""
        nan = math.nan
        self.batch_finished(batch_id, arrived_s, nan, nan, nan, cold_start_s, cost, FAILED)

    def batch_redelivered(self, batch_id: int, count: int) -> None:
        """The broker delivered ``batch_id`` again ``count`` times (live only)."""
        if count:
            self._redelivered[batch_id] = int(count)

    def dropped(self, request_id: int, reason: str) -> None:
        """``request_id`` ended without a result, for ``reason`` (any name)."""
        code = self._reason_code.get(reason)
        if code is None:
            code = len(self._reason_code) + 1  # an unlisted reason from a user's policy: the next code, kept by name
            self._reason_code[reason] = code
        self.drop_code[request_id] = code

    def end_unfinished(self, reason: str = DropReason.RUN_ENDED) -> int:
        """Drop every request that has not ended (the run stopped): how many."""
        missing = self.unfinished().tolist()
        for request_id in missing:
            self.dropped(request_id, reason)
        return len(missing)

    def progress(self) -> tuple[int, int, float]:
        """(requests completed, requests dropped, median latency of the completed ones in s; nan before any).

        Safe to call from another thread while a driver records: it reads copies of the growing columns
        (``tobytes``; a buffer view would stop the driver's appends), each ended batch's end taken once.
        """
        ended = np.frombuffer(self.e_batch.tobytes(), np.int32)
        completed_s = np.frombuffer(self.b_completed_s.tobytes(), np.float64)
        state = np.frombuffer(self.b_state.tobytes(), np.int8)
        count = min(len(ended), len(completed_s), len(state))
        ended, completed_s, state = ended[:count], completed_s[:count], state[:count]
        batch_of = self.batch_of.copy()
        done_at = np.full(max(int(batch_of.max(initial=-1)), int(ended.max(initial=-1))) + 1, np.nan)
        finished = state == FINISHED
        done_at[ended[finished]] = completed_s[finished]
        has_batch = (batch_of >= 0) & (self.drop_code == 0)
        latency_s = done_at[batch_of[has_batch]] - self.arrivals.arrival_s[has_batch]
        latency_s = latency_s[np.isfinite(latency_s)]
        dropped = int(np.count_nonzero(self.drop_code))
        return len(latency_s), dropped, float(np.median(latency_s)) if len(latency_s) else math.nan

    # -- at the end --------------------------------------------------------------
    @property
    def batch_count(self) -> int:
        return len(self.b_size)

    def _reasons(self) -> list[str]:
        names = list(_REASON_BY_CODE)
        extra = sorted((code, reason) for reason, code in self._reason_code.items() if code >= len(_REASON_BY_CODE))
        return names + [reason for _, reason in extra]

    @property
    def batch_of(self) -> np.ndarray:
        """Each request's batch id (-1: never dispatched), a view on the recorder's own column."""
        return np.frombuffer(self._batch_of, np.int32) if len(self._batch_of) else np.zeros(0, np.int32)

    def _by_batch(self, column: array, dtype, missing) -> np.ndarray:
        """An end-of-batch column indexed by batch id (``missing`` for batches still in flight)."""
        out = np.full(len(self.b_size), missing, dtype=dtype)
        if len(self.e_batch):
            out[np.frombuffer(self.e_batch, np.int32)] = np.frombuffer(column, dtype)
        return out

    def unfinished(self) -> np.ndarray:
        """Request ids that neither completed nor were dropped (empty at the end of a run)."""
        state = self._by_batch(self.b_state, np.int8, 0)
        has_batch = self.batch_of >= 0
        finished = np.zeros(len(self.batch_of), dtype=bool)
        finished[has_batch] = state[self.batch_of[has_batch]] == FINISHED
        return np.flatnonzero(~finished & (self.drop_code == 0))

    def batches(self, renumber: np.ndarray | None = None) -> pd.DataFrame:
        """One row per batch (DESIGN.md's batch columns).

        ``renumber[i]`` is the id batch ``i`` gets in the tables (a
        permutation; rows come out in its order), for a driver that opens
        batches in another order than it numbers them.
        """
        executor = pd.Categorical.from_codes(np.frombuffer(self.b_executor, np.int16).astype(np.int16), self.executor_names)
        memory = np.frombuffer(self.b_memory_mb, np.int32)
        redelivered = np.zeros(len(self.b_size), dtype=np.int32)  # always 0 in the simulator (no broker)
        for batch_id, count in self._redelivered.items():
            redelivered[batch_id] = count
        table = {
            "batch_id": np.arange(len(self.b_size), dtype=np.int32),
            "executor": executor,
            "size": np.frombuffer(self.b_size, np.int32),
            "memory_mb": memory,
            "start_s": self._by_batch(self.b_start_s, np.float64, np.nan),
            "end_s": self._by_batch(self.b_end_s, np.float64, np.nan),
            "cold": self._by_batch(self.b_cold_start_s, np.float64, 0.0) > 0,
            "cost": self._by_batch(self.b_cost, np.float64, 0.0),
            "attempt": np.frombuffer(self.b_attempt, np.int32) if len(self.b_attempt) else np.zeros(0, np.int32),
            "redelivered": redelivered,
        }
        frame = pd.DataFrame(table, copy=True)
        if renumber is not None and len(frame):
            frame = frame.iloc[np.argsort(renumber, kind="stable")].reset_index(drop=True)
            frame["batch_id"] = np.arange(len(frame), dtype=np.int32)
        return frame[list(BATCH_COLUMNS)]

    def requests(self, renumber: np.ndarray | None = None, *, source_hops: bool = False) -> pd.DataFrame:
        """One row per request (``spec.records``' request columns), expanded from the batches.

        ``renumber``: see ``batches``. ``source_hops``: the sources' ``hop_s``
        delayed each request on its way to the gateway (the simulator; live
        does not time that hop apart), so it counts in the ``hop_s`` column;
        an array gives each request's own (resampled ``hop_samples_s``).
        """
        arrivals = self.arrivals
        batch = self.batch_of
        has_batch = batch >= 0
        index = np.where(has_batch, batch, 0)

        ended = set(id(c) for c in (self.b_arrived_s, self.b_start_s, self.b_end_s, self.b_completed_s,
                                     self.b_cold_start_s, self.b_cost, self.b_hop_s, self.b_hop_back_s, self.b_state)
                   if c is not None)  # fmt: skip

        def per_batch(column: array, dtype, missing):
            if id(column) in ended:
                values = self._by_batch(column, dtype, missing)
            else:
                values = np.frombuffer(column, dtype) if len(column) else np.zeros(0, dtype)
            if not len(values):
                values = np.zeros(1, dtype)
            out = values[index]
            out[~has_batch] = missing
            return out

        if renumber is not None and len(renumber):
            batch = np.where(has_batch, np.asarray(renumber, dtype=np.int32)[index], -1).astype(np.int32)
        state = per_batch(self.b_state, np.int8, 0)
        hop_s = hop_back_s = None
        per_request_hops = source_hops if isinstance(source_hops, np.ndarray) else None  # each request's own, drawn
        source_hops = per_request_hops is not None or (source_hops and any(s.hop_s for s in arrivals.sources))
        if self.b_hop_s is not None or source_hops:
            if self.b_hop_s is not None:
                hop_s = per_batch(self.b_hop_s, np.float64, 0.0)
                hop_back_s = per_batch(self.b_hop_back_s, np.float64, 0.0)
            else:
                hop_s = np.zeros(len(batch))
            if per_request_hops is not None:
                hop_s += per_request_hops
            elif source_hops:
                hop_s += np.array([s.hop_s for s in arrivals.sources], dtype=np.float64)[arrivals.source_index]
        return request_table(
            arrivals,
            batch_id=batch,
            completed=(state == FINISHED) & (self.drop_code == 0),
            drop_codes=self.drop_code.astype(np.int16) - 1,
            drop_reasons=self._reasons()[1:],
            executor_codes=per_batch(self.b_executor, np.int16, -1),
            executor_names=self.executor_names,
            executor_kinds=self.executor_kinds,
            size=per_batch(self.b_size, np.int32, 0),
            memory_mb=per_batch(self.b_memory_mb, np.int32, 0),
            batch_cost=per_batch(self.b_cost, np.float64, 0.0),
            dispatched_s=per_batch(self.b_dispatched_s, np.float64, np.nan),
            arrived_s=per_batch(self.b_arrived_s, np.float64, np.nan),
            start_s=per_batch(self.b_start_s, np.float64, np.nan),
            end_s=per_batch(self.b_end_s, np.float64, np.nan),
            completed_s=per_batch(self.b_completed_s, np.float64, np.nan),
            cold_start_s=per_batch(self.b_cold_start_s, np.float64, np.nan),
            hop_s=hop_s,
            hop_back_s=hop_back_s,
        )


# -- the summary of a run (both backends) -----------------------------------------


def run_span_s(arrivals: Arrivals, requests: pd.DataFrame) -> float:
    """The run's length: first arrival to last completion (0 when nothing completed)."""
    completed_s = requests["completed_s"].to_numpy() if len(requests) else np.zeros(0)
    first_s = float(arrivals.arrival_s[0]) if len(arrivals) else 0.0
    last_s = float(np.nanmax(completed_s)) if np.isfinite(completed_s).any() else first_s
    return max(last_s - first_s, 0.0)


def busy_s(batches: pd.DataFrame, executor: str) -> float:
    """Seconds ``executor`` spent serving the batches that finished, summed in the order they ended."""
    if not len(batches):
        return 0.0
    mine = (batches["executor"] == executor).to_numpy(dtype=bool)
    start = batches["start_s"].to_numpy(dtype=np.float64)[mine]
    end = batches["end_s"].to_numpy(dtype=np.float64)[mine]
    served = np.isfinite(start) & np.isfinite(end)  # failed batches have no service times
    start, end = start[served], end[served]
    if not len(end):
        return 0.0
    order = np.argsort(end, kind="stable")
    # a running sum in end order (cumsum adds one after another), as a server adds up its busy time
    return float(np.cumsum(end[order] - start[order])[-1])


def busy_by_executor(batches: pd.DataFrame) -> dict[str, float]:
    """``busy_s`` of every executor at once (the same sums, bit for bit): one sort, not a scan per executor.

    A fleet has thousands of executors; ``busy_s`` for each would scan every batch each time.
    """
    if not len(batches):
        return {}
    codes = pd.Categorical(batches["executor"])
    start = batches["start_s"].to_numpy(dtype=np.float64)
    end = batches["end_s"].to_numpy(dtype=np.float64)
    served = np.isfinite(start) & np.isfinite(end)
    code = codes.codes[served]
    start, end = start[served], end[served]
    # by executor, then by end; lexsort is stable, so ties keep the table's order as busy_s's argsort does
    order = np.lexsort((end, code))
    code, duration = code[order], (end - start)[order]
    bounds = np.flatnonzero(np.diff(code)) + 1
    out = {}
    for first, last in zip(np.r_[0, bounds], np.r_[bounds, len(code)]):
        if last > first:
            out[str(codes.categories[code[first]])] = float(np.cumsum(duration[first:last])[-1])
    return out


def hourly_servers(cluster: Cluster, units: Mapping[str, int] | None = None) -> dict[str, tuple[object, int]]:
    """The servers of ``cluster`` (not its serverless pools, paid per batch only): name -> (pricing, units paid).

    Units are ``units[name]`` where given (live: the worker processes of a
    server), else the server's slots (the simulator).
    """
    units = units or {}
    return {name: (spec.pricing, units.get(name, spec.slots))
            for name, spec in cluster.executors.items() if not isinstance(spec, ServerlessSpec)}  # fmt: skip


def standing_cost(batches: pd.DataFrame, *, span_s: float, servers: Mapping[str, tuple[object, int]]) -> float:
    """What servers paid by the hour cost beyond their batches: their idle time over the span.

    ``servers`` maps an executor name to its pricing (``spec.pricing.Pricing``)
    and the number of units paid (a server's slots, or live, its worker
    processes). Every unit is paid over the whole span; the batches already
    carry their busy share, so that is taken off (never below 0).
    """
    total = 0.0
    busy_by = busy_by_executor(batches) if len(servers) > 1 else None
    for name, (pricing, units) in servers.items():
        whole = pricing.standing_cost(span_s=span_s, units=units)
        busy = pricing.standing_cost(span_s=busy_by.get(name, 0.0) if busy_by is not None else busy_s(batches, name), units=1)
        total += max(0.0, whole - busy)
    return total


def summary(
    requests: pd.DataFrame,
    batches: pd.DataFrame,
    *,
    arrivals: Arrivals,
    servers: Mapping[str, tuple[object, int]],
    plans: Iterable[Mapping] = (),
    complete: bool,
) -> dict:
    """The summary of a run, the same in both backends.

    ``spec.records.summarize`` over ``run_span_s`` with ``standing_cost`` of
    ``servers``, plus ``replans`` (plans adopted other than the initial one),
    the prediction check of ``spec.predictions.check_predictions`` (which
    annotates each plan mapping that predicts a percentile with its window's
    observation, so that the plans table carries them) and ``complete``
    (every request ended before the run stopped).
    """
    plans = plans if isinstance(plans, list) else list(plans)
    span = run_span_s(arrivals, requests)
    out = summarize(requests, batches, span_s=span, standing_cost=standing_cost(batches, span_s=span, servers=servers))
    out["replans"] = int(sum(1 for p in plans if p.get("trigger") != "initial"))
    out.update(check_predictions(plans, requests, arrivals))
    out["complete"] = bool(complete)
    return out
