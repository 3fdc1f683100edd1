"""The sink of an open-ingress run: the requests are the clients', known only as their records come.

In replay mode the requests are the workload's, known before the run; here
each completion or drop record names its requests' clients and the
clients' ids (``meta.clients``) and their times (``req_ts``: the arrival,
from the client's send time, clamped; when the gateway received it). The
first record of a ``(client, id)`` wins, later ones are duplicates. At the
end the requests, ordered by arrival, become the run's arrivals (one
source per client) and the records go through the replay sink's own
bookkeeping (``SinkState``, over ``spec.recorder``), so the tables have
the very same columns: ``request_id`` numbers the requests in arrival
order, ``source`` is the client, ``latency_s`` counts from the client's
send time and ``hop_s`` is the hop from the client to the gateway
(received minus arrival). ``ingress.parquet`` maps each ``request_id`` to
its client's id and times.

The run has no count of requests to wait for: the sink ends after the stop
once every gateway has said ``eos`` (it drops what it still had pending and
answered its clients), or ``live.ingress.drain_s`` after the stop.
"""

from __future__ import annotations

import dataclasses
import math
import time
from pathlib import Path

import numpy as np
import pandas as pd

from live.config import RunSpec
from live.roles.sink import SinkState
from live.wire.messages import ControlOp, Kind, Message
from spec.workload import Arrivals, Source

__all__ = ["OpenSinkState"]

INGRESS_COLUMNS = ("request_id", "client", "client_request_id", "arrival_s", "received_s", "sent_s", "completed_s",
                   "latency_s", "latency_from_received_s", "met_slo", "dropped", "drop_reason")  # fmt: skip


class _Tables(SinkState):
    """The replay sink's bookkeeping over arrivals made from the clients' requests, the client hop in ``hop_s``."""

    def __init__(self, spec: RunSpec, hop_s: np.ndarray):
        super().__init__(spec)
        self.hop_s = hop_s

    def requests_table(self) -> pd.DataFrame:
        return self.recorder.requests(renumber=self._batch_order(), source_hops=self.hop_s)


def _pairs(message: Message) -> list[tuple[str, str]] | None:
    clients = message.meta.get("clients")
    if not isinstance(clients, list) or len(clients) != len(message.ids):
        return None
    if not all(isinstance(p, list) and len(p) == 2 and all(isinstance(x, str) for x in p) for p in clients):
        return None
    return [(c, r) for c, r in clients]


def _stamps(message: Message) -> list[dict] | None:
    stamps = message.req_ts if message.req_ts is not None else message.meta.get("req_ts")
    if not isinstance(stamps, (list, tuple)) or len(stamps) != len(message.ids):
        return None
    ok = all(isinstance(s, dict) and all(isinstance(s.get(k), (int, float)) and not isinstance(s.get(k), bool) for k in ("arrival_s", "received_s"))
             for s in stamps)  # fmt: skip
    return list(stamps) if ok else None


