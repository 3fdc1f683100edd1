"""A host's per-run random effects (its speed, its background level): drawn once per run, seeded, with the measured spread."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from sim import simulate
from sim.host import run_effects
from spec.host_spec import HostSpec
from spec.validation import ConfigError
from tests.sim.configs import single_queue


def _lone_jobs(tmp_path, seed: int, **host) -> list[float]:
    """Service times of two 1 s jobs, far apart, alone on a one-core host with ``host``'s settings."""
    path = tmp_path / "gaps.json"
    path.write_text(json.dumps([1.0, 10.0, 100.0]))
    config = single_queue(rate_rps=1, service_s=1.0, num_requests=2, seed=seed,
                          arrivals={"kind": "trace", "path": str(path), "start_offset_s": 0})  # fmt: skip
    config["cluster"]["hosts"] = {"box": {"cores": 1, "executors": "*", **host}}
    return simulate(config).requests["service_s"].tolist()


def test_without_spread_there_is_no_draw_and_nothing_changes(tmp_path):
    assert run_effects(HostSpec(name="box", cores=2, background_cores=0.5), seed=3) == (1.0, 0.5)
    assert _lone_jobs(tmp_path, seed=3) == pytest.approx([1.0, 1.0], abs=1e-12)


def test_the_speed_factor_has_mean_one_and_the_configured_cv_over_runs():
    spec = HostSpec(name="box", cores=2, run_cv=0.1)
    factors = np.array([run_effects(spec, seed)[0] for seed in range(4000)])
    assert factors.mean() == pytest.approx(1.0, abs=0.006)  # 4 standard errors of a 0.1-cv mean over 4000
    assert factors.std(ddof=1) == pytest.approx(0.1, rel=0.06)
    assert run_effects(spec, 7) == run_effects(spec, 7)  # seeded
    assert run_effects(spec, 7)[0] != run_effects(HostSpec(name="other", cores=2, run_cv=0.1), 7)[0]  # one stream per host


def test_every_cpu_second_of_a_run_takes_that_runs_factor(tmp_path):
    for seed in (0, 1, 2):
        factor, _ = run_effects(HostSpec(name="box", cores=1, run_cv=0.2), seed)
        assert factor != pytest.approx(1.0, abs=1e-3)
        # the same factor for both jobs of the run: a property of the run, not of the batch
        assert _lone_jobs(tmp_path, seed=seed, run_cv=0.2) == pytest.approx([factor, factor], rel=1e-9)


def test_the_background_level_is_drawn_per_run_around_its_mean_and_kept_under_the_cores(tmp_path):
    spec = HostSpec(name="box", cores=2, background_cores=0.8, background_cores_sd=0.3)
    levels = np.array([run_effects(spec, seed)[1] for seed in range(4000)])
    assert levels.min() >= 0.0 and levels.max() <= 0.95 * 2
    assert levels.mean() == pytest.approx(0.8, abs=0.02) and levels.std(ddof=1) == pytest.approx(0.3, rel=0.06)
    # one core, a run's background u: a lone 1 s job takes 1 / (1 - u)
    for seed in (0, 1):
        _, u = run_effects(HostSpec(name="box", cores=1, background_cores=0.4, background_cores_sd=0.2), seed)
        expected = 1.0 / (1.0 - u) if u > 0 else 1.0
        assert _lone_jobs(tmp_path, seed=seed, background_cores=0.4, background_cores_sd=0.2) == pytest.approx([expected] * 2, rel=1e-6)
    wide = HostSpec(name="box", cores=1, background_cores=0.9, background_cores_sd=0.9)
    assert max(run_effects(wide, seed)[1] for seed in range(200)) == pytest.approx(0.95)  # clipped, never the whole machine
    assert not math.isnan(run_effects(wide, 0)[1])


@pytest.mark.parametrize("field, value", [("run_cv", 1.0), ("run_cv", -0.1), ("background_cores_sd", 2.0), ("run_cv", True)])
def test_bad_spreads_name_the_field(field, value):
    with pytest.raises(ConfigError, match=rf"cluster\.hosts\.box\.{field}"):
        HostSpec.from_config("box", {"cores": 2, field: value})
