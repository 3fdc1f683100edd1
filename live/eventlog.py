"""The live gateway's event log: every event given to the scheduler and the actions it returned.

DESIGN.md: "A recorded live event log replayed into a fresh policy yields the
same actions; this is tested." With ``live.event_log: true`` each gateway
writes ``<out>/eventlog/gateway-<name>.jsonl``, one JSON object a line:

- first a header: ``{"log": "edgebatch-eventlog", "version": 1, "gateway": NAME}``;
- then per ``Scheduler.handle`` call: ``{"event": {...}, "actions": [...]}``;
- at the end of a run cut short, per ``Scheduler.close`` call:
  ``{"close": {"now_s": ...}, "actions": [...]}``.

Events and actions are plain dicts with a ``"type"`` field naming their
class in ``policies.events`` / ``policies.actions`` and one key per field;
a ``Request`` is nested as a dict of its own (``"type": "Request"``); the
plan of a ``NotePlan`` is ``Plan.as_dict()`` (made JSON-safe). Floats keep
their exact value (JSON's shortest repr round-trips), ``inf`` and ``nan``
are written as Python's ``json`` writes them (``Infinity``, ``NaN``).

A gateway restarted after a crash appends to its predecessor's log (after
cutting a line the kill tore), first a marker ``{"incarnation": K}``: the
entries after it are gateway incarnation K's (it names its batches
``<name>#K:<n>``). Entries reach the file only on ``commit()``, which the
gateway calls right after the broker has stored the records of what ended
(``gateway._Acks``): a logged end is always one the sink can have.
``recover_log`` reads such a log back, at most ``max_bytes`` of it.

``replay(entries, scheduler)`` feeds the logged events into a fresh
scheduler and returns, per entry, the actions it returned now (as dicts);
``first_mismatch`` compares them with the logged ones. Two action lists are
the same when their canonical JSON texts are (so NaN in a plan's detail
equals NaN, and a NotePlan is compared by its plan's dict).

This module imports neither torch nor the broker client: replaying a log
needs only ``policies``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, fields, is_dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from policies import actions as _actions
from policies import events as _events
from policies.plan import Plan
from policies.timer_id import TimerId

__all__ = [
    "FORMAT",
    "VERSION",
    "EventLog",
    "LogEntry",
    "event_to_dict",
    "event_from_dict",
    "action_to_dict",
    "action_from_dict",
    "canonical",
    "read_log",
    "recover_log",
    "RecoveredLog",
    "replay",
    "first_mismatch",
    "log_path",
]

FORMAT = "edgebatch-eventlog"
VERSION = 1

_EVENT_TYPES: dict[str, type] = {
    name: getattr(_events, name) for name in _events.__all__ if name not in ("Event", "Request")
}
_ACTION_TYPES: dict[str, type] = {name: getattr(_actions, name) for name in _actions.__all__ if name != "Action"}
_PLAN_KEYS = ("batch_size", "memory_mb", "weights", "feasible", "trigger")


def log_path(out_dir: str | os.PathLike, gateway: str) -> Path:
    """Where a run writes a gateway's event log: ``<out>/eventlog/gateway-<name>.jsonl``."""
    return Path(out_dir) / "eventlog" / f"gateway-{gateway}.jsonl"


# ---------------------------------------------------------------------------
# The codec
# ---------------------------------------------------------------------------


def _plain(value: Any) -> Any:
    """JSON-able plain data: mappings to dicts, sequences to lists, numpy scalars to numbers."""
    if value is None or isinstance(value, (bool, str, int, float)):
        return value
    if isinstance(value, Plan):
        return _plain(value.as_dict())
    if isinstance(value, TimerId):
        return str(value)
    if is_dataclass(value) and not isinstance(value, type):
        return _dataclass_to_dict(value)
    if hasattr(value, "items"):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_plain(v) for v in value]
    tolist = getattr(value, "tolist", None)  # numpy scalars and arrays
    if tolist is not None:
        return _plain(tolist())
    try:
        return float(value)
    except (TypeError, ValueError):
        return str(value)


