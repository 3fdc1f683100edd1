"""The recorder of a very large run: its tables streamed to Parquet in row groups as the run goes.

The same facts as ``spec.recorder.Recorder`` (its public methods, the same
arguments) and the same tables, written to ``requests.parquet`` and
``batches.parquet`` in a folder instead of kept. Requests are kept in slices
of ``rows_per_group`` consecutive ids: a slice is written as one row group as
soon as every request in it has ended (completed or dropped), in id order, so
the file's rows are the in-memory table's rows. A batch's columns are kept
until its row is written (in id order, once it ended) and no request still
kept points at it. So what is held at any time is the slices and batches
between the oldest request still in flight and the newest arrival: it
depends on the latency and the arrival rate, not on the run's length.

``summary`` (``spec.running_summary.RunningSummary``) is fed each slice as it
is written. The run's arrivals (``spec.workload.Arrivals``, 10 bytes per
request) are the one per-request thing this recorder reads and does not own.
"""

from __future__ import annotations

import math
from array import array
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from spec.record_files import open_writer
from spec.recorder import _REASON_BY_CODE, FAILED, FINISHED, Recorder
from spec.records import BATCH_COLUMNS, request_table
from spec.running_summary import RunningSummary
from spec.workload import Arrivals

__all__ = ["StreamingRecorder", "REQUESTS_FILE", "BATCHES_FILE"]

REQUESTS_FILE, BATCHES_FILE = "requests.parquet", "batches.parquet"

# the batch columns kept per batch id while a batch may still be read: (name, array typecode, value until it ends)
_BATCH_FIELDS = (
    ("executor", "h", 0), ("size", "i", 0), ("memory_mb", "i", 0), ("dispatched_s", "d", math.nan), ("attempt", "i", 0),
    ("arrived_s", "d", math.nan), ("start_s", "d", math.nan), ("end_s", "d", math.nan), ("completed_s", "d", math.nan),
    ("cold_start_s", "d", 0.0), ("cost", "d", 0.0), ("hop_s", "d", 0.0), ("hop_back_s", "d", 0.0), ("state", "b", 0),
)  # fmt: skip
_ENDED = ("arrived_s", "start_s", "end_s", "completed_s", "cold_start_s", "cost", "hop_s", "hop_back_s", "state")


