"""The run spec: built and checked once at the entry point, rebuilt by a live role with one call."""

from __future__ import annotations

import numpy as np
import pytest

import policies.run_spec as run_spec_module
from policies.run_spec import RunSpec, SimOptions, build_run_spec
from spec.validation import ConfigError

CONFIG = {
    "seed": 3,
    "workload": {"num_requests": 200, "sources": [{"name": "cam", "arrivals": {"kind": "poisson", "rate_rps": 40}, "slo_s": 0.5}]},
    "cluster": {"executors": [{"name": "edge", "kind": "edge", "profile": {"kind": "linear", "per_item_s": 0.001, "base_s": 0.002}}]},
    "policy": {"placement": {"_target_": "policies.placement.StaticPlacement"},
               "batching": {"_target_": "policies.batching.TimeoutBatching", "max_batch_size": 4, "max_wait_s": 0.01}},
    "sim": {"telemetry_period_s": 0.5},
}  # fmt: skip


def test_a_role_rebuilds_the_same_spec_from_its_json_in_one_call():
    spec = build_run_spec(CONFIG)
    again = RunSpec.from_json(spec.to_json())
    assert again.seed == 3 and again.gateways == ["edge"] and again.sim == SimOptions(telemetry_period_s=0.5)
    np.testing.assert_array_equal(again.arrivals.arrival_s, spec.arrivals.arrival_s)
    assert again.expected_at("edge") == 200


def test_the_backends_take_a_built_spec_without_checking_it_again(monkeypatch):
    from sim import simulate

    spec = build_run_spec(CONFIG)

    def built_twice(config):
        raise AssertionError("the run config was built a second time")

    monkeypatch.setattr(run_spec_module, "build_run_spec", built_twice)
    monkeypatch.setattr("sim.config.build_run_spec", built_twice)
    assert simulate(spec).summary["completed"] == 200


@pytest.mark.parametrize(
    ("sim", "field"),
    [({"horizon": 5}, "sim.horizon"), ({"progress": "yes"}, "sim.progress"), ({"telemetry_period_s": 0}, "sim.telemetry_period_s")],
)
def test_a_bad_sim_section_names_its_field(sim, field):
    with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
        build_run_spec({**CONFIG, "sim": sim})


def test_the_live_harness_refuses_a_central_scheduler_by_name():
    from live.config import build_run

    with pytest.raises(ConfigError, match=r"sim\.central_scheduler"):
        build_run({**CONFIG, "sim": {"central_scheduler": True}})


def test_a_per_executor_override_for_an_executor_that_does_not_exist_is_an_error():
    config = {**CONFIG, "policy": {**CONFIG["policy"], "batching_per_executor": {"egde": {"_target_": "policies.batching.NoBatching"}}}}
    with pytest.raises(ConfigError, match=r"policy\.batching_per_executor\.egde='egde' is not allowed: an executor of the cluster: edge"):
        build_run_spec(config)
