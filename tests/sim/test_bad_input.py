"""Bad configuration fails before the clock starts, naming the field and what is allowed."""

from __future__ import annotations

import pytest

from sim import build_simulation, simulate
from spec.validation import ConfigError
from tests.sim.configs import single_queue, timeout_batching, with_changes

BASE = single_queue(rate_rps=10, service_s=0.01, num_requests=100, batching=timeout_batching())


@pytest.mark.parametrize(
    ("change", "field", "allowed"),
    [
        ({"workload.sources.0.arrivals": {"kind": "poisson", "rate_rps": -5}}, "workload.sources[0].arrivals.rate_rps", "> 0"),
        ({"workload.sources.0.arrivals": {"kind": "poisson", "rate_rps": 0}}, "workload.sources[0].arrivals.rate_rps", "> 0"),
        ({"workload.sources.0.arrivals": {"kind": "poison", "rate_rps": 5}}, "workload.sources[0].arrivals.kind", "'poisson', 'gamma', 'mmpp', 'trace'"),
        ({"workload.sources.0.arrivals": {"kind": "trace", "path": "/nonexistent/gaps.json"}}, "workload.sources[0].arrivals.path", "exist"),
        ({"policy.batching": {**timeout_batching(), "max_batch_size": 0}}, "batching.max_batch_size", "integer >= 1"),
        ({"cluster.executors.0.slots": 0}, "cluster.executors.edge.slots", "integer >= 1"),
        ({"workload.num_requests": -1}, "workload.num_requests", "integer >= 1"),
        ({"workload.duration_s": 5.0}, "workload.num_requests, workload.duration_s", "one of the two"),
        ({"cluster.executors.0.kind": "fog"}, "cluster.executors.edge.kind", "'edge', 'cloud', 'serverless'"),
        ({"cluster.executors.0.profile": {"kind": "linear", "per_item_s": -1, "base_s": 0}}, "cluster.executors.edge.profile.per_item_s", ">= 0"),
        ({"cluster.executors.0.noise": {"kind": "lognormal", "cv": -0.1}}, "cluster.executors.edge.noise.cv", ">= 0"),
        ({"policy.placement": {"_target_": "policies.placement.StaticPlacement", "executor": "cloud"}}, "placement.executor", "edge"),
        ({"policy.placement": {"_target_": "policies.placement.Nope"}}, "policy.placement._target_", "StaticPlacement"),
        ({"seed": -1}, "seed", "integer >= 0"),
    ],
)
def test_bad_setting_names_field_and_allowed_values(change, field, allowed):
    with pytest.raises(ValueError) as caught:
        build_simulation(with_changes(BASE, **change))
    message = str(caught.value)
    assert field in message
    assert allowed in message


def test_probability_outside_unit_interval_is_rejected():
    config = with_changes(BASE)
    config["cluster"]["executors"] = [
        {
            "name": "fn",
            "kind": "serverless",
            "profile": {"kind": "linear", "per_item_s": 0.01, "base_s": 0.0},
            "failure_probability": 1.5,
        }
    ]
    config["policy"]["placement"] = {"_target_": "policies.placement.StaticPlacement"}
    with pytest.raises(ConfigError, match=r"executors\.fn\.failure_probability=1\.5.*probability in \[0, 1\]"):
        build_simulation(config)


def test_unknown_parameter_lists_the_accepted_ones():
    with pytest.raises(ConfigError, match=r"policy\.batching\.max_batch=.*max_batch_size, max_wait_s"):
        build_simulation(with_changes(BASE, **{"policy.batching": {"_target_": "policies.batching.TimeoutBatching", "max_batch": 4}}))


def test_unknown_top_level_key_is_rejected():
    with pytest.raises(ConfigError, match="workloads"):
        simulate({**BASE, "workloads": {}})
