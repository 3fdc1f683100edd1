"""The sink role: every request's end, deduplicated, as the simulator's record tables.

It consumes the ``records`` topic (completion records and failed batches
from the gateways, drop records, adopted plans). Delivery is at-least-once,
so the first record of a request id wins and later ones are counted as
duplicates. Each record it takes goes to a write-ahead log
(``live.roles.sink_log``, ``<out>/records.wal``) before it is acknowledged,
so a sink restarted after a crash reads the log back and goes on (the
broker delivers again what it had not acknowledged). When every request of
the workload has ended (or on stop), it writes, under ``--out``:

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
in dispatch order. The recording itself (the tables, their derived columns,
the summary with its standing cost) is ``spec.recorder``, the simulator's
own; this role adds only what at-least-once delivery needs on top: the
deduplication and the mapping of the gateways' batch keys onto the
recorder's batch ids::

    python -m live.roles.sink --broker URL --run-id RUN --config run.json --out DIR
"""

from __future__ import annotations

import json
import math
import queue
import time
from pathlib import Path

import numpy as np
import pandas as pd

from live.config import RunSpec
from live.wire.messages import ControlOp, DecodeError, Kind, Message, decode
from spec.recorder import FAILED, FINISHED, Recorder, hourly_servers, summary
from live.roles.held_sweep import AckedMark, QuietSweep
from live.roles.sink_log import RecordLog
from spec.record_files import write_records
from spec.records import DropReason

__all__ = ["SinkState", "main"]


def _count(value) -> int:
    """A non-negative count from a record's meta (0 when absent or not a count)."""
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def _f(ts, key) -> float:
    value = ts.get(key)
    return float(value) if value is not None else math.nan


