"""Hosts in the simulator: co-located work shares the cores, checked against arithmetic and theory."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from sim import simulate
from spec.validation import ConfigError
from tests.sim.configs import NO_BATCHING, STATIC, single_queue, timeout_batching, with_changes


def _trace(tmp_path, gaps) -> dict:
    path = tmp_path / "gaps.json"
    path.write_text(json.dumps(gaps))
    return {"kind": "trace", "path": str(path), "start_offset_s": 0}


def _on_host(config: dict, cores: float, roles: dict | None = None, **host) -> dict:
    config = json.loads(json.dumps(config))
    config["cluster"]["hosts"] = {"box": {"cores": cores, "executors": "*", "roles": roles or {}, **host}}
    return config


def test_without_hosts_nothing_changes_and_an_ample_host_changes_nothing():
    base = single_queue(rate_rps=60, service_s=0.01, noise={"kind": "lognormal", "cv": 0.3}, slots=2, num_requests=3000,
                        batching=timeout_batching(4, 0.004))  # fmt: skip
    plain = simulate(base).requests
    ample = simulate(_on_host(base, cores=2)).requests  # as many cores as slots, no roles: nothing shares
    np.testing.assert_allclose(ample["latency_s"].to_numpy(), plain["latency_s"].to_numpy(), rtol=0, atol=1e-9)
    assert (ample["batch_size"].to_numpy() == plain["batch_size"].to_numpy()).all()


def test_two_replicas_on_one_core_both_finish_at_twice_the_service(tmp_path):
    config = single_queue(rate_rps=1, service_s=1.0, slots=2, num_requests=2, arrivals=_trace(tmp_path, [1.0, 0.0, 100.0]))
    alone = simulate(config).requests
    assert alone["completed_s"].tolist() == pytest.approx([2.0, 2.0])
    shared = simulate(_on_host(config, cores=1)).requests
    assert shared["completed_s"].tolist() == pytest.approx([3.0, 3.0])
    assert shared["service_s"].tolist() == pytest.approx([2.0, 2.0])
    # a batch that keeps two cores busy, alone on two cores, takes its profile time
    two_threads = simulate(_on_host(with_changes(config, **{"cluster.executors.0.slots": 1}), cores=2, batch_cores={"edge": 2.0})).requests
    assert two_threads["service_s"].tolist() == pytest.approx([1.0, 1.0])


def test_mm1_processor_sharing_through_the_simulator_has_mean_latency_one_over_mu_minus_lambda():
    # every request its own batch, as many slots as needed: the one core is shared by all (M/M/1-PS)
    lam, mu = 70.0, 100.0
    config = single_queue(rate_rps=lam, service_s=1.0 / mu, noise={"kind": "gamma", "cv": 1.0}, slots=10_000, num_requests=60_000, seed=4)
    latency = simulate(_on_host(config, cores=1)).requests["latency_s"].to_numpy()[5000:]
    means = latency.reshape(50, -1).mean(axis=1)
    half = 2.01 * means.std(ddof=1) / math.sqrt(len(means))
    theory = 1.0 / (mu - lam)
    assert abs(means.mean() - theory) < max(half, 0.05 * theory), (means.mean(), theory, half)
    # unconstrained (no host), the same run is M/M/inf: latency is just the service, mean 1/mu
    free = simulate(config).requests["latency_s"].to_numpy()
    assert free.mean() == pytest.approx(1.0 / mu, rel=0.03)


def test_a_role_busy_u_of_the_core_slows_a_lone_model_job_by_one_over_one_minus_u(tmp_path):
    # gateway g2's requests go to an executor off the host, but g2 itself runs on the host:
    # 300 req/s at 1 ms of CPU each keep u = 0.3 of the one core busy; g1's 1 s jobs run beside it
    u, rate = 0.3, 300.0
    profile = {"kind": "linear", "per_item_s": 1.0, "base_s": 0.0}
    config = {
        "seed": 2,
        "workload": {"duration_s": 200.0, "sources": [
            {"name": "probe", "gateway": "g1", "arrivals": {"kind": "gamma", "rate_rps": 0.1, "cv": 0.01}},
            {"name": "load", "gateway": "g2", "arrivals": {"kind": "poisson", "rate_rps": rate}}]},
        "cluster": {"executors": [
            {"name": "e1", "kind": "edge", "gateway": "g1", "slots": 1, "profile": profile},
            {"name": "e2", "kind": "edge", "gateway": "g2", "slots": 100_000, "profile": {"kind": "linear", "per_item_s": 1e-4, "base_s": 0.0}}],
            "hosts": {"box": {"cores": 1, "executors": ["e1"], "roles": {"gateway/g2": {"cpu_s_per_request": u / rate}}}}},
        "policy": {"placement": STATIC, "batching": NO_BATCHING},
    }  # fmt: skip
    requests = simulate(config).requests
    probe = requests.loc[requests["source"] == "probe", "service_s"].to_numpy()
    assert len(probe) >= 15
    assert probe.mean() == pytest.approx(1.0 / (1.0 - u), rel=0.03)
    # the load's own executor is on no host: it runs at its profile's speed
    load = requests.loc[requests["source"] == "load", "service_s"].to_numpy()
    assert load == pytest.approx(np.full(len(load), 1e-4))


@pytest.mark.parametrize("u", [0.2, 0.4])
def test_a_role_idling_at_u_cores_slows_a_lone_job_by_one_over_one_minus_u(tmp_path, u):
    config = single_queue(rate_rps=1, service_s=1.0, num_requests=2, arrivals=_trace(tmp_path, [1.0, 10.0, 100.0]))
    requests = simulate(_on_host(config, cores=1, roles={"broker": {"idle_cores": u}})).requests
    assert requests["service_s"].tolist() == pytest.approx([1.0 / (1.0 - u)] * 2)
    # on two cores the idle loop takes none of the job's core
    requests = simulate(_on_host(config, cores=2, roles={"broker": {"idle_cores": u}})).requests
    assert requests["service_s"].tolist() == pytest.approx([1.0] * 2)


def test_background_cores_leave_the_rest_to_the_model(tmp_path):
    # other work keeping 1.5 of 2 cores busy: two 1 s jobs share what is left (max-min: 2/3 core each)
    config = single_queue(rate_rps=1, service_s=1.0, slots=2, num_requests=2, arrivals=_trace(tmp_path, [1.0, 0.0, 100.0]))
    requests = simulate(_on_host(config, cores=2, background_cores=1.5)).requests
    assert requests["service_s"].tolist() == pytest.approx([1.5, 1.5])
    with pytest.raises(ConfigError, match=r"cluster\.hosts\.box\.background_cores"):
        simulate(_on_host(config, cores=2, background_cores=2.0))


def test_the_workers_own_cpu_runs_in_the_overhead_and_keeps_the_slot(tmp_path):
    # one slot, two requests at 1 s: service 1 s; then the worker's 0.5 CPU-s, then the rest of overhead_s = 0.8
    config = single_queue(rate_rps=1, service_s=1.0, num_requests=2, arrivals=_trace(tmp_path, [1.0, 0.0, 100.0]))
    config["cluster"]["executors"][0]["overhead_s"] = 0.8
    requests = simulate(_on_host(config, cores=1, roles={"worker": {"cpu_s_per_batch": 0.5}})).requests
    assert requests["completed_s"].tolist() == pytest.approx([2.0, 3.8])
    # beside other work demanding half the core, service and the worker's CPU run at half speed (2 s, 1 s);
    # the overhead's waiting part (0.8 - 0.5 = 0.3 s) does not stretch
    two = _on_host(config, cores=1, roles={"worker": {"cpu_s_per_batch": 0.5}})
    two["cluster"]["hosts"]["box"]["background_cores"] = 0.5
    requests = simulate(two).requests
    assert requests["completed_s"].tolist() == pytest.approx([3.0, 3.0 + 1.0 + 0.3 + 2.0])


def test_concurrent_cold_starts_share_the_cores(tmp_path):
    # four requests at once, each a cold start of 1 s (CPU at one core) then 0.1 s of service: on 2 cores
    # the four cold starts run at half speed (2 s), then the four batches share the cores (0.2 s)
    config = {
        "seed": 0,
        "workload": {"num_requests": 4, "sources": [{"name": "cam", "gateway": "edge", "arrivals": _trace(tmp_path, [1.0, 0.0, 0.0, 0.0, 50.0])}]},
        "cluster": {"executors": [
            {"name": "edge", "kind": "edge", "gateway": "edge", "slots": 1, "profile": {"kind": "linear", "per_item_s": 100.0, "base_s": 0.0}},
            {"name": "fn", "kind": "serverless", "profile": {"kind": "linear", "per_item_s": 0.1, "base_s": 0.0},
             "cold_start": {"kind": "constant", "value_s": 1.0}, "max_instances": 10}]},
        "policy": {"placement": {"_target_": "policies.placement.StaticPlacement", "executor": "fn"}, "batching": NO_BATCHING},
    }  # fmt: skip
    alone = simulate(config).requests
    assert alone["cold_start_s"].tolist() == pytest.approx([1.0] * 4)
    shared = simulate(_on_host(config, cores=2)).requests
    assert shared["cold_start_s"].tolist() == pytest.approx([2.0] * 4)
    assert shared["service_s"].tolist() == pytest.approx([0.2] * 4)
    assert shared["latency_s"].tolist() == pytest.approx([2.2] * 4)
    # cold starts that keep two cores busy each (1 s alone on 2 cores): four at once get half a core each
    parallel = simulate(_on_host(config, cores=2, cold_start_cores=2.0)).requests
    assert parallel["cold_start_s"].tolist() == pytest.approx([4.0] * 4)


def test_measured_hops_and_overheads_are_resampled_per_message():
    samples = [0.001, 0.002, 0.010]
    config = single_queue(rate_rps=20, service_s=0.005, num_requests=3000)
    config["cluster"]["executors"][0].update(hop_samples_s=samples, overhead_samples_s=[0.0, 0.004])
    requests = simulate(config).requests
    hops = requests["hop_s"].to_numpy()  # there and back, two independent draws
    sums = {round(a + b, 9) for a in samples for b in samples}
    assert set(np.round(hops, 9)) <= sums and len(set(np.round(hops, 9))) >= 5
    assert hops.mean() == pytest.approx(2 * np.mean(samples), rel=0.05)
    assert simulate(config).requests["latency_s"].equals(requests["latency_s"])  # seeded: repeatable
    # the overheads keep the slot busy after each service: more queueing than with none
    config["cluster"]["executors"][0]["overhead_samples_s"] = [0.0]
    assert requests["queue_s"].mean() > simulate(config).requests["queue_s"].mean() * 1.2


def test_measured_source_hops_are_resampled_per_request_and_reorder_what_the_gateway_sees():
    samples = [0.001, 0.05]
    config = single_queue(rate_rps=100, service_s=0.001, num_requests=4000)
    config["workload"]["sources"][0]["hop_samples_s"] = samples
    requests = simulate(config).requests
    hops = np.round(requests["hop_s"].to_numpy(), 9)
    assert set(hops) == set(samples)  # each request its own draw, in the hop_s column
    assert (hops == 0.05).mean() == pytest.approx(0.5, abs=0.03)
    # a request drawn a long hop is seen after later ones drawn a short one: dispatched out of arrival order
    by_arrival = requests.sort_values("arrival_s")
    assert (np.diff(by_arrival["dispatched_s"].to_numpy()) < 0).any()
    # latency counts from when the request was made: its hop is in it
    assert (requests["latency_s"] >= requests["hop_s"] + requests["service_s"] - 1e-12).all()
    assert simulate(config).requests.equals(requests)  # seeded


def test_bad_host_settings_name_the_field():
    base = single_queue(rate_rps=1, service_s=0.01, num_requests=10)
    with pytest.raises(ConfigError, match=r"cluster\.hosts\.box\.cores"):
        simulate(_on_host(base, cores=0))
    with pytest.raises(ConfigError, match=r"cluster\.hosts\.box\.roles\.router"):
        simulate(_on_host(base, cores=1, roles={"router": {"cpu_s_per_request": 1e-4}}))
    with pytest.raises(ConfigError, match=r"cluster\.hosts\.box\.roles\.sink\.cpu_s_per_batch"):
        simulate(_on_host(base, cores=1, roles={"sink": {"cpu_s_per_batch": -1}}))
    bad = _on_host(base, cores=1)
    bad["cluster"]["hosts"]["box"]["executors"] = ["nope"]
    with pytest.raises(ConfigError, match=r"cluster\.hosts\.box\.executors"):
        simulate(bad)
    bad["cluster"]["hosts"] = {"a": {"cores": 1, "executors": ["edge"]}, "b": {"cores": 1, "executors": ["edge"]}}
    with pytest.raises(ConfigError, match="one host only"):
        simulate(bad)
    hop = json.loads(json.dumps(base))
    hop["cluster"]["executors"][0]["hop_samples_s"] = []
    with pytest.raises(ConfigError, match=r"hop_samples_s"):
        simulate(hop)
    hop = json.loads(json.dumps(base))
    hop["workload"]["sources"][0]["hop_samples_s"] = [0.001, -1.0]
    with pytest.raises(ConfigError, match=r"sources\[0\]\.hop_samples_s=-1\.0"):
        simulate(hop)


def test_a_request_s_role_cpu_runs_during_its_hop_not_during_its_own_service(tmp_path):
    # one core, the gateway's 0.2 s of CPU per request: charged when the source publishes, it is done
    # inside the 0.5 s hop (as live, where the measured ingest hop already includes that work)
    config = single_queue(rate_rps=1, service_s=1.0, num_requests=2, arrivals=_trace(tmp_path, [1.0, 10.0, 100.0]))
    roles = {"gateway": {"cpu_s_per_request": 0.2}}
    hopped = with_changes(config, **{"workload.sources.0.hop_s": 0.5})
    assert simulate(_on_host(hopped, cores=1, roles=roles)).requests["service_s"].tolist() == pytest.approx([1.0, 1.0])
    # with no hop the two share the core from the start: 0.4 s at half speed, then the rest alone
    assert simulate(_on_host(config, cores=1, roles=roles)).requests["service_s"].tolist() == pytest.approx([1.2, 1.2])


@pytest.mark.parametrize("wakeup_s", [0.0, 1e-3])
def test_a_role_s_cpu_with_wakeups_is_that_of_a_queue_with_an_exceptional_first_service(wakeup_s):
    # Poisson messages to a lone role: one that finds it idle costs wakeup + m, one that finds it busy m.
    # By PASTA a share 1 - rho of arrivals find it idle, so rho = lam (m + w (1 - rho)) = lam (m + w) / (1 + lam w)
    lam, per_message_s = 300.0, 5e-4
    config = {
        "seed": 5,
        "workload": {"duration_s": 200.0, "sources": [{"name": "load", "arrivals": {"kind": "poisson", "rate_rps": lam}}]},
        "cluster": {"executors": [{"name": "e", "kind": "edge", "slots": 100_000, "profile": {"kind": "linear", "per_item_s": 1e-4, "base_s": 0.0}}],
                    "hosts": {"box": {"cores": 1, "executors": [],
                                      "roles": {"gateway": {"cpu_s_per_request": per_message_s, "cpu_s_per_wakeup": wakeup_s}}}}},
        "policy": {"placement": STATIC, "batching": NO_BATCHING},
    }  # fmt: skip
    from sim.config import build_simulation

    sim = build_simulation(config)
    result = sim.run()
    busy = sim.hosts["box"].model.busy_cpu_s / float(result.requests["arrival_s"].max())
    theory = lam * (per_message_s + wakeup_s) / (1 + lam * wakeup_s)
    assert busy == pytest.approx(theory, rel=0.03), (busy, theory)
    if wakeup_s:
        assert busy < 0.9 * lam * (per_message_s + wakeup_s)  # far from a wake-up for every message


def test_a_broker_past_its_storage_step_costs_step_factor_times_as_much_per_message(tmp_path):
    # one core, 1 MB requests, the broker's 0.2 s per request; the first request stores 1 MB (under the 1.5 MB step),
    # the second finds 3 MB stored (the first request and its batch): 0.4 s of broker CPU beside its 1 s model
    # job, so 0.8 s at half speed and the model's last 0.6 s alone
    config = with_changes(single_queue(rate_rps=1, service_s=1.0, num_requests=2, arrivals=_trace(tmp_path, [1.0, 10.0, 100.0])),
                          **{"workload.sources.0.size_bytes": 1_000_000})  # fmt: skip
    flat = {"broker": {"cpu_s_per_request": 0.2}}
    assert simulate(_on_host(config, cores=1, roles=flat)).requests["service_s"].tolist() == pytest.approx([1.2, 1.2])
    stepped = {"broker": {"cpu_s_per_request": 0.2, "step_after_MB": 1.5, "step_factor": 2.0}}
    assert simulate(_on_host(config, cores=1, roles=stepped)).requests["service_s"].tolist() == pytest.approx([1.2, 1.4])
    with pytest.raises(ConfigError, match=r"cluster\.hosts\.box\.roles\.broker\.step_factor"):
        simulate(_on_host(config, cores=1, roles={"broker": {"step_factor": 0.5}}))


def test_a_request_passes_its_roles_in_turn_so_they_keep_one_core_busy_not_three(tmp_path):
    # two cores, a 1 s model job, and 0.3 s of CPU in each of the request's source, broker and gateway: one after the
    # other (as the message travels) they fit on the second core and the model runs at full speed; all three at once
    # beside the model (4 jobs on 2 cores) would slow it to 1.3 s
    config = single_queue(rate_rps=1, service_s=1.0, num_requests=2, arrivals=_trace(tmp_path, [1.0, 10.0, 100.0]))
    roles = {role: {"cpu_s_per_request": 0.3} for role in ("source", "broker", "gateway")}
    assert simulate(_on_host(config, cores=2, roles=roles)).requests["service_s"].tolist() == pytest.approx([1.0, 1.0])
    # on one core the same work takes as long either way (the core is never idle): 0.9 s of roles and 1 s of model
    assert simulate(_on_host(config, cores=1, roles=roles)).requests["service_s"].tolist() == pytest.approx([1.9, 1.9])


def test_a_slot_that_idled_adds_its_warm_up_to_the_next_batch(tmp_path):
    warmup = {"edge": {"batch_sizes": [1], "idle_s": [1.0, 10.0], "extra_s": [[0.5, 0.8]]}}
    # two at once: the first finds a slot never used (cold: the longest idle's 0.8 s), the second waits and starts warm
    both = single_queue(rate_rps=1, service_s=1.0, num_requests=2, arrivals=_trace(tmp_path, [1.0, 0.0, 100.0]))
    assert simulate(_on_host(both, cores=1, warmup=warmup)).requests["service_s"].tolist() == pytest.approx([1.8, 1.0])
    # the second 1.2 s after the first ended: 0.5 + 0.2 / 9 * 0.3 s more
    apart = single_queue(rate_rps=1, service_s=1.0, num_requests=2, arrivals=_trace(tmp_path, [1.0, 3.0, 100.0]))
    assert simulate(_on_host(apart, cores=1, warmup=warmup)).requests["service_s"].tolist() == pytest.approx([1.8, 1.0 + 0.5 + 0.2 / 30])
    assert simulate(_on_host(apart, cores=1)).requests["service_s"].tolist() == pytest.approx([1.0, 1.0])  # no table: none
    with pytest.raises(ConfigError, match=r"cluster\.hosts\.box\.warmup\.edge\.idle_s"):
        simulate(_on_host(apart, cores=1, warmup={"edge": {**warmup["edge"], "idle_s": [1.0, -1.0]}}))
