"""The marks a consumer leaves for its successor's sweep (live.roles.held_sweep, live.roles.gateway_marks), without a broker."""

from __future__ import annotations

import pulsar

from live.roles.gateway_marks import GatewayMarks, result_problem
from live.roles.held_sweep import AckedMark
from live.wire.messages import ControlOp, encode_control


class _Msg:
    """A received message as far as the marks look at it: its id."""

    def __init__(self, ledger: int, entry: int):
        self._id = pulsar.MessageId(-1, ledger, entry, -1)

    def message_id(self):
        return self._id


def _entry(path) -> int:
    return pulsar.MessageId.deserialize(path.read_bytes()).entry_id()


def test_a_forward_only_mark_keeps_the_furthest_message_and_a_successor_reads_it(tmp_path):
    mark = AckedMark(tmp_path / "m", restarted=False, forward_only=True)
    for entry in (3, 9, 4):  # 4: a redelivery from behind the mark
        mark.acked(_Msg(1, entry))
    mark.close()
    assert _entry(tmp_path / "m") == 9
    successor = AckedMark(tmp_path / "m", restarted=True, forward_only=True)
    assert pulsar.MessageId.deserialize(successor.before).entry_id() == 9
    successor.acked(_Msg(1, 8))  # behind its predecessor's mark: not taken as progress
    successor.close()
    assert _entry(tmp_path / "m") == 9
    assert AckedMark(tmp_path / "m", restarted=False).before is None  # a first start forgets an old run's mark


def test_a_plain_mark_follows_every_acknowledgement(tmp_path):
    mark = AckedMark(tmp_path / "m", restarted=False)
    mark.acked(_Msg(1, 9))
    mark.acked(_Msg(1, 4))
    assert _entry(tmp_path / "m") == 4
    mark.close(remove=True)
    assert not (tmp_path / "m").exists()


def test_gateway_marks_reach_the_disk_after_a_dead_letter_is_flushed_else_only_every_period(tmp_path):
    flushed = []
    marks = GatewayMarks(tmp_path, "gateway-edge", restarted=False, period_s=10.0)
    path = tmp_path / "gateway-edge.request.taken"
    marks.settle(0, 0.0, lambda: flushed.append(0))  # the first period starts
    marks.took("request", _Msg(1, 5))
    marks.settle(0, 1.0, lambda: flushed.append(1))  # no dead letter, inside the period: nothing written
    assert path.read_bytes() == b"" and flushed == []
    marks.took("request", _Msg(1, 6))
    marks.settle(1, 1.1, lambda: flushed.append(2))  # a dead letter since: flushed first, then written
    assert flushed == [2] and _entry(path) == 6
    marks.took("request", _Msg(1, 7))
    marks.settle(1, 20.0, lambda: flushed.append(3))  # the period passed: written, nothing to flush
    assert flushed == [2] and _entry(path) == 7
    assert marks.took("result", type("Inline", (), {"data": lambda self: b""})()) is False  # no broker message: no mark
    marks.close(remove=True)
    assert not path.exists()


def test_a_swept_position_is_skipped_when_it_comes_on_the_subscription(tmp_path):
    marks = GatewayMarks(tmp_path, "gateway-edge", restarted=True)
    marks.swept = {(1, 5, -1)}
    assert marks.took("request", _Msg(1, 5)) is True
    assert marks.took("request", _Msg(1, 6)) is False
    marks.close(remove=True)


def test_what_belongs_on_a_results_topic_needs_no_state():
    assert result_problem("edge", b"not a message at all").startswith("bad_magic")
    assert result_problem("edge", encode_control(ControlOp.NUDGE, source="edge")) is None
    assert result_problem("edge", encode_control(ControlOp.STOP, source="x")).startswith("unexpected: CONTROL")
