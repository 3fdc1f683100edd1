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
