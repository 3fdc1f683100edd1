"""The edgeserve study's configs and table (experiments.edgeserve), without running the study."""

from __future__ import annotations

import pandas as pd
import pytest

from experiments.compare import compose_config
from experiments.paths import REPO_ROOT
from experiments.edgeserve import QUANTILES, points, table
from experiments.run import check_config, to_run_config
from spec.validation import ConfigError


CALIBRATED = REPO_ROOT / "conf" / "profile" / "calibrated.yaml"


@pytest.fixture
def calibrated(tmp_path) -> list[str]:
    """Overrides that give the study a calibrated profile: a fresh clone has none (measured per machine, git-ignored)."""
    if CALIBRATED.exists():
        return []
    (tmp_path / "profile").mkdir()
    (tmp_path / "profile" / "calibrated.yaml").write_text((CALIBRATED.parent / "fast.yaml").read_text())
    return [f"hydra.searchpath=[file://{tmp_path}]"]


def test_every_point_of_the_study_composes_and_checks_on_the_simulator(calibrated):
    for study, _, overrides in points(QUANTILES):
        extra = ["+pipeline.cascade.confidence_samples=[0.2,0.4]"] if study == "cascade" else []
        cfg = compose_config(["+experiment=edgeserve", *overrides, *extra, *calibrated])
        check_config(cfg)
        pipeline = to_run_config(cfg)["pipeline"]
        assert ("cascade" in pipeline) == (study == "cascade")


def test_a_bad_pipeline_field_in_the_study_is_named(calibrated):
    with pytest.raises(ConfigError, match=r"pipeline\.join\.max_skew_s"):
        check_config(compose_config(["+experiment=edgeserve", "pipeline.join.max_skew_s=-1", *calibrated]))
    with pytest.raises(ConfigError, match=r"pipeline\.lazy\.read_prob"):
        check_config(compose_config(["+experiment=edgeserve", "+pipeline.lazy.read_prob=0.5", *calibrated]))


def test_the_table_gives_means_and_the_simulators_relative_error():
    runs = pd.DataFrame([
        {"study": "lazy vs eager", "point": "lazy", "backend": b, "seed": s, "latency_p95_s": p95, "uplink_MB": 1.0, "escalated_share": 0.0}
        for b, values in (("sim", (0.1, 0.3)), ("live", (0.2, 0.2))) for s, p95 in enumerate(values)
    ])  # fmt: skip
    out = table(runs).set_index("metric")
    assert out.loc["p95 latency (s)", "error"] == pytest.approx(0.0)  # means 0.2 and 0.2
    assert out.loc["p95 latency (s)", "sim"].startswith("0.2 [")  # an interval over two seeds
    assert out.loc["uplink (MB)", "live"] == "1"  # the same in every run: no brackets
    assert "escalated share" not in out.index  # only the cascade reports it
