"""What an open-ingress gateway tells the sink and its clients: every request's end, on both.

The records (``records`` topic) are the replay mode's, plus, per request,
its client and the client's id (``meta.clients``: ``[client, id]`` pairs in
``ids`` order) and its times (``req_ts``: ``arrival_s``, ``received_s``,
and ``sent_s`` when the client gave one). Each client hears on
``replies-<client>``, signed with its own key:

- RESULT: its requests of one finished batch (``ids`` the client's own,
  ``labels``, the model's raw outputs as payload, ``req_ts`` with
  ``arrival_s``, ``received_s``, ``completed_s``);
- CONTROL ``drop``: a request that ended without a result
  (``meta.reason``: the policy's, or ``run_ended`` at the stop), or one
  that was not taken (``meta.rejected: true``; ``duplicate_id``,
  ``bad_id``, ...).

At the end (``close``) every request still pending is dropped as
``run_ended`` (so none is lost silently), and an ``eos`` on ``records``
tells the sink this gateway has nothing more to say.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from live.roles.gateway_open_intake import OpenIntake, OpenRequest
from live.roles.gateway_records import RecordWriter
from live.wire.messages import ControlOp, Kind, Message, encode, encode_control, encode_result
from live.wire.topics import Topics
from spec.records import DropReason

__all__ = ["ReplyWriter"]


class ReplyWriter(RecordWriter):
    """Records with clients' ids and times, and a reply to each client (see the module)."""

    def __init__(self, name: str, topics: Topics, send: Callable[..., None], intake: OpenIntake):
        super().__init__(name, topics.records, send)
        self.topics = topics
        self.intake = intake
        self.replies = 0

    def _requests(self, ids: Sequence[str], *, end: bool) -> list[OpenRequest | None]:
        intake = self.intake
        return [intake.ended(int(i)) if end else intake.pending.get(int(i)) for i in ids]

    @staticmethod
    def _client_fields(requests: Sequence[OpenRequest | None]) -> dict:
        known = [r for r in requests if r is not None]
        if len(known) != len(requests):
            return {}  # not the open intake's (cannot happen): plain records
        return {"req_ts": [r.stamps() for r in known], "clients": [[r.client, r.request_id] for r in known]}

    def completed(self, key: str, ids: Sequence[str], *, labels, ts: Mapping[str, float], meta: Mapping, result: Message | None = None) -> None:
        requests = self._requests(ids, end=True)
        fields = self._client_fields(requests)
        self.send(self.topic, encode_result(key, ids, source=self.name, labels=labels, ts=ts, req_ts=fields.get("req_ts"),
                                            meta={**meta, "clients": fields.get("clients")}))  # fmt: skip
        outputs = result.payloads() if result is not None and len(result.sizes) == len(ids) else [b""] * len(ids)
        by_client: dict[str, list[int]] = {}
        for k, request in enumerate(requests):
            if request is not None:
                by_client.setdefault(request.client, []).append(k)
        for client, ks in by_client.items():
            self._reply_result(client, key, [requests[k] for k in ks], [labels[k] if labels else -1 for k in ks], [outputs[k] for k in ks],
                               ts["completed_s"])  # fmt: skip

    def _reply_result(self, client: str, key: str, requests: list[OpenRequest], labels: list[int], outputs: list[bytes], completed_s: float):
        reply = Message(kind=Kind.RESULT, ids=tuple(r.request_id for r in requests), sizes=tuple(len(o) for o in outputs), source=self.name,
                        trace_id=key, batch_id=key, labels=tuple(int(x) for x in labels), payload=b"".join(outputs),
                        ts={"completed_s": completed_s}, req_ts=tuple({**r.stamps(), "completed_s": completed_s} for r in requests),
                        meta={"epoch_unix": self.intake.epoch_unix, "batch_size": len(requests)})  # fmt: skip
        self._reply(client, reply)

    def batch_failed(self, key: str, ids: Sequence[str], *, reason: str, ts: Mapping[str, float], meta: Mapping) -> None:
        fields = self._client_fields(self._requests(ids, end=False))
        super().batch_failed(key, ids, reason=reason, ts=ts, meta={**meta, "clients": fields.get("clients")})

    def dropped(self, request_id: int, reason: str, dropped_s: float) -> None:
        request = self.intake.ended(int(request_id))
        if request is None:
            super().dropped(request_id, reason, dropped_s)
            return
        self.send(self.topic, encode_control(ControlOp.DROP, source=self.name, ids=[str(request_id)], ts={"dropped_s": dropped_s},
                                             meta={"reason": str(reason), "clients": [[request.client, request.request_id]],
                                                   "req_ts": [request.stamps()]}))  # fmt: skip
        self._reply_drop(request.client, request.request_id, reason, {**request.stamps(), "dropped_s": dropped_s})

    def rejected(self, client: str | None, request_id: str | None, reason: str, now_s: float) -> None:
        """A request that was not taken: its client (when it verified) hears why; nothing else happens."""
        if client is not None and request_id is not None:
            self._reply_drop(client, request_id, reason, {"received_s": now_s}, rejected=True)

    def _reply_drop(self, client: str, request_id: str, reason: str, ts: dict, *, rejected: bool = False) -> None:
        meta = {"op": ControlOp.DROP.value, "reason": str(reason), "epoch_unix": self.intake.epoch_unix, "rejected": rejected}
        self._reply(client, Message(kind=Kind.CONTROL, ids=(request_id,), sizes=(0,), source=self.name, trace_id=request_id, ts=ts, meta=meta))

    def _reply(self, client: str, message: Message) -> None:
        self.replies += 1
        self.send(self.topics.replies(client), encode(message, key=self.intake.keys[client]))

    def close(self, now_s: float) -> int:
        """The end: every request still pending is dropped (``run_ended``), then ``eos`` to the sink; returns how many."""
        pending = list(self.intake.pending)
        for local_id in pending:
            self.dropped(local_id, DropReason.RUN_ENDED, now_s)
        self.send(self.topic, encode_control(ControlOp.EOS, source=self.name, ts={"at_s": now_s}))
        return len(pending)
