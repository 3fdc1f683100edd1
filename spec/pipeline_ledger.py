"""What a pipeline adds to the records: join wait, escalation and bytes moved, per request and per link.

Fed facts by either backend (the simulator's driver; the live sink, from the
records the gateways publish) and turned into the extra request columns
``task_id``, ``join_wait_s``, ``escalated`` and ``payload_bytes`` (``spec.records``
documents them) and the summary's ``link_bytes`` (bytes over each link,
``<gateway>-><executor>``), so both backends report them the same way.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = ["PipelineLedger", "PIPELINE_COLUMNS", "link_name"]

#: the request columns a pipeline run adds after ``spec.records.REQUEST_COLUMNS``
PIPELINE_COLUMNS = ("task_id", "join_wait_s", "escalated", "payload_bytes")


def link_name(gateway: str, executor: str) -> str:
    """The name a link's byte count goes by in the summary."""
    return f"{gateway}->{executor}"


class PipelineLedger:
    """Per-request task, join wait, escalation and payload bytes moved, and bytes per link, for ``count`` requests."""

    def __init__(self, count: int):
        self.task_id = np.full(count, -1, dtype=np.int64)
        self.join_wait_s = np.zeros(count, dtype=np.float64)
        self.escalated = np.zeros(count, dtype=bool)
        self.payload_bytes = np.zeros(count, dtype=np.int64)
        self.link_bytes: dict[str, int] = {}

    def admitted(self, request_id: int, task_id: int, wait_s: float = 0.0) -> None:
        """``request_id`` became part of task ``task_id`` after ``wait_s`` in a join (0: no join)."""
        self.task_id[request_id] = task_id
        self.join_wait_s[request_id] = wait_s

    def escalate(self, request_id: int) -> None:
        """``request_id``'s cheap output escalated to the big model."""
        self.escalated[request_id] = True

    def moved(self, link: str, request_id: int, size_bytes: int) -> None:
        """``request_id`` moved ``size_bytes`` of payload (or reference) over ``link``."""
        self.payload_bytes[request_id] += int(size_bytes)
        self.link_bytes[link] = self.link_bytes.get(link, 0) + int(size_bytes)

    def add_columns(self, requests: pd.DataFrame) -> pd.DataFrame:
        """``requests`` (one row per request id, in id order) with the pipeline's columns after the schema's."""
        out = requests.copy()
        ids = out["request_id"].to_numpy(dtype=np.int64)
        out["task_id"] = self.task_id[ids]
        out["join_wait_s"] = self.join_wait_s[ids]
        out["escalated"] = self.escalated[ids]
        out["payload_bytes"] = self.payload_bytes[ids]
        return out

    def summary(self, requests: pd.DataFrame) -> dict:
        """The summary's pipeline entries: bytes per link and in all, escalated share, mean join wait, drops by stage."""
        completed = ~requests["dropped"].to_numpy(dtype=bool) if len(requests) else np.zeros(0, bool)
        reasons = requests["drop_reason"].astype(str) if len(requests) else pd.Series(dtype=str)
        ids = requests["request_id"].to_numpy(dtype=np.int64) if len(requests) else np.zeros(0, np.int64)
        return {
            "link_bytes": dict(sorted(self.link_bytes.items())),
            "bytes_moved": int(sum(self.link_bytes.values())),
            "escalated_share": float(self.escalated[ids][completed].mean()) if completed.any() else float("nan"),
            "join_wait_mean_s": float(self.join_wait_s[ids][completed].mean()) if completed.any() else float("nan"),
            "join_expired": int(reasons.str.startswith("join_").sum()),
            "stale_dropped": int((reasons == "stale").sum()),
        }
