"""The tail-aware (p95) planner: its queueing model, its choices, and its prediction record."""

from __future__ import annotations

import math

import numpy as np
import pytest

from policies import ArrivalRateMeasured, NotePlan, Scheduler, StartTimer, TimerFired
from policies.errors import DriverError
from policies.timer_id import TimerId
from policies.batching import FixedBatching, TimeoutBatching
from policies.placement import WeightedPlacement
from policies.planning.edge_first import EdgeFirstAlgorithm
from policies.planning.tail_aware import (
    TailAwarePlanner,
    erlang_c,
    fill_moments,
    gamma_cdf,
    gg_queue_moments,
    greedy_moments,
    truncated_fill_moments,
)
from spec.links import MB
from spec.links import Link
from spec.noise import LognormalNoise, NoNoise
from spec.pricing import ServerlessPricing
from spec.topology import Cluster, ServerlessSpec, ServerSpec
from tests.policies import harness as H


# -- the model's pieces ----------------------------------------------------------------------------
def test_fill_moments_match_a_monte_carlo():
    rng = np.random.default_rng(0)
    b, rate = 8, 40.0
    gaps = rng.exponential(1 / rate, size=(200_000, b))
    # request k of a batch waits for the arrivals k+1..b
    waits = np.cumsum(gaps[:, ::-1], axis=1)[:, ::-1][:, 1:]
    waits = np.concatenate([waits, np.zeros((len(waits), 1))], axis=1).ravel()
    mean, var = fill_moments(b, rate)
    assert mean == pytest.approx(waits.mean(), rel=0.01)
    assert var == pytest.approx(waits.var(), rel=0.02)
    assert fill_moments(1, rate) == (0.0, 0.0)


def test_erlang_c_and_kingman():
    assert erlang_c(1, 0.7) == pytest.approx(0.7)
    assert erlang_c(2, 1.0) == pytest.approx(1 / 3)
    assert erlang_c(1, 1.2) == 1.0
    # M/M/1 (ca2 = cs2 = 1): Wq = rho / (1 - rho) * S exactly
    mean, var = gg_queue_moments(7.0, 0.1, 1, 1.0, 1.0)
    assert mean == pytest.approx(0.7 / 0.3 * 0.1)
    # M/M/1 waiting time: P(W > 0) = rho, W | W > 0 ~ Exp(1 / (mu - lambda)): var = E[W^2] - Wq^2
    assert var == pytest.approx(2 * 0.7 / (10 - 7) ** 2 - mean**2)
    assert gg_queue_moments(11.0, 0.1, 1, 1.0, 1.0)[0] == math.inf


def test_gamma_cdf_edges():
    assert gamma_cdf(1.0, 0.5, 0.0) == 1.0 and gamma_cdf(0.4, 0.5, 0.0) == 0.0
    assert gamma_cdf(1.0, math.inf, 1.0) == 0.0
    assert gamma_cdf(1.0, 1.0, 1.0) == pytest.approx(1 - math.exp(-1))  # exponential(1)


# -- choices -----------------------------------------------------------------------------------------
def bound_planner(**kwargs) -> TailAwarePlanner:
    kwargs.setdefault("slo_s", 0.8)
    kwargs.setdefault("nominal_rate_rps", 50.0)
    planner = TailAwarePlanner(**kwargs)
    Scheduler(cluster=H.seed_cluster(), placement=WeightedPlacement(), batching=FixedBatching(), planner=planner)
    return planner


POINTS = [(rate, bw) for rate in (5.0, 30.0, 60.0, 90.0, 100.0, 110.0, 120.0, 150.0) for bw in (1.0, 4.26, 12.0)]


