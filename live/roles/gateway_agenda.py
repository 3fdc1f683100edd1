"""The gateway's agenda: everything it must do at a time, on one heap.

Policy timers (started and cancelled by id: a timer cancelled or started
again since is never delivered), batches arriving over an emulated uplink,
results coming back over it, telemetry ticks and redelivery checks. Entries
due at the same time come out in the order they were put in.
"""

from __future__ import annotations

import enum
import heapq

__all__ = ["Due", "Agenda"]


class Due(enum.IntEnum):
    """What an entry of the agenda is."""

    TIMER = 0  # a policy timer: (timer_id, at_s)
    UPLINK = 1  # a batch has crossed the uplink: (local_id, data)
    RETURN = 2  # a result has crossed the link back: (local_id, message)
    TELEMETRY = 3  # a planner's telemetry period has passed
    REDELIVER = 4  # look whether a published batch is stranded: (local_id, resends)


class Agenda:
    """A heap of (due time, insertion order, kind, item)."""

    def __init__(self) -> None:
        self._heap: list = []
        self._seq = 0
        self._timer_generation: dict[str, int] = {}
        self._generation = 0

    def push(self, due_s: float, kind: Due, item=None) -> None:
        self._seq += 1
        heapq.heappush(self._heap, (due_s, self._seq, kind, item))

    def start_timer(self, timer_id: str, at_s: float) -> None:
        """Deliver ``timer_id`` at ``at_s`` (a timer of that id started before is replaced)."""
        self._generation += 1
        self._timer_generation[timer_id] = self._generation
        self.push(at_s, Due.TIMER, (timer_id, self._generation, at_s))

    def cancel_timer(self, timer_id: str) -> None:
        self._timer_generation.pop(timer_id, None)

    def next_due_s(self) -> float | None:
        """When the earliest entry is due (None: nothing scheduled)."""
        return self._heap[0][0] if self._heap else None

    def pop_due(self, now_s: float) -> tuple[Due, object] | None:
        """The earliest entry due by ``now_s``, as (kind, item); None when nothing is due.

        A timer comes as (timer_id, at_s), and only if it was neither
        cancelled nor started again since.
        """
        heap = self._heap
        while heap and heap[0][0] <= now_s:
            _, _, kind, item = heapq.heappop(heap)
            if kind != Due.TIMER:
                return kind, item
            timer_id, generation, at_s = item
            if self._timer_generation.get(timer_id) == generation:
                del self._timer_generation[timer_id]
                return kind, (timer_id, at_s)
        return None
