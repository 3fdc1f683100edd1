"""Every bad message on a gateway's topics is dead-lettered once, even when the gateway holding it dies.

A killed gateway's consumers stay on their subscriptions in pulsar-lite (0.2),
with what had been sent to them (``live.roles.held_sweep``): a request or a
result still in its receiver queue or its inbox is never delivered again. A
good request comes back through the sources' resend asks, a batch in flight
is published again; a bad message is nobody's to send again. So the gateway
keeps, per consumed topic, a mark: the furthest message it took. Its
successor reads each topic from its predecessor's mark to the end with a
Reader (``sweep_held``) and dead-letters the bad messages there, with the
check the gateway applies to what it consumes, as far as it needs no state
(does it decode and verify, is it of a kind that belongs there); a message
that comes on the subscription too, at a position swept, is acknowledged
and skipped.

Exactly once: the gateway's dead letters go out without waiting (its sends
are asynchronous), so after taking a message that it dead-lettered the loop
flushes the dead-letter producer (the broker has it) and only then moves the
mark to disk; a message taken but not yet dead-lettered when the gateway died
is after the mark, and swept. Without dead letters the mark is written at
most every ``period_s`` (a mark behind only means good messages read again).
Left: a kill between the flush and the mark's write (microseconds) dead-
letters that message twice.
"""

from __future__ import annotations

import time
from pathlib import Path

from live.roles.held_sweep import AckedMark, position, sweep_held
from live.wire.messages import ControlOp, DecodeError, Kind, decode

__all__ = ["GatewayMarks", "request_problem", "result_problem"]


def request_problem(gateway, raw: bytes) -> str | None:
    """Why ``raw`` is not a request of ``gateway``'s, from the message alone (None: it may be one)."""
    if gateway.ingress is not None:
        from live.roles.gateway_open_intake import Rejected

        try:
            message = gateway.ingress.intake._verified(raw)
        except Rejected as rejected:
            return rejected.reason
        return None if message.kind is Kind.REQUEST else f"unexpected: a {message.kind.name} message on a requests topic"
    try:
        message = decode(raw)
    except DecodeError as error:
        return str(error)
    return gateway.intake.check(message)[1]


def result_problem(gateway_name: str, raw: bytes) -> str | None:
    """Why ``raw`` does not belong on gateway ``gateway_name``'s results topic, from the message alone."""
    try:
        message = decode(raw)
    except DecodeError as error:
        return str(error)
    if message.kind is Kind.RESULT or message.op in (ControlOp.NUDGE, ControlOp.INSTANCES):
        return None
    return f"unexpected: {message.kind.name} {message.batch_id!r} on {gateway_name}'s results topic"


class GatewayMarks:
    """The furthest request and result a gateway took (on disk beside the run's config) and, for a restarted
    one, the positions it swept from its predecessor's (see the module)."""

    def __init__(self, run_dir: str | Path, role_name: str, *, restarted: bool, period_s: float = 0.05):
        run_dir = Path(run_dir)
        self.marks = {kind: AckedMark(run_dir / f"{role_name}.{kind}.taken", restarted=restarted, forward_only=True, lazy=True)
                      for kind in ("request", "result")}  # fmt: skip
        self.restarted = restarted
        self.swept: set[tuple[int, int, int]] = set()
        self.swept_dead_letters = 0
        self.swept_read = 0  # messages the sweeps read
        self.sweep_s = 0.0  # how long they took (the restarted gateway serves after them)
        self.period_s = period_s
        self._dead_letters = 0
        self._next_s = 0.0

    def sweep(self, client, kind: str, topic: str, problem, dead_letter) -> int:
        """A restarted gateway: read ``topic`` from the predecessor's ``kind`` mark; each message with a
        ``problem(raw)`` goes to ``dead_letter(raw, reason, topic)``. Returns how many were read."""
        if not self.restarted:
            return 0

        def bad(raw: bytes) -> bool:
            reason = problem(raw)
            if reason is not None:
                dead_letter(raw, reason, topic)
            return reason is not None

        started = time.perf_counter()
        swept, read, _ = sweep_held(client, topic, self.marks[kind].before, bad)
        self.sweep_s += time.perf_counter() - started
        self.swept |= swept
        self.swept_dead_letters += len(swept)
        self.swept_read += read
        return read

    @classmethod
    def of(cls, gateway, role) -> "GatewayMarks":
        """The marks of ``gateway`` (run by ``role``); a restarted one sweeps what its predecessor held first."""
        marks = cls(Path(role.args.config).resolve().parent, role.name, restarted=role.args.incarnation > 0)
        marks.sweep(role.client, "request", gateway.topics.requests(gateway.name), lambda raw: request_problem(gateway, raw), gateway._dead)
        marks.sweep(role.client, "result", gateway.topics.results(gateway.name), lambda raw: result_problem(gateway.name, raw), gateway._dead)
        return marks

    def took(self, kind: str, msg) -> bool:
        """``msg`` (a request or a result) came on the subscription; True: swept already (acknowledge, skip it)."""
        if not hasattr(msg, "message_id"):
            return False  # an inline executor's result: no broker message
        self.marks[kind].acked(msg)
        return bool(self.swept) and position(msg) in self.swept

    def settle(self, dead_letters: int, now_s: float, flush) -> None:
        """After a message: if the gateway dead-lettered since the last call (``dead_letters``, its count), the
        dead letters are flushed (``flush()``) and the marks written now; else at most every ``period_s``."""
        if dead_letters != self._dead_letters:
            self._dead_letters = dead_letters
            flush()
        elif now_s < self._next_s:
            return
        self._next_s = now_s + self.period_s
        for mark in self.marks.values():
            mark.save()

    def stats(self) -> dict:
        return {"swept_dead_letters": self.swept_dead_letters, "swept_read": self.swept_read, "sweep_s": round(self.sweep_s, 4)}

    def close(self, *, remove: bool) -> None:
        for mark in self.marks.values():
            mark.close(remove=remove)
