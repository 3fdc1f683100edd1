"""A tail-latency-aware planner: the cheapest edge/serverless configuration
whose predicted p-th percentile latency meets the SLO."""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy.special import gammainc, gammaincinv

from policies.events import BatchFinished, Event
from policies.placement_base import ClusterView
from policies.plan import Plan
from policies.planning.edge_first import decision_to_plan
from policies.planning.triggers import ReplanningPlanner
from policies.planning.two_tier import (
    SEED_EDGE_BATCH_SIZES,
    SEED_MEMORY_SIZES_MB,
    SEED_REQUEST_SIZE_BYTES,
    SEED_SERVERLESS_BATCH_SIZES,
    check_grid,
    find_tiers,
)
from spec.links import MB
from spec.noise import LognormalNoise, NoNoise, ResidualNoise
from spec.pricing import ServerlessPricing
from spec.topology import ServerlessSpec, ServerSpec
from spec.validation import ConfigError, check_choice, check_int_at_least, check_non_negative, check_positive

__all__ = ["TailAwarePlanner", "TailAwareDecision", "gamma_cdf", "fill_moments", "erlang_c"]

CRITERIA = ("each", "mixture")


# -- the queueing model, vectorised --------------------------------------------------------------
def fill_moments(batch_size, rate_rps):
    """Mean and variance of the time a request waits for its batch to fill.

    ``batch_size`` requests arriving as a Poisson stream at ``rate_rps``: the
    request in position k (uniform on 1..b) waits for b - k more arrivals,
    an Erlang(b - k, rate) time. Mean ``(b-1)/(2 rate)``, variance
    ``((b-1)/2 + (b^2-1)/12) / rate^2`` (law of total variance).
    """
    b = np.asarray(batch_size, dtype=float)
    rate = np.asarray(rate_rps, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        mean = np.where(b > 1, (b - 1.0) / (2.0 * rate), 0.0)
        var = np.where(b > 1, ((b - 1.0) / 2.0 + (b * b - 1.0) / 12.0) / (rate * rate), 0.0)
    return mean, var


def erlang_c(servers: int, offered):
    """Probability of waiting in an M/M/c queue with ``servers`` and offered load ``offered`` (Erlangs).

    By the Erlang-B recursion; 1 where the load reaches the capacity.
    """
    a = np.asarray(offered, dtype=float)
    erlang_b = np.ones_like(a)
    for k in range(1, servers + 1):
        erlang_b = a * erlang_b / (k + a * erlang_b)
    rho = a / servers
    with np.errstate(divide="ignore", invalid="ignore"):
        c = erlang_b / (1.0 - rho * (1.0 - erlang_b))
    return np.where(rho < 1.0, np.clip(c, 0.0, 1.0), 1.0)


def gg_queue_moments(batch_rate, service_s, servers: int, ca2, cs2):
    """Mean and variance of the queueing delay of a batch at a G/G/c server
    (Allen-Cunneen: the M/M/c wait times ``(ca^2 + cs^2) / 2``; Kingman's
    formula when c = 1). The wait is 0 with probability ``1 - C`` and
    exponential otherwise. Infinite when utilisation reaches 1."""
    lam = np.asarray(batch_rate, dtype=float)
    s = np.asarray(service_s, dtype=float)
    offered = lam * s
    rho = offered / servers
    p_wait = erlang_c(servers, offered)
    with np.errstate(divide="ignore", invalid="ignore"):
        mean = p_wait * s / (servers * (1.0 - rho)) * (ca2 + cs2) / 2.0
        var = np.where(p_wait > 0, 2.0 * mean * mean / p_wait - mean * mean, 0.0)
    stable = rho < 1.0
    return np.where(stable, mean, np.inf), np.where(stable, var, np.inf)


def gamma_cdf(x, mean, var):
    """P(X <= x) for a gamma variable with this mean and variance (a point mass when var = 0)."""
    x = np.asarray(x, dtype=float)
    mean = np.asarray(mean, dtype=float)
    var = np.asarray(var, dtype=float)
    x, mean, var = np.broadcast_arrays(x, mean, var)
    out = np.zeros(x.shape)
    finite = np.isfinite(mean) & np.isfinite(var)
    point = finite & (var <= 0)
    out[point] = (mean[point] <= x[point]).astype(float)
    spread = finite & (var > 0) & (mean > 0) & (x > 0)
    shape = mean[spread] ** 2 / var[spread]
    scale = var[spread] / mean[spread]
    out[spread] = gammainc(shape, x[spread] / scale)
    return out


def gamma_ppf(p: float, mean: float, var: float) -> float:
    """The p-quantile of a gamma variable with this mean and variance."""
    if not (math.isfinite(mean) and math.isfinite(var)):
        return math.inf
    if var <= 0 or mean <= 0:
        return mean
    shape = mean * mean / var
    return float(gammaincinv(shape, p) * var / mean)


@dataclass(frozen=True, slots=True, kw_only=True)
class TailAwareDecision:
    """The configuration a ``TailAwarePlanner`` chose, and its predictions.

    Same fields as ``EdgeFirstDecision`` (serverless sizes 0 when edge only)
    plus the predicted p-quantile latency of each side used and overall.
    """

    feasible: bool
    edge_batch_size: int
    serverless_batch_size: int
    serverless_memory_mb: int
    edge_rate_rps: float
    serverless_rate_rps: float
    cost_per_s: float
    reason: str
    predicted_edge_p_s: float | None
    predicted_serverless_p_s: float | None
    predicted_p_s: float


@dataclass(frozen=True, kw_only=True)
class Evaluation:
    """Every candidate the planner scored (arrays of shape (edge, batch, memory, split))."""

    cost_per_s: np.ndarray
    meets: np.ndarray
    score: np.ndarray
    edge_share: np.ndarray
    choice: tuple[int, int, int, int]
    decision: TailAwareDecision


class TailAwarePlanner(ReplanningPlanner):
    """Our planner: the cheapest configuration (edge batch size, serverless
    batch and memory size, and the traffic split) whose predicted
    ``percentile`` latency meets ``slo_s``, under a queueing model.

    The model, per side (edge: rate ``f R``, batch ``b``; serverless: rate
    ``(1-f) R``, batch ``b``, memory ``m``), with requests arriving as a
    Poisson stream:

    - batch fill: a request waits for the rest of its batch, an Erlang
      mixture (``fill_moments``);
    - edge queueing: batches arrive every ``b`` requests (inter-batch squared
      CV ``arrival_cv^2 / b``) at a server with ``slots`` parallel slots;
      Allen-Cunneen / Kingman G/G/c wait (``gg_queue_moments``);
    - serverless: no queueing (elastic instances, warm; cold starts are not
      modelled), but infeasible beyond ``max_instances`` busy instances; the
      uplink is a G/D/1 queue of batch uploads (``b`` requests of
      ``request_size_bytes`` at bandwidth ``B``, plus the link's delay);
      infeasible when its utilisation reaches 1 or B is 0;
    - service: the profile's mean with coefficient of variation
      ``service_cv`` (None: from the executor's noise model);
    - the components are independent; their sum (less the deterministic
      transfer) is fitted by a gamma distribution with the same mean and
      variance, whose CDF at the SLO gives ``P(latency <= slo_s)``.

    ``criterion="each"`` requires every side that carries traffic to meet
    the percentile on its own; ``"mixture"`` requires the traffic-weighted
    mixture to (the exact meaning of an overall percentile, but it may
    sacrifice a small side). Cost per second is the executors' pricing
    (``batch_cost`` per batch times batches per second; ``price_per_gb_s``
    overrides the serverless price). The split ``f`` runs over
    ``split_steps + 1`` even fractions. Ties go to the higher probability of
    meeting the SLO, then to smaller sizes. When nothing meets it, the plan
    is the one with the largest predicted share of all requests in time
    (the mixture's CDF at the SLO), with ``feasible=False``.

    Prediction record: each plan opens one entry per executor it uses, with
    the predicted mean and ``percentile`` of its batch service time; the
    service times of ``BatchFinished`` events are collected against it, and
    the next plan closes it with the observed mean and percentile (None
    when no batch finished). ``prediction_log`` holds the closed entries;
    each plan's ``detail["prediction_log"]`` the last ``log_in_detail``.
    Observed batches may be smaller than planned (a batch released by its
    wait bound), which the comparison does not correct for.

    Parameters: ``slo_s`` (seconds, > 0), ``nominal_rate_rps`` (> 0),
    ``percentile`` (in (0, 1), default 0.95), ``criterion`` ("each" or
    "mixture"), ``request_size_bytes``, ``edge_batch_sizes``,
    ``serverless_batch_sizes``, ``memory_sizes_mb`` (grids, seed defaults),
    ``split_steps`` (>= 1), ``service_cv`` (>= 0 or null), ``arrival_cv``
    (> 0), ``price_per_gb_s`` (null: the executor's), ``edge_executor`` /
    ``serverless_executor`` (null: found by kind), ``log_in_detail`` (>= 0)
    and the trigger settings of ``ReplanningPlanner``.
    """

    def __init__(
        self,
        *,
        slo_s: float,
        nominal_rate_rps: float,
        percentile: float = 0.95,
        criterion: str = "each",
        request_size_bytes: int = SEED_REQUEST_SIZE_BYTES,
        edge_batch_sizes: Sequence[int] = SEED_EDGE_BATCH_SIZES,
        serverless_batch_sizes: Sequence[int] = SEED_SERVERLESS_BATCH_SIZES,
        memory_sizes_mb: Sequence[int] = SEED_MEMORY_SIZES_MB,
        split_steps: int = 50,
        service_cv: float | None = None,
        arrival_cv: float = 1.0,
        price_per_gb_s: float | None = None,
        edge_executor: str | None = None,
        serverless_executor: str | None = None,
        log_in_detail: int = 10,
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
        self.slo_s = check_positive("planner.slo_s", slo_s)
        self.percentile = check_positive("planner.percentile", percentile)
        if not self.percentile < 1.0:
            raise ConfigError("planner.percentile", percentile, "a fraction in (0, 1), e.g. 0.95")
        self.criterion = check_choice("planner.criterion", criterion, CRITERIA)
        self.request_size_bytes = check_int_at_least("planner.request_size_bytes", request_size_bytes, 0)
        self.edge_batch_sizes = check_grid("planner.edge_batch_sizes", edge_batch_sizes)
        self.serverless_batch_sizes = check_grid("planner.serverless_batch_sizes", serverless_batch_sizes)
        self.memory_sizes_mb = check_grid("planner.memory_sizes_mb", memory_sizes_mb)
        self.split_steps = check_int_at_least("planner.split_steps", split_steps, 1)
        self.service_cv = None if service_cv is None else check_non_negative("planner.service_cv", service_cv)
        self.arrival_cv = check_positive("planner.arrival_cv", arrival_cv)
        self.price_per_gb_s = None if price_per_gb_s is None else check_non_negative("planner.price_per_gb_s", price_per_gb_s)
        self.edge_executor = edge_executor
        self.serverless_executor = serverless_executor
        self.log_in_detail = check_int_at_least("planner.log_in_detail", log_in_detail, 0)
        #: closed prediction-vs-observation entries, oldest first (the last 1000)
        self.prediction_log: deque[dict] = deque(maxlen=1000)
        self._open: dict[str, dict] = {}
        self._samples: dict[str, list[float]] = {}

    # -- wiring ----------------------------------------------------------------------------------
    def bind(self, view: ClusterView) -> None:
        super().bind(view)
        edge, serverless = find_tiers(view, "planner", self.edge_executor, self.serverless_executor)
        self.edge_executor, self.serverless_executor = edge, serverless
        self.bandwidth_executor = serverless
        edge_spec, sl_spec = view.executors[edge], view.executors[serverless]
        self._edge_slots = edge_spec.slots if isinstance(edge_spec, ServerSpec) else 1
        self._max_instances = sl_spec.max_instances if isinstance(sl_spec, ServerlessSpec) else 1
        self._edge_cv = self._cv_of(edge_spec)
        self._serverless_cv = self._cv_of(sl_spec)
        if self.price_per_gb_s is not None:
            self._serverless_pricing = ServerlessPricing(price_per_gb_s=self.price_per_gb_s)
        else:
            self._serverless_pricing = sl_spec.pricing
        link = view.links.get(serverless)
        self._link_delay_s = 0.0 if link is None else link.delay_s

    def _cv_of(self, spec) -> float:
        if self.service_cv is not None:
            return self.service_cv
        noise = spec.noise
        if isinstance(noise, NoNoise):
            return 0.0
        if isinstance(noise, LognormalNoise):
            return noise.cv
        if isinstance(noise, ResidualNoise):
            return float(np.std(noise.ratios))
        raise ConfigError("planner.service_cv", None, f"a number, since {spec.name!r} has a {type(noise).__name__}")

    # -- the model over the whole decision space ----------------------------------------------------
    def _edge_side(self, rate: float, shares: np.ndarray):
        """Mean, variance of edge latency and cost per second, shape (edge batches, splits)."""
        spec = self.view.executors[self.edge_executor]
        b = np.asarray(self.edge_batch_sizes, dtype=float)[:, None]
        lam = rate * shares[None, :]
        service = np.array([spec.mean_service_s(int(x)) for x in self.edge_batch_sizes])[:, None]
        fill_m, fill_v = fill_moments(b, lam)
        cs2 = self._edge_cv**2
        q_m, q_v = gg_queue_moments(lam / b, service, self._edge_slots, self.arrival_cv**2 / b, cs2)
        mean = fill_m + q_m + service
        var = fill_v + q_v + cs2 * service**2
        batch_cost = np.array(
            [spec.pricing.batch_cost(duration_s=float(s), memory_mb=None) for s in service[:, 0]]
        )[:, None]
        cost = lam / b * batch_cost
        return mean, var, np.zeros_like(mean), cost

    def _serverless_side(self, rate: float, shares: np.ndarray, bandwidth: float):
        """Mean, variance, deterministic part and cost, shape (batches, memories, splits)."""
        spec = self.view.executors[self.serverless_executor]
        b = np.asarray(self.serverless_batch_sizes, dtype=float)[:, None, None]
        mem = self.memory_sizes_mb
        lam = rate * (1.0 - shares)[None, None, :]
        service = np.array([[spec.mean_service_s(int(x), m) for m in mem] for x in self.serverless_batch_sizes])[:, :, None]
        fill_m, fill_v = fill_moments(b, lam)
        cs2 = self._serverless_cv**2
        mean = fill_m + service
        var = fill_v + cs2 * service**2
        # elastic instances: infeasible only beyond max_instances busy at once
        busy = lam / b * service
        mean = np.where(busy < self._max_instances, mean, np.inf)
        # the uplink: batch uploads in FIFO order (G/D/1, Kingman)
        size_mb = self.request_size_bytes / MB
        if size_mb == 0 or math.isinf(bandwidth):
            upload = np.zeros_like(b)
            link_m = np.zeros_like(mean)
            link_v = np.zeros_like(mean)
        elif bandwidth <= 0:
            upload = np.full_like(b, np.inf)
            link_m = np.full_like(mean, np.inf)
            link_v = np.full_like(mean, np.inf)
        else:
            upload = size_mb * b / bandwidth
            link_m, link_v = gg_queue_moments(lam / b, upload, 1, self.arrival_cv**2 / b, 0.0)
        mean = mean + link_m
        var = var + link_v
        fixed = upload + self._link_delay_s
        pricing = self._serverless_pricing
        batch_cost = np.array(
            [[pricing.batch_cost(duration_s=float(service[i, j, 0]), memory_mb=m) for j, m in enumerate(mem)] for i in range(len(b))]
        )[:, :, None]
        cost = lam / b * batch_cost
        return mean, var, np.broadcast_to(fixed, mean.shape), cost

    def evaluate(self, *, rate_rps: float, bandwidth_MBps: float) -> Evaluation:
        """Score every configuration and choose one (needs a bound planner)."""
        if self.view is None:
            raise ConfigError("planner", "unbound", "a planner bound to a cluster (it reads profiles and pricing)")
        rate = float(rate_rps)
        bandwidth = float(bandwidth_MBps)
        if not math.isfinite(rate) or rate < 0:
            raise ConfigError("planner.rate_rps", rate_rps, "a finite rate >= 0")
        if math.isnan(bandwidth) or bandwidth < 0:
            raise ConfigError("planner.bandwidth_MBps", bandwidth_MBps, "a bandwidth >= 0 (inf: no link)")
        rate = max(rate, 1e-9)  # an idle system is planned as a very light one
        T, p = self.slo_s, self.percentile
        shares = np.linspace(0.0, 1.0, self.split_steps + 1)
        e_m, e_v, _, e_cost = self._edge_side(rate, shares)
        s_m, s_v, s_fixed, s_cost = self._serverless_side(rate, shares, bandwidth)
        f_edge = gamma_cdf(T, e_m, e_v)  # (E, F)
        f_sl = gamma_cdf(T - s_fixed, s_m, s_v)  # (S, M, F)
        used_edge = shares > 0
        used_sl = shares < 1
        f_edge = np.where(used_edge[None, :], f_edge, 1.0)
        f_sl = np.where(used_sl[None, None, :], f_sl, 1.0)
        fe = f_edge[:, None, None, :]
        fs = f_sl[None, :, :, :]
        w = shares[None, None, None, :]
        mixture = w * fe + (1.0 - w) * fs
        if self.criterion == "each":
            meets = (fe >= p) & (fs >= p)
            score = np.minimum(fe, fs)
        else:
            meets = mixture >= p
            score = mixture
        e_cost = np.where(used_edge[None, :], e_cost, 0.0)
        s_cost = np.where(used_sl[None, None, :], s_cost, 0.0)
        cost = e_cost[:, None, None, :] + s_cost[None, :, :, :]
        shape = cost.shape
        idx = np.indices(shape)
        # preference: cheapest, then most likely in time, then smaller sizes, more edge
        keys = (
            -shares[idx[3]].ravel(),
            idx[2].ravel(),
            idx[1].ravel(),
            idx[0].ravel(),
            -score.ravel(),
            np.where(np.isfinite(cost), cost, np.inf).ravel(),
        )
        if meets.any():
            order = np.lexsort(keys)
            flat_meets = meets.ravel()[order]
            best = int(order[np.argmax(flat_meets)])
            feasible = True
        else:
            # nothing meets the target: the largest share of all traffic in time, then the cheapest
            order = np.lexsort(keys[:-2] + (np.where(np.isfinite(cost), cost, np.inf).ravel(), -score.ravel(), -mixture.ravel()))
            best = int(order[0])
            feasible = False
        i, j, k, l = np.unravel_index(best, shape)
        share = float(shares[l])
        edge_p = self._side_quantile(e_m[i, l], e_v[i, l], 0.0) if share > 0 else None
        sl_p = self._side_quantile(s_m[j, k, l], s_v[j, k, l], float(s_fixed[j, k, l])) if share < 1 else None
        overall = self._mixture_quantile(share, (e_m[i, l], e_v[i, l]), (s_m[j, k, l], s_v[j, k, l], float(s_fixed[j, k, l])))
        edge_only = share >= 1.0
        decision = TailAwareDecision(
            feasible=feasible,
            edge_batch_size=int(self.edge_batch_sizes[i]) if share > 0 else int(self.edge_batch_sizes[0]),
            serverless_batch_size=0 if edge_only else int(self.serverless_batch_sizes[j]),
            serverless_memory_mb=0 if edge_only else int(self.memory_sizes_mb[k]),
            edge_rate_rps=float(rate * share),
            serverless_rate_rps=float(rate * (1.0 - share)),
            cost_per_s=float(cost[i, j, k, l]),
            reason=("edge_only" if edge_only else "split") if feasible else f"no configuration meets p{p * 100:g} <= {T} s",
            predicted_edge_p_s=edge_p,
            predicted_serverless_p_s=sl_p,
            predicted_p_s=overall,
        )
        return Evaluation(
            cost_per_s=cost, meets=meets, score=score, edge_share=shares, choice=(int(i), int(j), int(k), int(l)), decision=decision
        )

    def _side_quantile(self, mean: float, var: float, fixed: float) -> float:
        return float(fixed + gamma_ppf(self.percentile, float(mean), float(var)))

    def _mixture_quantile(self, share: float, edge, serverless) -> float:
        """The p-quantile of all requests' latency (the traffic-weighted mixture), by bisection."""
        p = self.percentile

        def cdf(t: float) -> float:
            total = 0.0
            if share > 0:
                total += share * float(gamma_cdf(t, edge[0], edge[1]))
            if share < 1:
                total += (1.0 - share) * float(gamma_cdf(t - serverless[2], serverless[0], serverless[1]))
            return total

        hi = max(self.slo_s, 1e-3)
        while cdf(hi) < p:
            hi *= 2.0
            if hi > 1e9:
                return math.inf
        lo = 0.0
        for _ in range(60):
            mid = 0.5 * (lo + hi)
            if cdf(mid) >= p:
                hi = mid
            else:
                lo = mid
        return hi

    def plan(self, *, rate_rps: float, bandwidth_MBps: float) -> TailAwareDecision:
        """The chosen configuration for this load and bandwidth."""
        return self.evaluate(rate_rps=rate_rps, bandwidth_MBps=bandwidth_MBps).decision

    # -- planning and the prediction record ------------------------------------------------------------
    def make_plan(self, now_s: float, trigger: str) -> Plan:
        rate, bandwidth = self.rate_rps, self.bandwidth_MBps
        decision = self.plan(rate_rps=rate, bandwidth_MBps=bandwidth)
        self._close_entries(now_s)
        self._open_entries(now_s, decision)
        detail = {
            "planner": "tail_aware",
            "rate_rps": rate,
            "bandwidth_MBps": bandwidth,
            "percentile": self.percentile,
            "feasible": decision.feasible,
            "edge_batch_size": decision.edge_batch_size,
            "serverless_batch_size": decision.serverless_batch_size,
            "serverless_memory_mb": decision.serverless_memory_mb,
            "edge_rate_rps": decision.edge_rate_rps,
            "serverless_rate_rps": decision.serverless_rate_rps,
            "cost_per_s": decision.cost_per_s,
            "reason": decision.reason,
            "predicted_edge_p_s": decision.predicted_edge_p_s,
            "predicted_serverless_p_s": decision.predicted_serverless_p_s,
            "predicted_p_s": decision.predicted_p_s,
        }
        if self.log_in_detail:
            detail["prediction_log"] = tuple(dict(e) for e in list(self.prediction_log)[-self.log_in_detail :])
        return decision_to_plan(
            decision, view=self.view, edge=self.edge_executor, serverless=self.serverless_executor, trigger=trigger, detail=detail
        )

    def observe_event(self, event: Event) -> None:
        if isinstance(event, BatchFinished):
            samples = self._samples.get(event.executor)
            if samples is not None and len(samples) < 100_000:
                samples.append(float(event.service_s))

    def _open_entries(self, now_s: float, decision: TailAwareDecision) -> None:
        self._open = {}
        self._samples = {}
        sides = []
        if decision.edge_rate_rps > 0 or decision.serverless_batch_size == 0:
            sides.append((self.edge_executor, decision.edge_batch_size, None, self._edge_cv))
        if decision.serverless_batch_size:
            sides.append((self.serverless_executor, decision.serverless_batch_size, decision.serverless_memory_mb, self._serverless_cv))
        for name, b, m, cv in sides:
            mean = self.view.executors[name].mean_service_s(b, m)
            self._open[name] = {
                "plan_at_s": now_s,
                "executor": name,
                "batch_size": b,
                "memory_mb": m,
                "predicted_service_mean_s": mean,
                "predicted_service_p_s": gamma_ppf(self.percentile, mean, (cv * mean) ** 2),
            }
            self._samples[name] = []

    def _close_entries(self, now_s: float) -> None:
        for name, entry in self._open.items():
            samples = self._samples.get(name, [])
            record = dict(entry)
            record["until_s"] = now_s
            record["observed_batches"] = len(samples)
            if samples:
                values = np.asarray(samples)
                record["observed_service_mean_s"] = float(values.mean())
                record["observed_service_p_s"] = float(np.quantile(values, self.percentile))
            else:
                record["observed_service_mean_s"] = None
                record["observed_service_p_s"] = None
            self.prediction_log.append(record)
        self._open = {}
        self._samples = {}

    @property
    def open_predictions(self) -> list[dict]:
        """The entries of the current plan, with what has been observed so far."""
        out = []
        for name, entry in self._open.items():
            samples = self._samples.get(name, [])
            record = dict(entry, observed_batches=len(samples))
            record["observed_service_mean_s"] = float(np.mean(samples)) if samples else None
            out.append(record)
        return out
