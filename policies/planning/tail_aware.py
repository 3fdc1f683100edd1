"""A tail-latency-aware planner: the cheapest edge/serverless configuration
whose predicted p-th percentile latency meets the SLO."""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy.special import gammainc, gammaincinv, ndtr

from policies.events import ArrivalRateMeasured, BandwidthMeasured, BatchFinished, Event
from policies.placement.base import ClusterView
from policies.plan import Plan
from policies.planning.edge_first import decision_to_plan
from policies.planning.replanning import ReplanningPlanner
from policies.planning.service_noise import ServiceNoiseEstimate
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
from spec.topology import ServerlessSpec, ServerSpec
from spec.validation import (
    ConfigError,
    check_choice,
    check_int_at_least,
    check_non_negative,
    check_positive,
    check_probability,
)

__all__ = [
    "TailAwareDecision",
    "TailAwarePlanner",
    "erlang_c",
    "fill_moments",
    "gamma_cdf",
    "gg_queue_moments",
    "greedy_moments",
    "truncated_fill_moments",
]

CRITERIA = ("each", "mixture")
#: when no plan meets the target, a change of memory size must bring this much more of the traffic in time
MEMORY_SWITCH_GAIN = 0.01
EDGE_DISPATCH = ("auto", "fill", "when_free")


def _below_one(field: str, raw, check, expected: str) -> float:
    """``raw`` through ``check`` (``check_positive`` or ``check_non_negative``), refused unless below 1."""
    value = check(field, raw)
    if not value < 1.0:
        raise ConfigError(field, raw, expected)
    return value


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


def truncated_fill_moments(batch_sizes: Sequence[int], rate_rps, max_wait_s: float):
    """``fill_moments`` when a partial batch leaves ``max_wait_s`` after its first request.

    The request in position k waits ``min(Erlang(b - k, rate), max_wait_s)``
    (the bound is counted from the batch's first request, so this is the
    worst case for later positions); moments of the truncated gamma from the
    regularised incomplete gamma function. Shape ``(len(batch_sizes),) +
    shape(rate_rps)``. ``max_wait_s`` infinite: ``fill_moments``.
    """
    sizes = np.asarray(batch_sizes, dtype=float)
    rate = np.asarray(rate_rps, dtype=float)
    if not math.isfinite(max_wait_s):
        return fill_moments(sizes.reshape(sizes.shape + (1,) * rate.ndim), rate)
    w = float(max_wait_s)
    kmax = int(sizes.max())
    shape_k = np.arange(1, kmax, dtype=float)  # Erlang shapes 1..b-1 (position b waits 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        theta = 1.0 / rate  # (...)
        x = w * rate  # w / theta
        xr = np.asarray(x)[..., None]
        k = shape_k.reshape((1,) * rate.ndim + (-1,))
        th = np.asarray(theta)[..., None]
        tail = 1.0 - gammainc(k, xr)
        m1 = k * th * gammainc(k + 1.0, xr) + w * tail
        m2 = k * (k + 1.0) * th * th * gammainc(k + 2.0, xr) + w * w * tail
    m1 = np.where(np.isfinite(m1), m1, w)
    m2 = np.where(np.isfinite(m2), m2, w * w)
    c1 = np.concatenate([np.zeros(m1.shape[:-1] + (1,)), np.cumsum(m1, axis=-1)], axis=-1)
    c2 = np.concatenate([np.zeros(m2.shape[:-1] + (1,)), np.cumsum(m2, axis=-1)], axis=-1)
    means, variances = [], []
    for b in sizes.astype(int):
        e1 = c1[..., b - 1] / b  # positions 1..b wait shapes b-1..0
        e2 = c2[..., b - 1] / b
        means.append(e1)
        variances.append(np.maximum(e2 - e1 * e1, 0.0))
    return np.stack(means), np.stack(variances)


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


def greedy_moments(rate_rps, base_s: float, per_item_s: float, cs2: float):
    """Latency at one server that takes everything queued (up to a cap) whenever it is free.

    Service of a batch of b is ``base_s + per_item_s b``. With Poisson
    arrivals at rate ``lam`` the size of the next batch is the number that
    arrived while the last one ran: ``b' = lam S(b) + noise`` (variance
    ``lam S(b)``), an AR(1) process with coefficient ``phi = lam per_item_s``,
    stationary mean ``m = lam base_s / (1 - phi)`` and variance
    ``v = m / (1 - phi^2)``. A request arrives during a batch of service
    ``X`` (length-biased: mean ``mu + s^2/mu`` for batch service mean ``mu``
    and variance ``s^2 = per_item_s^2 v``), waits a uniform fraction ``U``
    of it, then runs in the next batch, of service ``base_s + phi X`` plus
    noise: latency ``L = (U + phi) X + base_s``. Returns the mean and
    variance of ``L`` (service noise of squared CV ``cs2`` added) and the
    batch size's mean and standard deviation; all infinite where
    ``phi >= 1``.
    """
    lam = np.asarray(rate_rps, dtype=float)
    a, c = float(base_s), float(per_item_s)
    phi = lam * c
    stable = phi < 1.0
    with np.errstate(divide="ignore", invalid="ignore"):
        m = np.where(stable, lam * a / (1.0 - phi), np.inf)
        v = np.where(stable, m / (1.0 - phi * phi), np.inf)
        mu = a + c * m
        s2 = c * c * v
        ex = mu + s2 / np.where(mu > 0, mu, 1.0)
        ex2 = mu * mu + 3.0 * s2
        mean = (0.5 + phi) * ex + a
        own = a + phi * ex
        var = (1.0 / 3.0 + phi + phi * phi) * ex2 - ((0.5 + phi) * ex) ** 2 + c * c * lam * ex + cs2 * (ex2 / 3.0 + own * own)
    var = np.maximum(var, 0.0)
    inf = np.full_like(mean, np.inf)
    return (
        np.where(stable, mean, inf),
        np.where(stable, var, inf),
        np.where(stable, m, inf),
        np.where(stable, np.sqrt(v), inf),
    )


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


