"""Every prediction checked: each plan's predicted percentile against its window, the last included."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from spec.predictions import check_predictions, prediction_rows
from spec.workload import Arrivals, PoissonArrivals, Source


def arrivals_of(*sources: tuple[str, str]) -> Arrivals:
    made = tuple(Source(name=n, gateway=g, arrivals=PoissonArrivals(rate_rps=1.0)) for n, g in sources)
    return Arrivals(arrival_s=np.zeros(0), source_index=np.zeros(0, dtype=np.int16), sources=made)


def table(rows) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["source", "arrival_s", "latency_s", "dropped"])


def plan(at_s, predicted, *, feasible=True, gateway="g0", **extra):
    return {"at_s": at_s, "gateway": gateway, "percentile": 0.5, "slo_s": 1.0, "predicted_p_s": predicted, "feasible": feasible, **extra}


def test_each_window_is_checked_the_last_included():
    # requests 0-9 s: latency 0.5 s before 5 s, 2.0 s after; one dropped in the last window
    rows = [("a", float(t), 0.5 if t < 5 else 2.0, False) for t in range(10)] + [("a", 9.5, np.nan, True)]
    rows += [("b", float(t), 9.0, False) for t in range(10)]  # another gateway's source: never counted for g0
    plans = [plan(0.0, 0.5), plan(5.0, 1.0), plan(8.0, 0.5, feasible=False), {"at_s": 1.0, "gateway": "g0", "trigger": "x"}]
    out = check_predictions(plans, table(rows), arrivals_of(("a", "g0"), ("b", "g1")))
    first, second, last, other = plans
    assert (first["observed_requests"], first["observed_p_s"], first["missed_slo"]) == (5, 0.5, False)
    assert (second["window_end_s"], second["observed_requests"], second["observed_p_s"]) == (8.0, 3, 2.0)
    assert second["missed_slo"] and second["observed_over_predicted"] == 2.0
    # the last window runs to the end of the run; the dropped request counts as never finishing
    assert last["observed_requests"] == 3 and last["observed_p_s"] == 2.0
    assert "observed_p_s" not in other  # no prediction, nothing to check
    assert out["prediction_windows"] == 3
    assert out["prediction_ratio_median"] == pytest.approx(2.0)  # ratios 1, 2, 4
    assert out["prediction_feasible_missed_share"] == 0.5  # of the two predicted feasible, one missed
    assert out["prediction_overloaded_plans"] == 0
    assert [r["at_s"] for r in prediction_rows(plans)] == [0.0, 5.0, 8.0]


def test_an_overloaded_plan_has_no_ratio_and_is_counted():
    rows = [("a", float(t), 3.0, False) for t in range(4)]
    plans = [plan(0.0, None, feasible=False, overloaded=True)]
    out = check_predictions(plans, table(rows), arrivals_of(("a", "g0")))
    assert plans[0]["observed_p_s"] == 3.0 and plans[0]["observed_over_predicted"] is None
    assert out["prediction_overloaded_plans"] == 1 and out["prediction_ratio_median"] is None
    assert out["prediction_feasible_missed_share"] is None


def test_no_predicting_planner_gives_empty_keys():
    out = check_predictions([{"at_s": 0.0, "trigger": "initial"}], table([("a", 0.0, 1.0, False)]), arrivals_of(("a", "g0")))
    assert set(out.values()) == {None}
