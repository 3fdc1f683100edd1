"""The sink role: every request's end, deduplicated, as the simulator's record tables.

It consumes the ``records`` topic (completion records and failed batches
from the gateways, drop records, adopted plans). Delivery is at-least-once,
so the first record of a request id wins and later ones are counted as
duplicates. When every request of the workload has ended (or on stop), it
writes, under ``--out``:

- ``requests.parquet`` and ``batches.parquet`` with exactly
  ``spec.records.REQUEST_COLUMNS`` and ``BATCH_COLUMNS`` (the simulator's
  dtypes too), so ``spec.records.summarize`` and every downstream command
  work unchanged; requests that never ended are dropped as ``run_ended``;
- ``plans.jsonl`` (one adopted plan a line) and ``summary.json``.

A record that does not decode, or is not one of the records above (a
message of another kind, request ids outside the workload, an unknown
executor), goes to the dead-letter topic with the reason; the sink goes on.

Request ids, sources, arrival times and deadlines come from the workload
(``Workload.generate(seed)``), as in the simulator; batch ids are numbered
in dispatch order. ``transfer_s`` is the uplink (dispatch to the batch's
publication after the emulated link) plus the way back (end of service to
completion at the gateway); ``queue_s`` is the rest of the latency beyond
transfer, cold start and service, exactly as ``sim/recorder.py`` derives
them::

    python -m live.roles.sink --broker URL --run-id RUN --config run.json --out DIR
"""

from __future__ import annotations

import json
import math
import queue
from pathlib import Path

import numpy as np
import pandas as pd

from live.config import RunSpec
from live.wire.messages import DecodeError, Kind, Message, decode
from spec.records import BATCH_COLUMNS, DROP_REASONS, DropReason, request_table, summarize

__all__ = ["SinkState", "main"]


def _count(value) -> int:
    """A non-negative count from a record's meta (0 when absent or not a count)."""
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def _f(ts, key) -> float:
    value = ts.get(key)
    return float(value) if value is not None else math.nan


