"""Hosts through Hydra: a profile's ``hosts`` places a cluster file's executors and roles on machines."""

from __future__ import annotations

import pytest
from hydra import compose, initialize_config_dir

import experiments.run  # noqa: F401  (schema and resolvers)
from experiments.paths import REPO_ROOT
from experiments.run import to_run_config
from policies.run_spec import build_run_spec

CONF = REPO_ROOT / "conf"
CLUSTERS = sorted(p.stem for p in (CONF / "cluster").glob("*.yaml"))
HOSTS = "+profile.hosts={local: {cores: 2, executors: '*', roles: {broker: {cpu_s_per_request: 1.0e-4}, sink: {cpu_s_per_batch: 2.0e-5}}}}"


def _run_config(overrides: list[str]) -> dict:
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return to_run_config(compose("config", overrides=overrides))


@pytest.mark.parametrize("cluster", CLUSTERS)
def test_a_profile_without_hosts_leaves_every_cluster_without_hosts(cluster):
    config = _run_config([f"cluster={cluster}"])
    assert "hosts" not in config["cluster"]
    assert build_run_spec(config).cluster.hosts == {}


FLEETS = [c for c in CLUSTERS if c.startswith("fleet")]  # a fleet has no hosts (conf/cluster/fleet.yaml: hosts name single executors)


@pytest.mark.parametrize("cluster", FLEETS)
def test_a_fleet_keeps_no_hosts_even_with_a_profile_that_has_them(cluster):
    assert build_run_spec(_run_config([f"cluster={cluster}", "cluster.devices=3", HOSTS])).cluster.hosts == {}


@pytest.mark.parametrize("cluster", [c for c in CLUSTERS if c not in FLEETS])
def test_a_profile_with_hosts_puts_every_executor_and_the_roles_on_this_machine(cluster):
    spec = build_run_spec(_run_config([f"cluster={cluster}", HOSTS, "+profile.hop_samples_s=[0.001,0.004]"]))
    host = spec.cluster.hosts["local"]
    assert host.cores == 2
    assert all(spec.cluster.host_of(name) is host for name in spec.cluster.executors)
    assert spec.cluster.host_of_role("broker")[1].cpu_s_per_request == 1.0e-4
    assert spec.cluster.host_of_role("gateway") is None
    assert all(e.hop_samples_s == (0.001, 0.004) for e in spec.cluster.executors.values())


@pytest.mark.parametrize("workload", sorted(p.stem for p in (CONF / "workload").glob("*.yaml")))
def test_measured_ingest_hops_reach_every_source_and_none_without_them(workload):
    cluster = ["cluster=multi_edge"] if workload == "multi_source" else []
    plain = build_run_spec(_run_config([f"workload={workload}", *cluster]))
    assert all(s.hop_samples_s is None for s in plain.workload.sources)
    spec = build_run_spec(_run_config([f"workload={workload}", *cluster, "+profile.ingest_samples_s=[0.002,0.006]"]))
    assert all(s.hop_samples_s == (0.002, 0.006) and s.hop_s == pytest.approx(0.004) for s in spec.workload.sources)


def test_two_replicas_on_this_machine():
    spec = build_run_spec(_run_config(["cluster=edge_replicas", HOSTS]))
    assert spec.cluster.executors["edge"].slots == 2
