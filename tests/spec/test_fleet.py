"""Fleets (``cluster.devices``): N copies of a template site, each varied, seeded, checked before any run."""

from __future__ import annotations

import math

import numpy as np
import pytest

from policies.run_spec import build_run_spec
from spec.build import build_run_basics
from spec.fleet import Fleet
from spec.validation import ConfigError
from spec.variation import Variation

EDGE = {"kind": "edge", "gateway": "edge", "profile": {"kind": "linear", "per_item_s": 0.004, "base_s": 0.01}}
CLOUD = {"kind": "cloud", "slots": 8, "profile": {"kind": "linear", "per_item_s": 0.001, "base_s": 0.002}}
VARY = {
    "rate_scale": {"kind": "uniform", "low": 0.5, "high": 1.5},
    "speed_scale": {"kind": "lognormal", "mean": 1.0, "cv": 0.3, "low": 0.6, "high": 1.8},
    "bandwidth_scale": {"kind": "uniform", "low": 0.25, "high": 2.0},
    "delay_scale": 2.0,
}


def config(devices: int = 50, **cluster) -> dict:
    return {
        "seed": 4,
        "workload": {"num_requests": 10, "sources": {
            "cam": {"gateway": "edge", "slo_s": 0.5, "arrivals": {"kind": "poisson", "rate_rps": 20.0}},
            "other": {"gateway": "depot", "arrivals": {"kind": "poisson", "rate_rps": 5.0}}}},
        "cluster": {"devices": devices, "executors": {"edge": EDGE, "cloud": CLOUD, "depot": {**EDGE, "gateway": "depot"}},
                    "links": {"cloud": {"delay_s": 0.03, "bandwidth_MBps": 10.0}}, "vary": VARY, **cluster},
        "policy": {"placement": {"_target_": "policies.placement.StaticPlacement"},
                   "batching": {"_target_": "policies.batching.TimeoutBatching", "max_batch_size": 4, "max_wait_s": 0.01}},
    }  # fmt: skip


def test_a_fleet_has_one_device_source_and_uplink_per_copy_and_keeps_the_rest_once():
    _, workload, cluster = build_run_basics(config(devices=50))
    devices = [n for n in cluster.executors if n.startswith("edge-")]
    assert len(devices) == 50 and devices[0] == "edge-00" and devices[-1] == "edge-49"
    assert list(cluster.executors)[:2] == ["edge-00", "edge-01"]  # where the template was: first at its gateway
    assert {"cloud", "depot"} <= set(cluster.executors) and len(cluster.executors) == 52
    assert cluster.executors["edge-07"].gateway == "edge-07"
    cams = [s for s in workload.sources if s.name.startswith("cam-")]
    assert len(cams) == 50 and {s.gateway for s in cams} == set(devices) and all(s.slo_s == 0.5 for s in cams)
    assert [s.name for s in workload.sources if not s.name.startswith("cam-")] == ["other"]
    assert cluster.reachable("edge-07") == ["edge-07", "cloud"] and cluster.reachable("depot") == ["cloud", "depot"]
    assert cluster.link("edge-07", "cloud") is not cluster.link("edge-08", "cloud")  # its own uplink
    assert cluster.link("depot", "cloud").delay_s == 0.03  # the shared one stays for the rest


