"""Every policy class has a YAML file under conf/policy/ whose ``_target_`` names it,
listing all its parameters, and each file instantiates into a working policy."""

from __future__ import annotations

import importlib
import inspect
from pathlib import Path

import pytest

from policies import BatchingPolicy, PlacementPolicy, Planner, Scheduler
from policies.batching import FixedBatching, TimeoutBatching
from policies.placement import RoundRobinPlacement, WeightedPlacement
from tests.policies import harness as H
from tests.policies.test_contract import CLASSES

omegaconf = pytest.importorskip("omegaconf")
instantiate = pytest.importorskip("hydra.utils").instantiate
import experiments.paths  # noqa: E402,F401  (the ${mul:...} and ${data:...} resolvers the files use)

CONF = Path(__file__).resolve().parents[2] / "conf" / "policy"
FILES = sorted(p for p in CONF.rglob("*.yaml"))
#: the knobs conf/config.yaml defines at the top and policy files interpolate
KNOBS = {"slo_s": 0.8, "rate_rps": 50.0}


def load(path: Path):
    raw = omegaconf.OmegaConf.load(path)
    root = omegaconf.OmegaConf.create(dict(KNOBS))
    root["it"] = raw
    return root.it


def target_class(node) -> type | None:
    target = node.get("_target_") if isinstance(node, omegaconf.DictConfig) else None
    if not target:
        return None
    module, _, name = target.rpartition(".")
    return getattr(importlib.import_module(module), name)


def policy_files():
    out = []
    for path in FILES:
        node = load(path)
        if target_class(node) is not None:
            out.append(path)
    return out


def test_every_policy_class_has_a_yaml_file():
    targeted = {target_class(load(p)) for p in policy_files()}
    missing = sorted(name for name, cls in CLASSES.items() if cls not in targeted)
    assert not missing, f"add a conf/policy/<family>/<name>.yaml with _target_ for {missing}"


@pytest.mark.parametrize("path", policy_files(), ids=lambda p: str(p.relative_to(CONF)))
def test_yaml_lists_every_parameter_and_instantiates(path):
    node = load(path)
    cls = target_class(node)
    params = {
        name
        for name, p in inspect.signature(cls.__init__).parameters.items()
        if name != "self" and p.kind is inspect.Parameter.KEYWORD_ONLY
    }
    keys = {k for k in node.keys() if not str(k).startswith("_")}
    assert keys == params, f"{path.name}: missing {sorted(params - keys)}, unknown {sorted(keys - params)}"
    obj = instantiate(node)
    assert isinstance(obj, cls)
    cluster = H.seed_cluster(with_cloud=True)
    if isinstance(obj, BatchingPolicy):
        s = Scheduler(cluster=cluster, placement=RoundRobinPlacement(), batching=obj)
    elif isinstance(obj, PlacementPolicy):
        s = Scheduler(cluster=cluster, placement=obj, batching=TimeoutBatching())
    else:
        assert isinstance(obj, Planner)
        s = Scheduler(cluster=cluster, placement=WeightedPlacement(), batching=FixedBatching(max_wait_s=0.2), planner=obj)
    result = H.run(s, rate_rps=40.0, duration_s=12.0, slo_s=0.8, rate_period_s=1.0, bandwidth=lambda t: 4.26)
    H.check_accounting(result)
    assert result.completed
