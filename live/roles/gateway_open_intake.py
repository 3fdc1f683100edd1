"""Which requests a gateway takes in open ingress: those of its registered clients, each id once per client.

A message on ``requests-<gateway>`` names its client in ``source``; the
gateway verifies it with that client's key (``live.ingress``: its own, or
the run's) before it believes anything in it. The client chooses the
request's id (unique per client for the run); the gateway numbers what it
takes with ids of its own for the scheduler, and keeps, per taken request,
who sent it, under which id, and its timestamps (``OpenRequest``) until it
has ended.

Arrival time: the client's ``ts.sent_unix_s`` (its wall clock) on the run's
clock, clamped to ``[received_s - max_skew_s, received_s]`` (``received_s``:
when the gateway took it, on its own clock): a client clock ahead of the
gateway's cannot make a request arrive after it was received, one far
behind cannot make it look arbitrarily late. Both times are kept.

A message it does not take raises :class:`Rejected`: with the client and
the id when the message verified (the client is told why on its reply
topic), without them when it did not (an unregistered or forged sender is
told nothing; the message goes to the dead-letter topic either way).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

from live.ingress import IngressSettings, client_key
from live.wire.messages import DecodeError, Kind, Message, decode, peek_source

__all__ = ["OpenIntake", "OpenRequest", "Rejected"]


@dataclass(frozen=True, kw_only=True, slots=True)
class OpenRequest:
    """One client's request as the gateway took it (times on the run's clock)."""

    client: str
    request_id: str
    #: the client's send time, clamped (see the module); what latency counts from
    arrival_s: float
    #: when the gateway took it
    received_s: float
    #: the client's send time as it said (NaN when it did not)
    sent_s: float

    def stamps(self) -> dict[str, float]:
        stamps = {"arrival_s": self.arrival_s, "received_s": self.received_s}
        if math.isfinite(self.sent_s):
            stamps["sent_s"] = self.sent_s
        return stamps


class Rejected(Exception):
    """A request message the gateway does not take; ``client`` and ``request_id`` are set only when it verified."""

    def __init__(self, reason: str, client: str | None = None, request_id: str | None = None):
        super().__init__(reason)
        self.reason = reason
        self.client = client
        self.request_id = request_id


class OpenIntake:
    """The open-ingress intake of gateway ``name``: clients' keys, ids seen, requests taken and not yet ended."""

    def __init__(self, name: str, ingress: IngressSettings, run_key: bytes | None, epoch_unix: float, environ=os.environ):
        self.name = name
        self.clients = ingress.clients_of(name)
        self.keys = {client: client_key(spec, run_key, environ) for client, spec in self.clients.items()}
        self.epoch_unix = float(epoch_unix)
        self.max_skew_s = ingress.max_skew_s
        self.max_id_chars = ingress.max_id_chars
        self.seen: dict[str, set[str]] = {client: set() for client in self.clients}
        #: taken and not ended, by the gateway's own id
        self.pending: dict[int, OpenRequest] = {}
        self._next_id = 0
        self.clamped = 0  # arrivals moved into [received - max_skew_s, received]

    def take(self, raw: bytes, now_s: float) -> tuple[int, OpenRequest, Message]:
        """(the gateway's id, the request, the message) of a request taken now; :class:`Rejected` if not."""
        message = self._verified(raw)
        client = message.source
        if message.kind is not Kind.REQUEST:
            raise Rejected(f"unexpected: a {message.kind.name} message on a requests topic", client)
        request_id = message.request_id
        if not request_id or len(request_id) > self.max_id_chars:
            raise Rejected(f"bad_id: a request id of 1 to {self.max_id_chars} characters (live.ingress.max_id_chars), got {len(request_id)}",
                           client, request_id[: self.max_id_chars] or None)  # fmt: skip
        seen = self.seen[client]
        if request_id in seen:
            raise Rejected(f"duplicate_id: {client} sent request id {request_id!r} before (ids are unique per client)", client, request_id)
        seen.add(request_id)
        request = OpenRequest(client=client, request_id=request_id, received_s=now_s,
                              sent_s=self._sent_s(message), arrival_s=self._arrival_s(message, now_s))  # fmt: skip
        local_id = self._next_id
        self._next_id += 1
        self.pending[local_id] = request
        return local_id, request, message

    def _verified(self, raw: bytes) -> Message:
        try:
            client = peek_source(raw)
        except DecodeError as error:
            raise Rejected(str(error)) from None
        if client not in self.keys:
            raise Rejected(f"unknown_client: {client[:60]!r} is not a registered client of {self.name} (live.ingress.clients)")
        try:
            return decode(raw, key=self.keys[client])
        except DecodeError as error:  # a forged or altered message, or one not signed with this client's key
            raise Rejected(f"{error} (client {client!r})") from None

    def _sent_s(self, message: Message) -> float:
        sent_unix_s = message.ts.get("sent_unix_s")
        return math.nan if sent_unix_s is None else sent_unix_s - self.epoch_unix

    def _arrival_s(self, message: Message, received_s: float) -> float:
        sent_s = self._sent_s(message)
        if math.isnan(sent_s):
            return received_s
        arrival_s = min(received_s, max(received_s - self.max_skew_s, sent_s))
        if arrival_s != sent_s:
            self.clamped += 1
        return arrival_s

    def ended(self, local_id: int) -> OpenRequest | None:
        """The request with the gateway's id ``local_id``, now ended (None: not pending)."""
        return self.pending.pop(local_id, None)

    # -- what the replay intake answers after a restart: nothing to restore or ask for here
    def mark_seen(self, request_ids) -> int:
        return 0

    def unseen_due(self, arrival_s, by_s: float) -> list[int]:
        return []
