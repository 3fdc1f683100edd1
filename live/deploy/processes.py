"""The role processes of a live run: start, ready handshake, control, signals, stop.

One implementation for both ways of running the roles: ``live.deploy.local``
(every role on this machine) and ``live.deploy.testbed`` (the roles of one
host of a testbed).

- ``Supervisor``: the processes this machine started. Each runs in a
  session of its own (a terminal's Ctrl-C reaches the orchestrator only, which
  stops the roles in order), its output in ``<log_dir>/<name>.log``. It says
  which one crashed, restarts the restartable ones (up to ``max_restarts``
  each, with the same command line), and stops them by pid: a grace period,
  then SIGTERM, then SIGKILL.
- ``Interrupts``: SIGINT and SIGTERM caught for the length of a ``with``
  block (on the main thread; elsewhere none is caught).
- The ready handshake: ``subscribe_ready`` (the orchestrator's Shared
  subscription on the run's ready topic, from the earliest message) and
  ``wait_ready`` (until every expected role has said ``ready``).
- ``ControlChannel``: ``start`` (the run's epoch, a lead ahead of now) and
  ``stop`` on the run's control topic.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from live.config import Topics
from live.wire.messages import ControlOp, DecodeError, decode, encode_control

__all__ = [
    "ROOT",
    "RoleProc",
    "Supervisor",
    "Interrupts",
    "StartError",
    "ControlChannel",
    "child_env",
    "close_connection",
    "spawn",
    "stop_processes",
    "first_crashed",
    "subscribe_ready",
    "wait_ready",
]

#: the repository's root: the roles' working directory, first on their PYTHONPATH
ROOT = str(Path(__file__).resolve().parents[2])


class StartError(RuntimeError):
    """Not every role said it was ready in time (``missing``: who did not), or a local role crashed."""

    def __init__(self, message: str, missing: Iterable[str] = ()):
        super().__init__(message)
        self.missing = sorted(missing)


# ---------------------------------------------------------------------------
# Processes
# ---------------------------------------------------------------------------


@dataclass
class RoleProc:
    """One role process this machine started."""

    name: str
    module: str
    popen: subprocess.Popen
    log_path: Path
    log_file: Any
    cmd: list = field(default_factory=list)
    env: dict = field(default_factory=dict)

    def tail(self, lines: int = 25) -> str:
        try:
            text = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return "(no log)"
        return "\n".join(text[-lines:]) or "(log is empty)"

    def exit_report(self, note: str = "") -> str:
        """``<name> exited with code <code><note>; <log>:`` and the log's tail."""
        return f"{self.name} exited with code {self.popen.returncode}{note}; {self.log_path}:\n{self.tail()}"


def child_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """This process's environment, the repository first on ``PYTHONPATH``, plus ``extra``."""
    env = {**os.environ, **(extra or {})}
    env["PYTHONPATH"] = ROOT + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


def spawn(name: str, module: str, cmd: list[str], env: dict, log_path: Path, append: bool = False) -> RoleProc:
    """Start ``cmd`` in a session of its own, in the repository's root, its output in ``log_path``.

    Its standard input is a lifeline (``live.deploy.lifeline``): a pipe this process holds open and
    never writes, so that a role started with ``--lifeline`` ends when this process dies, by SIGKILL too.
    """
    log_file = open(log_path, "ab" if append else "wb")
    popen = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=log_file, stderr=subprocess.STDOUT, cwd=ROOT, env=env,
                             start_new_session=True)  # fmt: skip
    return RoleProc(name, module, popen, Path(log_path), log_file, list(cmd), dict(env))


def _respawn(proc: RoleProc, epoch_unix: float, incarnation: int) -> RoleProc:
    """Start a role's process again with the same command line (and the run's epoch: the start has been sent)."""
    try:
        proc.log_file.close()
    except Exception:
        pass
    with open(proc.log_path, "ab") as fp:
        fp.write(f"\n--- edgebatch: {proc.name} exited with code {proc.popen.returncode}; restarted ---\n".encode())
    cmd = list(proc.cmd)
    if "--incarnation" in cmd:
        del cmd[cmd.index("--incarnation"):cmd.index("--incarnation") + 2]
    cmd += ["--incarnation", str(incarnation)]
    if "--epoch" not in cmd:
        cmd += ["--epoch", repr(epoch_unix)]
    return spawn(proc.name, proc.module, cmd, proc.env, proc.log_path, append=True)