class SinkState:
    """Record keeping of the sink, without a broker: ``add(message)`` per record."""

    def __init__(self, spec: RunSpec):
        self.spec = spec
        arrivals = spec.arrivals
        self.count = len(arrivals)
        self.executor_names = list(spec.cluster.executors)
        self.executor_kinds = [spec.cluster.executors[n].kind for n in self.executor_names]
        self.batch_of = np.full(self.count, -1, dtype=np.int64)  # index into self.batches
        self.drop_reason: list[str | None] = [None] * self.count
        self.ended = np.zeros(self.count, dtype=bool)
        self.batches: list[dict] = []
        self._batch_index: dict[str, int] = {}
        self.plans: list[dict] = []
        self.ended_count = 0
        self.duplicates = 0
        self.conflicts = 0
        self.ignored = 0

    @property
    def done(self) -> bool:
        return self.ended_count >= self.count

    def _ids(self, message: Message) -> list[int] | None:
        try:
            ids = [int(i) for i in message.ids]
        except ValueError:
            return None
        if any(not 0 <= i < self.count for i in ids):
            return None
        return ids

    def _batch(self, message: Message, key: str, ids: list[int], state: str) -> int | None:
        if key in self._batch_index:
            return None  # a duplicate of a batch already recorded
        meta, ts = message.meta, message.ts
        executor = meta.get("executor")
        if executor not in self.executor_names:
            return None
        index = len(self.batches)
        self._batch_index[key] = index
        self.batches.append({
            "key": key,
            "executor": self.executor_names.index(executor),
            "size": len(ids),
            "memory_mb": int(meta.get("memory_mb") or 0),
            "dispatched_s": _f(ts, "dispatched_s"),
            "arrived_s": _f(ts, "arrived_s"),
            "start_s": _f(ts, "start_s") if state == "finished" else math.nan,
            "end_s": _f(ts, "end_s") if state == "finished" else math.nan,
            "completed_s": _f(ts, "completed_s") if state == "finished" else math.nan,
            "cold_start_s": float(meta.get("cold_start_s") or 0.0),
            "cost": float(meta.get("cost") or 0.0),
            "attempt": _count(meta.get("attempt")),
            "redelivered": _count(meta.get("redelivered")),
            "state": state,
        })  # fmt: skip
        return index

    def add(self, message: Message) -> str | None:
        """One record from the records topic (duplicates are counted and ignored).

        Returns why the message is not a record (for the dead-letter topic), else None.
        """
        op = message.meta.get("op") if message.kind is Kind.CONTROL else None
        if op == "plan":
            plan = message.meta.get("plan")
            if isinstance(plan, dict):
                self.plans.append(plan)
                return None
            self.ignored += 1
            return "unexpected: a plan record without a plan"
        if message.kind is not Kind.RESULT and op not in ("batch_failed", "drop"):
            self.ignored += 1
            return f"unexpected: a {message.kind.name} message{f' (op {op!r})' if op else ''} on the records topic"
        ids = self._ids(message)
        if ids is None or not ids:
            self.ignored += 1
            return f"unexpected: request ids {list(message.ids)[:5]!r} are not ids of this run's {self.count} requests"
        if op != "drop" and message.meta.get("executor") not in self.executor_names:
            self.ignored += 1
            return f"unexpected: executor {message.meta.get('executor')!r}, not one of {self.executor_names}"
        if message.kind is Kind.RESULT:
            index = self._batch(message, str(message.batch_id), ids, "finished")
            if index is None:
                self.duplicates += len(ids)
                return None
            for request_id in ids:
                self._end(request_id, index, None)
        elif op == "batch_failed":
            index = self._batch(message, str(message.meta.get("batch_id")), ids, "failed")
            if index is not None:
                for request_id in ids:
                    if not self.ended[request_id]:  # its latest try (a retry follows its failed batch), as the simulator records
                        self.batch_of[request_id] = index
        else:
            reason = str(message.meta.get("reason") or DropReason.RUN_ENDED)
            for request_id in ids:
                self._end(request_id, None, reason)
        return None

    def _end(self, request_id: int, batch_index: int | None, reason: str | None) -> None:
        if self.ended[request_id]:
            self.duplicates += 1
            if (batch_index is not None) != (self.drop_reason[request_id] is None):
                self.conflicts += 1  # completed once and dropped once: the first record stands
            return
        self.ended[request_id] = True
        self.ended_count += 1
        if batch_index is not None:
            self.batch_of[request_id] = batch_index
        self.drop_reason[request_id] = reason

    def finish(self) -> int:
        """Drop every request that has not ended as ``run_ended``; return how many."""
        missing = np.flatnonzero(~self.ended).tolist()
        for request_id in missing:
            self._end(request_id, None, DropReason.RUN_ENDED)
        return len(missing)

    # -- tables ----------------------------------------------------------------------------
    def _batch_order(self) -> np.ndarray:
        """Global batch ids: batches numbered in dispatch order (as the simulator does)."""
        keys = [(b["dispatched_s"] if math.isfinite(b["dispatched_s"]) else math.inf, b["key"]) for b in self.batches]
        order = sorted(range(len(keys)), key=lambda i: keys[i])
        global_id = np.empty(len(order), dtype=np.int64)
        global_id[order] = np.arange(len(order))
        return global_id

    def batches_table(self) -> pd.DataFrame:
        global_id = self._batch_order()
        order = np.argsort(global_id, kind="stable")
        rows = [self.batches[i] for i in order]
        frame = pd.DataFrame({
            "batch_id": np.arange(len(rows), dtype=np.int32),
            "executor": pd.Categorical.from_codes(np.array([r["executor"] for r in rows], dtype=np.int16), self.executor_names),
            "size": np.array([r["size"] for r in rows], dtype=np.int32),
            "memory_mb": np.array([r["memory_mb"] for r in rows], dtype=np.int32),
            "start_s": np.array([r["start_s"] for r in rows], dtype=np.float64),
            "end_s": np.array([r["end_s"] for r in rows], dtype=np.float64),
            "cold": np.array([r["cold_start_s"] > 0 for r in rows], dtype=bool),
            "cost": np.array([r["cost"] for r in rows], dtype=np.float64),
            "attempt": np.array([r["attempt"] for r in rows], dtype=np.int32),
            "redelivered": np.array([r["redelivered"] for r in rows], dtype=np.int32),
        })  # fmt: skip
        return frame[list(BATCH_COLUMNS)]

    def requests_table(self) -> pd.DataFrame:
        global_id = self._batch_order()
        has_batch = self.batch_of >= 0
        index = np.where(has_batch, self.batch_of, 0)

        def column(name, dtype, missing):
            values = np.array([b[name] for b in self.batches] or [missing], dtype=dtype)
            out = values[index]
            out[~has_batch] = missing
            return out

        state = np.array([b["state"] == "finished" for b in self.batches] or [False], dtype=bool)[index] & has_batch
        reasons = list(DROP_REASONS) + sorted({r for r in self.drop_reason if r is not None} - set(DROP_REASONS))
        drop_code = np.array([-1 if r is None else reasons.index(r) for r in self.drop_reason], dtype=np.int16)
        return request_table(
            self.spec.arrivals,
            batch_id=np.where(has_batch, np.append(global_id, 0)[index], -1).astype(np.int32),
            completed=state & (drop_code < 0),
            drop_codes=drop_code,
            drop_reasons=reasons,
            executor_codes=column("executor", np.int16, -1),
            executor_names=self.executor_names,
            executor_kinds=self.executor_kinds,
            size=column("size", np.int32, 0),
            memory_mb=column("memory_mb", np.int32, 0),
            batch_cost=column("cost", np.float64, 0.0),
            dispatched_s=column("dispatched_s", np.float64, np.nan),
            arrived_s=column("arrived_s", np.float64, np.nan),
            start_s=column("start_s", np.float64, np.nan),
            end_s=column("end_s", np.float64, np.nan),
            completed_s=column("completed_s", np.float64, np.nan),
            cold_start_s=column("cold_start_s", np.float64, np.nan),
        )

    def plans_table(self) -> pd.DataFrame:
        return pd.DataFrame(self.plans)

    def summary(self, requests: pd.DataFrame, batches: pd.DataFrame, *, complete: bool) -> dict:
        """``spec.records.summarize`` plus what the simulator adds (standing cost, replans)."""
        completed_s = requests["completed_s"].to_numpy()
        arrivals = self.spec.arrivals
        first_s = float(arrivals.arrival_s[0]) if self.count else 0.0
        last_s = float(np.nanmax(completed_s)) if np.isfinite(completed_s).any() else first_s
        span_s = max(last_s - first_s, 0.0)
        standing = 0.0
        for name, spec in self.spec.cluster.executors.items():
            settings = self.spec.settings.executors[name]
            if settings.serverless:
                continue
            busy_s = float((batches["end_s"] - batches["start_s"])[batches["executor"] == name].sum()) if len(batches) else 0.0
            whole = spec.pricing.standing_cost(span_s=span_s, units=settings.replicas)
            standing += max(0.0, whole - spec.pricing.standing_cost(span_s=busy_s, units=1))
        summary = summarize(requests, batches, span_s=span_s, standing_cost=standing)
        summary["replans"] = sum(1 for p in self.plans if p.get("trigger") != "initial")
        summary["complete"] = bool(complete)
        summary["duplicate_records"] = int(self.duplicates)
        return summary

    def write(self, out: Path, *, complete: bool) -> dict:
        out.mkdir(parents=True, exist_ok=True)
        requests, batches = self.requests_table(), self.batches_table()
        requests.to_parquet(out / "requests.parquet", index=False)
        batches.to_parquet(out / "batches.parquet", index=False)
        with open(out / "plans.jsonl", "w") as fp:
            for plan in self.plans:
                fp.write(json.dumps(plan, default=str) + "\n")
        summary = self.summary(requests, batches, complete=complete)
        (out / "summary.json").write_text(json.dumps(summary, indent=1, default=str))
        return summary