@pytest.mark.parametrize("criterion", ["each", "mixture"])
def test_never_cheaper_but_infeasible_and_meets_its_own_prediction(criterion):
    planner = bound_planner(criterion=criterion)
    feasible_points = 0
    for rate, bw in POINTS:
        ev = planner.evaluate(rate_rps=rate, bandwidth_MBps=bw)
        d = ev.decision
        i, j, k, l = ev.choice
        if not ev.meets.any():
            assert not d.feasible
            continue
        feasible_points += 1
        assert d.feasible and ev.meets[i, j, k, l]
        cheapest = ev.cost_per_s[ev.meets].min()
        assert ev.cost_per_s[i, j, k, l] == cheapest  # nothing that meets the target is cheaper
        assert d.predicted_p_s <= planner.slo_s + 1e-9
        if criterion == "each":
            for side in (d.predicted_edge_p_s, d.predicted_serverless_p_s):
                assert side is None or side <= planner.slo_s + 1e-9
    assert feasible_points >= 12


def test_edge_only_when_the_edge_suffices_and_a_split_beyond():
    planner = bound_planner()
    light = planner.plan(rate_rps=60.0, bandwidth_MBps=4.26)
    assert light.feasible and light.serverless_batch_size == 0 and light.cost_per_s == 0.0
    heavy = planner.plan(rate_rps=100.0, bandwidth_MBps=4.26)
    assert heavy.feasible and heavy.serverless_batch_size > 0 and heavy.cost_per_s > 0
    assert heavy.edge_rate_rps + heavy.serverless_rate_rps == pytest.approx(100.0)


def test_sees_the_saturated_uplink_that_edge_first_ignores():
    # 150 rps, 4.26 MB/s: edge-first sends R1 = 50 rps upstream, 50 * 200 KiB = 9.8 MB/s > 4.26 MB/s
    seed = EdgeFirstAlgorithm(
        slo_s=0.8, edge_profile=H.EDGE_PROFILE, serverless_profile=H.SERVERLESS_PROFILE, price_per_gb_s=H.PRICE_PER_GB_S
    ).plan(rate_rps=150.0, bandwidth_MBps=4.26)
    assert seed.feasible and seed.serverless_rate_rps * 200 / 1024 > 4.26
    ours = bound_planner().plan(rate_rps=150.0, bandwidth_MBps=4.26)
    assert not ours.feasible and "p95" in ours.reason


def test_a_dead_link_keeps_everything_on_the_edge():
    d = bound_planner().plan(rate_rps=60.0, bandwidth_MBps=0.0)
    assert d.feasible and d.serverless_batch_size == 0


@pytest.mark.parametrize("rate", [40.0, 80.0])
def test_prediction_close_to_the_reference_driver(rate):
    # deterministic service (cs = 0), Poisson arrivals, one slot: the edge-only p95 the model predicts
    # against the p95 the reference event loop produces (measured: within about 8 %, on the safe side)
    planner = bound_planner(nominal_rate_rps=rate, trigger="none")
    s = Scheduler(cluster=H.seed_cluster(), placement=WeightedPlacement(), batching=FixedBatching(max_wait_s=10.0), planner=planner)
    d = planner.plan(rate_rps=rate, bandwidth_MBps=4.26)
    assert d.serverless_batch_size == 0
    result = H.run(s, rate_rps=rate, duration_s=150.0, seed=4)
    latency = [result.completed[i] - r.arrival_s for i, r in result.requests.items() if 10 < r.arrival_s < 140]
    observed = float(np.quantile(latency, 0.95))
    assert observed <= d.predicted_p_s * 1.02
    assert observed >= d.predicted_p_s * 0.8


