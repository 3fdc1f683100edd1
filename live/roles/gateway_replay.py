"""A gateway restarted after a crash rebuilds its policy state from its predecessor's event log.

The scheduler is a pure state machine (DESIGN.md), so feeding a fresh one the
logged events gives it exactly the state the dead gateway's had: its queues,
timers, planner and batches in flight. Each replayed call's actions must
equal the logged ones; the first that does not stops the replay, is logged
as an error and put in the gateway's stats (``replay.status: mismatch``), and
the gateway then starts its policy afresh (the older recovery: the ended log,
the broker's redelivery, CONTROL ``resend``).

The log on disk holds only what was committed, and the gateway commits right
after the broker stored the records of what had ended (``gateway._Acks``), so
every end it replays is one the sink can have. Then the state is reconciled
with the broker:

- a request the replayed state holds (arrived, not ended) comes again from the
  broker (it was never acknowledged) or, failing that, from its source
  (``ResendAsks``): its payload is kept, it is not taken a second time;
- a request the replayed state has ended comes again only if the kill came
  between the log's commit and its acknowledgement: acknowledged, not taken;
- a request never seen (or logged after the last commit) is taken as usual;
- a batch in flight at the kill is published again as soon as its payloads
  are back (under the new incarnation's name); a result of the original
  batch is accepted too, and the first result wins.
"""

from __future__ import annotations

import gc
import logging
import time
from pathlib import Path
from dataclasses import dataclass, field

from live.eventlog import EventLog, RecoveredLog, action_to_dict, canonical, recover_log
from live.roles.gateway_agenda import Agenda, Due
from live.roles.gateway_records import plain
from policies.actions import CancelTimer, DispatchBatch, DropRequest, NotePlan, StartTimer
from policies.events import ArrivalRateMeasured, BatchFailed, BatchFinished, RequestArrived, RequestsArrived, TimerFired

__all__ = ["GatewayReplay", "ReplayedState", "open_event_log", "MAX_LOG_BYTES"]

log = logging.getLogger("edgebatch.live")

#: a larger log is not replayed (the restarted gateway starts afresh, and says so): about 2.5 million
#: requests' worth at some 200 bytes an entry and four entries a request
MAX_LOG_BYTES = 2 << 30


@dataclass(kw_only=True, slots=True)
class ReplayedState:
    """What the replayed actions left: requests held, ended, timers, batches in flight, plans."""

    arrived: dict = field(default_factory=dict)  # request id -> Request
    ended: set = field(default_factory=set)
    timers: dict = field(default_factory=dict)  # timer id -> at_s
    in_flight: dict = field(default_factory=dict)  # batch id -> (DispatchBatch, its incarnation)
    plans: list = field(default_factory=list)
    dispatches: int = 0
    last_tick_s: float | None = None  # the last telemetry period's end
    arrived_since_tick: int = 0

    def apply(self, event, actions, incarnation: int, gateway: str) -> None:
        if isinstance(event, RequestArrived):
            self.arrived[event.request.request_id] = event.request
            self.arrived_since_tick += 1
        elif isinstance(event, RequestsArrived):
            for request in event.requests:
                self.arrived[request.request_id] = request
            self.arrived_since_tick += len(event.requests)
        elif isinstance(event, TimerFired):
            self.timers.pop(event.timer_id, None)
        elif isinstance(event, BatchFinished):
            action, _ = self.in_flight.pop(event.batch_id)
            self.ended.update(action.request_ids)
        elif isinstance(event, BatchFailed):
            self.in_flight.pop(event.batch_id)
        elif isinstance(event, ArrivalRateMeasured):
            self.last_tick_s, self.arrived_since_tick = event.now_s, 0
        for action in actions:
            if isinstance(action, StartTimer):
                self.timers[action.timer_id] = action.at_s
            elif isinstance(action, CancelTimer):
                self.timers.pop(action.timer_id, None)
            elif isinstance(action, DispatchBatch):
                self.in_flight[action.batch_id] = (action, incarnation)
                self.dispatches += 1
            elif isinstance(action, DropRequest):
                self.ended.add(action.request_id)
            elif isinstance(action, NotePlan):
                plan = plain({"at_s": action.at_s, "gateway": gateway, **action.plan.as_dict()})  # as Gateway._note_plan
                plan.setdefault("trigger", action.trigger)
                self.plans.append(plan)

    @property
    def held(self) -> set:
        return set(self.arrived) - self.ended


