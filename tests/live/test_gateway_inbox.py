"""live.roles.gateway_inbox: results are taken before requests; a wake-up whose result went first is skipped."""

from __future__ import annotations

import threading

from live.roles.gateway_inbox import Inbox


def test_results_come_before_requests_queued_earlier():
    inbox = Inbox()
    for k in range(3):
        inbox.put(("request", None, f"r{k}"))
    inbox.put(("result", None, "a"))
    inbox.put(("result", None, "b"))
    assert inbox.result_waiting()
    taken = [inbox.get(0)[2] for _ in range(5)]
    assert taken == ["a", "b", "r0", "r1", "r2"]
    assert not inbox.result_waiting()
    assert inbox.get(0) is None  # the two wake-ups of results already taken are skipped, nothing is left
    assert inbox.get(0.01) is None


def test_a_sleeping_get_wakes_for_a_result():
    inbox = Inbox()
    timer = threading.Timer(0.05, inbox.put, args=(("result", None, "late"),))
    timer.start()
    try:
        assert inbox.get(5.0) == ("result", None, "late")
    finally:
        timer.cancel()


def test_the_requests_queued_now_are_taken_together_up_to_a_limit_and_a_result():
    inbox = Inbox()
    for k in range(5):
        inbox.put(("request", None, f"r{k}"))
    assert [item[2] for item in inbox.requests_queued(3)] == ["r0", "r1", "r2"]
    inbox.put(("result", None, "a"))
    inbox.put(("request", None, "r5"))
    assert inbox.requests_queued(10) == []  # a result waits: the loop takes it first
    assert inbox.get(0)[2] == "a"
    assert [item[2] for item in inbox.requests_queued(10)] == ["r3", "r4"]  # the result's wake-up stops the bunch
    assert [item[2] for item in inbox.requests_queued(10)] == ["r5"]
    assert inbox.requests_queued(10) == [] and inbox.get(0) is None
