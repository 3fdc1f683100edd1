"""What a gateway tells the sink on the run's ``records`` topic.

A completion (RESULT with the batch's timestamps), a failed batch (CONTROL
``batch_failed``: its requests may be retried), a drop (CONTROL ``drop``)
and an adopted plan (CONTROL ``plan``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence

from live.wire.messages import ControlOp, Message, encode_control, encode_drop, encode_result

__all__ = ["RecordWriter", "plain", "record_meta"]


def plain(value):
    """JSON-safe plain data (numpy numbers to floats, non-finite to None)."""
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    kind = getattr(getattr(value, "dtype", None), "kind", "")
    if kind == "b":
        return bool(value)
    try:
        number = float(value)
    except (TypeError, ValueError):
        return str(value)
    if isinstance(value, int) or kind in ("i", "u"):
        return int(value)
    return number if math.isfinite(number) else None


def record_meta(gateway: str, flight, message: Message) -> dict:
    """The meta of a batch's completion or failure record: where it ran, its cost, its tries."""
    meta = message.meta
    redelivered = meta.get("redelivered", 0)
    redelivered = redelivered if isinstance(redelivered, int) and not isinstance(redelivered, bool) and redelivered > 0 else 0
    redelivered += flight.resends  # the broker's redeliveries plus this gateway's own
    return {"executor": flight.executor, "gateway": gateway, "memory_mb": flight.memory_mb or 0,
            "worker": message.source, "cost": float(meta.get("cost", 0.0) or 0.0),
            "cold_start_s": float(meta.get("cold_start_s", 0.0) or 0.0),
            "attempt": flight.attempt, "redelivered": redelivered}  # fmt: skip


class RecordWriter:
    """Publishes gateway ``name``'s records with ``send(topic, data)``."""

    def __init__(self, name: str, topic: str, send: Callable[..., None]):
        self.name = name
        self.topic = topic
        self.send = send

    def completed(self, key: str, ids: Sequence[str], *, labels, ts: Mapping[str, float], meta: Mapping, result: Message | None = None) -> None:
        # result: the worker's RESULT (an open-ingress writer answers its clients with its outputs)
        self.send(self.topic, encode_result(key, ids, source=self.name, labels=labels, ts=ts, meta=meta))

    def batch_failed(self, key: str, ids: Sequence[str], *, reason: str, ts: Mapping[str, float], meta: Mapping) -> None:
        self.send(self.topic, encode_control(ControlOp.BATCH_FAILED, source=self.name, ids=ids, trace_id=key, ts=ts,
                                             meta={**meta, "batch_id": key, "reason": reason}))  # fmt: skip

    def dropped(self, request_id: int, reason: str, dropped_s: float) -> None:
        self.send(self.topic, encode_drop([str(request_id)], reason, source=self.name, ts={"dropped_s": dropped_s}))

    def plan(self, at_s: float, plan: dict) -> None:
        self.send(self.topic, encode_control(ControlOp.PLAN, source=self.name, ts={"at_s": float(at_s)}, meta={"plan": plan}))