def _replay(entries, scheduler, state: ReplayedState, gateway: str) -> tuple[int, list, list] | None:
    """Feed ``entries`` into ``scheduler``, applying the actions to ``state``; the first mismatch, or None."""
    for index, entry in enumerate(entries):
        got = scheduler.handle(entry.event) if entry.event is not None else scheduler.close(entry.close_s)
        as_dicts = [action_to_dict(a) for a in got]
        if as_dicts != entry.actions and canonical(as_dicts) != canonical(entry.actions):  # canonical: NaN equals NaN
            return index, entry.actions, as_dicts
        state.apply(entry.event, got, entry.incarnation, gateway)
    return None


class GatewayReplay:
    """A restarted gateway's replayed state and its reconciliation with the broker (see the module doc)."""

    def __init__(self, gateway, state: ReplayedState, recovered: RecoveredLog, replay_s: float):
        self.gateway = gateway
        self.state = state
        #: requests the replayed state holds whose payloads have not come back since the restart
        self.held = state.held
        #: batches in flight at the kill: batch id -> the name prefix it was published under
        self.inherited = {b: gateway.name if k == 0 else f"{gateway.name}#{k}" for b, (_, k) in state.in_flight.items()}
        self.parked: list[DispatchBatch] = []
        self.awaiting: set[int] = set()
        self.stats = {
            "status": "replayed", "entries": len(recovered.entries), "torn_line": recovered.torn, "log_bytes": recovered.good_bytes,
            "replay_s": round(replay_s, 4), "held": len(self.held), "ended": len(state.ended), "in_flight": len(state.in_flight),
            "timers": len(state.timers), "plans": len(state.plans), "plan_in_force": state.plans[-1] if state.plans else None,
            "payloads_back": 0, "ended_again": 0, "inherited_results": 0,
        }  # fmt: skip

    def install(self, now_s: float) -> None:
        """Put the replayed state into the gateway: what it has seen and ended, its timers, plans, batches in flight."""
        gateway, state = self.gateway, self.state
        gateway.intake.mark_seen(list(state.arrived))
        gateway.arrivals_seen, gateway.ended = len(state.arrived), len(state.ended)
        gateway.plans = list(state.plans)
        gateway.metrics.counts["batches"] = state.dispatches  # local batch ids go on from the replayed ones
        gateway.agenda = agenda = Agenda()  # the fresh gateway's first telemetry tick is replaced by the replayed schedule
        for timer_id, at_s in state.timers.items():
            agenda.start_timer(timer_id, at_s)
        if gateway.scheduler.planner is not None:
            period_s = gateway.telemetry.period_s
            tick_s = period_s if state.last_tick_s is None else state.last_tick_s + period_s
            if tick_s >= now_s - period_s:
                gateway.telemetry._arrived_since = state.arrived_since_tick  # the period under way counts on
            while tick_s < now_s:
                tick_s += period_s
            agenda.push(tick_s, Due.TELEMETRY)
        for action, _ in state.in_flight.values():
            gateway._dispatch(action)  # parked until the broker gives its payloads back
        state.arrived = {}  # a Request per request of the run so far: not needed any more (held and ended are kept)
        # what the replay built lives for the rest of the run: out of the collector's sight (as the roles do at
        # ready, live.roles.role), else every full collection scans it and the requests waiting behind pay
        gc.freeze()

    # -- the gateway's hooks ------------------------------------------------------------
    def park(self, action: DispatchBatch) -> bool:
        """True: ``action``'s payloads are not all here yet; it is kept and dispatched once they are."""
        missing = [r for r in action.request_ids if r not in self.gateway.payloads]
        if not missing:
            return False
        self.parked.append(action)
        self.awaiting.update(missing)
        self.gateway.metrics.counts["batches"] += 1  # its id is taken: results of later batches are not "never dispatched"
        return True

    def redelivered(self, request_id: int, payload: bytes) -> int | None:
        """A request the gateway has seen before: its id when it is to be held (acknowledged once it ends), else None."""
        gateway = self.gateway
        if request_id in self.held:
            self.held.discard(request_id)  # its first copy since the restart: held until it ends, then acknowledged
            gateway.payloads[request_id] = payload
            self.stats["payloads_back"] += 1
            if request_id in self.awaiting:
                self.awaiting.discard(request_id)
                self._unpark()
            return request_id
        if request_id in self.state.ended:
            self.stats["ended_again"] += 1  # ended before the kill, not yet acknowledged: acknowledged now
        gateway.metrics.counts["duplicate_requests"] += 1
        return None

    def _unpark(self) -> None:
        payloads = self.gateway.payloads
        ready = [a for a in self.parked if all(r in payloads for r in a.request_ids)]
        if ready:
            self.parked = [a for a in self.parked if a not in ready]
            for action in ready:
                self.gateway.metrics.counts["batches"] -= 1  # counted when parked; counted again now
                self.gateway._dispatch(action)

    def owns(self, prefix: str, local: str) -> bool:
        """A result of a batch in flight at the kill, under the name its predecessor published it."""
        owned = local.isdigit() and self.inherited.get(int(local)) == prefix
        self.stats["inherited_results"] += owned
        return owned

    def missing(self) -> list[int]:
        """Held requests whose payloads the broker has not given back (asked of their sources)."""
        return sorted(self.held)


