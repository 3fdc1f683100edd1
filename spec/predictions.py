"""Every prediction checked: a plan's predicted latency percentile against what its window saw.

A planner that predicts a latency percentile puts ``percentile`` and
``predicted_p_s`` (and ``slo_s``) in its plans' detail. A plan's *window* runs
from its ``at_s`` to the next plan of the same gateway, the last one to the
end of the run; its requests are those of the gateway's sources that arrived
in it. The observed percentile is the empirical one (inverted CDF, no
interpolation) of their latencies, a dropped request counted as never
finishing. Both backends' summaries check them (``spec.recorder.summary``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, MutableMapping, Sequence

import numpy as np
import pandas as pd

from spec.workload import Arrivals

__all__ = ["PREDICTION_KEYS", "check_predictions", "prediction_rows"]

#: the summary keys ``check_predictions`` returns (None where no plan predicted a percentile)
PREDICTION_KEYS = (
    "prediction_windows",
    "prediction_ratio_median",
    "prediction_feasible_missed_share",
    "prediction_overloaded_plans",
)


def _number(value) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


def _gateway_requests(requests: pd.DataFrame, arrivals: Arrivals, gateway) -> tuple[np.ndarray, np.ndarray]:
    """Arrival times and latencies (inf when dropped) of the requests a gateway scheduled, by arrival."""
    sources = [s.name for s in arrivals.sources if s.gateway == gateway]
    rows = requests if not sources else requests[requests["source"].isin(sources)]
    arrival = rows["arrival_s"].to_numpy(dtype=float)
    latency = rows["latency_s"].to_numpy(dtype=float)
    latency = np.where(rows["dropped"].to_numpy(dtype=bool) | np.isnan(latency), np.inf, latency)
    order = np.argsort(arrival, kind="stable")
    return arrival[order], latency[order]


def _check_window(plan: MutableMapping, arrival: np.ndarray, latency: np.ndarray, end_s: float) -> None:
    """Annotate one plan with what its window observed."""
    lo, hi = np.searchsorted(arrival, [float(plan["at_s"]), end_s], side="left")
    seen = latency[lo:hi]
    plan["window_end_s"] = end_s
    plan["observed_requests"] = int(seen.size)
    observed = float(np.quantile(seen, float(plan["percentile"]), method="inverted_cdf")) if seen.size else None
    plan["observed_p_s"] = observed
    predicted = _number(plan.get("predicted_p_s"))
    ratio = None
    if observed is not None and predicted is not None and predicted > 0 and math.isfinite(predicted) and math.isfinite(observed):
        ratio = observed / predicted
    plan["observed_over_predicted"] = ratio
    slo = _number(plan.get("slo_s"))
    plan["missed_slo"] = None if observed is None or slo is None else bool(observed > slo)


def check_predictions(plans: Sequence[MutableMapping], requests: pd.DataFrame, arrivals: Arrivals) -> dict:
    """Annotate each plan that predicts a percentile with its window's observation; the summary keys.

    Each such plan gains ``window_end_s``, ``observed_requests``,
    ``observed_p_s`` (None: no request in the window),
    ``observed_over_predicted`` (None unless both are finite) and
    ``missed_slo`` (the observed percentile above ``slo_s``). Returned:
    ``prediction_windows`` (windows with requests), ``prediction_ratio_median``
    (median observed / predicted), ``prediction_feasible_missed_share``
    (of the windows whose plan was predicted feasible, the share that missed
    the SLO) and ``prediction_overloaded_plans`` (best-effort plans the
    planner flagged ``overloaded``: no finite prediction).
    """
    out: dict = dict.fromkeys(PREDICTION_KEYS)
    predicting = [p for p in plans if _number(p.get("percentile")) is not None and "predicted_p_s" in p]
    if not predicting:
        return out
    end_of_run = float(np.nanmax(requests["arrival_s"].to_numpy(dtype=float))) if len(requests) else 0.0
    by_gateway: dict = {}
    for plan in predicting:
        by_gateway.setdefault(plan.get("gateway"), []).append(plan)
    for gateway, group in by_gateway.items():
        arrival, latency = _gateway_requests(requests, arrivals, gateway)
        group.sort(key=lambda p: float(p["at_s"]))
        ends = [float(p["at_s"]) for p in group[1:]] + [max(end_of_run, float(group[-1]["at_s"])) + 1e-9]
        for plan, end_s in zip(group, ends):
            _check_window(plan, arrival, latency, end_s)
    seen = [p for p in predicting if p["observed_requests"]]
    ratios = [p["observed_over_predicted"] for p in seen if p["observed_over_predicted"] is not None]
    feasible = [p for p in seen if p.get("feasible") is True and p["missed_slo"] is not None]
    out["prediction_windows"] = len(seen)
    out["prediction_ratio_median"] = float(np.median(ratios)) if ratios else None
    out["prediction_feasible_missed_share"] = sum(p["missed_slo"] for p in feasible) / len(feasible) if feasible else None
    out["prediction_overloaded_plans"] = sum(1 for p in predicting if p.get("overloaded") is True)
    return out


def prediction_rows(plans: Sequence[Mapping]) -> list[dict]:
    """The checked plans' prediction columns alone, one row per window (for tables and plots)."""
    keys = ("gateway", "at_s", "window_end_s", "trigger", "feasible", "overloaded", "percentile", "slo_s", "predicted_p_s",
            "observed_p_s", "observed_requests", "observed_over_predicted", "missed_slo")  # fmt: skip
    return [{k: p.get(k) for k in keys} for p in plans if "observed_p_s" in p]
