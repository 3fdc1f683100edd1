"""Broker access for the live harness.

Either an external Apache Pulsar service URL (with optional token auth and TLS)
or an embedded ``pulsar-lite`` broker that this module runs itself.

The embedded broker is started from the ``pulsar-lite`` binary directly, not
through ``pulsar_lite.start_broker()`` (which logs every message at info level
to ``/tmp/pulsar-lite.log`` and picks a new port on every start). We write our
own TOML config so that:

- the Pulsar protocol listens on ``127.0.0.1:<port>`` (a fixed port, kept
  across ``restart()``), or on ``host:<port>`` for a testbed (``host`` must
  be the address the other machines use: bound to a wildcard, pulsar-lite
  answers topic lookups with ``127.0.0.1``, which remote clients cannot reach),
- the Prometheus metrics HTTP endpoint listens on ``127.0.0.1:<http_port>``
  (``host:<http_port>`` likewise; pulsar-lite's default is ``0.0.0.0:8080``:
  every interface, and a port clash between two brokers),
- logs are at warning level in ``<folder>/pulsar-lite.log``,
- data lives in ``<folder>/data`` (the binary appends ``.rocksdb``), or with
  ``keep_data=False`` in a temporary folder that ``close()`` removes.

Only ever use Shared subscriptions and treat delivery as at-least-once (see
DESIGN.md, "live harness").
"""

from __future__ import annotations

import atexit
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

__all__ = [
    "BrokerConfig",
    "BrokerError",
    "EmbeddedBroker",
    "connect",
    "connect_config",
    "find_binary",
    "free_port",
    "topic",
]

HOST = "127.0.0.1"
TOPIC_PREFIX = "persistent://public/default/edgebatch-"


class BrokerError(RuntimeError):
    """The embedded broker could not be started or stopped."""


def topic(run_id: str, name: str) -> str:
    """Fully qualified topic name for one run: persistent://public/default/edgebatch-<run_id>-<name>."""
    if not run_id or not name:
        raise ValueError("topic(): run_id and name must be non-empty")
    for part in (run_id, name):
        if "/" in part or any(c.isspace() for c in part):
            raise ValueError(f"topic(): {part!r} may not contain '/' or whitespace")
    return f"{TOPIC_PREFIX}{run_id}-{name}"


