"""Open ingress on a gateway (``live.ingress.mode: open``): registered clients' requests in, replies out.

``OpenIngress(gateway, epoch_unix, run_key)`` installs itself on a
``live.roles.gateway.Gateway``: its intake becomes the open one
(``gateway_open_intake``: clients' keys and ids), its records writer the
one that also answers the clients (``gateway_replies``), and it never
counts itself done (it serves until the run's stop). Taken requests go
through the gateway's scheduler exactly as replayed ones do.
"""

from __future__ import annotations

import math
import os

from live.roles.gateway_open_intake import OpenIntake, Rejected
from live.roles.gateway_replies import ReplyWriter

__all__ = ["OpenIngress"]


class OpenIngress:
    """The open-ingress side of one gateway (see the module)."""

    def __init__(self, gateway, epoch_unix: float, run_key: bytes | None, environ=os.environ):
        ingress = gateway.spec.settings.ingress
        self.gateway = gateway
        self.slo_s = {name: client.slo_s for name, client in ingress.clients_of(gateway.name).items()}
        self.intake = OpenIntake(gateway.name, ingress, run_key, epoch_unix, environ)
        self.writer = ReplyWriter(gateway.name, gateway.topics, gateway.send, self.intake)
        self.rejected = 0
        gateway.intake = self.intake
        gateway.records = self.writer
        gateway.expected = math.inf  # open: as many requests as the clients send, until the stop
        gateway.ingress = self

    def on_request(self, raw: bytes, topic: str) -> int | None:
        """Take one client's request message; the gateway's id for it when taken, else None (dead-lettered, and
        its client told why when the message verified)."""
        gateway = self.gateway
        now_s = gateway.now()
        try:
            local_id, request, message = self.intake.take(raw, now_s)
        except Rejected as rejected:
            self.rejected += 1
            gateway._dead(raw, rejected.reason, topic)
            self.writer.rejected(rejected.client, rejected.request_id, rejected.reason, now_s)
            return None
        gateway.admit(local_id, request.client, request.arrival_s, self.slo_s[request.client], message.payload, now_s)
        return local_id

    def close(self) -> int:
        """The run's end: every pending request dropped (``run_ended``) and answered, then ``eos`` to the sink."""
        return self.writer.close(self.gateway.now())

    def stats(self) -> dict:
        return {"ingress": "open", "rejected": self.rejected, "clamped_arrivals": self.intake.clamped, "replies": self.writer.replies}
