"""Processes that end when the process that started them dies, however it dies.

A lifeline is a pipe: the parent holds its write end and never writes; the
child reads its end until end-of-file, which comes when the parent has
closed it or died (SIGKILL included; the kernel closes a dead process's
files). That works for any parent, in any thread, with no polling.

- ``watch(on_cut)``: in a Python child (a role), a daemon thread that calls
  ``on_cut()`` when its standard input reaches end-of-file.
- ``python -m live.deploy.lifeline [--remove DIR] -- CMD ...``: runs a program
  that cannot watch a pipe itself (the pulsar-lite binary) under a small
  wrapper that does: the wrapper forwards SIGTERM and SIGINT to it, stops it
  when the lifeline is cut (and then removes ``DIR``, the broker's temporary
  data, which no one else is left to remove), and exits with its status.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Callable

__all__ = ["watch", "main"]

#: what the wrapper allows a program to take to stop after SIGTERM, before SIGKILL
_STOP_GRACE_S = 5.0


def watch(on_cut: Callable[[], None]) -> threading.Thread:
    """Call ``on_cut()`` once standard input reaches end-of-file."""
    fd = sys.stdin.fileno()

    def wait_for_eof() -> None:
        try:
            while os.read(fd, 4096):  # the parent never writes; anything it did is ignored
                pass
        except OSError:
            pass
        on_cut()

    thread = threading.Thread(target=wait_for_eof, name="lifeline", daemon=True)
    thread.start()
    return thread


def _stop(child: subprocess.Popen, sig: int = signal.SIGTERM) -> None:
    if child.poll() is None:
        try:
            child.send_signal(sig)
            child.wait(timeout=_STOP_GRACE_S)
        except subprocess.TimeoutExpired:
            child.kill()
        except ProcessLookupError:
            pass


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    remove = None
    if argv[:1] == ["--remove"] and len(argv) > 1:
        remove, argv = argv[1], argv[2:]
    if argv[:1] == ["--"]:
        argv = argv[1:]
    if not argv:
        print("usage: python -m live.deploy.lifeline [--remove DIR] -- CMD [ARG...]", file=sys.stderr)
        return 2
    child = subprocess.Popen(argv, stdin=subprocess.DEVNULL)  # output: the wrapper's own (a log file)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda signum, frame: threading.Thread(target=_stop, args=(child, signum), daemon=True).start())
    cut = threading.Event()
    watch(lambda: (cut.set(), _stop(child)))
    status = child.wait()
    if cut.is_set() and remove:  # orphaned: its starter cannot clean up any more
        shutil.rmtree(remove, ignore_errors=True)
    return status


if __name__ == "__main__":
    raise SystemExit(main())