def free_port(host: str = HOST) -> int:
    """A TCP port that was free on ``host`` when we looked (bind to port 0)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def _port_open(host: str, port: int, timeout: float = 0.25) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def find_binary() -> str:
    """Path of the pulsar-lite binary: $PULSAR_LITE_BINARY, else the one shipped in the package."""
    env = os.environ.get("PULSAR_LITE_BINARY")
    if env and os.path.isfile(env):
        return os.path.abspath(env)
    try:
        import pulsar_lite
    except ImportError as e:  # pragma: no cover - depends on the install
        raise FileNotFoundError("pulsar-lite is not installed (pip install pulsar-lite)") from e
    path = Path(pulsar_lite.__file__).parent / "bin" / "pulsar-lite"
    if path.is_file() and os.access(path, os.X_OK):
        return str(path)
    from pulsar_lite.binary_finder import find_pulsar_lite_binary  # raises FileNotFoundError

    return find_pulsar_lite_binary()


_RUNNING: "weakref.WeakSet[EmbeddedBroker]" = weakref.WeakSet()


@atexit.register
def _stop_all_at_exit() -> None:
    """Do not leave broker processes behind if the caller forgot to stop them."""
    for b in list(_RUNNING):
        try:
            b.close()
        except Exception:
            pass


class EmbeddedBroker:
    """A pulsar-lite broker process on a fixed port of 127.0.0.1 (or of ``host``).

    >>> with EmbeddedBroker("out/run1") as b:
    ...     client = pulsar.Client(b.url)
    """

    def __init__(
        self,
        folder: str | os.PathLike | None = None,
        port: Optional[int] = None,
        http_port: Optional[int] = None,
        log_level: str = "warn",
        start_timeout_s: float = 15.0,
        stop_grace_s: float = 5.0,
        binary: Optional[str] = None,
        host: str = HOST,
        keep_data: bool = True,
    ):
        if not host or host in ("0.0.0.0", "::", "[::]", "*"):
            raise ValueError(
                f"broker host {host!r}: give the address that clients use (pulsar-lite bound to a wildcard "
                "answers topic lookups with 127.0.0.1, which clients on other machines cannot reach)"
            )
        self.host = host
        if folder is None:
            folder = tempfile.mkdtemp(prefix="edgebatch-broker-")
        self.folder = Path(folder).absolute()
        self.port = int(port) if port else free_port(host)
        self.http_port = int(http_port) if http_port else free_port(host)
        if self.http_port == self.port:
            raise ValueError("broker port and http_port must differ")
        self.log_level = log_level
        self.start_timeout_s = start_timeout_s
        self.stop_grace_s = stop_grace_s
        self.binary = binary or find_binary()
        #: False: the data lives in a temporary folder made at the first start and removed by
        #: ``close()`` (the log and config stay in ``folder``), so a run's results hold no broker data
        self.keep_data = keep_data
        self._data_root: Optional[Path] = self.folder if keep_data else None
        self.log_path = self.folder / "pulsar-lite.log"
        self.config_path = self.folder / "pulsar-lite.toml"
        self._proc: Optional[subprocess.Popen] = None
        self._log_file = None

    # -- properties ---------------------------------------------------------
    @property
    def data_path(self) -> Path:
        """Where the broker keeps its data (the binary appends ``.rocksdb``)."""
        if self._data_root is None:
            self._data_root = Path(tempfile.mkdtemp(prefix="edgebatch-broker-data-"))
        return self._data_root / "data"

    @property
    def url(self) -> str:
        return f"pulsar://{self.host}:{self.port}"

    @property
    def metrics_url(self) -> str:
        return f"http://{self.host}:{self.http_port}/metrics"

    @property
    def pid(self) -> Optional[int]:
        return self._proc.pid if self._proc is not None else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    # -- lifecycle ----------------------------------------------------------
    def _write_config(self) -> None:
        self.config_path.write_text(
            f'addr = "{self.host}:{self.port}"\n'
            f'db_path = "{self.data_path}"\n'
            f'log_level = "{self.log_level}"\n'
            "\n[metrics]\n"
            "enabled = true\n"
            f'addr = "{self.host}:{self.http_port}"\n'
        )

    def log_tail(self, n: int = 30) -> str:
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return "(no log)"
        return "\n".join(lines[-n:]) or "(log is empty)"

    def start(self) -> "EmbeddedBroker":
        if self.running:
            return self
        self.folder.mkdir(parents=True, exist_ok=True)
        for p in (self.port, self.http_port):
            if _port_open(self.host, p):
                raise BrokerError(f"port {self.host}:{p} is already in use; cannot start pulsar-lite there")
        self._write_config()
        env = {**os.environ, "RUST_LOG": self.log_level}
        self._log_file = open(self.log_path, "ab")
        cmd = [
            self.binary,
            "--config", str(self.config_path),
            "--addr", f"{self.host}:{self.port}",
            "--db-path", str(self.data_path),
            "--log-level", self.log_level,
        ]
        # under a lifeline wrapper: the broker ends when the process that started it dies, by SIGKILL too
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "live.deploy.lifeline", *(() if self.keep_data else ("--remove", str(self.data_path.parent))), "--", *cmd],
            env=env,
            stdin=subprocess.PIPE,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            cwd=str(self.folder),
            # its own session: a Ctrl-C at the terminal reaches the orchestrator, which stops the
            # roles first and the broker last (so that the records still get through)
            start_new_session=True,
        )
        _RUNNING.add(self)
        deadline = time.monotonic() + self.start_timeout_s
        pending = [self.port, self.http_port]
        while pending:
            if self._proc.poll() is not None:
                rc = self._proc.returncode
                self._cleanup()
                raise BrokerError(
                    f"pulsar-lite exited with code {rc} before accepting connections on "
                    f"{self.host}:{self.port}; log {self.log_path}:\n{self.log_tail()}"
                )
            if _port_open(self.host, pending[0]):
                pending.pop(0)
                continue
            if time.monotonic() > deadline:
                self.stop()
                raise BrokerError(
                    f"pulsar-lite did not accept connections on {self.host}:{pending[0]} within "
                    f"{self.start_timeout_s:.0f}s; log {self.log_path}:\n{self.log_tail()}"
                )
            time.sleep(0.05)
        return self

    def stop(self) -> None:
        """SIGTERM the broker by pid; SIGKILL after ``stop_grace_s``."""
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            try:
                proc.send_signal(signal.SIGTERM)
                proc.wait(timeout=self.stop_grace_s)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=self.stop_grace_s)
            except ProcessLookupError:
                pass
        self._cleanup()
        # The port may linger briefly after exit; wait so that restart() can bind it again.
        deadline = time.monotonic() + self.stop_grace_s
        while _port_open(self.host, self.port) and time.monotonic() < deadline:
            time.sleep(0.05)

    def _cleanup(self) -> None:
        _RUNNING.discard(self)
        if self._proc is not None:
            self._proc.poll()
        self._proc = None
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None

    def close(self) -> None:
        """Stop the broker and, unless ``keep_data``, remove its data (``restart`` keeps it)."""
        self.stop()
        if not self.keep_data and self._data_root is not None:
            shutil.rmtree(self._data_root, ignore_errors=True)
            self._data_root = None

    def restart(self) -> "EmbeddedBroker":
        """Stop and start again on the same ports with the same data."""
        self.stop()
        return self.start()

    def __enter__(self) -> "EmbeddedBroker":
        return self.start()

    def __exit__(self, *exc) -> bool:
        self.close()
        return False

    def __del__(self):  # last resort; callers should use stop() / a with-block
        try:
            if self.running or not self.keep_data:
                self.close()
        except Exception:
            pass

    def __repr__(self) -> str:
        return f"EmbeddedBroker(url={self.url!r}, pid={self.pid}, folder={str(self.folder)!r})"


# --------------------------------------------------------------------------
# Connecting
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class BrokerConfig:
    """Where the live harness's Pulsar is. ``url=None`` means: start an embedded broker."""

    url: Optional[str] = None
    auth_token: Optional[str] = None
    tls_trust_certs_file: Optional[str] = None
    tls_allow_insecure: bool = False
    tls_validate_hostname: bool = True  # a certificate must name the host it is for
    operation_timeout_s: int = 30
    embedded_folder: Optional[str] = None
    embedded_port: Optional[int] = None