_FIELD_NAMES: dict[type, tuple[str, ...]] = {}
_SCALARS = frozenset((float, int, str, bool))


def _dataclass_to_dict(value) -> dict:
    cls = type(value)
    names = _FIELD_NAMES.get(cls)
    if names is None:  # looked up once per class: the gateway encodes every event and action it handles
        names = _FIELD_NAMES[cls] = tuple(f.name for f in fields(value))
    out = {"type": cls.__name__}
    for name in names:
        item = getattr(value, name)
        out[name] = item if item is None or type(item) in _SCALARS else _plain(item)
    return out


#: a RequestArrived line written straight (the gateway logs one per request; through dicts and the encoder
#: it cost ~8 us), only while Request has exactly these fields: a field added later takes the general way
_REQUEST_FIELDS = ("request_id", "source", "arrival_s", "size_bytes", "deadline_s")
_FAST_ARRIVED = tuple(f.name for f in fields(_events.Request)) == _REQUEST_FIELDS and tuple(
    f.name for f in fields(_events.RequestArrived)) == ("now_s", "request")
_json_str = lru_cache(maxsize=256)(json.dumps)


def _arrived_line(event, dumps, actions) -> str | None:
    """The log line of a RequestArrived, as the encoder would write it, or None when a value is not a
    plain finite float, int or str (the encoder then writes it)."""
    request = event.request
    now_s, arrival_s, deadline_s = event.now_s, request.arrival_s, request.deadline_s
    if not _FAST_ARRIVED or type(now_s) is not float or type(arrival_s) is not float or type(deadline_s) is not float \
            or type(request.request_id) is not int or type(request.size_bytes) is not int or type(request.source) is not str:
        return None
    if now_s - now_s != 0.0 or arrival_s - arrival_s != 0.0 or deadline_s - deadline_s != 0.0:
        return None  # inf or nan: the encoder writes Infinity, NaN
    acted = dumps([_dataclass_to_dict(a) for a in actions]) if actions else "[]"
    return (f'{{"event":{{"type":"RequestArrived","now_s":{now_s!r},"request":{{"type":"Request","request_id":{request.request_id},'
            f'"source":{_json_str(request.source)},"arrival_s":{arrival_s!r},"size_bytes":{request.size_bytes},'
            f'"deadline_s":{deadline_s!r}}}}},"actions":{acted}}}')  # fmt: skip


def event_to_dict(event: _events.Event) -> dict:
    """A plain dict of ``event`` (``"type"`` plus its fields; the request nested)."""
    if type(event).__name__ not in _EVENT_TYPES:
        raise TypeError(f"not an event of policies.events: {event!r}")
    return _dataclass_to_dict(event)


def event_from_dict(data: dict) -> _events.Event:
    """The event ``event_to_dict`` wrote."""
    data = dict(data)
    kind = data.pop("type", None)
    cls = _EVENT_TYPES.get(kind)
    if cls is None:
        raise ValueError(f"unknown event type {kind!r}; one of {', '.join(_EVENT_TYPES)}")
    if "timer_id" in data:
        data["timer_id"] = TimerId.parse(data["timer_id"])
    if "request" in data:
        request = dict(data["request"])
        request.pop("type", None)
        data["request"] = _events.Request(**request)
    if "requests" in data:  # RequestsArrived
        data["requests"] = tuple(_events.Request(**{k: v for k, v in r.items() if k != "type"}) for r in data["requests"])
    return cls(**data)


def action_to_dict(action: _actions.Action) -> dict:
    """A plain dict of ``action`` (``"type"`` plus its fields; a NotePlan's plan as ``Plan.as_dict``)."""
    if type(action).__name__ not in _ACTION_TYPES:
        raise TypeError(f"not an action of policies.actions: {action!r}")
    return _dataclass_to_dict(action)


