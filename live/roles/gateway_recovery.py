"""What a gateway keeps on disk so that a successor can take over after it crashed.

The gateway acknowledges a request only once it has ended (``gateway._Acks``),
so the broker delivers every unfinished request again to the gateway
restarted in its place. Two things the broker cannot give back are kept
here:

- which requests already ended: their ids go to ``<run dir>/gateway-<name>.ended``
  (4-byte big-endian ids, appended before they are acknowledged), so that a
  successor counts them as ended and takes no copy of them again;
- what the broker holds back: pulsar-lite may keep the messages that were on
  their way to a killed consumer, and sometimes leaves the last message of a
  quiet topic undispatched. Every gateway therefore asks its sources, on the
  control topic (CONTROL ``resend``), for the requests due more than
  ``late_s`` ago that it has neither seen nor finished, every ``every_s``
  while any are missing (a source regenerates a request's payload from the
  run's seed; the gateway keeps the first copy of each id). In a healthy run
  none are missing and nothing is sent. A gateway that replayed its
  predecessor's event log (``gateway_replay``) asks too for the requests its
  replayed state holds and whose payloads the broker did not give back.

With an event log (``live.recovery_log``, on by default) the ended log is
a cross-check: every id in it must have ended in the replay.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path

from live.wire.messages import ControlOp, encode_control

__all__ = ["EndedLog", "ResendAsks"]

_ID = struct.Struct(">i")


class EndedLog:
    """The ids of this gateway's ended requests, on disk; ``before`` holds those of its predecessors."""

    def __init__(self, path: str | os.PathLike, *, restarted: bool):
        self.path = Path(path)
        self.before: list[int] = []
        if restarted and self.path.is_file():
            data = self.path.read_bytes()
            self.before = [value for (value,) in _ID.iter_unpack(data[: len(data) - len(data) % _ID.size])]  # a cut id: not acked
        elif not restarted:
            self.path.unlink(missing_ok=True)  # a run's first gateway starts a log of its own
        self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)

    def append(self, request_ids) -> None:
        if request_ids:
            os.write(self._fd, b"".join(_ID.pack(int(i)) for i in request_ids))

    def close(self, *, remove: bool = False) -> None:
        os.close(self._fd)
        if remove:
            self.path.unlink(missing_ok=True)


class ResendAsks:
    """When a gateway asks its sources for the due requests it is missing (none, in a healthy run)."""

    def __init__(self, gateway, started_s: float, *, late_s: float = 2.0, every_s: float = 2.0, chunk: int = 1000):
        self.gateway = gateway
        self.next_s = started_s + every_s
        self.late_s, self.every_s, self.chunk = late_s, every_s, chunk
        self.asked = 0

    def poll(self, now_s: float) -> None:
        if now_s < self.next_s:
            return
        self.next_s = now_s + self.every_s
        missing = self.gateway.missing_due(now_s - self.late_s)  # due a while ago, and neither seen nor ended
        if self.gateway.replay is not None:
            missing += self.gateway.replay.missing()  # held by the replayed state, and the broker did not give them back
        for k in range(0, len(missing), self.chunk):
            ids = [str(i) for i in missing[k:k + self.chunk]]
            self.gateway.send(self.gateway.topics.control, encode_control(ControlOp.RESEND, source=self.gateway.name, ids=ids))
        self.asked += len(missing)