def test_the_variation_lies_within_its_bounds_and_is_applied():
    _, workload, cluster = build_run_basics(config(devices=400))
    rates = np.array([s.arrivals.rate_rps for s in workload.sources if s.name.startswith("cam-")])
    assert 20 * 0.5 <= rates.min() and rates.max() <= 20 * 1.5 and rates.std() > 2  # varied, within [low, high]
    assert abs(rates.mean() / 20 - 1) < 0.05  # uniform on [0.5, 1.5]: mean 1 (sd of the mean 0.014)
    speed = np.array([0.01 / cluster.executors[f"edge-{i:03d}"].profile.base_s for i in range(400)])
    per_item = np.array([0.004 / cluster.executors[f"edge-{i:03d}"].profile.per_item_s for i in range(400)])
    np.testing.assert_allclose(speed, per_item)  # one factor per device for its whole profile
    assert 0.6 - 1e-12 <= speed.min() and speed.max() <= 1.8 + 1e-12 and speed.std() > 0.1
    links = [cluster.link(f"edge-{i:03d}", "cloud") for i in range(400)]
    bandwidth = np.array([link.constant_MBps for link in links]) / 10.0
    assert 0.25 <= bandwidth.min() and bandwidth.max() <= 2.0
    assert all(link.delay_s == pytest.approx(0.06) for link in links)  # a constant factor of 2


def test_the_fleet_is_seeded_and_a_larger_fleet_keeps_the_first_devices():
    first = Fleet.from_config(config(devices=100)["cluster"]).factors()
    again = Fleet.from_config(config(devices=100)["cluster"]).factors()
    larger = Fleet.from_config(config(devices=300)["cluster"]).factors()
    other = Fleet.from_config(config(devices=100, fleet_seed=1)["cluster"]).factors()
    for key in first:
        np.testing.assert_array_equal(first[key], again[key])
        np.testing.assert_array_equal(first[key], larger[key][:100])
    assert not np.array_equal(first["rate_scale"], other["rate_scale"])
    a, b = build_run_spec(config(devices=30)), build_run_spec(config(devices=30))
    np.testing.assert_array_equal(a.arrivals.arrival_s, b.arrivals.arrival_s)
    assert len(a.arrivals) == 31 * 10  # num_requests per source: 30 cameras and the depot's


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"devices": 0}, "cluster.devices"),
        ({"devices": 40_000}, "cluster.devices"),
        ({"site": "nowhere"}, "cluster.site"),
        ({"fleet_seed": -1}, "cluster.fleet_seed"),
        ({"vary": {"rate_scal": 2}}, "cluster.vary.rate_scal"),
        ({"vary": {"rate_scale": {"kind": "normal"}}}, "cluster.vary.rate_scale.kind"),
        ({"vary": {"rate_scale": {"kind": "uniform", "low": 2, "high": 1}}}, "cluster.vary.rate_scale.high"),
        ({"vary": {"speed_scale": {"kind": "lognormal", "cv": -1}}}, "cluster.vary.speed_scale.cv"),
        ({"vary": {"delay_scale": 0}}, "cluster.vary.delay_scale"),
        ({"vary": {"bandwidth_scale": {"kind": "uniform", "low": 1, "high": 2, "mean": 3}}}, "cluster.vary.bandwidth_scale.mean"),
        ({"hosts": {"box": {"cores": 2}}}, "cluster.hosts"),
        ({"colour": "red"}, "cluster.colour"),
    ],
)
def test_a_bad_fleet_field_is_named_before_anything_is_built(change, field):
    with pytest.raises(ConfigError) as error:
        build_run_spec(config(**change))
    assert error.value.field == field


def test_a_fleet_needs_a_template_source_at_its_site():
    bad = config()
    bad["workload"]["sources"] = {"other": bad["workload"]["sources"]["other"]}
    with pytest.raises(ConfigError) as error:
        build_run_spec(bad)
    assert error.value.field == "workload.sources" and "'edge'" in error.value.allowed


def test_a_lognormal_variation_has_its_mean_and_cv_before_clipping():
    draws = Variation.from_config("v", {"kind": "lognormal", "mean": 2.0, "cv": 0.25}).sample(np.random.default_rng(0), 200_000)
    assert draws.mean() == pytest.approx(2.0, rel=0.005) and draws.std() / draws.mean() == pytest.approx(0.25, rel=0.01)
    assert math.isclose(Variation.from_config("v", 1.5).sample(np.random.default_rng(0), 3)[2], 1.5)
