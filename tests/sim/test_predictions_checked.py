"""A simulated run of the tail-aware planner checks every plan's predicted p95 against its window."""

from __future__ import annotations

import numpy as np

from sim import simulate
from tests.sim.test_telemetry_past import step_config


def test_every_plan_window_is_checked_in_the_plans_table_and_the_summary(tmp_path):
    planner = {"_target_": "policies.planning.TailAwarePlanner", "slo_s": 0.8, "nominal_rate_rps": 20.0, "request_size_bytes": 20_000,
               "period_s": 2.0, "weighted": True}  # fmt: skip
    result = simulate(step_config(tmp_path, planner))
    plans, requests, summary = result.plans, result.requests, result.summary
    during = plans[plans["at_s"] <= requests["arrival_s"].max()]
    assert len(during) >= 8 and during["observed_p_s"].notna().all()
    # plans made after the last arrival (while the last requests finish) have empty windows
    assert (plans.loc[~plans.index.isin(during.index), "observed_requests"] == 0).all()
    # the last window runs to the end of the run
    last = during.iloc[-1]
    late = requests[requests["arrival_s"] >= last["at_s"]]
    assert last["observed_requests"] == len(late) > 0
    assert last["observed_p_s"] == np.quantile(late["latency_s"], 0.95, method="inverted_cdf")
    assert summary["prediction_windows"] == len(during)
    ratios = during["observed_p_s"] / during["predicted_p_s"]
    assert summary["prediction_ratio_median"] == float(np.median(ratios.dropna()))
    feasible = during[during["feasible"]]
    assert summary["prediction_feasible_missed_share"] == (feasible["observed_p_s"] > 0.8).mean()
