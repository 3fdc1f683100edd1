"""Model cascades: a cheap model first; a share of its outputs escalates to a bigger model on another executor.

Which outputs escalate is decided one of two ways:

- ``escalate_share``: each request escalates with that probability (a seeded
  draw per request id, the same in both backends);
- ``threshold``: a request escalates when the cheap model's confidence (its
  top softmax probability) is below it. Live, the confidence is the real
  model's, from the logits its result carries; where there is no model (the
  simulator) it is drawn per request id from ``confidence_samples``, the
  confidences measured on the live model (``experiments.edgeserve`` measures
  them).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from spec.pipeline_draw import PipelineDraw
from spec.validation import ConfigError, check_probability

__all__ = ["Cascade", "softmax_confidence", "ESCALATED_SUFFIX"]

#: an escalated task reaches the scheduler again with this after its source name (what
#: ``policies.placement.cascade.CascadePlacement`` routes by: plain data on the request)
ESCALATED_SUFFIX = "/escalated"


def softmax_confidence(logits: np.ndarray) -> np.ndarray:
    """Each row's top softmax probability (rows of logits)."""
    logits = np.asarray(logits, dtype=np.float64)
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    return shifted.max(axis=1) / shifted.sum(axis=1)


class Cascade:
    """``cheap`` first; ``escalates(request_id, confidence)`` says which requests go on to ``big``."""

    def __init__(self, *, cheap: str, big: str, escalate_share: float | None = None, threshold: float | None = None,
                 confidence_samples: Sequence[float] | None = None, seed: int = 0):  # fmt: skip
        if not isinstance(cheap, str) or not isinstance(big, str) or cheap == big:
            raise ConfigError("pipeline.cascade.big", big, f"an executor other than the cheap one ({cheap!r})")
        self.cheap, self.big = cheap, big
        if (escalate_share is None) == (threshold is None):
            raise ConfigError("pipeline.cascade.escalate_share", escalate_share, "exactly one of escalate_share or threshold")
        self.escalate_share = None if escalate_share is None else check_probability("pipeline.cascade.escalate_share", escalate_share)
        self.threshold = None if threshold is None else check_probability("pipeline.cascade.threshold", threshold)
        samples = None
        if confidence_samples is not None:
            if isinstance(confidence_samples, str) or not isinstance(confidence_samples, Sequence) or not confidence_samples:
                raise ConfigError("pipeline.cascade.confidence_samples", confidence_samples, "a non-empty list of probabilities")
            samples = np.sort([check_probability("pipeline.cascade.confidence_samples", c) for c in confidence_samples])
        self.confidence_samples = samples
        self._draw = PipelineDraw(seed=seed, purpose="cascade")

    @property
    def needs_confidence(self) -> bool:
        """A threshold cascade: a confidence per request, measured (live) or drawn from the samples."""
        return self.threshold is not None

    def expected_share(self) -> float:
        """The share expected to escalate: the set share, or the samples' share below the threshold."""
        if self.escalate_share is not None:
            return self.escalate_share
        if self.confidence_samples is None:
            raise ConfigError("pipeline.cascade.confidence_samples", None, "measured confidences (a threshold needs them here)")
        return float(np.searchsorted(self.confidence_samples, self.threshold, side="left") / len(self.confidence_samples))

    def confidence(self, request_id: int) -> float:
        """A confidence for ``request_id`` drawn from the measured samples (for a backend without the model)."""
        if self.confidence_samples is None:
            raise ConfigError("pipeline.cascade.confidence_samples", None, "measured confidences (a threshold with no live model)")
        index = int(self._draw.uniform(request_id) * len(self.confidence_samples))
        return float(self.confidence_samples[index])

    def escalates(self, request_id: int, confidence: float | None = None) -> bool:
        """Whether ``request_id``'s cheap output goes on to the big model."""
        if self.escalate_share is not None:
            return self._draw.uniform(request_id) < self.escalate_share
        if confidence is None:
            confidence = self.confidence(request_id)
        return confidence < self.threshold
