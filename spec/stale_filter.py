"""Stale drops: an input older than ``max_age_s`` when its gateway takes it is dropped with a reason.

EdgeServe drops messages whose send time lies too far behind the consumer's
clock. Here the age is the time from when the source made the input to when
the gateway sees it (the source's hop, in the simulator; the measured ingest
lag, live), checked before the input joins anything or reaches a scheduler.
"""

from __future__ import annotations

import math

from spec.records import DropReason
from spec.validation import check_positive

__all__ = ["StaleFilter"]


class StaleFilter:
    """Drops inputs whose age exceeds ``max_age_s`` (``inf``: none); counts what it dropped."""

    def __init__(self, *, max_age_s: float = math.inf):
        self.max_age_s = check_positive("pipeline.stale.max_age_s", max_age_s, finite=False)
        self.dropped = 0

    def check(self, *, now_s: float, made_s: float) -> str | None:
        """The drop reason (``DropReason.STALE``) when the input made at ``made_s`` is too old at ``now_s``, else None."""
        if now_s - made_s > self.max_age_s:
            self.dropped += 1
            return DropReason.STALE
        return None