# -- the prediction record ------------------------------------------------------------------------------
def test_prediction_log_records_predicted_against_observed_service():
    planner = bound_planner(nominal_rate_rps=60.0, period_s=3.0)
    s = Scheduler(cluster=H.seed_cluster(), placement=WeightedPlacement(), batching=FixedBatching(max_wait_s=5.0), planner=planner)
    result = H.run(s, rate_rps=60.0, duration_s=10.0, seed=2, rate_period_s=1.0)
    log = list(planner.prediction_log)
    assert len(log) >= 3
    for entry in log:
        assert entry["executor"] == "edge"
        assert entry["until_s"] > entry["plan_at_s"]
        if entry["observed_batches"]:
            # the reference driver runs every batch in exactly its mean time: full batches match
            assert entry["observed_service_mean_s"] == pytest.approx(entry["predicted_service_mean_s"], rel=0.05)
    last = result.plans[-1]
    assert last.detail["prediction_log"][-1] == log[-1]
    assert planner.open_predictions and planner.open_predictions[0]["executor"] == "edge"


def test_plan_from_telemetry_and_settings_checked():
    planner = TailAwarePlanner(slo_s=0.8, nominal_rate_rps=50.0, trigger="none")
    s = Scheduler(cluster=H.seed_cluster(), placement=WeightedPlacement(), batching=FixedBatching(), planner=planner)
    plan = [a.plan for a in s.handle(ArrivalRateMeasured(now_s=0.0, rate_rps=50.0)) if isinstance(a, NotePlan)][0]
    assert plan.feasible and plan.trigger == "initial"
    assert set(plan.weights) == {"edge", "serverless"} and sum(plan.weights.values()) == pytest.approx(1.0)
    assert plan.detail["predicted_p_s"] <= 0.8


def noisy_cluster(cv: float) -> Cluster:
    """The seed cluster with the simulator's service-time noise set to ``cv`` on both executors."""
    noise = LognormalNoise(cv=cv) if cv > 0 else NoNoise()
    return Cluster(
        executors=[
            ServerSpec(name="edge", kind="edge", profile=H.EDGE_PROFILE, gateway="edge", noise=noise),
            ServerlessSpec(name="serverless", profile=H.SERVERLESS_PROFILE, noise=noise,
                           pricing=ServerlessPricing(price_per_gb_s=H.PRICE_PER_GB_S), memory_mb=2048),  # fmt: skip
        ],
        links={"serverless": Link(delay_s=0.02, bandwidth_MBps=4.26)},
    )


def noise_scheduler(cluster: Cluster) -> Scheduler:
    planner = TailAwarePlanner(slo_s=0.6, nominal_rate_rps=110.0, period_s=1.0, estimate_window=2, noise_min_samples=5)
    return Scheduler(cluster=cluster, placement=WeightedPlacement(), planner=planner,
                     batching={"edge": TimeoutBatching(max_batch_size=200, max_wait_s=0.0, max_inflight="executor"),
                               "serverless": TimeoutBatching(max_batch_size=20, max_wait_s=0.1)})  # fmt: skip


def test_same_events_under_two_noise_configs_give_the_same_decisions():
    # the planner learns service-time noise from finished batches, never from the executors' noise settings
    rng = np.random.default_rng(7)
    factors = iter(rng.lognormal(-0.125, 0.5, 100_000))
    cluster = noisy_cluster(0.0)

    def service_s(executor, size, memory):
        return cluster.executors[executor].mean_service_s(size, memory) * next(factors)

    first = noise_scheduler(cluster)
    run = H.run(first, rate_rps=110.0, duration_s=20.0, seed=3, slo_s=0.6, rate_period_s=1.0, bandwidth=lambda t: 4.26,
                service_s=service_s)  # fmt: skip
    plans = [p for p in run.plans if p.trigger != "initial"]
    assert len(plans) >= 15 and len({(tuple(p.weights.items()), tuple(p.batch_size.items())) for p in plans}) > 1
    assert first.planner.noise.samples("edge") >= 50
    for cv in (0.0, 0.8):
        replayed = H.replay(noise_scheduler(noisy_cluster(cv)), run.events)
        assert replayed == run.actions, f"other decisions with the simulator's noise at cv={cv}"


