"""``python -m experiments.plot_predictions``: predicted against observed percentile, one point per plan window."""

from __future__ import annotations

import json

import pandas as pd

from experiments import plot_predictions


def fake_run(folder, plans: list[dict]) -> None:
    folder.mkdir(parents=True)
    (folder / "summary.json").write_text(json.dumps({"name": "t", "backend": "sim", "completed": 10}))
    pd.DataFrame(plans).to_parquet(folder / "plans.parquet", index=False)


def plan(at_s, predicted, observed, feasible=True, **extra):
    return {"at_s": at_s, "trigger": "periodic", "feasible": feasible, "overloaded": predicted is None, "percentile": 0.95,
            "slo_s": 0.8, "predicted_p_s": predicted, "observed_p_s": observed, "observed_requests": 10,
            "missed_slo": observed > 0.8, **extra}  # fmt: skip


def test_points_figure_and_table(tmp_path, capsys):
    fake_run(tmp_path / "a", [plan(0.0, 0.5, 0.4), plan(5.0, 0.7, 0.9), plan(10.0, None, 2.0, feasible=False)])
    fake_run(tmp_path / "b", [{"at_s": 0.0, "trigger": "initial", "feasible": True}])  # a planner that predicts nothing
    path = plot_predictions.main([str(tmp_path), "--out", str(tmp_path / "fig" / "p.png")])
    assert path.exists() and path.stat().st_size > 10_000
    points = pd.read_csv(tmp_path / "fig" / "p.csv")
    assert len(points) == 3 and points["observed_p_s"].tolist() == [0.4, 0.9, 2.0]
    out = capsys.readouterr().out
    # ratios 0.8 and 1.29 (the overloaded plan has none); of two predicted feasible, one missed
    assert "3 plan windows" in out and "median observed/predicted 1.04" in out and "missed 50.0%" in out
