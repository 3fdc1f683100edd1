"""What recording its last acknowledged position costs a worker per batch (``live.roles.held_sweep.AckedMark``).

The worker writes the position after each acknowledgement so that a successor can sweep what it held
(issue 20, item 4). Timed over ``--count`` calls per repeat, against an empty loop of the same length.

    python -m benchmarks.acked_mark [--count 20000] [--repeats 5]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import pulsar

from live.roles.held_sweep import AckedMark


class _Acked:
    """A received message as far as ``AckedMark`` looks: its id."""

    def __init__(self, message_id):
        self._id = message_id

    def message_id(self):
        return self._id


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=20000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    msg = _Acked(pulsar.MessageId(-1, 123456, 7, -1))
    folder = Path(tempfile.mkdtemp(prefix="acked-mark-"))
    rows = []
    for _ in range(args.repeats):
        mark = AckedMark(folder / "w.acked", restarted=False)
        started = time.perf_counter()
        for _ in range(args.count):
            mark.acked(msg)
        acked_us = (time.perf_counter() - started) / args.count * 1e6
        started = time.perf_counter()
        for _ in range(args.count):
            pass
        empty_us = (time.perf_counter() - started) / args.count * 1e6
        mark.close(remove=True)
        rows.append((acked_us, empty_us))
    print("repeat  acked_us  empty_loop_us")
    for k, (acked_us, empty_us) in enumerate(rows):
        print(f"{k:6d}  {acked_us:8.2f}  {empty_us:13.3f}")
    values = [r[0] for r in rows]
    print(f"median {statistics.median(values):.2f} us per acknowledgement (min {min(values):.2f}, max {max(values):.2f})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
