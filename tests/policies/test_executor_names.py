"""An executor name anywhere in the policy config that the cluster does not have is a ConfigError
naming the field and the executors that exist (never silently ignored)."""

from __future__ import annotations

import copy

import pytest

from policies.run_spec import build_run_spec
from spec.validation import ConfigError
from tests.sim.configs import single_queue

PLANNER = {"_target_": "policies.planning.TailAwarePlanner", "slo_s": 0.8, "nominal_rate_rps": 10.0}
NO_BATCHING = {"_target_": "policies.batching.NoBatching"}


def config_with(**policy) -> dict:
    config = single_queue(rate_rps=10.0, service_s=0.01, num_requests=10)
    config["cluster"]["executors"].append(
        {"name": "fn", "kind": "serverless", "profile": {"kind": "linear", "per_item_s": 0.01, "base_s": 0.1}, "memory_mb": 1024}
    )
    config["cluster"]["links"] = {"fn": {"delay_s": 0.01, "bandwidth_MBps": 5.0}}
    config["policy"].update(copy.deepcopy(policy))
    return config


@pytest.mark.parametrize(
    "policy, field",
    [
        ({"placement": {"_target_": "policies.placement.StaticPlacement", "executor": "edg"}}, "placement.executor"),
        ({"placement": {"_target_": "policies.placement.RoundRobinPlacement", "executors": ["edge", "gpu"]}}, "placement.executors"),
        ({"placement": {"_target_": "policies.placement.LeastLoadedPlacement", "executors": ["gpu"]}}, "placement.executors"),
        ({"placement": {"_target_": "policies.placement.LatencyAwarePlacement", "executors": ["gpu"]}}, "placement.executors"),
        ({"placement": {"_target_": "policies.placement.WeightedPlacement", "weights": {"gpu": 1.0}}}, "placement.weights"),
        ({"batching_per_executor": {"gpu": NO_BATCHING}}, "policy.batching_per_executor.gpu"),
        ({"planner": dict(PLANNER, edge_executor="gpu")}, "planner.edge_executor"),
        ({"planner": dict(PLANNER, serverless_executor="gpu")}, "planner.serverless_executor"),
        ({"planner": dict(PLANNER, _target_="policies.planning.EdgeFirstPlanner", edge_executor="gpu")}, "planner.edge_executor"),
    ],
)
def test_an_unknown_executor_name_is_an_error_naming_the_field_and_the_executors(policy, field):
    with pytest.raises(ConfigError) as error:
        build_run_spec(config_with(**policy))
    assert error.value.field == field
    message = str(error.value)
    assert "gpu" in message or "edg" in message
    assert "edge" in error.value.allowed or "fn" in error.value.allowed


def test_the_named_executors_are_accepted():
    build_run_spec(config_with(planner=dict(PLANNER, edge_executor="edge", serverless_executor="fn"),
                               placement={"_target_": "policies.placement.WeightedPlacement"},
                               batching_per_executor={"edge": NO_BATCHING}))  # fmt: skip