def test_the_measured_noise_replaces_the_prior():
    planner = TailAwarePlanner(slo_s=0.8, nominal_rate_rps=110.0, service_cv=0.3, noise_min_samples=20)
    Scheduler(cluster=noisy_cluster(0.0), placement=WeightedPlacement(), batching=FixedBatching(), planner=planner)
    noise = planner.noise
    assert noise.cv("edge", 10) == 0.3  # the prior, before any batch
    rng = np.random.default_rng(0)
    for factor in rng.lognormal(-0.02, 0.2, 400):
        planner.observe_batch(now_s=1.0, executor="edge", batch_size=10, memory_mb=None, service_s=H.EDGE_PROFILE.mean_s(10) * factor)
    for factor in rng.lognormal(-0.08, 0.4, 10):
        planner.observe_batch(now_s=1.0, executor="edge", batch_size=40, memory_mb=None, service_s=H.EDGE_PROFILE.mean_s(40) * factor)
    assert noise.cv("edge", 10) == pytest.approx(0.2, rel=0.15)  # its own batches
    assert noise.cv("edge", 40) == pytest.approx(noise.cv("edge", 25))  # too few of its own: the executor's pooled figure
    assert noise.cv("serverless", 5, 2048) == 0.3  # none yet: the prior
    assert noise.samples("edge") == 410 and noise.samples("edge", 40) == 10


# -- the model for the real traces: greedy edge batching, the uplink's capacity and samples, backlogs ------
def greedy_planner(**kwargs) -> TailAwarePlanner:
    """Bound to the seed cluster whose edge forms a batch of whatever is queued whenever it is free."""
    kwargs.setdefault("slo_s", 0.8)
    kwargs.setdefault("nominal_rate_rps", 50.0)
    planner = TailAwarePlanner(**kwargs)
    Scheduler(
        cluster=H.seed_cluster(),
        placement=WeightedPlacement(),
        batching={
            "edge": TimeoutBatching(max_batch_size=200, max_wait_s=0.0, max_inflight="executor"),
            "serverless": TimeoutBatching(max_batch_size=2, max_wait_s=0.1),
        },
        planner=planner,
    )
    return planner


SIZE_MB = H.REQUEST_BYTES / MB


def test_truncated_fill_moments_match_a_monte_carlo():
    rng = np.random.default_rng(1)
    b, rate, w = 4, 10.0, 0.15
    gaps = rng.exponential(1 / rate, size=(200_000, b))
    waits = np.cumsum(gaps[:, ::-1], axis=1)[:, ::-1][:, 1:]  # position k waits for arrivals k+1..b
    waits = np.concatenate([np.minimum(waits, w), np.zeros((len(waits), 1))], axis=1).ravel()
    mean, var = truncated_fill_moments([1, b], rate, w)
    assert mean[1] == pytest.approx(waits.mean(), rel=0.01)
    assert var[1] == pytest.approx(waits.var(), rel=0.02)
    assert mean[0] == 0.0 and var[0] == 0.0
    # no bound: the plain Erlang mixture
    plain = truncated_fill_moments([1, b], np.array([rate]), math.inf)
    assert plain[0][1, 0] == pytest.approx(fill_moments(b, rate)[0])


def test_greedy_moments_basic_shape():
    a, c = 0.04234, 0.008165
    mean, var, m, sd = greedy_moments(np.array([50.0, 100.0, 1 / c + 1]), a, c, 0.0)
    assert m[0] == pytest.approx(50 * a / (1 - 50 * c))  # the batch that queues while the last one runs
    assert mean[1] > mean[0] and var[1] > var[0] and sd[1] > sd[0]
    assert math.isinf(mean[2]) and math.isinf(m[2])  # beyond 1 / per_item_s no batch size keeps up


