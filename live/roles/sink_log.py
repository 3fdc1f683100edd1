"""The sink's write-ahead log: every record it took, on disk before it is acknowledged.

A sink that crashes loses what it held in memory; restarted, it reads this
log back into a fresh ``SinkState`` and goes on. Whatever it had received
but not yet logged it had not acknowledged either, so the broker delivers
that again, and the state's deduplication keeps each record once. Frames are
a 4-byte big-endian length and the record's bytes as they came (signed, so
the log is checked again when it is read); a frame cut by the crash ends the
log there (its record was never acknowledged).
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterator
from pathlib import Path

__all__ = ["RecordLog"]

_FRAME = struct.Struct(">I")


class RecordLog:
    """Append-only frames in ``path``; ``replay()`` yields what an earlier process of the sink wrote."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self._fd: int | None = None

    def replay(self) -> Iterator[bytes]:
        """The records logged so far (none if there is no log), up to the first cut frame."""
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return
        offset = 0
        while offset + _FRAME.size <= len(data):
            (size,) = _FRAME.unpack_from(data, offset)
            end = offset + _FRAME.size + size
            if end > len(data):
                return  # cut by the crash: never acknowledged, so the broker delivers it again
            yield data[offset + _FRAME.size:end]
            offset = end

    def append(self, record: bytes) -> None:
        """Log one record (one write: in the kernel's hands once this returns, which outlives the process)."""
        if self._fd is None:
            self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        os.write(self._fd, _FRAME.pack(len(record)) + record)

    def close(self, *, remove: bool = False) -> None:
        """Close it; ``remove``: the tables are written, the log is no longer needed."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        if remove:
            self.path.unlink(missing_ok=True)