def _mismatch(gateway, stats: dict, reason: str) -> None:
    log.error("%s: event log replay failed (%s); its policy starts afresh", gateway.name, reason)
    stats.update(status="mismatch", reason=reason[:2000])


def _rebuild(gateway, path, ended_before, now_s: float) -> tuple[GatewayReplay | None, dict, int | None]:
    """Replay the log at ``path`` into the gateway's fresh scheduler; (replay or None, stats, bytes to keep)."""
    if not path.is_file():
        return None, {"status": "no log"}, None
    if type(gateway).__name__ != "Gateway" or gateway.ingress is not None:
        return None, {"status": "not replayable (a pipeline stage or open ingress keeps state outside the scheduler)"}, None
    try:
        recovered = recover_log(path, max_bytes=MAX_LOG_BYTES)
    except (ValueError, TypeError, KeyError) as error:  # a line in the middle that does not parse: not a kill's doing
        stats = {}
        _mismatch(gateway, stats, f"unreadable log: {error}")
        return None, stats, 0
    stats = {"status": "too large", "log_bytes": recovered.good_bytes} if recovered.too_large else {}
    if recovered.too_large:
        log.error("%s: event log %s is over %d bytes: not replayed; its policy starts afresh", gateway.name, path, MAX_LOG_BYTES)
        return None, stats, 0
    started = time.perf_counter()
    state = ReplayedState()
    try:
        mismatch = _replay(recovered.entries, gateway.scheduler, state, gateway.name)
    except Exception as error:  # the policy refused a logged event (DESIGN.md: a policy error): as loud as a mismatch
        mismatch = (-1, [], [{"raised": repr(error)}])
    if mismatch is not None:
        index, logged, got = mismatch
        _mismatch(gateway, stats, f"entry {index}: logged {canonical(logged)[:800]}, replayed {canonical(got)[:800]}")
    elif not set(ended_before) <= state.ended:
        _mismatch(gateway, stats, f"{len(set(ended_before) - state.ended)} requests in the ended log did not end in the replay")
    if stats:
        return None, stats, 0
    replay = GatewayReplay(gateway, state, recovered, time.perf_counter() - started)
    gateway.replay = replay
    replay.install(now_s)
    return replay, replay.stats, recovered.good_bytes


def open_event_log(gateway, path, incarnation: int, ended_before) -> tuple[EventLog, dict | None]:
    """The gateway's event log; a restarted one (``incarnation`` > 0) first replays its predecessor's.

    Returns the log (appending to the predecessor's when it replayed it, else a
    new one) and the replay's stats (None for a first gateway).
    """
    if incarnation == 0:
        return EventLog(path, gateway.name), None
    path = Path(path)
    replay, stats, keep = _rebuild(gateway, path, ended_before, gateway.now())
    if replay is None:
        gateway.scheduler = gateway.spec.make_scheduler(gateway.name, gateway.spec.cluster)  # a failed replay left it half-fed
        if path.is_file():
            path.replace(path.with_name(path.name + ".unreplayed"))  # kept to look at; the new log starts afresh, as the policy
        return EventLog(path, gateway.name), stats
    with open(path, "r+b") as fp:
        fp.truncate(keep)  # a line torn by the kill goes: the appended lines start whole
    log.warning("%s: replayed %d logged calls in %.3fs: %d requests held, %d batches in flight, %d plans", gateway.name,
                stats["entries"], stats["replay_s"], stats["held"], stats["in_flight"], stats["plans"])  # fmt: skip
    return EventLog(path, gateway.name, append=True, incarnation=incarnation), stats