def main(argv=None) -> int:
    from live.roles.role import Role, common_parser

    parser = common_parser("Collect every request's end into the record tables.")
    parser.add_argument("--out", required=True, help="folder for requests.parquet, batches.parquet, plans.jsonl, summary.json")
    args = parser.parse_args(argv)
    role = None
    try:
        role = Role(args, "sink", "sink")
        state = SinkState(role.spec)
        inbox: queue.SimpleQueue = queue.SimpleQueue()
        consumer = role.subscribe(role.topics.records, "sink", receiver_queue_size=1000,
                                  message_listener=lambda c, m: inbox.put(m))  # fmt: skip
        role.producer(role.topics.dead_letter)
        role.announce_ready()
        undecodable = 0
        # records may come before the start message reaches us: no need to wait for it
        while not state.done and not role.should_stop():
            try:
                msg = inbox.get(timeout=0.2)
            except queue.Empty:
                continue
            raw = msg.data()
            try:
                problem = state.add(decode(raw))
            except DecodeError as error:
                undecodable += 1
                problem = str(error)
            if problem is not None:
                role.dead_letter(raw, problem, role.topics.records)
            consumer.acknowledge(msg)
        complete = state.done
        unfinished = state.finish()
        summary = state.write(Path(args.out), complete=complete)
        role.stats.update(records_complete=complete, unfinished=unfinished, duplicates=state.duplicates, conflicts=state.conflicts,
                          ignored=state.ignored, undecodable=undecodable, completed=summary["completed"], dropped=summary["dropped"])  # fmt: skip
        return 0
    finally:
        if role is not None:
            role.close()


if __name__ == "__main__":
    raise SystemExit(main())
