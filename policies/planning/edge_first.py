"""The serverless-edge-batching seed's edge-first planner."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass

from policies.placement.base import ClusterView
from policies.plan import Plan
from policies.planning.replanning import ReplanningPlanner
from policies.planning.two_tier import (
    SEED_EDGE_BATCH_SIZES,
    SEED_MEMORY_SIZES_MB,
    SEED_REQUEST_SIZE_BYTES,
    SEED_SERVERLESS_BATCH_SIZES,
    check_grid,
    find_tiers,
)
from spec.links import MB
from spec.pricing import ServerlessPricing
from spec.profiles import LatencyProfile, check_profile
from spec.validation import ConfigError, check_int_at_least, check_non_negative, check_positive

__all__ = ["EdgeFirstAlgorithm", "EdgeFirstDecision", "EdgeFirstPlanner"]


@dataclass(frozen=True, slots=True, kw_only=True)
class EdgeFirstDecision:
    """What the edge-first algorithm chose.

    ``serverless_batch_size`` and ``serverless_memory_mb`` are 0 when the
    edge takes all the load. When ``feasible`` is False the sizes are the
    configured best-effort settings and ``reason`` says which step failed.
    """

    feasible: bool
    edge_batch_size: int
    serverless_batch_size: int
    serverless_memory_mb: int
    edge_rate_rps: float
    serverless_rate_rps: float
    #: serverless spending per second, c * m * ls(b, m) * ceil(R1 / b) (0 when edge only)
    cost_per_s: float
    #: "edge_only", "split", or why no plan meets the SLO
    reason: str

    @property
    def edge_only(self) -> bool:
        return self.serverless_batch_size == 0


class EdgeFirstAlgorithm:
    """The seed's edge-first algorithm as a pure function of load and bandwidth.

    Inputs: SLO ``T = slo_s``, arrival rate ``R``, bandwidth ``B`` (MB/s, MB
    = 2**20 bytes), the edge profile ``l0(b)``, the serverless profile
    ``ls(b, m)``, transfer time ``t(b, B) = size_per_request * b / B`` (size in
    MB; infinite when B is 0), price per MB-second ``c = price_per_gb_s /
    1024``, and the three grids.

    1. ``b*`` = the largest edge batch with ``l0(b*) <= T/2`` and
       ``R* = 2 b* / T``; none: infeasible.
    2. If ``R <= R*``, edge only: going through the edge grid from the largest
       batch down, take the first ``b`` with either ``b > 1``,
       ``l0(b) + b/R <= T`` and ``l0(b) <= b/R``, or ``b = 1`` and
       ``l0(1) <= T``.
    3. Otherwise the edge takes rate ``R*`` with batch ``b*`` and the
       serverless side ``R1 = R - R*``: rank every ``(b, m)`` by cost
       ``c m ls(b, m) ceil(R1/b)``, ties by batch ascending then memory
       ascending, and take the first with either ``b > 1`` and
       ``ls(b, m) + b/R1 + t(b, B) <= T``, or ``b = 1`` and
       ``ls(1, m) + t(1, B) <= T``; none: infeasible.

    Best effort when infeasible (never an exception): edge batch ``b*`` (or
    ``fallback_batch_size`` when step 1 failed), serverless batch
    ``fallback_batch_size`` with the largest memory size, and the edge taking
    ``min(1, R*/R)`` of the load (``R*`` from that edge batch), or all of it
    when the link is down (B = 0).
    """

    def __init__(
        self,
        *,
        slo_s: float,
        edge_profile: LatencyProfile,
        serverless_profile: LatencyProfile,
        price_per_gb_s: float,
        request_size_bytes: int = SEED_REQUEST_SIZE_BYTES,
        edge_batch_sizes: Sequence[int] = SEED_EDGE_BATCH_SIZES,
        serverless_batch_sizes: Sequence[int] = SEED_SERVERLESS_BATCH_SIZES,
        memory_sizes_mb: Sequence[int] = SEED_MEMORY_SIZES_MB,
        fallback_batch_size: int = 1,
    ):
        self.slo_s = check_positive("planner.slo_s", slo_s)
        self.edge_profile = check_profile("planner.edge_profile", edge_profile)
        self.serverless_profile = check_profile("planner.serverless_profile", serverless_profile)
        self.price_per_gb_s = check_non_negative("planner.price_per_gb_s", price_per_gb_s)
        self.price_per_mb_s = self.price_per_gb_s / 1024.0
        self.request_size_bytes = check_int_at_least("planner.request_size_bytes", request_size_bytes, 0)
        self.edge_batch_sizes = check_grid("planner.edge_batch_sizes", edge_batch_sizes)
        self.serverless_batch_sizes = check_grid("planner.serverless_batch_sizes", serverless_batch_sizes)
        self.memory_sizes_mb = check_grid("planner.memory_sizes_mb", memory_sizes_mb)
        self.fallback_batch_size = check_int_at_least("planner.fallback_batch_size", fallback_batch_size, 1)

    def transfer_s(self, batch_size: int, bandwidth_MBps: float) -> float:
        """``t(b, B)``: seconds to upload ``batch_size`` requests at ``bandwidth_MBps``."""
        size_mb = self.request_size_bytes / MB * batch_size
        if size_mb == 0:
            return 0.0
        if not bandwidth_MBps > 0:
            return math.inf
        return size_mb / bandwidth_MBps

    def edge_capacity(self) -> tuple[int | None, float]:
        """Step 1: ``(b*, R*)``; ``(None, 0.0)`` when no edge batch meets ``T/2``."""
        l0 = self.edge_profile.mean_s
        half = self.slo_s / 2.0
        fitting = [b for b in self.edge_batch_sizes if l0(b) <= half]
        if not fitting:
            return None, 0.0
        b_star = fitting[-1]
        return b_star, 2.0 * b_star / self.slo_s

    def plan(self, *, rate_rps: float, bandwidth_MBps: float) -> EdgeFirstDecision:
        """Run the algorithm for arrival rate ``rate_rps`` and uplink ``bandwidth_MBps``."""
        rate = float(rate_rps)
        bandwidth = float(bandwidth_MBps)
        if not math.isfinite(rate) or rate < 0:
            raise ConfigError("planner.rate_rps", rate_rps, "a finite rate >= 0")
        if math.isnan(bandwidth) or bandwidth < 0:
            raise ConfigError("planner.bandwidth_MBps", bandwidth_MBps, "a bandwidth >= 0 (inf: no link)")
        T = self.slo_s
        l0 = self.edge_profile.mean_s
        b_star, r_star = self.edge_capacity()
        if b_star is None:
            return self._best_effort(rate, bandwidth, None, "no edge batch size has l0(b) <= T/2")
        if rate <= r_star:
            for b in reversed(self.edge_batch_sizes):
                latency = l0(b)
                if b > 1:
                    gap = b / rate if rate > 0 else math.inf
                    if latency + gap <= T and latency <= gap:
                        return self._edge_only(b, rate)
                elif latency <= T:
                    return self._edge_only(b, rate)
            return self._best_effort(rate, bandwidth, b_star, "no edge batch size meets the SLO at this rate")
        r1 = rate - r_star
        ls = self.serverless_profile.mean_s
        c = self.price_per_mb_s
        ranked = []
        for b in self.serverless_batch_sizes:
            for m in self.memory_sizes_mb:
                service = ls(b, m)
                ranked.append((c * m * service * math.ceil(r1 / b), b, m, service))
        ranked.sort(key=lambda item: item[0])  # stable: ties stay batch-, then memory-ascending
        for cost, b, m, service in ranked:
            transfer = self.transfer_s(b, bandwidth)
            if b > 1:
                ok = service + b / r1 + transfer <= T
            else:
                ok = service + transfer <= T
            if ok:
                return EdgeFirstDecision(
                    feasible=True,
                    edge_batch_size=b_star,
                    serverless_batch_size=b,
                    serverless_memory_mb=m,
                    edge_rate_rps=r_star,
                    serverless_rate_rps=r1,
                    cost_per_s=cost,
                    reason="split",
                )
        return self._best_effort(rate, bandwidth, b_star, "no serverless batch and memory size meets the SLO")

    def _edge_only(self, batch_size: int, rate: float) -> EdgeFirstDecision:
        return EdgeFirstDecision(
            feasible=True,
            edge_batch_size=batch_size,
            serverless_batch_size=0,
            serverless_memory_mb=0,
            edge_rate_rps=rate,
            serverless_rate_rps=0.0,
            cost_per_s=0.0,
            reason="edge_only",
        )

    def _best_effort(self, rate: float, bandwidth: float, b_star: int | None, reason: str) -> EdgeFirstDecision:
        edge_b = self.fallback_batch_size if b_star is None else b_star
        r_star = 2.0 * edge_b / self.slo_s
        share = 1.0 if rate <= 0 or not bandwidth > 0 else min(1.0, r_star / rate)
        b = self.fallback_batch_size
        m = self.memory_sizes_mb[-1]
        r1 = rate * (1.0 - share)
        cost = self.price_per_mb_s * m * self.serverless_profile.mean_s(b, m) * math.ceil(r1 / b) if r1 > 0 else 0.0
        return EdgeFirstDecision(
            feasible=False,
            edge_batch_size=edge_b,
            serverless_batch_size=b,
            serverless_memory_mb=m,
            edge_rate_rps=rate * share,
            serverless_rate_rps=r1,
            cost_per_s=cost,
            reason=reason,
        )


class EdgeFirstPlanner(ReplanningPlanner):
    """The serverless-edge-batching seed's planner: fill the edge first, send
    the overflow to serverless functions at the least cost that meets the SLO.

    ``EdgeFirstAlgorithm`` is the decision (see it for the exact steps);
    this class turns it into a ``Plan`` for a cluster with one edge executor
    and one serverless executor (found by kind, or named with
    ``edge_executor`` / ``serverless_executor``): ``batch_size`` for both
    (the edge only when edge-only), ``memory_mb`` for the serverless one, and
    ``weights`` edge ``R*/R`` and serverless the rest (edge 1.0 when
    edge-only; other executors 0). Infeasible: ``Plan(feasible=False)`` with
    the algorithm's best-effort settings. Re-plan triggers, rate and
    bandwidth estimates: ``ReplanningPlanner``.

    Parameters: ``slo_s`` (seconds, > 0), ``nominal_rate_rps`` (> 0, for the
    initial plan), ``request_size_bytes`` (>= 0), ``edge_batch_sizes``,
    ``serverless_batch_sizes``, ``memory_sizes_mb`` (grids; seed defaults),
    ``price_per_gb_s`` (null: the serverless executor's
    ``ServerlessPricing``), ``fallback_batch_size`` (>= 1), ``edge_profile``
    / ``serverless_profile`` (null: the executors' own), ``edge_executor`` /
    ``serverless_executor`` (null: found by kind), and the trigger settings
    ``trigger``, ``period_s``, ``estimate_window``, ``changepoint``.
    """

    def __init__(
        self,
        *,
        slo_s: float,
        nominal_rate_rps: float,
        request_size_bytes: int = SEED_REQUEST_SIZE_BYTES,
        edge_batch_sizes: Sequence[int] = SEED_EDGE_BATCH_SIZES,
        serverless_batch_sizes: Sequence[int] = SEED_SERVERLESS_BATCH_SIZES,
        memory_sizes_mb: Sequence[int] = SEED_MEMORY_SIZES_MB,
        price_per_gb_s: float | None = None,
        fallback_batch_size: int = 1,
        edge_profile: LatencyProfile | None = None,
        serverless_profile: LatencyProfile | None = None,
        edge_executor: str | None = None,
        serverless_executor: str | None = None,
        trigger: str = "periodic",
        period_s: float = 5.0,
        estimate_window: int = 5,
        changepoint: Mapping[str, object] | None = None,
    ):
        super().__init__(
            nominal_rate_rps=nominal_rate_rps,
            trigger=trigger,
            period_s=period_s,
            estimate_window=estimate_window,
            changepoint=changepoint,
        )
        self._settings = dict(
            slo_s=slo_s,
            request_size_bytes=request_size_bytes,
            edge_batch_sizes=edge_batch_sizes,
            serverless_batch_sizes=serverless_batch_sizes,
            memory_sizes_mb=memory_sizes_mb,
            fallback_batch_size=fallback_batch_size,
        )
        self.slo_s = check_positive("planner.slo_s", slo_s)
        self.price_per_gb_s = None if price_per_gb_s is None else check_non_negative("planner.price_per_gb_s", price_per_gb_s)
        self.edge_profile = None if edge_profile is None else check_profile("planner.edge_profile", edge_profile)
        self.serverless_profile = (
            None if serverless_profile is None else check_profile("planner.serverless_profile", serverless_profile)
        )
        self.edge_executor = edge_executor
        self.serverless_executor = serverless_executor
        self.algorithm: EdgeFirstAlgorithm | None = None
        # check every setting now, with placeholders for what only the cluster can give
        EdgeFirstAlgorithm(
            edge_profile=self.edge_profile or _PLACEHOLDER_PROFILE,
            serverless_profile=self.serverless_profile or _PLACEHOLDER_PROFILE,
            price_per_gb_s=0.0 if self.price_per_gb_s is None else self.price_per_gb_s,
            **self._settings,
        )
        if self.edge_profile is not None and self.serverless_profile is not None and self.price_per_gb_s is not None:
            self.algorithm = self._build(self.edge_profile, self.serverless_profile, self.price_per_gb_s)

    def _build(self, edge_profile, serverless_profile, price_per_gb_s) -> EdgeFirstAlgorithm:
        return EdgeFirstAlgorithm(
            edge_profile=edge_profile, serverless_profile=serverless_profile, price_per_gb_s=price_per_gb_s, **self._settings
        )

    def bind(self, view: ClusterView) -> None:
        super().bind(view)
        edge, serverless = find_tiers(view, "planner", self.edge_executor, self.serverless_executor)
        self.edge_executor, self.serverless_executor = edge, serverless
        self.bandwidth_executor = serverless
        spec = view.executors[serverless]
        price = self.price_per_gb_s
        if price is None:
            if not isinstance(spec.pricing, ServerlessPricing):
                raise ConfigError(
                    "planner.price_per_gb_s", None, f"a price, since executor {serverless!r} has no ServerlessPricing"
                )
            price = spec.pricing.price_per_gb_s
        self.algorithm = self._build(
            self.edge_profile or view.executors[edge].profile, self.serverless_profile or spec.profile, price
        )

    def plan(self, *, rate_rps: float, bandwidth_MBps: float) -> EdgeFirstDecision:
        """The algorithm's decision for this load and bandwidth (needs profiles and a price: bound, or given)."""
        if self.algorithm is None:
            raise ConfigError("planner", "unbound", "a planner bound to a cluster, or given both profiles and price_per_gb_s")
        return self.algorithm.plan(rate_rps=rate_rps, bandwidth_MBps=bandwidth_MBps)

    def make_plan(self, now_s: float, trigger: str) -> Plan:
        rate, bandwidth = self.rate_rps, self.bandwidth_MBps
        decision = self.plan(rate_rps=rate, bandwidth_MBps=bandwidth)
        return decision_to_plan(
            decision,
            view=self.view,
            edge=self.edge_executor,
            serverless=self.serverless_executor,
            trigger=trigger,
            detail={"planner": "edge_first", "rate_rps": rate, "bandwidth_MBps": bandwidth, **asdict(decision)},
        )


def decision_to_plan(decision, *, view, edge: str, serverless: str, trigger: str, detail: Mapping) -> Plan:
    """A ``Plan`` from an edge/serverless decision (edge-only when its serverless batch is 0)."""
    total = decision.edge_rate_rps + decision.serverless_rate_rps
    if decision.serverless_batch_size == 0:
        edge_share = 1.0
    elif total > 0:
        edge_share = decision.edge_rate_rps / total
    else:
        edge_share = 1.0
    weights = {name: 0.0 for name in (view.executors if view is not None else (edge, serverless))}
    weights[edge] = edge_share
    weights[serverless] = 1.0 - edge_share
    batch_size = {edge: decision.edge_batch_size}
    memory_mb = {}
    if decision.serverless_batch_size:
        batch_size[serverless] = decision.serverless_batch_size
        memory_mb[serverless] = decision.serverless_memory_mb
    return Plan(
        batch_size=batch_size,
        memory_mb=memory_mb,
        weights=weights,
        feasible=decision.feasible,
        trigger=trigger,
        detail=detail,
    )


class _Placeholder(LatencyProfile):
    def mean_s(self, batch_size: int, memory_mb: int | None = None) -> float:
        return 1.0


_PLACEHOLDER_PROFILE = _Placeholder()