class StreamingRecorder:
    """Collects a run's records like ``Recorder`` and writes them to ``folder`` a row group at a time.

    ``source_hops``: as ``Recorder.requests``' (True: the sources' constant
    ``hop_s`` count in each request's ``hop_s``; an array: each request's own).
    ``close()`` at the end writes what is left; then ``summary_of`` gives the
    summary.
    """

    def __init__(self, arrivals: Arrivals, executor_names: list[str], executor_kinds: list[str], *, folder: str | Path,
                 rows_per_group: int = 1 << 17, source_hops: bool | np.ndarray = True):  # fmt: skip
        self.arrivals = arrivals
        self.count = len(arrivals)
        self.executor_names, self.executor_kinds = list(executor_names), list(executor_kinds)
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.rows_per_group = int(rows_per_group)
        if self.rows_per_group < 1 or self.rows_per_group & (self.rows_per_group - 1):
            raise ValueError(f"rows_per_group={rows_per_group!r}: a power of two >= 1")
        self._shift, self._mask = self.rows_per_group.bit_length() - 1, self.rows_per_group - 1
        self._source_hops = source_hops
        self._reason_code = {reason: code for code, reason in enumerate(_REASON_BY_CODE) if code}
        # per slice of request ids (kept only while some request of it has not ended): batch, drop code, ended
        self._batch_of: dict[int, array] = {}
        self._drop: dict[int, bytearray] = {}
        self._ended: dict[int, bytearray] = {}
        self._pending: dict[int, int] = {}
        self._next_slice = 0  # the next slice to write
        # per batch, from id _base on: its columns, and while in flight, its requests
        self._base = 0
        self._columns = {name: array(code) for name, code, _ in _BATCH_FIELDS}
        self._members: dict[int, tuple] = {}
        self._bulk: dict[int, tuple[int, np.ndarray]] = {}  # first batch id -> (batches, their request ids): the bulk path's
        self._next_batch_row = 0  # the next batch row to write
        self._batch_rows: list[pd.DataFrame] = []
        self._writers: dict[str, pq.ParquetWriter] = {}
        self.summary = RunningSummary(self.executor_names)
        self.closed = False

    # -- during the run (``Recorder``'s methods) ---------------------------------
    def batch_opened(self, dispatched_s: float, executor_index: int, size: int, memory_mb: int | None, attempt: int = 0) -> int:
        """A batch of ``size`` requests, without saying which (``attribute`` does): its id."""
        columns = self._columns
        row = len(columns["size"])
        columns["executor"].append(executor_index)
        columns["size"].append(size)
        columns["memory_mb"].append(memory_mb or 0)
        columns["dispatched_s"].append(dispatched_s)
        columns["attempt"].append(attempt)
        if row >= len(columns["state"]):
            self._grow_ended()
        batch_id = self._base + row
        self._members[batch_id] = ()
        return batch_id

    #: the end-of-batch columns grow this many rows at a time (set when a batch ends, in any order)
    _GROW = 4096

    def _grow_ended(self) -> None:
        for name, code, missing in _BATCH_FIELDS[5:]:
            self._columns[name].frombytes(np.full(self._GROW, missing, np.dtype(code)).tobytes())

    def batch_dispatched(self, now_s: float, executor_index: int, request_ids, memory_mb: int | None, attempt: int = 0) -> int:
        """A batch of ``request_ids`` left for an executor; each request's batch is now this one."""
        batch_id = self.batch_opened(now_s, executor_index, len(request_ids), memory_mb, attempt)
        self._members[batch_id] = request_ids  # the simulator's hot path: attribute() inlined
        shift, mask, slices = self._shift, self._mask, self._batch_of
        for request_id in request_ids:
            column = slices.get(request_id >> shift)
            if column is None:
                column = self._open_slice(request_id >> shift)
            column[request_id & mask] = batch_id
        return batch_id

    def attribute(self, request_ids: Iterable[int], batch_id: int) -> None:
        """``request_ids`` were (last) tried in ``batch_id``."""
        request_ids = tuple(request_ids)
        self._members[batch_id] = self._members.get(batch_id, ()) + request_ids
        shift, mask, slices = self._shift, self._mask, self._batch_of
        for request_id in request_ids:
            key = request_id >> shift
            column = slices.get(key)
            if column is None:
                column = self._open_slice(key)
            column[request_id & mask] = batch_id

    def _open_slice(self, key: int) -> array:
        size = min(self.rows_per_group, self.count - (key << self._shift))
        self._batch_of[key] = column = array("i", [-1]) * size
        self._drop[key], self._ended[key] = bytearray(size), bytearray(size)
        self._pending[key] = size
        return column

    def batches_dispatched_bulk(self, dispatched_s, executor_index, sizes, request_ids, memory_mb) -> int:
        """``Recorder.batches_dispatched_bulk``: consecutive first tries at once (the simulator's bulk path)."""
        first = self._base + len(self._columns["size"])
        sizes = np.asarray(sizes, np.int32)
        count = len(sizes)
        given = {"executor": np.full(count, executor_index, np.int16), "size": sizes, "memory_mb": np.full(count, 0 if memory_mb is None else memory_mb, np.int32),
                 "dispatched_s": np.asarray(dispatched_s, np.float64), "attempt": np.zeros(count, np.int32)}  # fmt: skip
        for name, values in given.items():
            self._columns[name].frombytes(values.tobytes())
        while len(self._columns["state"]) < len(self._columns["size"]):
            self._grow_ended()
        ids = np.asarray(request_ids, np.int64)
        batch = np.repeat(np.arange(first, first + count, dtype=np.int32), sizes)
        for key in np.unique(ids >> self._shift).tolist():
            if key not in self._batch_of:
                self._open_slice(key)
            mine = (ids >> self._shift) == key
            np.frombuffer(self._batch_of[key], np.int32)[ids[mine] & self._mask] = batch[mine]
        self._bulk[first] = (count, ids)
        return first

    def batches_finished_bulk(self, batch_ids, arrived_s, start_s, end_s, completed_s, cold_start_s, cost) -> None:
        """``Recorder.batches_finished_bulk``: batches of one ``batches_dispatched_bulk`` call, finished, no hops."""
        batch_ids = np.asarray(batch_ids, np.int64)
        first, count = int(batch_ids[0]), len(batch_ids)
        group = self._bulk.pop(first, None)
        if group is None or group[0] != count or not np.array_equal(batch_ids, np.arange(first, first + count)):
            raise ValueError("batches_finished_bulk takes the batches of one batches_dispatched_bulk call, in order")
        row = first - self._base
        for name, values in (("arrived_s", arrived_s), ("start_s", start_s), ("end_s", end_s), ("completed_s", completed_s),
                             ("cold_start_s", cold_start_s), ("cost", cost)):  # fmt: skip
            self._columns[name][row : row + count] = array("d", np.asarray(values, np.float64).tobytes())
        self._columns["state"][row : row + count] = array("b", np.full(count, FINISHED, np.int8).tobytes())
        ids = group[1]
        for key in np.unique(ids >> self._shift).tolist():
            mine = ids[(ids >> self._shift) == key] & self._mask
            ended = np.frombuffer(self._ended[key], np.uint8)
            self._pending[key] -= int(np.count_nonzero(ended[mine] == 0))
            ended[mine] = 1
            del ended
        self._write_ready()

    def batch_finished(self, batch_id: int, arrived_s, start_s, end_s, completed_s, cold_start_s, cost, state: int = FINISHED,
                       hop_s: float = 0.0, hop_back_s: float = 0.0) -> None:  # fmt: skip
        """A batch ended (``FINISHED`` or ``FAILED``); its requests have ended when it finished."""
        row = batch_id - self._base
        columns = self._columns
        for name, value in zip(_ENDED, (arrived_s, start_s, end_s, completed_s, cold_start_s, cost, hop_s, hop_back_s, state)):
            columns[name][row] = value
        members = self._members.pop(batch_id, ())
        if state == FINISHED:
            shift, mask = self._shift, self._mask
            for request_id in members:
                key = request_id >> shift
                if self._batch_of[key][request_id & mask] == batch_id:
                    self._end(key, request_id & mask)
        self._write_ready()

    def batch_failed(self, batch_id: int, *, cost: float = 0.0, arrived_s: float = math.nan, cold_start_s: float = 0.0) -> None:
        """A batch was lost (its requests are retried or dropped); no service times."""
        nan = math.nan
        self.batch_finished(batch_id, arrived_s, nan, nan, nan, cold_start_s, cost, FAILED)

    def batch_redelivered(self, batch_id: int, count: int) -> None:
        """Live only (a broker's redelivery): the simulator has none."""
        raise NotImplementedError("the streaming recorder is the simulator's: it has no broker to redeliver")

    def dropped(self, request_id: int, reason: str) -> None:
        """``request_id`` ended without a result, for ``reason`` (any name)."""
        code = self._reason_code.get(reason)
        if code is None:
            code = self._reason_code[reason] = len(self._reason_code) + 1
        key, index = request_id >> self._shift, request_id & self._mask
        if key not in self._batch_of:
            self._open_slice(key)
        self._drop[key][index] = code
        self._end(key, index)
        self._write_ready()

    def _end(self, key: int, index: int) -> None:
        ended = self._ended[key]
        if not ended[index]:
            ended[index] = 1
            self._pending[key] -= 1

    def unfinished(self) -> np.ndarray:
        """Request ids that have neither completed nor been dropped."""
        parts = []
        for key in range(self._next_slice, -(-self.count // self.rows_per_group)):
            first = key << self._shift
            if key in self._ended:
                parts.append(first + np.flatnonzero(np.frombuffer(self._ended[key], np.uint8) == 0))
            else:
                parts.append(np.arange(first, min(first + self.rows_per_group, self.count)))
        return np.concatenate(parts) if parts else np.zeros(0, np.int64)

    # the same rule over this recorder's own ``unfinished`` and ``dropped``
    end_unfinished = Recorder.end_unfinished

    def progress(self) -> tuple[int, int, float]:
        """(requests completed, requests dropped, median latency) of the slices written so far."""
        done = self.summary
        return done.completed, done.dropped, done.sketch.percentile(50)

    # -- writing -------------------------------------------------------------------
    @property
    def oldest_unwritten_id(self) -> int:
        """The first request id not yet written (the arrivals before it are read no more)."""
        return self._next_slice << self._shift

    @property
    def held_requests(self) -> int:
        """Request slots held in memory now (slices not yet written)."""
        return sum(len(column) for column in self._batch_of.values())

    @property
    def held_batches(self) -> int:
        """Batches whose columns are held in memory now."""
        return len(self._columns["size"])

    def _write_ready(self) -> None:
        """Write every slice, in order, whose requests have all ended; then the batch rows that can go."""
        key = self._next_slice
        if self._pending.get(key, 1):
            return
        while self._pending.get(key, 1) == 0:
            self._write_slice(key)
            key = self._next_slice
        self._write_batches(final=False)

    def _write_slice(self, key: int) -> None:
        first = key << self._shift
        batch = np.frombuffer(self._batch_of.pop(key), np.int32)
        drop = np.frombuffer(self._drop.pop(key), np.uint8)
        del self._ended[key], self._pending[key]
        table = self._request_slice(first, batch, drop)
        self.summary.add_requests(table)
        self._write(REQUESTS_FILE, table)
        self._next_slice = key + 1

    def _request_slice(self, first: int, batch: np.ndarray, drop: np.ndarray) -> pd.DataFrame:
        """Rows ``first..`` of the request table, from their batches' columns (as ``Recorder.requests``)."""
        arrivals = self.arrivals
        last = first + len(batch)
        part = Arrivals(arrival_s=arrivals.arrival_s[first:last], source_index=arrivals.source_index[first:last], sources=arrivals.sources)
        has_batch = batch >= 0
        index = np.where(has_batch, batch - self._base, 0)

        def per_batch(name: str, dtype, missing):
            values = np.frombuffer(self._columns[name], dtype) if len(self._columns[name]) else np.zeros(1, dtype)
            out = values[index]
            out[~has_batch] = missing
            return out

        hop_s = per_batch("hop_s", np.float64, 0.0)
        hop_back_s = per_batch("hop_back_s", np.float64, 0.0)
        if isinstance(self._source_hops, np.ndarray):
            hop_s += self._source_hops[first:last]
        elif self._source_hops and any(s.hop_s for s in arrivals.sources):
            hop_s += np.array([s.hop_s for s in arrivals.sources], dtype=np.float64)[part.source_index]
        state = per_batch("state", np.int8, 0)
        cold_start_s = per_batch("cold_start_s", np.float64, np.nan)
        cold_start_s[state == 0] = np.nan  # a batch still in flight has none yet (Recorder.requests' missing value)
        return request_table(
            part, batch_id=batch.copy(), completed=(state == FINISHED) & (drop == 0),
            drop_codes=drop.astype(np.int16) - 1, drop_reasons=self._reasons()[1:],
            executor_codes=per_batch("executor", np.int16, -1), executor_names=self.executor_names,
            executor_kinds=self.executor_kinds, size=per_batch("size", np.int32, 0),
            memory_mb=per_batch("memory_mb", np.int32, 0), batch_cost=per_batch("cost", np.float64, 0.0),
            dispatched_s=per_batch("dispatched_s", np.float64, np.nan), arrived_s=per_batch("arrived_s", np.float64, np.nan),
            start_s=per_batch("start_s", np.float64, np.nan), end_s=per_batch("end_s", np.float64, np.nan),
            completed_s=per_batch("completed_s", np.float64, np.nan), cold_start_s=cold_start_s,
            hop_s=hop_s, hop_back_s=hop_back_s, first_id=first,
        )  # fmt: skip

    def _reasons(self) -> list[str]:
        extra = sorted((code, reason) for reason, code in self._reason_code.items() if code >= len(_REASON_BY_CODE))
        return list(_REASON_BY_CODE) + [reason for _, reason in extra]

    def _write_batches(self, *, final: bool) -> None:
        """Batch rows in id order up to the first still in flight (all of them when ``final``); then drop the columns
        no kept request reads."""
        opened = len(self._columns["size"])
        state = np.frombuffer(self._columns["state"], np.int8)[:opened] if opened else np.zeros(0, np.int8)
        start = self._next_batch_row - self._base
        in_flight = np.flatnonzero(state[start:] == 0)
        stop = start + int(in_flight[0]) if len(in_flight) and not final else len(state)
        del state  # a view on the column: it must go before the column is cut
        if stop > start:
            self._batch_rows.append(self._batch_slice(start, stop))
            self._next_batch_row = self._base + stop
        if final or sum(len(rows) for rows in self._batch_rows) >= self.rows_per_group:
            self._flush_batch_rows()
        self._trim()

    def _batch_slice(self, start: int, stop: int) -> pd.DataFrame:
        c = {name: np.frombuffer(self._columns[name], np.dtype(code))[start:stop] for name, code, _ in _BATCH_FIELDS}
        table = {
            "batch_id": np.arange(self._base + start, self._base + stop, dtype=np.int32),
            "executor": pd.Categorical.from_codes(c["executor"].astype(np.int16), self.executor_names),
            "size": c["size"], "memory_mb": c["memory_mb"], "start_s": c["start_s"], "end_s": c["end_s"],
            "cold": c["cold_start_s"] > 0, "cost": c["cost"], "attempt": c["attempt"],
            "redelivered": np.zeros(stop - start, dtype=np.int32),  # always 0 in the simulator (no broker)
        }  # fmt: skip
        return pd.DataFrame(table, copy=True)[list(BATCH_COLUMNS)]

    def _flush_batch_rows(self) -> None:
        if not self._batch_rows:
            return
        rows = pd.concat(self._batch_rows, ignore_index=True) if len(self._batch_rows) > 1 else self._batch_rows[0]
        self._batch_rows = []
        self.summary.add_batches(rows)
        self._write(BATCHES_FILE, rows)

    def _trim(self) -> None:
        """Forget the columns of batches written out that no kept request points at."""
        keep_from = self._next_batch_row
        for column in self._batch_of.values():
            ids = np.frombuffer(column, np.int32)
            ids = ids[ids >= 0]
            if len(ids):
                keep_from = min(keep_from, int(ids.min()))
        cut = keep_from - self._base
        if cut >= max(1024, self.rows_per_group // 4):  # in steps: each cut moves the kept columns
            for column in self._columns.values():
                del column[:cut]
            self._base = keep_from

    def _write(self, name: str, table: pd.DataFrame) -> None:
        arrow = pa.Table.from_pandas(table, preserve_index=False)
        writer = self._writers.get(name)
        if writer is None:
            writer = self._writers[name] = open_writer(self.folder / name, arrow.schema)
        writer.write_table(arrow.cast(writer.schema) if not arrow.schema.equals(writer.schema) else arrow)

    def close(self) -> None:
        """Write everything left (the run has ended: every request ended) and close the files."""
        if self.closed:
            return
        while self._next_slice << self._shift < self.count:
            key = self._next_slice
            if key not in self._batch_of:
                self._open_slice(key)
            self._write_slice(key)
        self._write_batches(final=True)
        for name, empty in ((REQUESTS_FILE, None), (BATCHES_FILE, None)):
            if name not in self._writers:
                self._write_empty(name)
        for writer in self._writers.values():
            writer.close()
        self.closed = True

    def _write_empty(self, name: str) -> None:
        from spec.records import empty_batches, empty_requests

        (empty_requests() if name == REQUESTS_FILE else empty_batches()).to_parquet(self.folder / name, index=False)
