"""The shared link queue and slot models against their own guarantees (both backends drive them)."""

from __future__ import annotations

import pytest

from policies.timer_id import TimerId, TimerPurpose
from spec.link_queue import LinkQueue
from spec.links import MB, Link
from spec.slots import Slots


def test_link_queue_is_fifo_serializes_at_the_bandwidth_and_adds_the_delay():
    link = LinkQueue(Link(delay_s=0.1, bandwidth_MBps=2.0))
    assert link.send(0.0, 2 * MB) == pytest.approx(1.1)  # 1 s on the wire + 0.1 s
    assert link.backlog_s(0.4) == pytest.approx(0.6)
    assert link.send(0.4, MB) == pytest.approx(1.6)  # starts when the first has left (1.0), not at 0.4
    assert link.send(10.0, 0) == pytest.approx(10.1)  # an idle link: no wait, only the delay
    assert (link.transfers, link.bytes_sent) == (3, 3 * MB)


def test_link_queue_waits_out_an_outage_of_its_trace(tmp_path):
    trace = tmp_path / "bw.json"
    trace.write_text("[1.0, 0.0, 0.0, 4.0]")
    link = LinkQueue(Link(delay_s=0.0, bandwidth_trace=str(trace)))
    # half a MB in second 0, nothing in seconds 1-2, the other half at 4 MB/s from second 3
    assert link.send(0.5, MB) == pytest.approx(3.125)


def test_link_queue_refuses_a_negative_transfer():
    with pytest.raises(ValueError, match="size_bytes"):
        LinkQueue(Link(bandwidth_MBps=1.0)).send(0.0, -1)


def test_slots_run_up_to_count_and_start_waiting_jobs_in_fifo_order():
    slots = Slots(2)
    assert [slots.submit(j) for j in "abcd"] == ["a", "b", None, None]
    assert slots.release() == "c"  # the oldest waiting job takes the freed slot
    assert slots.busy == 2
    assert slots.release() == "d"
    assert slots.release() is None and slots.busy == 1
    assert slots.release() is None and slots.busy == 0
    with pytest.raises(RuntimeError, match="driver released"):
        slots.release()


@pytest.mark.parametrize("count", [0, -1, 1.5, True])
def test_slots_refuse_a_bad_count(count):
    with pytest.raises(ValueError, match="count"):
        Slots(count)


def test_timer_ids_are_typed_and_read_back_from_their_text():
    batch = TimerId.batch("edge")
    assert (batch.purpose, batch.executor) == (TimerPurpose.BATCH, "edge")
    assert str(batch) == "batch/edge" and TimerId.parse("batch/edge") == batch
    assert TimerId.parse(str(TimerId.plan())) == TimerId.plan()
    assert {batch: 1}[TimerId.batch("edge")] == 1  # hashable by value
    for bad in ("batch", "plan/edge", "wake/edge", ""):
        with pytest.raises(ValueError, match="timer id"):
            TimerId.parse(bad)
