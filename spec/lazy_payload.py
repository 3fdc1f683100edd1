"""Lazy routing: only a reference travels; the payload crosses the link when, and only if, the consumer reads it.

EdgeServe's ``DataSource(lazy=True)`` keeps a payload where it was made and
sends a reference; the task fetches it on use. As a model: a request's
message over a link carries ``ref_size_bytes`` instead of its payload, and
its consumer reads the payload with ``read_probability`` (a seeded draw per
request id, the same in every backend) or by a rule (``read_sources``: the
sources whose payloads are always read, the others never). A read moves the
whole payload over the same link, one round trip after the reference came.
``eager`` (``enabled=False``) moves every payload with its message.
"""

from __future__ import annotations

from collections.abc import Sequence

from spec.pipeline_draw import PipelineDraw
from spec.validation import ConfigError, check_int_at_least, check_probability

__all__ = ["LazyPayload"]


class LazyPayload:
    """Which payloads a consumer reads, and the bytes a request moves over a link either way."""

    def __init__(self, *, enabled: bool = True, read_probability: float = 1.0, read_sources: Sequence[str] | None = None,
                 ref_size_bytes: int = 64, seed: int = 0):  # fmt: skip
        if not isinstance(enabled, bool):
            raise ConfigError("pipeline.lazy.enabled", enabled, "true or false")
        self.enabled = enabled
        self.read_probability = check_probability("pipeline.lazy.read_probability", read_probability)
        if read_sources is not None and (isinstance(read_sources, str) or not isinstance(read_sources, Sequence)):
            raise ConfigError("pipeline.lazy.read_sources", read_sources, "a list of source names, or null (read_probability)")
        self.read_sources = None if read_sources is None else frozenset(str(s) for s in read_sources)
        self.ref_size_bytes = check_int_at_least("pipeline.lazy.ref_size_bytes", ref_size_bytes, 1)
        self._draw = PipelineDraw(seed=seed, purpose="lazy-read")

    def reads(self, request_id: int, source: str) -> bool:
        """Whether the consumer reads ``request_id``'s payload (always, when routing is eager)."""
        if not self.enabled:
            return True
        if self.read_sources is not None:
            return source in self.read_sources
        return self._draw.uniform(request_id) < self.read_probability

    def message_bytes(self, size_bytes: int) -> int:
        """What a request's message carries over the link: its payload (eager) or its reference (lazy)."""
        return int(size_bytes) if not self.enabled else self.ref_size_bytes

    def fetch_bytes(self, request_id: int, source: str, size_bytes: int) -> int:
        """Bytes fetched over the link after the message (0 when eager, or when the payload is not read)."""
        return int(size_bytes) if self.enabled and self.reads(request_id, source) else 0

    def moved_bytes(self, request_id: int, source: str, size_bytes: int) -> int:
        """All the bytes ``request_id`` moves over one link: message plus any fetch."""
        return self.message_bytes(size_bytes) + self.fetch_bytes(request_id, source, size_bytes)
