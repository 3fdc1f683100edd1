"""Progress of a run while it goes: requests done of total, rate and running p50.

On a terminal (stderr a tty) a tqdm bar; otherwise (a log, CI, a sweep's
job) a log line every ``period_s``, through ``logging`` so that it lands in
Hydra's per-job ``run.log`` too. Nothing shows for a run that ends within
``after_s`` (2 s by default: the config's ``progress`` section).

A run's progress comes from a ``snapshot`` callable returning
``(completed, dropped, p50_s)``: ``Recorder.progress`` for the simulator
(read on this module's thread while the simulation runs), the sink's
``stats/progress.json`` for a live run.
"""

from __future__ import annotations

import json
import logging
import math
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

__all__ = ["RunProgress", "progress_line", "live_snapshot"]

log = logging.getLogger("edgebatch.progress")

Snapshot = Callable[[], tuple[int, int, float]]


def progress_line(label: str, completed: int, dropped: int, total: int, elapsed_s: float, p50_s: float) -> str:
    """``[label] 1200/5000 requests (24%), 0 dropped, 480 req/s, p50 112.0 ms, 2.5 s``."""
    done = completed + dropped
    share = f" ({100 * done / total:.0f}%)" if total else ""
    rate = f"{done / elapsed_s:,.0f} req/s" if elapsed_s > 0 else "- req/s"
    p50 = f"p50 {1000 * p50_s:,.1f} ms" if math.isfinite(p50_s) else "p50 -"
    return f"[{label}] {done}/{total} requests{share}, {dropped} dropped, {rate}, {p50}, {elapsed_s:.1f} s"


def live_snapshot(out_dir: Path) -> Snapshot:
    """Progress of a live run from the sink's ``<out_dir>/stats/progress.json`` (zeros until it is written)."""
    path = Path(out_dir) / "stats" / "progress.json"

    def snapshot() -> tuple[int, int, float]:
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            return 0, 0, math.nan
        p50_s = data.get("p50_s")
        return int(data.get("completed", 0)), int(data.get("dropped", 0)), math.nan if p50_s is None else float(p50_s)

    return snapshot


class RunProgress:
    """Shows a run's progress while the ``with`` block runs: a tqdm bar on a terminal, log lines otherwise."""

    def __init__(self, snapshot: Snapshot, total: int, *, label: str, after_s: float = 2.0, period_s: float = 5.0,
                 terminal: bool | None = None):  # fmt: skip
        self.snapshot = snapshot
        self.total = int(total)
        self.label = label
        self.after_s = float(after_s)
        self.period_s = max(float(period_s), 0.05)
        self.terminal = sys.stderr.isatty() if terminal is None else terminal
        self.shown = 0  # updates shown (bar refreshes or log lines)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._bar = None
        self._started = 0.0

    def __enter__(self) -> "RunProgress":
        self._started = time.perf_counter()
        self._thread = threading.Thread(target=self._loop, name="edgebatch-progress", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5.0)
        if self._bar is not None:
            self._bar.close()

    def _loop(self) -> None:
        if self._stop.wait(self.after_s):
            return  # done before anything needed showing
        while True:
            self._show()
            if self._stop.wait(0.5 if self.terminal else self.period_s):
                return

    def _show(self) -> None:
        try:
            completed, dropped, p50_s = self.snapshot()
        except Exception as error:  # progress must never break a run
            log.debug("progress snapshot failed: %s", error)
            return
        elapsed_s = time.perf_counter() - self._started
        self.shown += 1
        if not self.terminal:
            log.info(progress_line(self.label, completed, dropped, self.total, elapsed_s, p50_s))
            return
        if self._bar is None:
            from tqdm import tqdm

            # smoothing 0 and the run's own start: the rate is requests done over the run's time so far
            self._bar = tqdm(total=self.total, unit="req", desc=self.label, file=sys.stderr, dynamic_ncols=True, leave=False,
                             smoothing=0)  # fmt: skip
            self._bar.start_t -= elapsed_s
        self._bar.update(completed + dropped - self._bar.n)
        p50 = f"p50 {1000 * p50_s:,.1f} ms" if math.isfinite(p50_s) else "p50 -"
        self._bar.set_postfix_str(f"{p50}, {dropped} dropped", refresh=True)
