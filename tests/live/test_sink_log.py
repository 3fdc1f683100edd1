"""The sink's write-ahead log: what is appended comes back in order; a frame cut by a crash ends it."""

from __future__ import annotations

from live.roles.sink_log import RecordLog


def test_records_come_back_in_order_and_a_cut_frame_ends_the_log(tmp_path):
    log = RecordLog(tmp_path / "records.wal")
    assert list(log.replay()) == []  # no log yet
    records = [b"first", b"", b"x" * 70_000, b"last"]
    for record in records:
        log.append(record)
    log.close()
    assert list(RecordLog(tmp_path / "records.wal").replay()) == records
    with open(tmp_path / "records.wal", "ab") as fp:  # a crash in the middle of the next append
        fp.write(b"\x00\x00\x01\x00" + b"only part")
    assert list(RecordLog(tmp_path / "records.wal").replay()) == records
    again = RecordLog(tmp_path / "records.wal")
    again.close(remove=True)
    assert not (tmp_path / "records.wal").exists()
