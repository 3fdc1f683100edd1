"""Seeded per-request draws for the pipeline models: the same value for a request id in every process.

A pipeline decision (does this request's consumer read its payload, does it
escalate) must come out the same in the simulator and in each live role, and
must not depend on the order requests are seen in. A keyed hash of (seed,
purpose, request id) gives that without a shared generator.
"""

from __future__ import annotations

import hashlib

__all__ = ["PipelineDraw"]

_SCALE = float(1 << 53)


class PipelineDraw:
    """Uniform draws in [0, 1) keyed by (seed, purpose, request id); independent across purposes."""

    __slots__ = ("seed", "purpose")

    def __init__(self, *, seed: int, purpose: str):
        self.seed = int(seed)
        self.purpose = str(purpose)

    def uniform(self, request_id: int) -> float:
        """The draw of ``request_id`` (the same for the same seed, purpose and id)."""
        key = f"{self.seed}:{self.purpose}:{int(request_id)}".encode()
        digest = hashlib.blake2b(key, digest_size=8, person=b"edgebatch-pipe").digest()
        return (int.from_bytes(digest, "little") >> 11) / _SCALE
