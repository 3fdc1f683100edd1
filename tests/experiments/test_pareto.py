"""``python -m experiments.pareto``: on the (attainment, cost) front or not, point by point, paired by seed."""

from __future__ import annotations

import json

import pandas as pd

from experiments import pareto


def fake_runs(root, strategy: str, slo_s: float, attainment: list[float], cost_per_1k: list[float]) -> None:
    for seed, (a, c) in enumerate(zip(attainment, cost_per_1k)):
        folder = root / f"{strategy}_{slo_s}_{seed}"
        (folder / ".hydra").mkdir(parents=True)
        (folder / ".hydra" / "overrides.yaml").write_text(json.dumps([f"+strategy={strategy}", f"slo_s={slo_s}", f"seed={seed}"]))
        summary = {"name": "t", "backend": "sim", "seed": seed, "slo_attainment": a, "cost_per_1k": c}
        (folder / "summary.json").write_text(json.dumps(summary))


def test_front_and_dominated_points(tmp_path, capsys):
    # at SLO 0.6 the rival attains more at lower cost in every seed (dominated, supported);
    # at 0.8 the candidate attains more but costs more (on the front); at 1.0 means favour the rival only a little
    fake_runs(tmp_path, "mine", 0.6, [0.80, 0.81, 0.79], [2.0, 2.1, 1.9])
    fake_runs(tmp_path, "rival", 0.6, [0.90, 0.92, 0.91], [1.0, 1.1, 0.9])
    fake_runs(tmp_path, "mine", 0.8, [0.99, 0.98, 0.99], [2.0, 2.2, 2.1])
    fake_runs(tmp_path, "rival", 0.8, [0.90, 0.91, 0.92], [1.0, 1.1, 1.0])
    fake_runs(tmp_path, "mine", 1.0, [0.95, 0.97, 0.96], [1.0, 1.0, 1.0])
    fake_runs(tmp_path, "rival", 1.0, [0.97, 0.95, 0.97], [1.0, 1.0, 0.99])
    result = pareto.main([str(tmp_path), "--candidate", "mine"])
    verdicts = dict(zip(result["point"], result["verdict"]))
    assert verdicts == {"slo_s=0.6": "dominated (supported)", "slo_s=0.8": "on the front", "slo_s=1.0": "dominated (means only)"}
    assert "on the front at 1/3 points (33%); dominated with support at 1" in capsys.readouterr().out
    assert len(pd.read_csv(tmp_path / "pareto.csv")) == 3