class OpenSinkState:
    """Record keeping of an open-ingress sink (see the module): ``add(message)`` per record, then ``finish``."""

    def __init__(self, spec: RunSpec):
        self.spec = spec
        self.ingress = spec.settings.ingress
        self.clients = list(self.ingress.clients)
        self.requests: dict[tuple[str, str], dict] = {}  # (client, client's id) -> its times, first record wins
        self.records: list[Message] = []
        self.gateways_ended: set[str] = set()
        self.duplicates = self.conflicts = self.ignored = 0
        self.tables: _Tables | None = None
        self.keys: list[tuple[str, str]] = []
        self._drain_until: float | None = None
        self.ended = [0, 0]  # completed, dropped (first records), for the progress file

    @property
    def recorder(self):
        """What ``live.roles.sink.ProgressFile`` reads (``progress()``) while the run goes."""
        return self

    def progress(self) -> tuple[int, int, float]:
        return self.ended[0], self.ended[1], math.nan

    @property
    def done(self) -> bool:
        """Every gateway said it has ended (``eos``): no record is still to come."""
        return set(self.spec.gateways) <= self.gateways_ended

    @property
    def count(self) -> int:
        return len(self.requests)

    def may_stop(self) -> bool:
        """After the stop: True once ``live.ingress.drain_s`` has passed since first asked (the gateways' last records)."""
        if self._drain_until is None:
            self._drain_until = time.monotonic() + self.ingress.drain_s
        return time.monotonic() >= self._drain_until

    def add(self, message: Message) -> str | None:
        """One record from the records topic; why it is not one (for the dead-letter topic), else None."""
        op = message.op
        if op is ControlOp.EOS:
            if message.source not in self.spec.gateways:
                self.ignored += 1
                return f"unexpected: an eos from {message.source[:60]!r}, not a gateway of the run"
            self.gateways_ended.add(message.source)
            return None
        if op is ControlOp.PLAN:
            self.records.append(message)
            return None
        if message.kind is not Kind.RESULT and op not in (ControlOp.DROP, ControlOp.BATCH_FAILED):
            self.ignored += 1
            return f"unexpected: a {message.kind.name} message{f' (op {op.value!r})' if op else ''} on the records topic"
        pairs = _pairs(message)
        if pairs is None or any(client not in self.ingress.clients for client, _ in pairs):
            self.ignored += 1
            return "unexpected: a record without meta.clients ([registered client, id] per request) in an open-ingress run"
        if op is not ControlOp.BATCH_FAILED:
            stamps = _stamps(message)
            if stamps is None:
                self.ignored += 1
                return "unexpected: a record without req_ts (arrival_s and received_s per request) in an open-ingress run"
            for pair, stamp in zip(pairs, stamps):
                if pair not in self.requests:
                    self.requests[pair] = stamp
                    self.ended[op is ControlOp.DROP] += 1
        self.records.append(message)
        return None

    def _arrivals(self) -> tuple[Arrivals, np.ndarray]:
        """The requests as the run's arrivals, ordered by arrival (one source per client), and their client hops."""
        keys = sorted(self.requests, key=lambda k: (self.requests[k]["arrival_s"], k))
        self.keys = keys
        arrival_s = np.array([self.requests[k]["arrival_s"] for k in keys], dtype=np.float64)
        received_s = np.array([self.requests[k]["received_s"] for k in keys], dtype=np.float64)
        index = {name: i for i, name in enumerate(self.clients)}
        source_index = np.array([index[c] for c, _ in keys], dtype=np.int16)
        process = self.spec.workload.sources[0].arrivals  # not replayed: a Source needs one
        sources = tuple(Source(name=name, arrivals=process, size_bytes=0, slo_s=client.slo_s, gateway=client.gateway)
                        for name, client in self.ingress.clients.items())  # fmt: skip
        return Arrivals(arrival_s=arrival_s, source_index=source_index, sources=sources), np.maximum(received_s - arrival_s, 0.0)

    def finish(self) -> int:
        """Build the tables' bookkeeping from every record; return how many requests had not ended (none, normally)."""
        arrivals, hop_s = self._arrivals()
        tables = self.tables = _Tables(dataclasses.replace(self.spec, arrivals=arrivals), hop_s)
        number = {key: str(i) for i, key in enumerate(self.keys)}
        for message in self.records:
            if message.op is ControlOp.PLAN:
                tables.add(message)
                continue
            kept = [k for k, pair in enumerate(_pairs(message)) if pair in number]
            if not kept:
                continue
            ids = tuple(number[_pairs(message)[k]] for k in kept)
            labels = tuple(message.labels[k] for k in kept) if message.labels is not None else None
            sizes = (0,) * len(ids)
            tables.add(dataclasses.replace(message, ids=ids, sizes=sizes, payload=b"", labels=labels, req_ts=None))
        self.duplicates, self.conflicts = tables.duplicates, tables.conflicts
        return tables.finish()

    def write(self, out: Path, *, complete: bool) -> dict:
        """The replay sink's files, plus ``ingress.parquet`` (each request's client, its id and times)."""
        summary = self.tables.write(out, complete=complete)
        requests = pd.read_parquet(Path(out) / "requests.parquet")
        table = self.ingress_table(requests)
        table.to_parquet(Path(out) / "ingress.parquet", index=False)
        return summary

    def ingress_table(self, requests: pd.DataFrame) -> pd.DataFrame:
        stamps = [self.requests[k] for k in self.keys]
        received_s = np.array([s["received_s"] for s in stamps], dtype=np.float64)
        sent_s = np.array([s.get("sent_s", math.nan) for s in stamps], dtype=np.float64)
        completed_s = requests["completed_s"].to_numpy(dtype=np.float64)
        return pd.DataFrame({
            "request_id": requests["request_id"].to_numpy(), "client": [c for c, _ in self.keys],
            "client_request_id": [r for _, r in self.keys], "arrival_s": requests["arrival_s"].to_numpy(), "received_s": received_s,
            "sent_s": sent_s, "completed_s": completed_s, "latency_s": requests["latency_s"].to_numpy(),
            "latency_from_received_s": completed_s - received_s, "met_slo": requests["met_slo"].to_numpy(),
            "dropped": requests["dropped"].to_numpy(), "drop_reason": requests["drop_reason"].astype(object).to_numpy(),
        })[list(INGRESS_COLUMNS)]  # fmt: skip
