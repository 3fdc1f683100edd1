"""The simulator against queueing theory: mean waits of M/M/1, M/D/1 and M/M/c.

Expected values come from closed forms (Pollaczek-Khinchine, Erlang C), not
from the simulator. At 400,000 requests and utilisation 0.5 the standard
error of the mean wait is under 1%, so a 3% tolerance is a real check: a
service time off by 3%, or one request in 30 skipping the queue, fails it.
"""

from __future__ import annotations

import math
import os

import pytest

from sim import simulate
from tests.sim.configs import single_queue

NUM_REQUESTS = int(os.environ.get("EDGEBATCH_THEORY_REQUESTS", 400_000))
SERVICE_S = 0.01
UTILISATION = 0.5
SEED = int(os.environ.get("EDGEBATCH_THEORY_SEED", 0))


def erlang_c_wait_s(servers: int, arrival_rps: float, service_s: float) -> float:
    """Mean wait in queue of M/M/c (Erlang C)."""
    offered = arrival_rps * service_s
    rho = offered / servers
    top = offered**servers / math.factorial(servers) / (1 - rho)
    bottom = sum(offered**k / math.factorial(k) for k in range(servers)) + top
    probability_wait = top / bottom
    return probability_wait * service_s / (servers * (1 - rho))


def pollaczek_khinchine_wait_s(arrival_rps: float, mean_s: float, cv: float) -> float:
    """Mean wait in queue of M/G/1: lambda E[S^2] / (2 (1 - rho))."""
    second_moment = mean_s**2 * (1 + cv**2)
    return arrival_rps * second_moment / (2 * (1 - arrival_rps * mean_s))


def mean_wait_s(config: dict) -> float:
    result = simulate(config)
    assert result.summary["completed"] == NUM_REQUESTS
    return float(result.requests["queue_s"].mean())


def test_mm1_mean_wait_matches_theory():
    rate = UTILISATION / SERVICE_S
    measured = mean_wait_s(
        single_queue(rate_rps=rate, service_s=SERVICE_S, noise={"kind": "gamma", "cv": 1.0}, num_requests=NUM_REQUESTS, seed=SEED)
    )
    expected = UTILISATION * SERVICE_S / (1 - UTILISATION)  # rho / (mu - lambda)
    assert measured == pytest.approx(expected, rel=0.03)


def test_md1_mean_wait_matches_pollaczek_khinchine():
    rate = UTILISATION / SERVICE_S
    measured = mean_wait_s(single_queue(rate_rps=rate, service_s=SERVICE_S, num_requests=NUM_REQUESTS, seed=SEED))
    expected = pollaczek_khinchine_wait_s(rate, SERVICE_S, cv=0.0)
    assert expected == pytest.approx(UTILISATION * SERVICE_S / (2 * (1 - UTILISATION)))
    assert measured == pytest.approx(expected, rel=0.03)


def test_mg1_lognormal_mean_wait_matches_pollaczek_khinchine():
    rate = UTILISATION / SERVICE_S
    noise = {"kind": "lognormal", "cv": 0.5}
    measured = mean_wait_s(single_queue(rate_rps=rate, service_s=SERVICE_S, noise=noise, num_requests=NUM_REQUESTS, seed=SEED))
    assert measured == pytest.approx(pollaczek_khinchine_wait_s(rate, SERVICE_S, cv=0.5), rel=0.03)


@pytest.mark.parametrize("slots", [2, 4])
def test_mmc_mean_wait_matches_erlang_c(slots):
    rate = UTILISATION * slots / SERVICE_S
    config = single_queue(
        rate_rps=rate, service_s=SERVICE_S, noise={"kind": "gamma", "cv": 1.0}, slots=slots, num_requests=NUM_REQUESTS, seed=SEED
    )
    assert mean_wait_s(config) == pytest.approx(erlang_c_wait_s(slots, rate, SERVICE_S), rel=0.03)


def test_utilisation_and_throughput_match_offered_load():
    rate = UTILISATION / SERVICE_S
    result = simulate(single_queue(rate_rps=rate, service_s=SERVICE_S, num_requests=100_000, seed=SEED))
    busy_s = result.batches.eval("end_s - start_s").sum()
    assert busy_s / result.summary["span_s"] == pytest.approx(UTILISATION, rel=0.02)
    assert result.summary["throughput_rps"] == pytest.approx(rate, rel=0.02)
