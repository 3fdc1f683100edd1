"""The broker's storage step: its CPU per message rises once a run has stored enough.

The embedded broker persists every message. Measured on this machine with
200 KB requests, its CPU per request stays flat for the first 1,400-3,300
requests of a run (0.6-1.4 GB stored: each request and the batch that
carries it; the place varies between runs), then steps up 1.6-2.0x and
stays there, at 150 and 250 req/s alike after about as many requests: a
step in the bytes stored, not in time. Short calibration
runs never reach it; the fidelity suite's busiest configurations do,
part-way through. This module measures it from one long live run: the
broker's CPU sampled over the run's clock, split into windows, and fitted as
CPU less the broker's idle cores (from the role fit: at one steady rate
requests and time are one regressor) = per-request cost x requests, one
cost before the split and another after, at the split that fits best.
``spec.host_spec.RoleCpu`` carries the result (``step_after_MB``,
``step_factor``); ``sim.harness`` charges it.
"""

from __future__ import annotations

import numpy as np
from scipy import stats

__all__ = ["fit_storage_step", "MIN_FACTOR", "MIN_SHARE"]

#: a step smaller than this is not one (the broker's CPU per request varies this much between runs)
MIN_FACTOR = 1.15
#: each side of a split holds at least this share of the run's requests
MIN_SHARE = 0.15
#: the split must explain this much: the F-test of two per-request costs against one
_P_VALUE = 0.01


def fit_storage_step(series, arrival_s, *, stored_bytes_per_request: float, idle_cores: float = 0.0) -> dict:
    """The step in ``series`` (``(run_s, broker_cpu_s)`` pairs, cumulative) against ``arrival_s`` (the run's arrivals).

    ``stored_bytes_per_request``: what the broker stores per request (its
    payload and its share of a batch's); ``idle_cores``: the broker's CPU
    whatever it handles, taken off each window first. Returns ``found`` and, when found,
    ``step_after_MB`` (stored when the step came) and ``step_factor``, with
    the per-request costs either side, the windows used and the test's p-value.
    """
    times = np.asarray([t for t, _ in series], dtype=float)
    cpu = np.asarray([c for _, c in series], dtype=float)
    arrivals = np.sort(np.asarray(arrival_s, dtype=float))
    if len(arrivals) < 10:
        return {"found": False, "note": f"{len(arrivals)} arrivals: too few to fit"}
    # windows inside the arrivals' span (before it the broker idles, after it only the tail drains)
    inside = (times >= arrivals[0]) & (times <= arrivals[-1])
    times, cpu = times[inside], cpu[inside]
    if len(times) < 8:
        return {"found": False, "note": f"{len(times)} samples of the broker's CPU inside the run: too few to fit"}
    counts = np.searchsorted(arrivals, times, side="right")
    n = np.diff(counts).astype(float)
    dcpu = np.diff(cpu) - idle_cores * np.diff(times)
    stored_MB = counts[1:] * stored_bytes_per_request / 1e6
    share = np.cumsum(n) / n.sum()
    one = _least_squares(n[:, None], dcpu)
    best = None
    for k in range(1, len(n)):
        if share[k - 1] < MIN_SHARE or share[k - 1] > 1 - MIN_SHARE:
            continue
        before = np.where(np.arange(len(n)) < k, n, 0.0)
        fit = _least_squares(np.column_stack([before, n - before]), dcpu)
        if fit is not None and (best is None or fit[1] < best[2]):
            best = (k, *fit)
    windows = len(n)
    if best is None or one is None:
        return {"found": False, "note": "no split leaves enough requests on both sides", "windows": windows}
    k, (per_before, per_after), sse = best
    sse_one = one[1]
    # two costs against one: F(1, windows - 2)
    f_stat = (sse_one - sse) / max(sse / max(windows - 2, 1), 1e-30)
    p_value = float(stats.f.sf(f_stat, 1, max(windows - 2, 1)))
    result = {"windows": windows, "cpu_s_per_request_before": round(float(per_before), 7),
              "cpu_s_per_request_after": round(float(per_after), 7), "idle_cores": idle_cores,
              "p_value": p_value, "split_stored_MB": round(float(stored_MB[k - 1]), 1),
              "stored_MB_at_end": round(float(stored_MB[-1]), 1)}  # fmt: skip
    if per_before <= 0:
        return {**result, "found": False, "note": "the CPU per request before the split fitted <= 0"}
    factor = per_after / per_before
    if factor < MIN_FACTOR or p_value > _P_VALUE:
        return {**result, "found": False, "note": f"no step: x{factor:.2f} after {stored_MB[k - 1]:.0f} MB (p={p_value:.2g})"}
    return {**result, "found": True, "step_after_MB": round(float(stored_MB[k - 1]), 1), "step_factor": round(float(factor), 3)}


def _least_squares(design: np.ndarray, target: np.ndarray):
    """The coefficients and the sum of squared residuals (None: not enough rows)."""
    if len(target) <= design.shape[1]:
        return None
    coefficients, *_ = np.linalg.lstsq(design, target, rcond=None)
    residual = target - design @ coefficients
    return coefficients, float(residual @ residual)
