"""The placement side of a scheduler: which executor gets a request."""

from __future__ import annotations

import abc
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from policies.batching.base import BatchingPolicy
from policies.events import Request
from spec.links import Link
from spec.topology import ExecutorSpec
from spec.validation import ConfigError

__all__ = ["PlacementPolicy", "ClusterView", "executor_subset", "bind_executor_subset"]


def executor_subset(executors: Sequence[str] | None) -> list[str] | None:
    """Check a placement's ``executors`` setting: a non-empty list of names, or None for all."""
    if executors is not None and (isinstance(executors, str) or not len(executors)):
        raise ConfigError("placement.executors", executors, "a non-empty list of executor names, or null for all")
    return None if executors is None else list(executors)


def bind_executor_subset(executors: list[str] | None, view: ClusterView) -> list[str]:
    """The names a placement chooses among: ``executors`` checked against ``view`` (None: all, in its order)."""
    names = list(view.executors)
    for name in executors or ():
        if name not in names:
            raise ConfigError("placement.executors", name, "one of " + ", ".join(names))
    return names if executors is None else executors


@dataclass(kw_only=True)
class ClusterView:
    """What a scheduler knows about its executors, read by placement policies
    and planners.

    The scheduler keeps it current; policies only read it.
    ``bandwidth_MBps`` holds the latest telemetry per remote executor (the
    link's nominal mean until a sample comes in).
    """

    gateway: str
    executors: Mapping[str, ExecutorSpec]
    links: Mapping[str, Link | None]
    batchers: Mapping[str, "BatchingPolicy"]
    bandwidth_MBps: dict[str, float] = field(default_factory=dict)
    warm_instances: dict[str, int] = field(default_factory=dict)

    @property
    def names(self) -> Sequence[str]:
        return list(self.executors)

    def queued(self, executor: str) -> int:
        """Requests waiting in ``executor``'s queue."""
        return len(self.batchers[executor].queue)

    def outstanding(self, executor: str) -> int:
        """Requests queued for or running on ``executor``."""
        batcher = self.batchers[executor]
        return len(batcher.queue) + batcher.requests_in_flight


class PlacementPolicy(abc.ABC):
    """Chooses the executor for each arriving request.

    A subclass fills one hook, ``choose``. It may read ``self.view`` (a
    ``ClusterView``, set by ``bind``) but never changes it.
    """

    def __init__(self) -> None:
        self.view: ClusterView | None = None

    def bind(self, view: ClusterView) -> None:
        """Attach to the scheduler's view of the cluster; checks names."""
        self.view = view

    @abc.abstractmethod
    def choose(self, now_s: float, request: Request) -> str | None:
        """Name of the executor for ``request``; None to drop it (no executor fits)."""

    def bulk_choice(self) -> str | None:
        """The executor ``choose`` returns for every request until something other than an arrival happens.

        None (the default): it depends on the request or on state, and the
        scheduler takes requests one at a time. A policy that names one must
        be left by ``choose`` in the same state whatever the number of
        requests (the simulator's bulk path skips the calls).
        """
        return None

    def apply_plan(self, *, weights: Mapping[str, float]) -> None:
        """Adopt a planner's traffic split. Policies without weights ignore it."""