def stop_processes(procs: list, grace_s: float, term_wait_s: float = 3.0) -> None:
    """Wait up to ``grace_s`` for each process we started to exit, then SIGTERM, then SIGKILL: by pid.

    ``procs`` hold a ``popen`` and the ``log_file`` their output goes to (closed at the end).
    """
    deadline = time.monotonic() + grace_s
    for proc in procs:
        if proc.popen.poll() is None:
            try:
                proc.popen.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
    for proc in procs:
        if proc.popen.poll() is None:
            try:
                os.kill(proc.popen.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
    for proc in procs:
        try:
            proc.popen.wait(timeout=term_wait_s)
        except subprocess.TimeoutExpired:
            try:
                os.kill(proc.popen.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.popen.wait()
    for proc in procs:
        try:
            proc.log_file.close()
        except Exception:
            pass


def first_crashed(procs: list):
    """The first process that exited with an error, or None."""
    for proc in procs:
        code = proc.popen.poll()
        if code is not None and code != 0:
            return proc
    return None


class Supervisor:
    """The role processes this machine started for one run.

    ``procs`` is the list of them now (a restart replaces its entry in place,
    so that a holder of the list sees the new process).
    """

    def __init__(self, log_dir: str | os.PathLike, *, restartable: tuple[str, ...] = (), max_restarts: int = 0):
        self.log_dir = Path(log_dir)
        self.restartable = tuple(restartable)
        self.max_restarts = int(max_restarts)
        self.procs: list[RoleProc] = []
        #: restarts so far, per role name
        self.restarts: dict[str, int] = {}

    def spawn(self, name: str, module: str, cmd: list[str], env: dict) -> RoleProc:
        proc = spawn(name, module, cmd, env, self.log_dir / f"{name}.log")
        self.procs.append(proc)
        return proc

    def get(self, name: str) -> RoleProc:
        for proc in self.procs:
            if proc.name == name:
                return proc
        raise KeyError(f"no role {name!r}; roles: {', '.join(p.name for p in self.procs)}")

    def crashed(self) -> RoleProc | None:
        """The first process that exited with an error, or None."""
        return first_crashed(self.procs)

    def alive(self) -> bool:
        return any(p.popen.poll() is None for p in self.procs)

    def pids(self) -> dict[str, int]:
        return {p.name: p.popen.pid for p in self.procs}

    def restart(self, proc: RoleProc, epoch_unix: float) -> bool:
        """Start a crashed ``proc`` again if its module is restartable and it has restarts left."""
        count = self.restarts.get(proc.name, 0)
        if proc.module not in self.restartable or count >= self.max_restarts:
            return False
        self.restarts[proc.name] = count + 1
        self.procs[self.procs.index(proc)] = _respawn(proc, epoch_unix, count + 1)
        return True

    def restart_note(self, proc: RoleProc) -> str:
        """`` (restarted N times)`` for a role that was restarted, else ``""``."""
        return f" (restarted {self.restarts[proc.name]} times)" if proc.name in self.restarts else ""

    def watch(self, proc: RoleProc, until_unix: float, stop, *, on_crash: Callable[[RoleProc], None], period_s: float) -> None:
        """Until ``proc`` exits, the wall clock reaches ``until_unix`` or ``stop`` is set.

        A crashed process goes to ``on_crash`` (which restarts it, or raises); ``proc`` itself too, and
        then its restarted successor is watched.
        """
        name = proc.name
        while time.time() < until_unix and not stop.is_set():
            crashed = self.crashed()
            if crashed is not None:
                on_crash(crashed)
                continue
            if self.get(name).popen.poll() is not None:  # ended on its own, with status 0
                return
            time.sleep(period_s)

    def stop(self, grace_s: float, term_wait_s: float = 3.0) -> None:
        """Every process: ``grace_s`` to exit on its own, then SIGTERM, then SIGKILL."""
        stop_processes(self.procs, grace_s, term_wait_s)


# ---------------------------------------------------------------------------
# Signals
# ---------------------------------------------------------------------------


class Interrupts:
    """SIGINT and SIGTERM caught during a ``with`` block, on the main thread (elsewhere none is caught).

    The first signal sets ``event`` (and is kept in ``signals``); with
    ``second_raises``, a second one raises ``KeyboardInterrupt`` (stop at once).
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self, *, second_raises: bool = False):
        self.second_raises = second_raises
        self.event = threading.Event()
        self.signals: list[int] = []
        self._previous: dict = {}

    def _on_signal(self, signum, frame) -> None:
        if self.second_raises and self.event.is_set():
            raise KeyboardInterrupt(f"second {signal.Signals(signum).name}: stopping at once")
        self.signals.append(signum)
        self.event.set()

    def is_set(self) -> bool:
        return self.event.is_set()

    @property
    def first(self) -> int | None:
        """The first signal caught, or None."""
        return self.signals[0] if self.signals else None

    def __enter__(self) -> "Interrupts":
        if threading.current_thread() is threading.main_thread():
            for signum in self.SIGNALS:
                self._previous[signum] = signal.signal(signum, self._on_signal)
        return self

    def __exit__(self, *exc) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous = {}


# ---------------------------------------------------------------------------
# The ready handshake and the control topic
# ---------------------------------------------------------------------------


def subscribe_ready(client, run_id: str):
    """The orchestrator's subscription on the run's ready topic (Shared, from the earliest message).

    Made before any role starts, so that a real Pulsar (which keeps messages
    only for existing subscriptions) keeps every role's ``ready``.
    """
    import pulsar

    return client.subscribe(Topics(run_id).ready, "orchestrator", consumer_type=pulsar.ConsumerType.Shared,
                            initial_position=pulsar.InitialPosition.Earliest)  # fmt: skip


def wait_ready(consumer, expected: set[str], timeout_s: float, *, check=None, stop=None, reject=None) -> float:
    """Receive on the ready topic until every name in ``expected`` has said ``ready``; return the wait in seconds.

    ``check()``, called between messages, may raise to give up early (a local
    role crashed); a set ``stop`` (``is_set()``) ends the wait at once.
    ``reject(raw, reason)`` gets every message that is not a ``ready``
    (default: ignored). Raises ``StartError`` after ``timeout_s``.
    """
    import pulsar

    started = time.monotonic()
    seen: set[str] = set()
    while not expected <= seen and not (stop is not None and stop.is_set()):
        if check is not None:
            check()
        if time.monotonic() - started > timeout_s:
            missing = expected - seen
            raise StartError(f"roles not ready after {timeout_s:g}s: {', '.join(sorted(missing))}", missing)
        try:
            msg = consumer.receive(timeout_millis=200)
        except pulsar.Timeout:
            continue
        consumer.acknowledge(msg)
        raw = msg.data()
        try:
            message = decode(raw)
        except DecodeError as error:
            if reject is not None:
                reject(raw, str(error))
            continue
        if message.op is ControlOp.READY:
            seen.add(message.source)
        elif reject is not None:
            reject(raw, f"unexpected: a {message.kind.name} message (op {message.meta.get('op')!r}) on the ready topic")
    return time.monotonic() - started


def close_connection(client, broker=None) -> None:
    """Close a Pulsar ``client`` (errors ignored), then close the embedded ``broker`` (if any)."""
    if client is not None:
        try:
            client.close()
        except Exception:
            pass
    if broker is not None:
        broker.close()


class ControlChannel:
    """``start`` and ``stop`` on a run's control topic, as ``source``."""

    def __init__(self, client, run_id: str, *, source: str):
        self.run_id = run_id
        self.source = source
        self.producer = client.create_producer(Topics(run_id).control, batching_enabled=False)

    def start(self, lead_s: float, **meta) -> float:
        """Start the run's clock ``lead_s`` from now; return its epoch (Unix seconds)."""
        epoch = time.time() + lead_s
        self.producer.send(encode_control(ControlOp.START, source=self.source, meta={**meta, "epoch_unix": epoch, "run_id": self.run_id}))
        return epoch

    def stop(self, **meta) -> None:
        """Tell every role of the run to stop."""
        self.producer.send(encode_control(ControlOp.STOP, source=self.source, meta=meta))

    def close(self) -> None:
        try:
            self.producer.close()
        except Exception:
            pass