class SinkState:
    """Record keeping of the sink, without a broker: ``add(message)`` per record.

    The first record of a request id (or of a batch key) wins; the facts it
    carries go to ``recorder`` (``spec.recorder.Recorder``), which makes the tables.
    """

    def __init__(self, spec: RunSpec):
        self.spec = spec
        arrivals = spec.arrivals
        self.count = len(arrivals)
        self.executor_names = list(spec.cluster.executors)
        self.executor_kinds = [spec.cluster.executors[n].kind for n in self.executor_names]
        self.recorder = Recorder(arrivals, self.executor_names, self.executor_kinds)
        self.ended = np.zeros(self.count, dtype=bool)
        self._batch_index: dict[str, int] = {}  # a gateway's batch key -> the recorder's batch id
        self._batch_keys: list[str] = []  # by the recorder's batch id
        self.plans: list[dict] = []
        self.ended_count = 0
        self.duplicates = 0
        self.conflicts = 0
        self.ignored = 0

    @property
    def done(self) -> bool:
        return self.ended_count >= self.count

    def may_stop(self) -> bool:
        """Whether the sink may end at the run's stop (at once; an open-ingress sink drains first)."""
        return True

    def _ids(self, message: Message) -> list[int] | None:
        try:
            ids = [int(i) for i in message.ids]
        except ValueError:
            return None
        if any(not 0 <= i < self.count for i in ids):
            return None
        return ids

    def _batch(self, message: Message, key: str, ids: list[int], state: int) -> int | None:
        """The recorder's id of a batch reported (``FINISHED`` or ``FAILED``) for the first time, else None."""
        if key in self._batch_index:
            return None  # a duplicate of a batch already recorded
        meta, ts = message.meta, message.ts
        executor = meta.get("executor")
        if executor not in self.executor_names:
            return None
        recorder = self.recorder
        index = recorder.batch_opened(_f(ts, "dispatched_s"), self.executor_names.index(executor), len(ids),
                                      int(meta.get("memory_mb") or 0), _count(meta.get("attempt")))  # fmt: skip
        cold_start_s = float(meta.get("cold_start_s") or 0.0)
        cost = float(meta.get("cost") or 0.0)
        if state == FINISHED:
            recorder.batch_finished(index, _f(ts, "arrived_s"), _f(ts, "start_s"), _f(ts, "end_s"), _f(ts, "completed_s"), cold_start_s, cost)
        else:
            recorder.batch_failed(index, cost=cost, arrived_s=_f(ts, "arrived_s"), cold_start_s=cold_start_s)
        recorder.batch_redelivered(index, _count(meta.get("redelivered")))
        self._batch_index[key] = index
        self._batch_keys.append(key)
        return index

    def add(self, message: Message) -> str | None:
        """One record from the records topic (duplicates are counted and ignored).

        Returns why the message is not a record (for the dead-letter topic), else None.
        """
        op = message.op
        if op is ControlOp.PLAN:
            plan = message.meta.get("plan")
            if isinstance(plan, dict):
                self.plans.append(plan)
                return None
            self.ignored += 1
            return "unexpected: a plan record without a plan"
        if message.kind is not Kind.RESULT and op not in (ControlOp.BATCH_FAILED, ControlOp.DROP):
            self.ignored += 1
            return f"unexpected: a {message.kind.name} message{f' (op {op.value!r})' if op else ''} on the records topic"
        ids = self._ids(message)
        if ids is None or not ids:
            self.ignored += 1
            return f"unexpected: request ids {list(message.ids)[:5]!r} are not ids of this run's {self.count} requests"
        if op is not ControlOp.DROP and message.meta.get("executor") not in self.executor_names:
            self.ignored += 1
            return f"unexpected: executor {message.meta.get('executor')!r}, not one of {self.executor_names}"
        if message.kind is Kind.RESULT:
            index = self._batch(message, str(message.batch_id), ids, FINISHED)
            if index is None:
                self.duplicates += len(ids)
                return None
            for request_id in ids:
                self._end(request_id, index, None)
        elif op is ControlOp.BATCH_FAILED:
            index = self._batch(message, str(message.meta.get("batch_id")), ids, FAILED)
            if index is not None:
                # its latest try (a retry follows its failed batch), as the simulator records
                self.recorder.attribute([r for r in ids if not self.ended[r]], index)
        else:
            reason = str(message.meta.get("reason") or DropReason.RUN_ENDED)
            for request_id in ids:
                self._end(request_id, None, reason)
        return None

    def _end(self, request_id: int, batch_index: int | None, reason: str | None) -> None:
        if self.ended[request_id]:
            self.duplicates += 1
            if (batch_index is not None) != (self.recorder.drop_code[request_id] == 0):
                self.conflicts += 1  # completed once and dropped once: the first record stands
            return
        self.ended[request_id] = True
        self.ended_count += 1
        if batch_index is not None:
            self.recorder.attribute((request_id,), batch_index)
        else:
            self.recorder.dropped(request_id, reason)

    def finish(self) -> int:
        """Drop every request that has not ended as ``run_ended``; return how many."""
        missing = np.flatnonzero(~self.ended).tolist()
        for request_id in missing:
            self._end(request_id, None, DropReason.RUN_ENDED)
        return len(missing)

    # -- tables ----------------------------------------------------------------------------
    def _batch_order(self) -> np.ndarray:
        """Global batch ids: batches numbered in dispatch order (as the simulator does), by recorder id."""
        dispatched = self.recorder.b_dispatched_s
        keys = [(d if math.isfinite(d) else math.inf, k) for d, k in zip(dispatched, self._batch_keys)]
        order = sorted(range(len(keys)), key=keys.__getitem__)
        global_id = np.empty(len(order), dtype=np.int32)
        global_id[order] = np.arange(len(order))
        return global_id

    def batches_table(self) -> pd.DataFrame:
        return self.recorder.batches(renumber=self._batch_order())

    def requests_table(self) -> pd.DataFrame:
        return self.recorder.requests(renumber=self._batch_order())

    def plans_table(self) -> pd.DataFrame:
        return pd.DataFrame(self.plans)

    def summary(self, requests: pd.DataFrame, batches: pd.DataFrame, *, complete: bool) -> dict:
        """``spec.recorder.summary`` (as the simulator's; standing cost of each server's workers) plus duplicates."""
        settings = self.spec.settings.executors
        servers = hourly_servers(self.spec.cluster, units={name: s.replicas for name, s in settings.items() if not s.serverless})
        result = summary(requests, batches, arrivals=self.spec.arrivals, servers=servers, plans=self.plans, complete=complete)
        result["duplicate_records"] = int(self.duplicates)
        return result

    def write(self, out: Path, *, complete: bool) -> dict:
        out.mkdir(parents=True, exist_ok=True)
        requests, batches = self.requests_table(), self.batches_table()
        write_records(requests, out / "requests.parquet")
        write_records(batches, out / "batches.parquet")
        # the summary first: it checks each plan's prediction against its window, into the plan
        summary = self.summary(requests, batches, complete=complete)
        with open(out / "plans.jsonl", "w") as fp:
            for plan in self.plans:
                fp.write(json.dumps(plan, default=str) + "\n")
        (out / "summary.json").write_text(json.dumps(summary, indent=1, default=str))
        return summary


