"""The simulation's environment interleaves a replayed arrival stream with SimPy's own events."""

from __future__ import annotations

import math

import pytest
import simpy

from sim.environment import FeedEnvironment


def replay(env: FeedEnvironment, times: list[float], seen: list) -> None:
    pending = iter(times[1:])

    def on_due() -> float:
        seen.append(("arrival", env.now))
        return next(pending, math.inf)

    env.feed(times[0], on_due)


def test_arrivals_and_events_run_in_time_order():
    env = FeedEnvironment()
    seen: list = []
    replay(env, [0.5, 1.5, 2.5], seen)

    def ticker():
        for _ in range(3):
            yield env.timeout(1.0)
            seen.append(("tick", env.now))

    env.process(ticker())
    env.run()
    assert seen == [("arrival", 0.5), ("tick", 1.0), ("arrival", 1.5), ("tick", 2.0), ("arrival", 2.5), ("tick", 3.0)]


def test_at_a_tie_scheduled_events_go_first():
    env = FeedEnvironment()
    seen: list = []
    replay(env, [1.0, 1.0], seen)
    event = env.timeout(1.0)
    event.callbacks.append(lambda _: seen.append(("tick", env.now)))
    env.run()
    assert seen == [("tick", 1.0), ("arrival", 1.0), ("arrival", 1.0)]


def test_an_event_scheduled_by_an_arrival_runs_before_a_later_arrival():
    env = FeedEnvironment()
    seen: list = []
    pending = iter([2.0])

    def on_due() -> float:
        seen.append(("arrival", env.now))
        event = env.timeout(0.25)
        event.callbacks.append(lambda _: seen.append(("reply", env.now)))
        return next(pending, math.inf)

    env.feed(1.0, on_due)
    env.run()
    assert seen == [("arrival", 1.0), ("reply", 1.25), ("arrival", 2.0), ("reply", 2.25)]


def test_run_until_stops_between_arrivals_and_peek_sees_them():
    env = FeedEnvironment()
    seen: list = []
    replay(env, [1.0, 2.0, 3.0], seen)
    assert env.peek() == 1.0
    env.run(until=2.5)
    assert seen == [("arrival", 1.0), ("arrival", 2.0)]
    assert env.now == 2.5
    env.run()
    assert seen[-1] == ("arrival", 3.0)


def test_run_until_an_event_that_never_fires_fails_as_in_simpy():
    env = FeedEnvironment()
    replay(env, [1.0], [])
    with pytest.raises(RuntimeError, match="No scheduled events left"):
        env.run(until=env.event())
    assert env.now == 1.0


def test_a_feed_cannot_start_in_the_past():
    env = FeedEnvironment()
    env.run(until=5.0)
    with pytest.raises(ValueError, match="first_due_s"):
        env.feed(4.0, lambda: math.inf)


def test_without_a_feed_it_is_plain_simpy():
    env = FeedEnvironment()
    resource = simpy.Resource(env, capacity=1)
    done: list[float] = []

    def user(hold_s):
        with resource.request() as slot:
            yield slot
            yield env.timeout(hold_s)
        done.append(env.now)

    for hold_s in (1.0, 2.0, 3.0):
        env.process(user(hold_s))
    env.run()
    assert done == [1.0, 3.0, 6.0]


def test_a_call_is_ordered_exactly_as_a_timeout_of_the_same_delay():
    env = FeedEnvironment()
    seen: list = []
    for name in ("timeout a", "call b", "timeout c", "call d"):
        if name.startswith("call"):
            env.call_in(1.0, lambda call: seen.append((call.value, env.now)), name)
        else:
            env.timeout(1.0, name).callbacks.append(lambda event: seen.append((event.value, env.now)))
    env.call_in(0.5, lambda call: seen.append((call.value, env.now)), "call early")
    replay(env, [1.0, 2.0], seen)
    env.run()
    assert seen == [("call early", 0.5), ("timeout a", 1.0), ("call b", 1.0), ("timeout c", 1.0), ("call d", 1.0),
                    ("arrival", 1.0), ("arrival", 2.0)]  # fmt: skip