def _quiet_logger():
    import pulsar

    try:
        return pulsar.ConsoleLogger(pulsar.LoggerLevel.Warn)
    except AttributeError:  # pragma: no cover - older clients
        return None


def check_reachable(url: str, timeout_s: float = 3.0) -> None:
    """Raise ``BrokerError`` naming ``url`` unless one of its hosts accepts a TCP connection within ``timeout_s``.

    The Pulsar client itself retries an unreachable broker for its whole
    operation timeout (30 s of C++ log lines); this says so at once.
    """
    hosts = url.split("://", 1)[-1].split("/", 1)[0]
    reasons = []
    for address in hosts.split(","):
        host, _, port = address.rpartition(":")
        host = host.strip("[]") or address
        try:
            with socket.create_connection((host, int(port or 6650)), timeout=timeout_s):
                return
        except (OSError, ValueError) as error:
            reasons.append(f"{address}: {getattr(error, 'strerror', None) or error}")
    raise BrokerError(f"no Pulsar broker answers at {url} ({'; '.join(reasons)}); start one, "
                      "or leave live.broker.url unset for the embedded broker")  # fmt: skip


def client_options(url: str, *, tls_trust_certs_file: Optional[str] = None, tls_allow_insecure: bool = False,
                   tls_validate_hostname: bool = True, operation_timeout_s: int = 30) -> dict:  # fmt: skip
    """``pulsar.Client`` keyword arguments for ``url``: TLS with host-name verification unless told otherwise."""
    kwargs: dict = {"operation_timeout_seconds": operation_timeout_s}
    if url.startswith("pulsar+ssl://") or tls_trust_certs_file:
        kwargs["use_tls"] = url.startswith("pulsar+ssl://")
        if tls_trust_certs_file:
            kwargs["tls_trust_certs_file_path"] = tls_trust_certs_file
        kwargs["tls_allow_insecure_connection"] = tls_allow_insecure
        kwargs["tls_validate_hostname"] = tls_validate_hostname
    return kwargs


def connect(
    url: Optional[str] = None,
    auth_token: Optional[str] = None,
    tls_trust_certs_file: Optional[str] = None,
    tls_allow_insecure: bool = False,
    tls_validate_hostname: bool = True,
    operation_timeout_s: int = 30,
    embedded_folder: Optional[str] = None,
    embedded_port: Optional[int] = None,
    logger=None,
):
    """Return ``(client, broker)``.

    With a ``url`` (``pulsar://`` or ``pulsar+ssl://``), ``broker`` is None and the
    client uses token auth / TLS as given. Without one, an :class:`EmbeddedBroker`
    is started in ``embedded_folder`` and returned too: the caller must
    ``client.close()`` and then ``broker.stop()``.
    """
    import pulsar

    broker = None
    if url is None:
        broker = EmbeddedBroker(embedded_folder, port=embedded_port).start()
        url = broker.url
    kwargs = client_options(url, tls_trust_certs_file=tls_trust_certs_file, tls_allow_insecure=tls_allow_insecure,
                            tls_validate_hostname=tls_validate_hostname, operation_timeout_s=operation_timeout_s)  # fmt: skip
    kwargs["logger"] = logger if logger is not None else _quiet_logger()
    if auth_token:
        kwargs["authentication"] = pulsar.AuthenticationToken(auth_token)
    try:
        client = pulsar.Client(url, **kwargs)
    except Exception:
        if broker is not None:
            broker.stop()
        raise
    return client, broker


def connect_config(cfg: BrokerConfig, logger=None):
    """:func:`connect` from a :class:`BrokerConfig`."""
    return connect(
        url=cfg.url,
        auth_token=cfg.auth_token,
        tls_trust_certs_file=cfg.tls_trust_certs_file,
        tls_allow_insecure=cfg.tls_allow_insecure,
        tls_validate_hostname=cfg.tls_validate_hostname,
        operation_timeout_s=cfg.operation_timeout_s,
        embedded_folder=cfg.embedded_folder,
        embedded_port=cfg.embedded_port,
        logger=logger,
    )