@pytest.mark.parametrize("rate", [60.0, 95.0])
def test_greedy_prediction_close_to_the_reference_driver(rate):
    # deterministic service, Poisson arrivals, batches of whatever queued while the edge was busy
    planner = greedy_planner(nominal_rate_rps=rate, trigger="none", service_cv=0.0)
    assert planner._edge_mode == "when_free"
    d = planner.plan(rate_rps=rate, bandwidth_MBps=4.26)
    assert d.serverless_batch_size == 0 and d.edge_batch_size == 200  # edge only, the largest cap
    s = Scheduler(
        cluster=H.seed_cluster(),
        placement=WeightedPlacement(),
        batching=TimeoutBatching(max_batch_size=200, max_wait_s=0.0, max_inflight="executor"),
        planner=TailAwarePlanner(slo_s=0.8, nominal_rate_rps=rate, trigger="none"),
    )
    result = H.run(s, rate_rps=rate, duration_s=150.0, seed=3)
    latency = [result.completed[i] - r.arrival_s for i, r in result.requests.items() if 10 < r.arrival_s < 140]
    observed = float(np.quantile(latency, 0.95))
    assert observed == pytest.approx(d.predicted_edge_p_s, rel=0.12)


def test_edge_dispatch_follows_the_edge_batching():
    assert greedy_planner()._edge_mode == "when_free"
    assert bound_planner()._edge_mode == "fill"
    assert bound_planner(edge_dispatch="when_free")._edge_mode == "when_free"
    with pytest.raises(ValueError, match="edge_dispatch"):
        TailAwarePlanner(slo_s=0.8, nominal_rate_rps=5.0, edge_dispatch="x")


def test_greedy_edge_takes_more_than_fixed_batches_before_offloading():
    # the same 104 req/s: a fixed-size edge batch must offload, an edge batching whenever free need not
    assert greedy_planner().plan(rate_rps=104.0, bandwidth_MBps=4.26).serverless_batch_size == 0
    assert bound_planner().plan(rate_rps=104.0, bandwidth_MBps=4.26).serverless_batch_size > 0
    assert 100.0 < greedy_planner().edge_limit_rps(200) < 110.0


@pytest.mark.parametrize("bandwidth", [2.0, 4.26])
@pytest.mark.parametrize("utilisation", [0.5, 0.8])
def test_link_capacity_excludes_offloading_beyond_the_uplink(bandwidth, utilisation):
    planner = greedy_planner(criterion="mixture", link_utilisation=utilisation)
    for rate in (110.0, 115.0, 125.0, 140.0):
        ev = planner.evaluate(rate_rps=rate, bandwidth_MBps=bandwidth)
        offloaded_MBps = (1.0 - ev.edge_share) * rate * SIZE_MB
        within = offloaded_MBps <= utilisation * bandwidth + 1e-9
        # nothing that sends more bytes than the uplink may carry meets the target
        assert not (ev.meets & ~within[None, None, None, :]).any()
        assert (ev.link_fits == np.broadcast_to(within, ev.link_fits.shape)).all()
        d = ev.decision
        if d.feasible and d.serverless_batch_size:
            assert d.serverless_rate_rps * SIZE_MB <= utilisation * bandwidth + 1e-9
    # 140 req/s: the edge takes about 105, and 35 req/s is 6.8 MB/s, more than either uplink carries
    assert not planner.plan(rate_rps=140.0, bandwidth_MBps=bandwidth).feasible


def test_an_outage_among_the_bandwidth_samples_counts():
    planner = greedy_planner()  # criterion "each": the serverless side must meet p95 on its own
    steady = planner.evaluate(rate_rps=115.0, bandwidth_MBps=4.26, bandwidth_samples=[4.26] * 10)
    assert steady.decision.feasible and steady.decision.serverless_batch_size
    outage = planner.evaluate(rate_rps=115.0, bandwidth_MBps=4.26, bandwidth_samples=[4.26] * 9 + [0.0])
    # one second in ten with the link down: at most 90 % of offloaded requests can be in time
    assert outage.serverless_in_time[:, :, :-1].max() <= 0.9 + 1e-9
    assert not outage.decision.feasible
    with pytest.raises(ValueError, match="bandwidth_samples"):
        planner.evaluate(rate_rps=115.0, bandwidth_MBps=4.26, bandwidth_samples=[-1.0])