class ProgressFile:
    """The run's progress so far (``Recorder.progress``) as JSON, rewritten at most every ``period_s`` (the
    harness shows it: ``experiments.progress``)."""

    def __init__(self, path: Path | None, state: SinkState, period_s: float = 1.0):
        self.path, self.state, self.period_s = path, state, period_s
        self._next = 0.0

    def maybe_write(self) -> None:
        now = time.monotonic()
        if self.path is None or now < self._next:
            return
        self._next = now + self.period_s
        completed, dropped, p50_s = self.state.recorder.progress()
        record = {"completed": completed, "dropped": dropped, "total": self.state.count,
                  "p50_s": p50_s if math.isfinite(p50_s) else None}  # fmt: skip
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(record))
        tmp.replace(self.path)


def _replay(log: RecordLog, state: SinkState) -> int:
    """Feed ``state`` the records of an earlier process of this sink; return how many."""
    count = 0
    for raw in log.replay():
        try:
            state.add(decode(raw))
        except DecodeError:
            continue  # written by a process of another key or version: the broker has the record still
        count += 1
    return count


def main(argv=None) -> int:
    from live.roles.role import Role, common_parser

    parser = common_parser("Collect every request's end into the record tables.")
    parser.add_argument("--out", required=True, help="folder for requests.parquet, batches.parquet, plans.jsonl, summary.json")
    args = parser.parse_args(argv)
    role = None
    try:
        role = Role(args, "sink", "sink")
        if role.spec.settings.ingress.open:  # the clients' requests, known as their records come
            from live.roles.sink_open import OpenSinkState

            state = OpenSinkState(role.spec)
        else:
            from live.roles.pipeline_sink import sink_state  # a pipeline run keeps a row per input and its columns

            state = sink_state(role.spec)
        log = RecordLog(Path(args.out) / "records.wal")
        replayed = _replay(log, state)  # a restarted sink: what its predecessor had taken
        inbox: queue.SimpleQueue = queue.SimpleQueue()
        role.skip_consumer_ids(args.incarnation)  # past the consumer of a killed predecessor (pulsar-lite)
        consumer = role.subscribe(role.topics.records, "sink", receiver_queue_size=1000,
                                  message_listener=lambda c, m: inbox.put(m))  # fmt: skip
        role.producer(role.topics.dead_letter)
        role.announce_ready()
        undecodable = []

        def take(raw: bytes) -> bool:
            """One record kept (on disk before it is acknowledged), or dead-lettered (True)."""
            try:
                problem = state.add(decode(raw))
            except DecodeError as error:
                undecodable.append(1)
                problem = str(error)
            if problem is not None:
                role.dead_letter(raw, problem, role.topics.records)
            else:
                log.append(raw)
            return problem is not None

        # what a killed predecessor held may never come again (pulsar-lite): read from the topic (live.roles.held_sweep)
        mark = AckedMark(Path(args.out) / "records.acked", restarted=args.incarnation > 0)
        sweep = QuietSweep(role.client, role.topics.records, take, mark.before)
        if args.incarnation:
            sweep.sweep()
        progress = ProgressFile(Path(args.stats).with_name("progress.json") if args.stats else None, state)
        # records may come before the start message reaches us: no need to wait for it
        while not state.done and not (role.should_stop() and state.may_stop()):
            progress.maybe_write()
            try:
                msg = inbox.get(timeout=0.2)
            except queue.Empty:
                sweep.poll()  # quiet for a while with records missing: read the topic (pulsar-lite)
                continue
            if not sweep.skip(msg):  # a bad one the sweep dead-lettered already
                take(msg.data())
            consumer.acknowledge(msg)
            mark.acked(msg)
            sweep.heard(msg)
        complete = state.done
        unfinished = state.finish()
        summary = state.write(Path(args.out), complete=complete)
        log.close(remove=True)
        mark.close(remove=True)
        role.stats.update(records_complete=complete, unfinished=unfinished, duplicates=state.duplicates, conflicts=state.conflicts,
                          ignored=state.ignored, undecodable=len(undecodable), completed=summary["completed"], dropped=summary["dropped"],
                          replayed_after_restart=replayed, swept_records=sweep.read, swept_dead_letters=len(sweep.bad), sweeps=sweep.sweeps)  # fmt: skip
        return 0
    finally:
        if role is not None:
            role.close()


if __name__ == "__main__":
    raise SystemExit(main())
