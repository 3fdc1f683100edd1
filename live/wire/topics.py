"""The topic names of one run."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from live.wire.broker import topic

__all__ = ["Topics"]


@dataclass(frozen=True)
class Topics:
    """The topics of one run (``live.wire.broker.topic(run_id, name)``)."""

    run_id: str

    def _t(self, name: str) -> str:
        return _topic(self.run_id, name)

    def requests(self, gateway: str) -> str:
        return self._t(f"requests-{gateway}")

    def batches(self, executor: str) -> str:
        return self._t(f"batches-{executor}")

    def results(self, gateway: str) -> str:
        return self._t(f"results-{gateway}")

    def replies(self, client: str) -> str:
        """An open-ingress client's answers (docs/PROTOCOL.md, "Open ingress")."""
        return self._t(f"replies-{client}")

    @property
    def records(self) -> str:
        return self._t("records")

    @property
    def control(self) -> str:
        return self._t("control")

    @property
    def ready(self) -> str:
        return self._t("ready")

    @property
    def dead_letter(self) -> str:
        return self._t("dead-letter")


#: a topic name is asked for on every message (a gateway's per request); checked and built once
_topic = lru_cache(maxsize=1024)(topic)