def action_from_dict(data: dict) -> _actions.Action:
    """The action ``action_to_dict`` wrote (a NotePlan's plan rebuilt as a ``Plan``: the keys
    beyond its fields go to ``detail``)."""
    data = dict(data)
    kind = data.pop("type", None)
    cls = _ACTION_TYPES.get(kind)
    if cls is None:
        raise ValueError(f"unknown action type {kind!r}; one of {', '.join(_ACTION_TYPES)}")
    if "timer_id" in data:
        data["timer_id"] = TimerId.parse(data["timer_id"])
    if cls is _actions.DispatchBatch:
        data["request_ids"] = tuple(data["request_ids"])
    if cls is _actions.NotePlan and isinstance(data.get("plan"), dict):
        plan = dict(data["plan"])
        known = {k: plan.pop(k) for k in _PLAN_KEYS if k in plan}
        data["plan"] = Plan(**known, detail=plan)
    return cls(**data)


def canonical(actions: Iterable) -> str:
    """The canonical JSON text of a list of actions (objects or dicts): what replay compares."""
    plain = [a if isinstance(a, dict) else action_to_dict(a) for a in actions]
    return json.dumps(plain, sort_keys=True, allow_nan=True, separators=(",", ":"))


# ---------------------------------------------------------------------------
# Writing
# ---------------------------------------------------------------------------


