"""The fidelity suite: its statistics against known answers, its cases, and one short run on both backends."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from experiments import fidelity
from experiments.compare import compose_config
from experiments.run import check_config


def test_the_prediction_interval_covers_one_more_draw_at_its_level():
    rng = np.random.default_rng(1)
    trials = 4000
    hits = 0
    for _ in range(trials):
        x = rng.normal(10.0, 2.0, 11)  # 10 runs to build it, one more to test it
        low, high = fidelity.prediction_interval(x[:10], 0.90)
        hits += low <= x[10] <= high
    assert abs(hits / trials - 0.90) < 0.02
    assert all(map(math.isnan, fidelity.prediction_interval([1.0])))


def _runs(sim: dict[str, list[float]], live: dict[str, list[float]], metric: str = "p95") -> pd.DataFrame:
    rows = []
    for backend, values in (("sim", sim), ("live", live)):
        for case, series in values.items():
            for seed, v in enumerate(series):
                rows.append({"case": case, "backend": backend, "seed": seed, **{m: 0.0 for m in fidelity.METRICS}, metric: v})
    return pd.DataFrame(rows)


def test_errors_medians_ranks_and_coverage_by_hand():
    # three configurations: sim means 1.0, 2.0, 4.0 against live means 1.0, 2.5, 3.2
    sim = {"a": [0.9, 1.0, 1.1], "b": [1.9, 2.0, 2.1], "c": [3.9, 4.0, 4.1]}
    live = {"a": [1.0, 1.0], "b": [2.4, 2.6], "c": [3.1, 3.3]}
    table = fidelity.analyze(_runs(sim, live))
    p95 = table[table["metric"] == "p95"].set_index("case")
    assert p95.loc["a", "error"] == pytest.approx(0.0, abs=1e-12)
    assert p95.loc["b", "error"] == pytest.approx(-0.2)
    assert p95.loc["c", "error"] == pytest.approx(0.25)
    head = fidelity.headline(table)
    assert head["median_abs_error_p95"] == pytest.approx(0.2)
    assert head["max_abs_error_p95"] == pytest.approx(0.25) and head["worst_p95"] == "c"
    assert head["kendall_tau_p95"] == pytest.approx(1.0)  # same order on both backends
    # the t prediction interval of a (s = 0.1, n = 3) is 1.0 +/- 2.92 * 0.1 * sqrt(4/3): both live runs inside;
    # b's and c's live runs lie outside theirs
    assert p95.loc["a", "live_runs_inside_sim_pi90"] == 2
    assert head["share_live_inside_sim_90pi_p95"] == pytest.approx(2 / 6)
    assert head["targets"]["max_abs_error_p95"]["met"] is True
    assert head["targets"]["median_abs_error_p95"]["met"] is False


def test_held_out_configurations_are_reported_apart_from_the_development_ones(tmp_path):
    sim = {"a": [0.9, 1.0, 1.1], "b": [1.9, 2.0, 2.1], "c": [3.9, 4.0, 4.1], "d": [1.0, 1.0, 1.0]}
    live = {"a": [1.0, 1.0], "b": [2.4, 2.6], "c": [3.1, 3.3], "d": [2.0, 2.0]}
    splits = fidelity.split_headlines(fidelity.analyze(_runs(sim, live)), ["c", "d"])
    assert splits["development"]["configurations"] == 2 and splits["held_out"]["configurations"] == 2
    assert splits["development"]["max_abs_error_p95"] == pytest.approx(0.2)  # a and b only
    assert splits["held_out"]["max_abs_error_p95"] == pytest.approx(0.5) and splits["held_out"]["worst_p95"] == "d"
    assert fidelity.split_headlines(fidelity.analyze(_runs(sim, live)), []) == {}
    # the suite's own split names cases it has, and a wrong name is refused by name
    held = fidelity.held_out_cases()
    assert held and set(held) <= {c.name for c in fidelity.load_suite()[1]}
    bad = tmp_path / "suite.yaml"
    bad.write_text("held_out: [nope]\ncases: {a: {what: x, overrides: []}}\n")
    with pytest.raises(SystemExit, match="held_out case 'nope'"):
        fidelity.held_out_cases(bad)


def test_reversed_ranks_give_tau_minus_one_and_slo_errors_are_points():
    sim = {"a": [3.0, 3.0], "b": [2.0, 2.0], "c": [1.0, 1.0]}
    live = {"a": [1.0], "b": [2.0], "c": [3.0]}
    assert fidelity.headline(fidelity.analyze(_runs(sim, live)))["kendall_tau_p95"] == pytest.approx(-1.0)
    attainment = fidelity.analyze(_runs({"a": [0.90, 0.92]}, {"a": [0.95]}, metric="slo_attainment"))
    row = attainment[attainment["metric"] == "slo_attainment"].iloc[0]
    assert row["error"] == pytest.approx(-0.04)  # 0.91 - 0.95: points, not a ratio


def test_cost_errors_leave_out_configurations_that_cost_nothing_live():
    runs = _runs({"free": [0.0, 0.0], "paid": [1.1, 1.1]}, {"free": [0.0], "paid": [1.0]}, metric="cost")
    head = fidelity.headline(fidelity.analyze(runs))
    assert head["n_cost"] == 1 and head["median_abs_error_cost"] == pytest.approx(0.1)


def test_the_suite_covers_what_it_claims_and_every_case_composes():
    base, cases = fidelity.load_suite()
    assert len(cases) >= 12
    configs = {c.name: compose_config([*base, *c.overrides, "profile=fast"]) for c in cases}
    for cfg in configs.values():
        check_config(cfg)
    batching = {cfg.policy.batching._target_.rsplit(".", 1)[1] for cfg in configs.values()}
    assert {"NoBatching", "TimeoutBatching", "FixedBatching", "AIMDBatching", "DeadlineAwareBatching"} <= batching
    arrivals = {cfg.workload.sources.cam0.arrivals.kind for cfg in configs.values()}
    assert {"poisson", "mmpp", "trace"} <= arrivals
    assert any(cfg.cluster.executors.edge.slots == 2 for cfg in configs.values())  # two replicas
    assert any("serverless" in cfg.cluster.executors and cfg.cluster.links for cfg in configs.values())
    assert "profile=calibrated" in base


def test_an_unknown_case_is_named_with_the_choices():
    with pytest.raises(SystemExit, match="'nope' is not in .*none_low"):
        fidelity.load_suite(only=["nope"])


@pytest.mark.live
def test_a_short_suite_runs_both_backends_and_reports(tmp_path):
    out = tmp_path / "fidelity"
    head = fidelity.main(["--cases", "none_low", "--sim-repeats", "3", "--live-repeats", "1", "--out", str(out),
                          "profile=fast", "workload.duration_s=1.5"])  # fmt: skip
    runs = pd.read_csv(out / "runs.csv")
    assert sorted(runs["backend"].value_counts().items()) == [("live", 1), ("sim", 3)]
    assert (out / "p95_sim_vs_live.png").stat().st_size > 10_000
    saved = json.loads((out / "fidelity.json").read_text())
    assert saved["configurations"] == head["configurations"] == 1
    assert set(fidelity.TARGETS) == set(saved["targets"])
    table = pd.read_csv(out / "fidelity.csv")
    assert set(table["metric"]) == set(fidelity.METRICS) and (table["live_n"] == 1).all()