def _finite_or_none(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


@dataclass(frozen=True, slots=True, kw_only=True)
class TailAwareDecision:
    """The configuration a ``TailAwarePlanner`` chose, and its predictions.

    Same fields as ``EdgeFirstDecision`` (serverless sizes 0 when edge only)
    plus the predicted p-quantile latency of each side used and overall,
    and ``predicted_in_time`` (the predicted share of all requests within
    the SLO). ``overloaded``: the chosen configuration is predicted to fall
    behind (a side used at or beyond its capacity), so its latency has no
    finite percentile: the plan is a best effort and the predicted
    percentiles are None, never infinite. The rates are the expected ones
    (the plan was checked at a higher, planning rate: see
    ``TailAwarePlanner``).
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
    predicted_p_s: float | None
    predicted_in_time: float = 1.0
    overloaded: bool = False


@dataclass(frozen=True, kw_only=True)
class Evaluation:
    """Every candidate the planner scored (arrays of shape (edge, batch, memory, split))."""

    cost_per_s: np.ndarray
    meets: np.ndarray
    score: np.ndarray
    edge_share: np.ndarray
    choice: tuple[int, int, int, int]
    decision: TailAwareDecision
    #: P(latency <= slo) of each side: edge (edge, split), serverless (batch, memory, split); 1 where unused
    edge_in_time: np.ndarray | None = None
    serverless_in_time: np.ndarray | None = None
    #: whether the uplink's capacity holds the offloaded bytes (batch, memory, split)
    link_fits: np.ndarray | None = None
    #: the rate the latencies were checked at (expected rate plus the margin)
    planning_rate_rps: float = 0.0
    #: the bandwidths the uplink was checked at (their mean: the link's capacity)
    bandwidth_scenarios_MBps: tuple[float, ...] = ()
    #: requests queued or running at the edge when the plan was made
    edge_backlog: int = 0
    #: requests held up on the uplink when the plan was made
    link_backlog: int = 0


class TailAwarePlanner(ReplanningPlanner):
    """Our planner: the cheapest configuration (edge batch size, serverless
    batch and memory size, and the traffic split) whose predicted
    ``percentile`` latency meets ``slo_s``, under a queueing model.

    Inputs, at each plan: the expected arrival rate ``R`` (the mean of the
    last ``estimate_window`` rate samples); the last ``bandwidth_history``
    uplink samples, used as equally likely bandwidth *scenarios* (an outage
    is a scenario of 0); the edge's backlog (requests queued or running
    there); the uplink's backlog (requests in flight to the serverless
    executor beyond what the current plan keeps in flight: a batch forming
    plus the rate times upload, delays and service); and the memory size in
    use. Latencies are checked at a *planning rate* ``R + rate_z * sigma``,
    ``sigma`` being the spread of the last ``rate_history`` rate samples
    beyond what Poisson counting gives (``sqrt(max(0, var - mean / sample
    period))``: the trace's bursts); ``rate_z = 0`` (the default) plans for
    ``R``, and when nothing holds at the planning rate the plan is made for
    ``R``. Costs are counted at ``R``.

    The model, per side (edge: rate ``f R``, serverless: ``(1-f) R``):

    - edge, when batches form only while the edge is free
      (``edge_dispatch="when_free"``: a batching policy with ``max_inflight``
      set, e.g. ``TimeoutBatching(max_inflight="executor", max_wait_s=0)``;
      ``"auto"`` reads the edge's batching policy; one slot): the plan's edge
      batch size is a cap and the batch is whatever queued while the last
      one ran (``greedy_moments``: an AR(1) model of batch sizes, with the
      profile fitted by a line). ``P(latency <= slo_s)`` is the gamma CDF of
      that latency times the probability that the batch size stays under
      the cap (normal; a capped edge falls behind); infeasible when the cap's
      throughput ``cap / S(cap)`` is reached. Batches grow with the load and
      a larger batch is cheaper per request, so a larger cap never hurts:
      the largest cap is preferred. Checked against the simulator (Poisson
      arrivals, seed edge profile, 60 to 110 req/s): mean and p95 within
      about 5 %, slightly low;
    - edge, when every batch fills to its planned size
      (``edge_dispatch="fill"``): batch fill as an Erlang mixture
      (``fill_moments``), batches arriving every ``b`` requests (squared CV
      ``arrival_cv^2 / b``) at ``slots`` parallel slots: Allen-Cunneen /
      Kingman G/G/c wait;
    - the edge's backlog beyond one batch (cap) is extra load, drained within
      ``period_s``;
    - serverless: batch fill as an Erlang mixture truncated at the
      serverless batching policy's ``max_wait_s`` (``truncated_fill_moments``);
      no queueing at the instances (elastic; cold starts are not modelled)
      but infeasible beyond ``max_instances`` busy; the uplink is a FIFO
      G/D/1 queue of batch uploads (``b`` requests of ``request_size_bytes``;
      Kingman), taken in each bandwidth scenario with the uplink's backlog
      sent first (and drained within ``period_s``), plus the link's delay
      there and back; a scenario whose utilisation reaches 1, or an outage,
      contributes 0 in time; ``P(latency <= slo_s)`` is the scenarios'
      mean;
    - *link capacity*: a plan that offloads more bytes per second (backlog
      drain included) than ``link_utilisation`` times the scenarios' mean
      bandwidth does not meet the target, whatever its predicted latency;
    - service: the profile's mean with the coefficient of variation the
      planner has measured for that executor and batch size (and memory
      size) from finished batches (``ServiceNoiseEstimate``: per size once
      ``noise_min_samples`` batches of it finished, else the executor's
      pooled figure, else the prior ``service_cv``); never the simulator's
      noise settings;
    - the components of a side are independent; their sum (less the
      deterministic transfer) is fitted by a gamma distribution with the same
      mean and variance, whose CDF at the SLO gives ``P(latency <= slo_s)``.

    ``criterion="each"`` requires every side that carries traffic to meet
    the percentile on its own; ``"mixture"`` requires the traffic-weighted
    mixture to (the exact meaning of an overall percentile), with every
    side that carries traffic still delivering at least ``side_floor`` of
    its requests in time (paying for a side that mostly misses is never
    worth it). Cost per second is the executors' pricing (``batch_cost``
    per batch times batches per second; ``price_per_gb_s`` overrides the
    serverless price). The split ``f`` runs over ``split_steps + 1`` even
    fractions. Choice among those that meet the target: the cheapest (the
    edge is free, so the edge takes all it can first), then the larger edge
    share, the higher probability of meeting the SLO, the larger edge cap
    under ``when_free`` (the smaller batch under ``fill``), the smaller
    serverless batch and memory size. Memory stickiness: instances have a
    fixed memory size, so a new size means new cold instances; the memory
    size in use is kept unless another is cheaper by more than
    ``memory_switch_saving`` (a fraction). When nothing meets the target
    (``feasible=False``): the largest predicted share of all requests in time
    (the mixture's CDF at the SLO, to 0.001; a change of memory size must add
    ``MEMORY_SWITCH_GAIN``), then the serverless configuration with the
    shortest latency before the uplink, then the cheapest. A best effort
    predicted to fall behind says so (``overloaded``, with the predicted
    share in time ``predicted_in_time``) and predicts no percentile (None,
    never infinity).

    Re-plans: ``ReplanningPlanner``'s trigger (any plan restarts the
    period), plus, with
    ``overload_replan``, an early re-plan (trigger ``"overload"``, at most
    one per ``overload_gap_s``) when a rate sample shows the edge taking
    more than the most the model lets it take within the percentile at its
    cap (``edge_limit_rps``), or the edge's backlog exceeds two caps.

    Prediction record: each plan's detail carries ``percentile``, ``slo_s``
    and ``predicted_p_s``, which both backends' summaries check against the
    requests of the plan's window (``spec.predictions``). Service times: each plan opens one entry per executor it uses, with
    the predicted mean batch size and the mean and ``percentile`` of its
    batch service time (a ``when_free`` edge: at the AR(1) model's batch
    size for the plan's edge rate, not the cap); the
    service times of ``BatchFinished`` events are collected against it, and
    the next plan closes it with the observed mean and percentile (None
    when no batch finished). ``prediction_log`` holds the closed entries;
    each plan's ``detail["prediction_log"]`` the last ``log_in_detail``.
    Observed batches may be smaller than planned (a batch released by its
    wait bound, or an edge batch under its cap), which the comparison does
    not correct for.

    Parameters: ``slo_s`` (seconds, > 0), ``nominal_rate_rps`` (> 0),
    ``percentile`` (in (0, 1), default 0.95), ``criterion`` ("each" or
    "mixture"), ``request_size_bytes``, ``edge_batch_sizes``,
    ``serverless_batch_sizes``, ``memory_sizes_mb`` (grids, seed defaults),
    ``split_steps`` (>= 1), ``service_cv`` (the prior CV, >= 0; null: 0),
    ``noise_min_samples`` (>= 2), ``arrival_cv``
    (> 0), ``price_per_gb_s`` (null: the executor's), ``edge_dispatch``
    ("auto", "fill" or "when_free"), ``rate_z`` (>= 0), ``rate_history``
    (samples, >= 2), ``bandwidth_history`` (samples, >= 1),
    ``link_utilisation`` (in (0, 1]), ``memory_switch_saving`` (in [0, 1)),
    ``overload_replan`` (bool), ``overload_gap_s`` (> 0), ``side_floor``
    (in [0, 1]), ``edge_executor`` / ``serverless_executor`` (null: found by
    kind), ``log_in_detail`` (>= 0) and the trigger settings of
    ``ReplanningPlanner``.
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
        service_cv: float | None = 0.0,
        noise_min_samples: int = 20,
        arrival_cv: float = 1.0,
        price_per_gb_s: float | None = None,
        edge_dispatch: str = "auto",
        rate_z: float = 0.0,
        rate_history: int = 30,
        bandwidth_history: int = 10,
        link_utilisation: float = 0.8,
        memory_switch_saving: float = 0.25,
        overload_replan: bool = False,
        overload_gap_s: float = 1.0,
        side_floor: float = 0.5,
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
        self.percentile = _below_one("planner.percentile", percentile, check_positive, "a fraction in (0, 1), e.g. 0.95")
        self.criterion = check_choice("planner.criterion", criterion, CRITERIA)
        self.request_size_bytes = check_int_at_least("planner.request_size_bytes", request_size_bytes, 0)
        self.edge_batch_sizes = check_grid("planner.edge_batch_sizes", edge_batch_sizes)
        self.serverless_batch_sizes = check_grid("planner.serverless_batch_sizes", serverless_batch_sizes)
        self.memory_sizes_mb = check_grid("planner.memory_sizes_mb", memory_sizes_mb)
        self.split_steps = check_int_at_least("planner.split_steps", split_steps, 1)
        self.service_cv = 0.0 if service_cv is None else check_non_negative("planner.service_cv", service_cv)
        self.noise_min_samples = check_int_at_least("planner.noise_min_samples", noise_min_samples, 2)
        self.arrival_cv = check_positive("planner.arrival_cv", arrival_cv)
        self.price_per_gb_s = None if price_per_gb_s is None else check_non_negative("planner.price_per_gb_s", price_per_gb_s)
        self.edge_dispatch = check_choice("planner.edge_dispatch", edge_dispatch, EDGE_DISPATCH)
        self.rate_z = check_non_negative("planner.rate_z", rate_z)
        self.rate_history = check_int_at_least("planner.rate_history", rate_history, 2)
        self.bandwidth_history = check_int_at_least("planner.bandwidth_history", bandwidth_history, 1)
        self.link_utilisation = check_positive("planner.link_utilisation", link_utilisation)
        if self.link_utilisation > 1.0:
            raise ConfigError("planner.link_utilisation", link_utilisation, "a fraction in (0, 1]")
        self.memory_switch_saving = _below_one(
            "planner.memory_switch_saving", memory_switch_saving, check_non_negative, "a fraction in [0, 1)"
        )
        if not isinstance(overload_replan, bool):
            raise ConfigError("planner.overload_replan", overload_replan, "true or false")
        self.overload_replan = overload_replan
        self.overload_gap_s = check_positive("planner.overload_gap_s", overload_gap_s)
        self.side_floor = check_probability("planner.side_floor", side_floor)
        self.edge_executor = edge_executor
        self.serverless_executor = serverless_executor
        self.log_in_detail = check_int_at_least("planner.log_in_detail", log_in_detail, 0)
        self._init_run_state()

    def _init_run_state(self) -> None:
        # what the planner learns while it runs (samples, predictions, the plan in force); set
        # once the settings are checked, since the sample windows are sized by them
        #: closed prediction-vs-observation entries, oldest first (the last 1000)
        self.prediction_log: deque[dict] = deque(maxlen=1000)
        self._open: dict[str, dict] = {}
        self._samples: dict[str, list[float]] = {}
        self._rate_samples: deque[tuple[float, float]] = deque(maxlen=self.rate_history)
        self._bandwidth_samples: deque[float] = deque(maxlen=self.bandwidth_history)
        self._last_plan_s = -math.inf
        #: the expected edge share and the most the edge may take (req/s) under the current plan
        self._edge_share = 1.0
        self._edge_limit_rps = math.inf
        self._edge_cap = None
        self._memory_mb: int | None = None

    # -- wiring ----------------------------------------------------------------------------------
    def bind(self, view: ClusterView) -> None:
        super().bind(view)
        edge, serverless = find_tiers(view, "planner", self.edge_executor, self.serverless_executor)
        self.edge_executor, self.serverless_executor = edge, serverless
        self.bandwidth_executor = serverless
        edge_spec, sl_spec = view.executors[edge], view.executors[serverless]
        self._edge_slots = edge_spec.slots if isinstance(edge_spec, ServerSpec) else 1
        self._max_instances = sl_spec.max_instances if isinstance(sl_spec, ServerlessSpec) else 1
        #: service-time noise, measured from the batches that finish (observe_batch)
        self.noise = ServiceNoiseEstimate(mean_s=self._mean_service_s, prior_cv=self.service_cv, min_samples=self.noise_min_samples)
        if self.price_per_gb_s is not None:
            self._serverless_pricing = ServerlessPricing(price_per_gb_s=self.price_per_gb_s)
        else:
            self._serverless_pricing = sl_spec.pricing
        link = view.links.get(serverless)
        self._link_delay_s = 0.0 if link is None else link.delay_s
        edge_batcher = view.batchers.get(edge) if view.batchers else None
        sl_batcher = view.batchers.get(serverless) if view.batchers else None
        mode = self.edge_dispatch
        if mode == "auto":
            mode = "when_free" if getattr(edge_batcher, "max_inflight", None) is not None else "fill"
        if mode == "when_free" and self._edge_slots != 1:
            raise ConfigError("planner.edge_dispatch", "when_free", f"an edge with one slot ({edge!r} has {self._edge_slots})")
        self._edge_mode = mode
        self._serverless_max_wait_s = self._max_wait_of(sl_batcher)
        # the edge profile as a line (exact for the seed's linear profile)
        sizes = np.arange(1, max(self.edge_batch_sizes) + 1, dtype=float)
        means = np.array([edge_spec.mean_service_s(int(b)) for b in sizes])
        if len(sizes) > 1:
            per_item, base = np.polyfit(sizes, means, 1)
        else:
            per_item, base = 0.0, float(means[0])
        self._edge_line = (max(float(base), 0.0), max(float(per_item), 0.0))

    def _mean_service_s(self, executor: str, batch_size: int, memory_mb: int | None) -> float:
        return self.view.executors[executor].mean_service_s(batch_size, memory_mb)

    @staticmethod
    def _max_wait_of(batcher) -> float:
        value = getattr(batcher, "max_wait_s", None)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0:
            return float(value)
        return math.inf

    # -- the model over the whole decision space ----------------------------------------------------
    def _edge_side(self, rate: float, shares: np.ndarray, backlog: int):
        """Mean, variance and P(in time) of edge latency, shape (edge batches, splits), and cost per
        request, shape (edge batches, 1)."""
        spec = self.view.executors[self.edge_executor]
        sizes = self.edge_batch_sizes
        b = np.asarray(sizes, dtype=float)[:, None]
        service = np.array([spec.mean_service_s(int(x)) for x in sizes])[:, None]
        # a backlog beyond one batch is extra load to drain within the plan's period
        excess = np.maximum(float(backlog) - b, 0.0)
        lam = rate * shares[None, :] + excess / self.period_s
        cs2 = np.array([self.noise.cv(self.edge_executor, int(x), None) ** 2 for x in sizes])[:, None]
        T = self.slo_s
        if self._edge_mode == "when_free":
            base, per_item = self._edge_line
            mean, var, m, sd = greedy_moments(lam, base, per_item, cs2)
            with np.errstate(divide="ignore", invalid="ignore"):
                under_cap = np.where(np.isfinite(sd) & (sd > 0), ndtr((b - m) / sd), (m <= b).astype(float))
            in_time = gamma_cdf(T, mean, var) * under_cap
            stable = lam * service / b < 1.0
            in_time = np.where(stable, in_time, 0.0)
            mean = np.where(stable, mean, np.inf)
            var = np.where(stable, var, np.inf)
        else:
            fill_m, fill_v = fill_moments(b, lam)
            q_m, q_v = gg_queue_moments(lam / b, service, self._edge_slots, self.arrival_cv**2 / b, cs2)
            mean = fill_m + q_m + service
            var = fill_v + q_v + cs2 * service**2
            in_time = gamma_cdf(T, mean, var)
        batch_cost = np.array([spec.pricing.batch_cost(duration_s=float(s), memory_mb=None) for s in service[:, 0]])[:, None]
        return mean, var, in_time, batch_cost / b

    def _serverless_side(self, rate: float, shares: np.ndarray, scenarios: np.ndarray, link_backlog: int):
        """The serverless side, arrays of shape (batches, memories, splits): ``in_time`` (P(latency
        <= slo) over the bandwidth scenarios), ``fits`` (the uplink's capacity holds the offered
        bytes), ``mean`` / ``var`` / ``fixed`` (the latency at the scenarios' mean bandwidth: gamma
        part and deterministic part), ``alone`` (mean latency on an idle link) and ``unit_cost``
        (per request, shape (batches, memories, 1))."""
        spec = self.view.executors[self.serverless_executor]
        sizes = self.serverless_batch_sizes
        b = np.asarray(sizes, dtype=float)[:, None, None]
        mem = self.memory_sizes_mb
        lam = rate * (1.0 - shares)[None, None, :]
        service = np.array([[spec.mean_service_s(int(x), m) for m in mem] for x in sizes])[:, :, None]
        fill_m, fill_v = truncated_fill_moments(sizes, rate * (1.0 - shares), self._serverless_max_wait_s)
        fill_m, fill_v = fill_m[:, None, :], fill_v[:, None, :]
        noise = self.noise
        cs2 = np.array([[noise.cv(self.serverless_executor, int(x), m) ** 2 for m in mem] for x in sizes])[:, :, None]
        mean = fill_m + service
        var = fill_v + cs2 * service**2
        # elastic instances: infeasible only beyond max_instances busy at once
        busy = lam / b * service
        mean = np.where(busy < self._max_instances, mean, np.inf)
        T = self.slo_s
        size_mb = self.request_size_bytes / MB
        delay = 2.0 * self._link_delay_s  # there, and the result back
        finite = scenarios[np.isfinite(scenarios)]
        shape = np.broadcast_shapes(mean.shape, lam.shape)
        # the reported latency: at the scenarios' mean bandwidth, with the link's queue and backlog
        report_m = np.broadcast_to(mean, shape)
        report_v = np.broadcast_to(var, shape)
        report_fixed = np.full(shape, delay)
        alone = np.broadcast_to(delay, shape)  # upload and delays alone, at the mean bandwidth
        if size_mb == 0 or finite.size == 0:
            in_time = gamma_cdf(T - delay, mean, var)
            fits = np.ones(shape, dtype=bool)
        else:
            capacity = float(np.mean(finite))
            # requests already on the link beyond the usual are sent first, and drained within the period
            ahead_mb = max(int(link_backlog), 0) * size_mb
            offered = lam * size_mb + ahead_mb / self.period_s  # MB/s
            # link capacity: the offered bytes per second against the scenarios' mean bandwidth
            fits = np.broadcast_to(offered <= self.link_utilisation * capacity, shape)
            in_time = np.zeros(shape)
            for bandwidth in finite:
                if bandwidth <= 0:
                    continue  # an outage: nothing crosses in time
                upload = size_mb * b / bandwidth
                link_m, link_v = gg_queue_moments(offered / (size_mb * b), upload, 1, self.arrival_cv**2 / b, 0.0)
                in_time += gamma_cdf(T - delay - upload - ahead_mb / bandwidth, mean + link_m, var + link_v)
            in_time /= len(finite)
            if capacity > 0:
                upload = size_mb * b / capacity
                link_m, link_v = gg_queue_moments(offered / (size_mb * b), upload, 1, self.arrival_cv**2 / b, 0.0)
                report_m, report_v = mean + link_m, var + link_v
                report_fixed = np.broadcast_to(delay + upload + ahead_mb / capacity, shape)
                alone = np.broadcast_to(delay + upload, shape)
            else:
                report_m = np.full(shape, np.inf)
                alone = np.full(shape, np.inf)
        pricing = self._serverless_pricing
        batch_cost = np.array(
            [[pricing.batch_cost(duration_s=float(service[i, j, 0]), memory_mb=m) for j, m in enumerate(mem)] for i in range(len(b))]
        )[:, :, None]
        return {
            "in_time": in_time,
            "fits": fits,
            "mean": report_m,
            "var": report_v,
            "fixed": report_fixed,
            "alone": np.broadcast_to(mean, shape) + alone,
            "unit_cost": batch_cost / b,
        }

    def evaluate(
        self,
        *,
        rate_rps: float,
        bandwidth_MBps: float,
        rate_margin_rps: float = 0.0,
        bandwidth_samples: Sequence[float] | None = None,
        edge_backlog: int = 0,
        link_backlog: int = 0,
        current_memory_mb: int | None = None,
    ) -> Evaluation:
        """Score every configuration and choose one (needs a bound planner).

        ``rate_rps`` is the expected rate (costs); latencies are checked at
        ``rate_rps + rate_margin_rps``. ``bandwidth_samples`` are the uplink
        scenarios (default: ``bandwidth_MBps`` alone). ``edge_backlog``:
        requests queued or running at the edge; ``link_backlog``: requests
        on the uplink beyond the usual, to be sent before new ones.
        ``current_memory_mb``: the memory size in use (stickiness).
        """
        rate, margin, scenarios = self._checked_inputs(rate_rps, bandwidth_MBps, rate_margin_rps, bandwidth_samples)
        rate = max(rate, 1e-9)  # an idle system is planned as a very light one
        plan_rate = rate + margin
        shares = np.linspace(0.0, 1.0, self.split_steps + 1)
        e_m, e_v, f_edge, e_unit = self._edge_side(plan_rate, shares, int(edge_backlog))
        sl = self._serverless_side(plan_rate, shares, scenarios, int(link_backlog))
        # a side that carries no traffic is never late
        f_edge = np.where((shares > 0)[None, :], f_edge, 1.0)
        f_sl = np.where((shares < 1)[None, None, :], sl["in_time"], 1.0)
        meets, score, mixture = self._targets(f_edge, f_sl, sl["fits"], shares)
        cost = self._cost_per_s(e_unit, sl["unit_cost"], rate, shares)
        feasible = bool(meets.any())
        choice = self._choose(
            cost=cost,
            meets=meets,
            score=score,
            mixture=mixture,
            f_sl=f_sl,
            alone=sl["alone"],
            shares=shares,
            feasible=feasible,
            current_memory_mb=current_memory_mb,
        )
        decision = self._decision(choice, feasible=feasible, rate=rate, shares=shares, edge=(e_m, e_v), serverless=sl, cost=cost,
                                  in_time=float(mixture[choice]))  # fmt: skip
        return Evaluation(
            cost_per_s=cost,
            meets=meets,
            score=score,
            edge_share=shares,
            choice=choice,
            decision=decision,
            edge_in_time=f_edge,
            serverless_in_time=f_sl,
            link_fits=sl["fits"],
            planning_rate_rps=plan_rate,
            bandwidth_scenarios_MBps=tuple(float(x) for x in scenarios),
            edge_backlog=int(edge_backlog),
            link_backlog=int(link_backlog),
        )

    def _checked_inputs(self, rate_rps, bandwidth_MBps, rate_margin_rps, bandwidth_samples) -> tuple[float, float, np.ndarray]:
        """The expected rate, the rate margin and the bandwidth scenarios of ``evaluate``, checked."""
        if self.view is None:
            raise ConfigError("planner", "unbound", "a planner bound to a cluster (it reads profiles and pricing)")
        rate = float(rate_rps)
        bandwidth = float(bandwidth_MBps)
        if not math.isfinite(rate) or rate < 0:
            raise ConfigError("planner.rate_rps", rate_rps, "a finite rate >= 0")
        if math.isnan(bandwidth) or bandwidth < 0:
            raise ConfigError("planner.bandwidth_MBps", bandwidth_MBps, "a bandwidth >= 0 (inf: no link)")
        margin = float(rate_margin_rps)
        if not math.isfinite(margin) or margin < 0:
            raise ConfigError("planner.rate_margin_rps", rate_margin_rps, "a finite margin >= 0")
        scenarios = np.asarray([bandwidth] if not bandwidth_samples else list(bandwidth_samples), dtype=float)
        if np.isnan(scenarios).any() or (scenarios < 0).any():
            raise ConfigError("planner.bandwidth_samples", list(scenarios), "bandwidths >= 0")
        return rate, margin, scenarios

    def _targets(self, f_edge: np.ndarray, f_sl: np.ndarray, fits: np.ndarray, shares: np.ndarray):
        """Whether each candidate meets the target, its score and its mixture P(in time), all of
        shape (edge, batch, memory, split), from each side's P(in time)."""
        p = self.percentile
        fe = f_edge[:, None, None, :]
        fs = f_sl[None, :, :, :]
        w = shares[None, None, None, :]
        mixture = w * fe + (1.0 - w) * fs
        if self.criterion == "each":
            meets = (fe >= p) & (fs >= p)
            score = np.minimum(fe, fs)
        else:
            # every side that carries traffic must still deliver side_floor of it in time:
            # paying for a side that mostly misses is never worth it
            meets = (mixture >= p) & (fe >= self.side_floor) & (fs >= self.side_floor)
            score = mixture
        # the uplink's capacity is a hard constraint of a feasible plan
        meets = meets & (fits | ~(shares < 1)[None, None, :])[None, :, :, :]
        return meets, score, mixture

    @staticmethod
    def _cost_per_s(e_unit: np.ndarray, s_unit: np.ndarray, rate: float, shares: np.ndarray) -> np.ndarray:
        """Cost per second of each candidate, shape (edge, batch, memory, split), at the expected
        rate (a side that carries no traffic costs nothing; an impossible one, inf)."""
        e_cost = np.where((shares > 0)[None, :], e_unit * rate * shares[None, :], 0.0)
        s_cost = np.where((shares < 1)[None, None, :], s_unit * rate * (1.0 - shares)[None, None, :], 0.0)
        cost = e_cost[:, None, None, :] + s_cost[None, :, :, :]
        return np.where(np.isfinite(cost), cost, np.inf)

    def _sticky(self, cost: np.ndarray, mixture: np.ndarray, shares: np.ndarray, current_memory_mb: int | None):
        """The cost and the best-effort score to rank by, favouring the memory size in use."""
        if current_memory_mb not in self.memory_sizes_mb:
            return cost, mixture
        # instances have a fixed memory size, so a new size means new cold instances: another size
        # must save more than memory_switch_saving to be taken (or, when nothing meets the target,
        # bring MEMORY_SWITCH_GAIN more of the traffic in time); an edge-only plan uses none
        memories = np.asarray(self.memory_sizes_mb)
        keep = (memories == current_memory_mb)[None, None, :, None] | (shares[None, None, None, :] >= 1.0)
        return np.where(keep, cost * (1.0 - self.memory_switch_saving), cost), mixture + MEMORY_SWITCH_GAIN * keep

    def _choose(self, *, cost, meets, score, mixture, f_sl, alone, shares, feasible, current_memory_mb) -> tuple[int, int, int, int]:
        """The chosen candidate's (edge, batch, memory, split) indices: see the class's docstring
        for the order of preference."""
        shape = cost.shape
        rank_cost, best_effort = self._sticky(cost, mixture, shares, current_memory_mb)
        if feasible:
            # the cheapest (with stickiness) of those that meet the target, then the tie-breaks below
            masked = np.where(meets, rank_cost, np.inf)
            candidates = np.flatnonzero(masked.ravel() <= masked.min())
            primary = ()
        else:
            # nothing meets the target: the largest share of all traffic in time; then the serverless
            # configuration most likely in time, one that would be in time on an idle link (never a
            # batch too slow to make it, however cheap), the cheapest
            rounded = np.round(best_effort, 3)
            candidates = np.flatnonzero(rounded.ravel() >= rounded.max())
            fs_rounded = np.broadcast_to(np.round(f_sl[None, :, :, :], 3), shape).ravel()[candidates]
            viable = np.broadcast_to((alone <= self.slo_s)[None, :, :, :], shape).ravel()[candidates]
            primary = (cost.ravel()[candidates], ~viable, -fs_rounded)
        i_, j_, k_, l_ = np.unravel_index(candidates, shape)
        edge_order = -i_ if self._edge_mode == "when_free" else i_
        # preference (last key first): more edge, most likely in time, edge cap, smaller sizes
        keys = (k_, j_, edge_order, -score.ravel()[candidates], -shares[l_]) + primary
        best = int(candidates[np.lexsort(keys)[0]])
        i, j, k, l = np.unravel_index(best, shape)
        return int(i), int(j), int(k), int(l)

    def _decision(self, choice, *, feasible: bool, rate: float, shares, edge, serverless, cost, in_time: float) -> TailAwareDecision:
        """The decision for the chosen candidate, with its predicted latencies (``edge``: the edge's
        latency mean and variance; ``serverless``: ``_serverless_side``'s arrays)."""
        i, j, k, l = choice
        e_m, e_v = edge
        s_m, s_v, s_fixed = serverless["mean"], serverless["var"], serverless["fixed"]
        share = float(shares[l])
        edge_p = self._side_quantile(e_m[i, l], e_v[i, l], 0.0) if share > 0 else None
        sl_p = self._side_quantile(s_m[j, k, l], s_v[j, k, l], float(s_fixed[j, k, l])) if share < 1 else None
        overall = self._mixture_quantile(share, (e_m[i, l], e_v[i, l]), (s_m[j, k, l], s_v[j, k, l], float(s_fixed[j, k, l])))
        edge_only = share >= 1.0
        p, T = self.percentile, self.slo_s
        overloaded = not all(math.isfinite(x) for x in (edge_p, sl_p, overall) if x is not None)
        return TailAwareDecision(
            feasible=feasible,
            edge_batch_size=int(self.edge_batch_sizes[i]) if share > 0 else int(self.edge_batch_sizes[0]),
            serverless_batch_size=0 if edge_only else int(self.serverless_batch_sizes[j]),
            serverless_memory_mb=0 if edge_only else int(self.memory_sizes_mb[k]),
            edge_rate_rps=float(rate * share),
            serverless_rate_rps=float(rate * (1.0 - share)),
            cost_per_s=float(cost[i, j, k, l]),
            reason=("edge_only" if edge_only else "split") if feasible else f"no configuration meets p{p * 100:g} <= {T} s",
            predicted_edge_p_s=_finite_or_none(edge_p),
            predicted_serverless_p_s=_finite_or_none(sl_p),
            predicted_p_s=_finite_or_none(overall),
            predicted_in_time=in_time,
            overloaded=overloaded,
        )

    def edge_limit_rps(self, edge_batch_size: int) -> float:
        """The largest rate (req/s, to 0.2 %) at which the edge meets the percentile with this batch
        size (cap), no backlog; inf for a size off the grid."""
        if int(edge_batch_size) not in self.edge_batch_sizes:
            return math.inf
        i = self.edge_batch_sizes.index(int(edge_batch_size))
        b = int(edge_batch_size)
        throughput = self._edge_slots * b / self.view.executors[self.edge_executor].mean_service_s(b)
        grid = np.linspace(0.0, 1.0, 513)[1:] * throughput
        _, _, in_time, _ = self._edge_side(1.0, grid, 0)
        ok = np.nonzero(in_time[i] >= self.percentile)[0]
        return float(grid[ok.max()]) if ok.size else 0.0

    def _side_quantile(self, mean: float, var: float, fixed: float) -> float:
        return float(fixed + gamma_ppf(self.percentile, float(mean), float(var)))

    def _mixture_quantile(self, share: float, edge, serverless) -> float:
        """The p-quantile of all requests' latency (the traffic-weighted mixture, at the mean bandwidth), by bisection."""
        p = self.percentile

        def side(mean: float, var: float):
            mean, var = float(mean), float(var)
            if not (math.isfinite(mean) and math.isfinite(var)):
                return lambda t: 0.0
            if var <= 0 or mean <= 0:
                return lambda t: 1.0 if mean <= t else 0.0
            shape, scale = mean * mean / var, var / mean
            return lambda t: float(gammainc(shape, t / scale)) if t > 0 else 0.0

        edge_cdf = side(edge[0], edge[1])
        sl_cdf = side(serverless[0], serverless[1])
        fixed = float(serverless[2])

        def cdf(t: float) -> float:
            total = 0.0
            if share > 0:
                total += share * edge_cdf(t)
            if share < 1:
                total += (1.0 - share) * sl_cdf(t - fixed)
            return total

        hi = max(self.slo_s, 1e-3)
        while cdf(hi) < p:
            hi *= 2.0
            if hi > 1e9:
                return math.inf
        lo = 0.0
        for _ in range(40):
            mid = 0.5 * (lo + hi)
            if cdf(mid) >= p:
                hi = mid
            else:
                lo = mid
        return hi

    def plan(self, *, rate_rps: float, bandwidth_MBps: float, **state) -> TailAwareDecision:
        """The chosen configuration for this load and bandwidth (``state``: see ``evaluate``)."""
        return self.evaluate(rate_rps=rate_rps, bandwidth_MBps=bandwidth_MBps, **state).decision

    # -- telemetry beyond the base class's estimates ---------------------------------------------------
    @property
    def rate_margin_rps(self) -> float:
        """``rate_z`` times the spread of the recent rate samples beyond Poisson counting noise."""
        samples = self._rate_samples
        if len(samples) < 2 or self.rate_z == 0:
            return 0.0
        times = [t for t, _ in samples]
        values = np.array([r for _, r in samples])
        gaps = np.diff(times)
        period = float(np.median(gaps)) if len(gaps) and np.median(gaps) > 0 else 1.0
        excess = float(values.var(ddof=1)) - float(values.mean()) / period
        return self.rate_z * math.sqrt(excess) if excess > 0 else 0.0

    @property
    def bandwidth_scenarios(self) -> tuple[float, ...]:
        """The last ``bandwidth_history`` uplink samples (before the first: the current estimate)."""
        if self._bandwidth_samples:
            return tuple(self._bandwidth_samples)
        return (self.bandwidth_MBps,)

    def _link_backlog(self) -> int:
        """Requests in flight to the serverless executor beyond what the current plan keeps in
        flight (a batch forming, plus the rate times upload, delays and service): held up on the uplink."""
        view = self.view
        name = self.serverless_executor
        if view is None or not view.batchers or name not in view.batchers:
            return 0
        in_flight = view.batchers[name].requests_in_flight
        plan = self.last_plan
        b = plan.batch_size.get(name) if plan is not None else None
        if not in_flight or not b:
            return 0
        m = plan.memory_mb.get(name)
        rate = (1.0 - self._edge_share) * self.rate_rps
        bandwidth = self.bandwidth_MBps
        upload = self.request_size_bytes / MB / bandwidth if bandwidth > 0 else 0.0
        usual = rate * (self.view.executors[name].mean_service_s(b, m) + 2.0 * self._link_delay_s + upload) + b
        return max(0, int(in_flight - usual))

    def _edge_backlog(self) -> int:
        view = self.view
        if view is None or not view.batchers or self.edge_executor not in view.batchers:
            return 0
        return int(view.outstanding(self.edge_executor))

    # -- planning and the prediction record ------------------------------------------------------------
    def make_plan(self, now_s: float, trigger: str) -> Plan:
        rate, bandwidth = self.rate_rps, self.bandwidth_MBps
        margin = self.rate_margin_rps
        backlog = self._edge_backlog()
        link_backlog = self._link_backlog()
        scenarios = self.bandwidth_scenarios
        state = {
            "bandwidth_MBps": bandwidth,
            "bandwidth_samples": scenarios,
            "edge_backlog": backlog,
            "link_backlog": link_backlog,
            "current_memory_mb": self._memory_mb,
        }
        evaluation = self.evaluate(rate_rps=rate, rate_margin_rps=margin, **state)
        if not evaluation.decision.feasible and margin > 0:
            # nothing holds at the planning rate: plan for the expected one
            evaluation = self.evaluate(rate_rps=rate, rate_margin_rps=0.0, **state)
        decision = evaluation.decision
        self._close_entries(now_s)
        self._open_entries(now_s, decision)
        self._last_plan_s = now_s
        self._edge_share = decision.edge_rate_rps / max(rate, 1e-9) if decision.serverless_batch_size else 1.0
        self._edge_cap = decision.edge_batch_size
        self._edge_limit_rps = self.edge_limit_rps(decision.edge_batch_size) if self.overload_replan else math.inf
        if decision.serverless_batch_size:
            self._memory_mb = decision.serverless_memory_mb
        detail = {
            "planner": "tail_aware",
            "rate_rps": rate,
            "bandwidth_MBps": bandwidth,
            "planning_rate_rps": evaluation.planning_rate_rps,
            "edge_backlog": backlog,
            "link_backlog": link_backlog,
            "percentile": self.percentile,
            "slo_s": self.slo_s,
            "feasible": decision.feasible,
            "overloaded": decision.overloaded,
            "predicted_in_time": decision.predicted_in_time,
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

    def observe_batch(self, *, now_s: float, executor: str, batch_size: int, memory_mb: int | None, service_s: float) -> None:
        self.noise.add(executor=executor, batch_size=batch_size, memory_mb=memory_mb, service_s=service_s)

    def observe(self, event: Event) -> Plan | None:
        plan = super().observe(event)
        if plan is not None or not self.overload_replan or not isinstance(event, ArrivalRateMeasured):
            return plan
        if self.last_plan is None or event.now_s - self._last_plan_s < self.overload_gap_s:
            return None
        edge_load = self._edge_share * float(event.rate_rps)
        cap = self._edge_cap or 0
        if edge_load > self._edge_limit_rps or self._edge_backlog() > 2 * cap:
            return self._replan(event.now_s, "overload")
        return None

    def observe_event(self, event: Event) -> None:
        if isinstance(event, BatchFinished):
            samples = self._samples.get(event.executor)
            if samples is not None and len(samples) < 100_000:
                samples.append(float(event.service_s))
        elif isinstance(event, ArrivalRateMeasured):
            self._rate_samples.append((float(event.now_s), float(event.rate_rps)))
        elif isinstance(event, BandwidthMeasured) and event.executor == self.bandwidth_executor:
            self._bandwidth_samples.append(float(event.bandwidth_MBps))

    def _open_entries(self, now_s: float, decision: TailAwareDecision) -> None:
        self._open = {}
        self._samples = {}
        sides = []
        if decision.edge_rate_rps > 0 or decision.serverless_batch_size == 0:
            sides.append((self.edge_executor, decision.edge_batch_size, None))
        if decision.serverless_batch_size:
            sides.append((self.serverless_executor, decision.serverless_batch_size, decision.serverless_memory_mb))
        for name, b, m in sides:
            cv = self.noise.cv(name, b, m)
            mean = self.view.executors[name].mean_service_s(b, m)
            var = (cv * mean) ** 2
            expected_batch = float(b)
            if name == self.edge_executor and self._edge_mode == "when_free":
                # batches follow the load: the AR(1) model's batch size (mean m, variance v), under the cap
                base, per_item = self._edge_line
                _, _, bm, bsd = greedy_moments(decision.edge_rate_rps, base, per_item, 0.0)
                if np.isfinite(bm) and bm < b:
                    expected_batch = max(float(bm), 1.0)
                    mean = base + per_item * expected_batch
                    var = (per_item * float(bsd)) ** 2 + (cv * mean) ** 2
            self._open[name] = {
                "plan_at_s": now_s,
                "executor": name,
                "batch_size": b,
                "memory_mb": m,
                "predicted_batch_mean": expected_batch,
                "predicted_service_mean_s": mean,
                "predicted_service_p_s": gamma_ppf(self.percentile, mean, var),
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
