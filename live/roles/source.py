"""The source role: replays one workload source's arrival schedule in real time.

It publishes exactly the arrivals ``Workload.generate(seed)`` gives the
simulator (request ids are indices into the merged arrival arrays, as in the
simulator's records), each as a REQUEST message to its gateway's requests
topic at its arrival time, with a payload of the source's ``size_bytes``
(deterministic bytes drawn from ``(seed, request_id)``)::

    python -m live.roles.source --broker URL --run-id RUN --config run.json --source camera

Each request carries ``ts.arrival_s`` (its scheduled time on the run's clock)
and ``ts.sent_s`` (when it was actually sent); the lag between them is in
the stats.

A source restarted after a crash (``--incarnation`` above 0) does not know
which of its requests got through, so it sends again at once every request
already due (the gateway keeps the first copy of each id and counts the
rest as duplicates), then goes on with its schedule: nothing is lost, and
the requests due while it was down are recorded as late as they were.
"""

from __future__ import annotations

import logging
import time

import numpy as np

from live.wire.messages import encode_request
from live.roles.role import Role, common_parser, percentiles

__all__ = ["payload_for", "premade_payloads", "schedule", "main"]

log = logging.getLogger("edgebatch.live")

#: a request's payload is made this long before it is due, not right after the previous send: on a
#: busy machine, work straight after send_async holds up the message on its way (~0.25 ms at p50)
_PAYLOAD_LEAD_S = 0.002
#: payloads made before the source says ready (a seeded generator each costs ~60 us: at 4,000 req/s that
#: alone is a quarter of a core, and the sends fall behind); the rest are made on the way, as above
_PREMADE_BYTES = 64 * 1024 * 1024
_PREMADE_COUNT = 50_000
#: waits shorter than this sleep through a stop (it is seen right after)
_SHORT_PAUSE_S = 0.02


def payload_for(seed: int, request_id: int, size_bytes: int) -> bytes:
    """The payload of one request: ``size_bytes`` bytes drawn from ``(seed, request_id)``."""
    if size_bytes <= 0:
        return b""
    return np.random.default_rng([int(seed), 0x50, int(request_id)]).bytes(int(size_bytes))


def schedule(arrivals, source_index: int) -> tuple[np.ndarray, np.ndarray]:
    """Request ids and arrival times of one source, in time order."""
    ids = np.flatnonzero(arrivals.source_index == source_index)
    return ids, arrivals.arrival_s[ids]


def _send(role, topic: str, name: str, request_id: int, arrival_s: float, payload: bytes, clock) -> float:
    """Publish one request now; returns when it was sent."""
    sent_s = clock.now()
    role.send_async(topic, encode_request(str(request_id), payload, source=name, sent_s=sent_s, ts={"arrival_s": arrival_s}))
    return sent_s


def _pause(role, pause_s: float) -> None:
    """Wait ``pause_s``; a short wait sleeps (an Event wait makes and times a lock each call: 6-10 us more CPU,
    at 4,000 req/s a wait per request), a long one wakes at a stop."""
    if pause_s < _SHORT_PAUSE_S:
        time.sleep(pause_s)
    else:
        role.stop.wait(pause_s)


def premade_payloads(seed: int, ids: list, size_bytes: int) -> list[bytes]:
    """The payloads of the first requests of ``ids``, made now (bounded by bytes and count; see _PREMADE_BYTES)."""
    count = min(len(ids), _PREMADE_COUNT, _PREMADE_BYTES // max(int(size_bytes), 1))
    return [payload_for(seed, request_id, size_bytes) for request_id in ids[:count]]


def _send_due_again(role, topic: str, spec, source, name: str, ids: list, times: list, clock) -> int:
    """Send every request already due (after a restart); return how many (a prefix of the schedule)."""
    due, now_s = 0, clock.now()
    while due < len(ids) and times[due] <= now_s:
        _send(role, topic, name, ids[due], times[due], payload_for(spec.seed, ids[due], source.size_bytes), clock)
        due += 1
    log.warning("%s: restarted; sent the %d requests already due again (the gateway keeps one of each)", name, due)
    return due


def _resender(role, topic: str, spec, source, name: str, due_at: dict):
    """What a source does with a restarted gateway's CONTROL ``resend``: sends again those of its ids already due."""

    def resend(message) -> None:
        clock = role.clock_or_none()
        if clock is None or message.source != source.gateway:  # only this source's gateway asks for its requests
            return
        now_s, sent = clock.now(), 0
        for text in message.ids:
            request_id = int(text) if text.isdigit() else -1
            arrival_s = due_at.get(request_id)
            if arrival_s is None or arrival_s > now_s:
                continue  # not this source's, or not due yet (it will go on schedule)
            _send(role, topic, name, request_id, arrival_s, payload_for(spec.seed, request_id, source.size_bytes), clock)
            sent += 1
        role.stats["resent_on_request"] = role.stats.get("resent_on_request", 0) + sent

    return resend


def main(argv=None) -> int:
    parser = common_parser("Replay one workload source's arrivals in real time.")
    parser.add_argument("--source", help="the source's name (default: the only one)")
    args = parser.parse_args(argv)
    sources = None
    role = None
    try:
        role = Role(args, "source", f"source-{args.source or 'all'}")
        spec = role.spec
        sources = [s.name for s in spec.arrivals.sources]
        name = args.source or (sources[0] if len(sources) == 1 else None)
        if name not in sources:
            raise SystemExit(f"--source must be one of {', '.join(sources)}")
        index = sources.index(name)
        source = spec.arrivals.sources[index]
        ids, times = schedule(spec.arrivals, index)
        topic = role.topics.requests(source.gateway)
        role.producer(topic)  # connect before saying ready
        role.on_resend = _resender(role, topic, spec, source, name, dict(zip(ids.tolist(), times.tolist())))
        premade = premade_payloads(spec.seed, ids.tolist(), source.size_bytes)
        role.announce_ready()
        clock = role.wait_start()
        if clock is None:
            return 0
        lags = []
        ids_list, times_list = ids.tolist(), times.tolist()
        resent = 0
        if args.incarnation > 0:  # restarted: what was due may or may not have got through
            resent = _send_due_again(role, topic, spec, source, name, ids_list, times_list, clock)
        for k, (request_id, arrival_s) in enumerate(zip(ids_list, times_list)):
            if k < resent:
                continue
            payload = None
            if k < len(premade):
                payload, premade[k] = premade[k], b""  # sent once: its memory goes with the send
            while True:
                wait_s = arrival_s - clock.now()
                if wait_s <= 0 or role.should_stop():
                    break
                if payload is None and wait_s <= _PAYLOAD_LEAD_S:
                    payload = payload_for(spec.seed, request_id, source.size_bytes)
                    continue
                _pause(role, min(wait_s - _PAYLOAD_LEAD_S if payload is None else wait_s, 0.5))
            if role.should_stop():
                break
            if payload is None:
                payload = payload_for(spec.seed, request_id, source.size_bytes)
            lags.append(_send(role, topic, name, request_id, arrival_s, payload, clock) - arrival_s)
        role.stats.update(source=name, sent=len(lags) + resent, resent_after_restart=resent, scheduled=len(ids_list),
                          send_lag_s=percentiles(lags))  # fmt: skip
        while not role.should_stop():  # a gateway restarted late may still ask for due requests (CONTROL resend)
            role.stop.wait(0.5)
        return 0
    finally:
        if role is not None:
            role.close()


if __name__ == "__main__":
    raise SystemExit(main())