def test_backlogs_shift_traffic():
    planner = greedy_planner(criterion="mixture")
    calm = planner.plan(rate_rps=100.0, bandwidth_MBps=4.26)
    assert calm.serverless_batch_size == 0
    # 300 requests waiting at the edge: they must drain within the period, so some traffic goes upstream
    behind = planner.plan(rate_rps=100.0, bandwidth_MBps=4.26, edge_backlog=300)
    assert behind.serverless_rate_rps > 0
    # requests held up on the uplink are sent first: offloading is slower, and 60 of them (2.8 s of
    # upload at 4.26 MB/s) leave no offload in time; the best effort is then the cheapest viable one
    split = planner.evaluate(rate_rps=115.0, bandwidth_MBps=4.26)
    held = planner.evaluate(rate_rps=115.0, bandwidth_MBps=4.26, link_backlog=60)
    assert (held.serverless_in_time <= split.serverless_in_time + 1e-12).all()
    assert split.decision.feasible and not held.decision.feasible
    # the backlog's drain and the offload exceed the uplink: an overloaded best effort that says so, with no infinite prediction
    assert held.decision.overloaded and held.decision.predicted_serverless_p_s is None and held.decision.predicted_p_s is None
    assert 0 < held.decision.predicted_in_time < planner.percentile
    assert held.decision.serverless_memory_mb == 1024 and held.decision.serverless_batch_size <= 2


def test_memory_stickiness():
    fresh = greedy_planner(criterion="mixture").plan(rate_rps=115.0, bandwidth_MBps=4.26)
    assert fresh.serverless_memory_mb == 1024  # the cheapest
    # 2048 MB costs about twice as much per request: kept only when switching must save more than that
    assert greedy_planner(criterion="mixture").plan(
        rate_rps=115.0, bandwidth_MBps=4.26, current_memory_mb=2048
    ).serverless_memory_mb == 1024
    sticky = greedy_planner(criterion="mixture", memory_switch_saving=0.6)
    assert sticky.plan(rate_rps=115.0, bandwidth_MBps=4.26, current_memory_mb=2048).serverless_memory_mb == 2048


def test_side_floor_under_the_mixture_criterion():
    for floor in (0.0, 0.5, 0.9):
        planner = greedy_planner(criterion="mixture", side_floor=floor)
        for rate in (105.0, 110.0, 120.0):
            ev = planner.evaluate(rate_rps=rate, bandwidth_MBps=4.26)
            fe = np.broadcast_to(ev.edge_in_time[:, None, None, :], ev.meets.shape)
            fs = np.broadcast_to(ev.serverless_in_time[None, :, :, :], ev.meets.shape)
            assert (fe[ev.meets] >= floor).all() and (fs[ev.meets] >= floor).all()


def test_best_effort_keeps_offloaded_batches_small():
    # 140 req/s on a 4.26 MB/s uplink cannot meet p95: the plan is best effort, but never a 20-request
    # batch (cheap per request, seconds late) on the serverless side
    d = greedy_planner(criterion="mixture").plan(rate_rps=140.0, bandwidth_MBps=4.26, link_backlog=40)
    assert not d.feasible and 1 <= d.serverless_batch_size <= 2


