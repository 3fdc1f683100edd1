"""The tail-aware (p95) planner: its queueing model, its choices, and its prediction record."""

from __future__ import annotations

import math

import numpy as np
import pytest

from policies import ArrivalRateMeasured, NotePlan, Scheduler
from policies.batching import FixedBatching
from policies.placement import WeightedPlacement
from policies.planning.edge_first import EdgeFirstAlgorithm
from policies.planning.p95 import TailAwarePlanner, erlang_c, fill_moments, gamma_cdf, gg_queue_moments
from spec.noise import NoiseModel
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


class OddNoise(NoiseModel):
    def factors(self, count, rng):
        return np.ones(count)


def test_a_noise_model_it_cannot_read_needs_service_cv():
    cluster = Cluster(
        executors=[
            ServerSpec(name="edge", kind="edge", profile=H.EDGE_PROFILE, gateway="edge", noise=OddNoise()),
            ServerlessSpec(name="serverless", profile=H.SERVERLESS_PROFILE),
        ]
    )
    with pytest.raises(ValueError, match="service_cv"):
        Scheduler(
            cluster=cluster,
            placement=WeightedPlacement(),
            batching=FixedBatching(),
            planner=TailAwarePlanner(slo_s=0.8, nominal_rate_rps=5.0),
        )
    planner = TailAwarePlanner(slo_s=0.8, nominal_rate_rps=5.0, service_cv=0.2)
    Scheduler(cluster=cluster, placement=WeightedPlacement(), batching=FixedBatching(), planner=planner)
    assert planner.plan(rate_rps=5.0, bandwidth_MBps=math.inf).feasible
