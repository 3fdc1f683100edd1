"""Multi-source joins: one task from the latest input of each source, when their times lie within ``max_skew_s``.

EdgeServe's ``Compute(sources=[...])`` joins the latest message of each
source. This is that rule as a sans-I/O model, fed each input as the gateway
takes it (``offer``) and returning what happened as frozen facts:

- an input of a source replaces that source's held input (the one made
  earlier of the two is ``join_superseded``);
- a held input made more than ``max_skew_s`` before the newest held input
  can never join (any partner it needs is newer still): ``join_skew``;
- when every source holds an input the join fires (``JoinFired``): those
  inputs become one task, and leave the buffer;
- at the end of the run (``close``) inputs still held are ``join_unmatched``.

So two inputs made further apart than ``max_skew_s`` never join, and every
input ends either joined or expired with a reason (``expired`` counts them).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from spec.validation import ConfigError, check_non_negative

__all__ = ["JoinBuffer", "JoinFired", "InputExpired", "JOIN_SUPERSEDED", "JOIN_SKEW", "JOIN_UNMATCHED"]

#: the reasons an input leaves the buffer unjoined (drop reasons in the records)
JOIN_SUPERSEDED, JOIN_SKEW, JOIN_UNMATCHED = "join_superseded", "join_skew", "join_unmatched"


@dataclass(frozen=True, kw_only=True, slots=True)
class JoinFired:
    """The inputs of every source joined into one task (``task_id``: the input that completed it)."""

    task_id: int
    member_ids: tuple[int, ...]  # one per source, in the buffer's source order
    fired_s: float
    wait_s: tuple[float, ...]  # each member's time in the buffer, from when it was offered


@dataclass(frozen=True, kw_only=True, slots=True)
class InputExpired:
    """An input left the buffer without joining, for ``reason``."""

    request_id: int
    at_s: float
    reason: str


@dataclass(frozen=True, kw_only=True, slots=True)
class _Held:
    request_id: int
    made_s: float
    offered_s: float


class JoinBuffer:
    """Holds the latest input of each of ``sources`` and fires when all are within ``max_skew_s`` of each other."""

    def __init__(self, *, sources: Sequence[str], max_skew_s: float):
        names = list(sources) if not isinstance(sources, str) else []
        if len(names) < 2 or len(set(names)) != len(names):
            raise ConfigError("pipeline.join.sources", sources, "a list of at least two distinct source names")
        self.sources = tuple(str(s) for s in names)
        self.max_skew_s = check_non_negative("pipeline.join.max_skew_s", max_skew_s, finite=False)  # inf: any inputs join
        self._held: dict[str, _Held] = {}
        self.fired = 0
        self.expired = 0

    def __contains__(self, source: str) -> bool:
        return source in self.sources

    def offer(self, *, now_s: float, request_id: int, source: str, made_s: float) -> list[JoinFired | InputExpired]:
        """Take one input (made at ``made_s``, seen now); what fired or expired because of it."""
        if source not in self.sources:
            raise ConfigError("pipeline.join.sources", source, "a source of this join: " + ", ".join(self.sources))
        out: list[JoinFired | InputExpired] = []
        new = _Held(request_id=int(request_id), made_s=float(made_s), offered_s=float(now_s))
        old = self._held.get(source)
        if old is not None:
            keep, lose = (new, old) if new.made_s >= old.made_s else (old, new)
            out.append(self._expire(lose.request_id, now_s, JOIN_SUPERSEDED))
            new = keep
        self._held[source] = new
        newest_s = max(h.made_s for h in self._held.values())
        for name in [n for n, h in self._held.items() if h.made_s < newest_s - self.max_skew_s]:
            out.append(self._expire(self._held.pop(name).request_id, now_s, JOIN_SKEW))
        if len(self._held) == len(self.sources):
            out.append(self._fire(now_s, self._held[source].request_id))  # the task is named after its last input
        return out

    def _expire(self, request_id: int, now_s: float, reason: str) -> InputExpired:
        self.expired += 1
        return InputExpired(request_id=request_id, at_s=float(now_s), reason=reason)

    def _fire(self, now_s: float, task_id: int) -> JoinFired:
        members = [self._held[s] for s in self.sources]
        self._held.clear()
        self.fired += 1
        return JoinFired(task_id=task_id, member_ids=tuple(m.request_id for m in members), fired_s=float(now_s),
                         wait_s=tuple(float(now_s) - m.offered_s for m in members))  # fmt: skip

    @property
    def held(self) -> int:
        """How many inputs wait for partners."""
        return len(self._held)

    def close(self, now_s: float) -> list[InputExpired]:
        """End of run: every held input expires as ``join_unmatched``."""
        out = [self._expire(h.request_id, now_s, JOIN_UNMATCHED) for h in self._held.values()]
        self._held.clear()
        return out