class EventLog:
    """Appends a gateway's events and actions to a JSON-lines file (see the module doc).

    Lines are held in memory until ``commit()`` (or ``close()``) writes them
    in one write: what is on disk is always a prefix of what was recorded, cut
    at a commit, plus at worst one line torn by a kill. ``append=True``
    continues a predecessor's log (``incarnation``: the marker written first).
    Not thread-safe: the gateway's one scheduler thread writes it.
    """

    def __init__(self, path: str | os.PathLike, gateway: str, *, append: bool = False, incarnation: int = 0):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | (os.O_APPEND if append else os.O_TRUNC), 0o600)
        self._dumps = json.JSONEncoder(allow_nan=True, separators=(",", ":")).encode
        self._lines: list[str] = []
        self.entries = 0
        #: bytes written to the file by this writer (its commits)
        self.bytes_written = 0
        first = {"incarnation": incarnation} if append else {"log": FORMAT, "version": VERSION, "gateway": gateway}
        self._lines.append(self._dumps(first))
        self.commit()

    @property
    def pending(self) -> int:
        """Lines recorded and not yet committed."""
        return len(self._lines)

    def record(self, event: _events.Event, actions: list) -> None:
        """One ``Scheduler.handle(event)`` call and what it returned."""
        line = _arrived_line(event, self._dumps, actions) if type(event) is _events.RequestArrived else None
        if line is None:
            line = self._dumps({"event": _dataclass_to_dict(event), "actions": [_dataclass_to_dict(a) for a in actions]})
        self._lines.append(line)
        self.entries += 1

    def record_close(self, now_s: float, actions: list) -> None:
        """One ``Scheduler.close(now_s)`` call and what it returned."""
        self._lines.append(self._dumps({"close": {"now_s": now_s}, "actions": [_dataclass_to_dict(a) for a in actions]}))
        self.entries += 1

    def commit(self) -> None:
        """Write every line recorded so far (one ``write``)."""
        if self._lines and self._fd is not None:
            data = ("\n".join(self._lines) + "\n").encode()
            self._lines.clear()
            view = memoryview(data)
            while view:
                view = view[os.write(self._fd, view):]
            self.bytes_written += len(data)

    flush = commit

    def close(self, *, remove: bool = False) -> None:
        """Commit and close (``remove``: delete the file, a recovery log no longer needed)."""
        if self._fd is None:
            return
        self.commit()
        os.close(self._fd)
        self._fd = None
        if remove:
            self.path.unlink(missing_ok=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


# ---------------------------------------------------------------------------
# Reading and replaying
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class LogEntry:
    """One logged call: ``event`` (None for a ``close``), ``close_s`` (the close's now_s, else None),
    the logged ``actions`` as dicts, and the gateway ``incarnation`` that logged it."""

    event: _events.Event | None
    close_s: float | None
    actions: list[dict]
    incarnation: int = 0


@dataclass(frozen=True, kw_only=True, slots=True)
class RecoveredLog:
    """What ``recover_log`` read: the header, the entries, and how much of the file they are.

    ``good_bytes``: the length of the whole lines read (a successor cuts the
    file there before appending); ``torn``: a last line was cut by the kill
    (or did not parse) and was left out; ``too_large``: the file is over the
    bound and was not read (``entries`` empty).
    """

    header: dict
    entries: list
    good_bytes: int
    torn: bool = False
    too_large: bool = False


def _parse_line(data: dict, incarnation: int, where: str) -> LogEntry:
    if "event" in data:
        return LogEntry(event_from_dict(data["event"]), None, list(data["actions"]), incarnation)
    if "close" in data:
        return LogEntry(None, float(data["close"]["now_s"]), list(data["actions"]), incarnation)
    raise ValueError(f"{where}: neither an event nor a close: {str(data)[:200]!r}")


def _read_lines(path, fp, *, tolerate_torn: bool) -> tuple[dict, list[LogEntry], int, bool]:
    header: dict = {}
    entries: list[LogEntry] = []
    incarnation, good, number = 0, 0, 0
    for number, raw in enumerate(fp, 1):
        try:
            if not raw.endswith(b"\n"):
                raise ValueError("a line without its end")
            data = json.loads(raw) if raw.strip() else None
        except ValueError:
            if tolerate_torn and not fp.read(1):
                return header, entries, good, True  # the last line, torn by a kill: its call never happened on disk
            raise ValueError(f"{path}:{number}: not a JSON line: {raw[:200]!r}") from None
        good += len(raw)
        if data is None:
            continue
        if number == 1 and data.get("log") == FORMAT:
            if data.get("version") != VERSION:
                raise ValueError(f"{path}: event log version {data.get('version')!r}, this reader knows {VERSION}")
            header = data
        elif "incarnation" in data and len(data) == 1:
            incarnation = int(data["incarnation"])
        else:
            entries.append(_parse_line(data, incarnation, f"{path}:{number}"))
    return header, entries, good, False


def read_log(path: str | os.PathLike) -> tuple[dict, list[LogEntry]]:
    """The header and the entries of an event log file (every line whole, else ``ValueError``)."""
    with open(path, "rb") as fp:
        header, entries, _, _ = _read_lines(path, fp, tolerate_torn=False)
    return header, entries


def recover_log(path: str | os.PathLike, *, max_bytes: int) -> RecoveredLog:
    """A crashed gateway's log, read back: a torn last line is left out; a file over ``max_bytes`` is not read."""
    size = os.path.getsize(path)
    if size > max_bytes:
        return RecoveredLog(header={}, entries=[], good_bytes=size, too_large=True)
    with open(path, "rb") as fp:
        header, entries, good, torn = _read_lines(path, fp, tolerate_torn=True)
    return RecoveredLog(header=header, entries=entries, good_bytes=good, torn=torn)


def replay(entries: Iterable[LogEntry], scheduler) -> Iterator[list[dict]]:
    """Feed the logged events (and closes) into ``scheduler``; yield each call's actions as dicts."""
    for entry in entries:
        if entry.event is not None:
            got = scheduler.handle(entry.event)
        else:
            got = scheduler.close(entry.close_s)
        yield [action_to_dict(a) for a in got]


def first_mismatch(entries: list[LogEntry], scheduler) -> tuple[int, list[dict], list[dict]] | None:
    """Replay ``entries`` into ``scheduler``; the first entry whose actions differ from the logged ones,
    as ``(index, logged, replayed)``, or None when every entry gives the same actions.

    An exception the scheduler raises on replay propagates (a replay that cannot
    even be fed is a mismatch too)."""
    for index, (entry, got) in enumerate(zip(entries, replay(entries, scheduler))):
        if canonical(entry.actions) != canonical(got):
            return index, entry.actions, got
    return None
