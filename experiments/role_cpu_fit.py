"""The harness roles' CPU from their process CPU times in short live runs: per request, per batch, per wake-up, idle.

A role is one single-threaded process. Each message costs it CPU
(``cpu_s_per_request`` or ``cpu_s_per_batch``); a message that finds it idle
costs ``cpu_s_per_wakeup`` more (``spec.host_spec.RoleCpu``, as the
simulator charges it: ``sim.harness.HarnessLoad``). Which messages found it
idle depends on the costs, so the fit alternates: count each run's
wake-ups under the current costs (``count_wakeups``), fit the costs to the
runs' CPU by non-negative least squares (scipy's ``nnls``) over requests,
batches, wake-ups and duration, and repeat until the counts settle. Runs
at different rates separate the wake-ups from the messages: at a low rate
nearly every message wakes its role, at a high one many find it busy.
"""

from __future__ import annotations

import numpy as np

__all__ = ["ROLES", "count_wakeups", "fit_role_cpu", "RoleFitError"]

#: harness roles whose CPU is fitted (the source: per request only; the worker: per request and per
#: batch, its wake-ups inside its per-batch term, as the simulator charges it with each batch)
ROLES = ("broker", "gateway", "source", "sink", "worker")
#: which messages each role handles: requests (when published), batches (when their result is back)
_HANDLES = {"broker": (True, True), "gateway": (True, True), "source": (True, False), "sink": (False, True), "worker": (False, False)}
_ITERATIONS = 12
#: the wake-ups must differ from every combination of requests, batches and duration by this share of their size
_APART = 0.02


class RoleFitError(ValueError):
    """The runs cannot separate the terms; the message says which and what to try."""


def count_wakeups(times_s, costs_s, wakeup_s: float) -> int:
    """Messages that find a one-core process idle: it is busy from a wake-up for ``wakeup_s`` plus each message's cost."""
    order = np.argsort(times_s, kind="stable")
    busy_until_s, wakeups = -np.inf, 0
    for at_s, cost_s in zip(np.asarray(times_s, float)[order].tolist(), np.asarray(costs_s, float)[order].tolist()):
        if at_s >= busy_until_s:
            wakeups += 1
            busy_until_s = at_s + wakeup_s + cost_s
        else:
            busy_until_s += cost_s
    return wakeups


def _events(run: dict, role: str, per_request_s: float, per_batch_s: float) -> tuple[np.ndarray, np.ndarray]:
    takes_requests, takes_batches = _HANDLES[role]
    times, costs = [], []
    if takes_requests:
        times.append(np.asarray(run["request_times_s"], float))
        costs.append(np.full(len(times[-1]), per_request_s))
    if takes_batches:
        times.append(np.asarray(run["batch_times_s"], float))
        costs.append(np.full(len(times[-1]), per_batch_s))
    return np.concatenate(times), np.concatenate(costs)


def _solve(columns: np.ndarray, cpu: np.ndarray) -> np.ndarray:
    from scipy.optimize import nnls

    scale = np.maximum(columns.max(axis=0), 1e-12)
    solution, _ = nnls(columns / scale, cpu)
    return solution / scale


def _apart(columns: np.ndarray, wakeups: np.ndarray) -> bool:
    """True when the wake-ups are not (within ``_APART`` of their size) a linear combination of the other columns."""
    coefficients, *_ = np.linalg.lstsq(columns, wakeups, rcond=None)
    return float(np.linalg.norm(wakeups - columns @ coefficients)) > _APART * float(np.linalg.norm(wakeups))


def _fit_one(runs: list[dict], role: str, counts: np.ndarray, with_wakeups: bool) -> tuple[dict, list[int] | None]:
    """One role's coefficients; with wake-ups, alternating counts and fits until the counts settle."""
    cpu = np.array([r["cpu_s"][role] for r in runs])
    if all(role in r.get("window_s", {}) for r in runs):  # the role's own CPU window, where measured
        counts = counts.copy()
        counts[:, 2] = [r["window_s"][role] for r in runs]
    base = [0, 2] if role == "source" else [0, 1, 2]  # requests, batches, duration
    coefficients = np.zeros(3)
    coefficients[base] = _solve(counts[:, base], cpu)
    wakeup_s, wakeups = 0.0, None
    if with_wakeups and any(_HANDLES[role]):
        for _ in range(_ITERATIONS):
            found = [count_wakeups(*_events(r, role, coefficients[0], coefficients[1]), wakeup_s) for r in runs]
            if found == wakeups:
                break
            wakeups = found
            if not _apart(counts[:, base], np.asarray(wakeups, float)):
                return _fit_one(runs, role, counts, False)[0], None  # the wake-ups go as the messages do: not separable
            solution = _solve(np.column_stack([counts[:, base], wakeups]), cpu)
            coefficients[:] = 0.0
            coefficients[base] = solution[:-1]
            wakeup_s = float(solution[-1])
    fitted = {"cpu_s_per_request": round(float(coefficients[0]), 9), "cpu_s_per_batch": round(float(coefficients[1]), 9),
              "cpu_s_per_wakeup": round(wakeup_s, 9), "idle_cores": round(min(1.0, float(coefficients[2])), 4)}  # fmt: skip
    return fitted, wakeups


def fit_role_cpu(runs: list[dict]) -> tuple[dict[str, dict[str, float]], dict]:
    """Each role's CPU per request, per batch, per wake-up, and its idle cores; and a note of how it was fitted.

    ``runs``: per live run its ``requests``, ``batches``, ``duration_s``, each
    role's ``cpu_s`` (and, optionally, ``window_s``: the seconds over which
    each role's CPU was measured, in place of ``duration_s`` for its idle
    cores), and (for the wake-ups) ``request_times_s`` and
    ``batch_times_s``. Without those times, or when the runs' rates do not
    differ enough to tell wake-ups from messages, the wake-up term is 0 and
    the note says so. Raises ``RoleFitError`` when requests, batches and
    duration themselves cannot be told apart.
    """
    counts = np.array([[r["requests"], r["batches"], r["duration_s"]] for r in runs], dtype=float)
    if len(runs) < 3 or np.linalg.matrix_rank(counts / counts.max(axis=0), tol=1e-3) < 3:
        raise RoleFitError(f"role CPU: the runs' (requests, batches, duration_s) {counts.round(2).tolist()} cannot separate "
                           "per-request, per-batch and idle CPU (the batched run formed no batches > 1? raise --in-situ-requests)")
    with_wakeups = len(runs) >= 4 and all("request_times_s" in r and "batch_times_s" in r for r in runs)
    fitted, wakeups = {}, {}
    for role in ROLES:
        fitted[role], wakeups[role] = _fit_one(runs, role, counts, with_wakeups)
    unfitted = [r for r in ROLES if any(_HANDLES[r]) and wakeups[r] is None]
    note = {"wakeups_fitted": [r for r in ROLES if wakeups[r] is not None],
            # runs whose rates do not tell wake-ups from messages (or without event times): the wake-up term is 0
            "wakeups_not_separable": unfitted, "wakeups_per_run": {r: w for r, w in wakeups.items() if w is not None}}
    return fitted, note