def test_rate_margin_from_the_spread_beyond_poisson():
    planner = greedy_planner(rate_z=1.0, rate_history=10)
    for k in range(10):  # bursty: 80 and 120 req/s in turn, sampled every second
        planner.observe(ArrivalRateMeasured(now_s=1.0 + k, rate_rps=80.0 if k % 2 else 120.0))
    values = np.array([120.0, 80.0] * 5)
    assert planner.rate_margin_rps == pytest.approx(math.sqrt(values.var(ddof=1) - values.mean()))
    ev = planner.evaluate(rate_rps=100.0, bandwidth_MBps=4.26, rate_margin_rps=planner.rate_margin_rps)
    assert ev.planning_rate_rps == pytest.approx(100.0 + planner.rate_margin_rps)
    assert ev.decision.serverless_rate_rps > 0  # planned for the surge
    assert ev.decision.edge_rate_rps + ev.decision.serverless_rate_rps == pytest.approx(100.0)  # costs at the mean
    calm = greedy_planner(rate_z=1.0, rate_history=10)
    for k in range(10):  # a spread within Poisson counting noise: no margin
        calm.observe(ArrivalRateMeasured(now_s=1.0 + k, rate_rps=95.0 + 10.0 * (k % 2)))
    assert calm.rate_margin_rps == 0.0


def test_overload_replans_early_and_not_too_often():
    planner = TailAwarePlanner(slo_s=0.8, nominal_rate_rps=60.0, overload_replan=True, overload_gap_s=1.0, estimate_window=1)
    s = Scheduler(
        cluster=H.seed_cluster(),
        placement=WeightedPlacement(),
        batching=TimeoutBatching(max_batch_size=200, max_wait_s=0.0, max_inflight="executor"),
        planner=planner,
    )

    def plans(event):
        return [a.plan for a in s.handle(event) if isinstance(a, NotePlan)]

    assert [p.trigger for p in plans(ArrivalRateMeasured(now_s=0.0, rate_rps=60.0))] == ["initial"]
    assert plans(ArrivalRateMeasured(now_s=1.0, rate_rps=70.0)) == []  # within what the edge takes
    surge = plans(ArrivalRateMeasured(now_s=2.0, rate_rps=125.0))
    assert [p.trigger for p in surge] == ["overload"] and surge[0].weights["serverless"] > 0
    assert plans(ArrivalRateMeasured(now_s=2.5, rate_rps=140.0)) == []  # at most one per overload_gap_s
    assert planner.plan_counts == {"initial": 1, "overload": 1}


def test_an_early_plan_restarts_the_period():
    # an overload plan, then a periodic one 13 ms later, counted two re-plans for one decision
    planner = TailAwarePlanner(slo_s=0.8, nominal_rate_rps=60.0, overload_replan=True, estimate_window=1, period_s=5.0)
    s = Scheduler(cluster=H.seed_cluster(), placement=WeightedPlacement(), planner=planner,
                  batching=TimeoutBatching(max_batch_size=200, max_wait_s=0.0, max_inflight="executor"))  # fmt: skip
    s.handle(ArrivalRateMeasured(now_s=0.0, rate_rps=60.0))
    actions = s.handle(ArrivalRateMeasured(now_s=4.987, rate_rps=125.0))
    assert [a.plan.trigger for a in actions if isinstance(a, NotePlan)] == ["overload"]
    assert planner.wake_at_s == pytest.approx(9.987)
    assert [a.at_s for a in actions if isinstance(a, StartTimer) and a.timer_id == TimerId.plan()] == [pytest.approx(9.987)]
    with pytest.raises(DriverError):  # the timer at 5.0 no longer runs
        s.handle(TimerFired(now_s=5.0, timer_id=TimerId.plan()))
    assert planner.plan_counts == {"initial": 1, "overload": 1}


def test_new_settings_checked():
    for bad, field in [
        ({"rate_z": -1.0}, "rate_z"),
        ({"rate_history": 1}, "rate_history"),
        ({"bandwidth_history": 0}, "bandwidth_history"),
        ({"link_utilisation": 1.5}, "link_utilisation"),
        ({"memory_switch_saving": 1.0}, "memory_switch_saving"),
        ({"overload_replan": "yes"}, "overload_replan"),
        ({"overload_gap_s": 0.0}, "overload_gap_s"),
        ({"side_floor": 2.0}, "side_floor"),
    ]:
        with pytest.raises(ValueError, match=field):
            TailAwarePlanner(slo_s=0.8, nominal_rate_rps=50.0, **bad)
