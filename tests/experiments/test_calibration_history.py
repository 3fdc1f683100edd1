"""experiments.calibration_history: each calibration kept, and every parameter's spread across them."""

from __future__ import annotations

import pytest

from experiments import calibration_history as H


def _profile(service_b1_s: float, *, hostname: str = "vm", model: str = "wide_mlp", measured_at: str = "2026-12-02T20:00:00Z",
             step: bool = True) -> dict:  # fmt: skip
    broker = {"cpu_s_per_request": 0.001, "cpu_s_per_batch": 0.0002, "idle_cores": 0.04}
    if step:
        broker.update(step_after_MB=600.0, step_factor=1.7)
    return {
        "hop_s": 0.001, "overhead_s": 0.0016, "ingest_s": 0.0022, "hop_MBps": 130.0,
        "hosts": {"local": {"cold_start_cores": 1.1, "roles": {"broker": broker, "gateway": {"cpu_s_per_request": 0.0009}}}},
        "calibration": {
            "measured_at": measured_at, "model": model, "edge_threads": 1, "cloud_threads": 2,
            "machine": {"hostname": hostname, "cpu_model": "Xeon"},
            "service": {"1_threads": {1: {"mean_s": service_b1_s}, 8: {"mean_s": 3 * service_b1_s}},
                        "2_threads": {1: {"mean_s": service_b1_s / 2}, 8: {"mean_s": service_b1_s}}},
            "cold_start": {"alone": {"mean_s": 1.5}}, "contention": {"by_batch_size": {8: 1.2}},
        },
    }  # fmt: skip


def test_parameters_are_read_in_the_units_their_names_carry():
    p = H.parameters(_profile(0.005))
    assert p["service_edge_b1_ms"] == pytest.approx(5.0) and p["service_edge_b8_ms"] == pytest.approx(15.0)
    assert p["broker_us_per_request"] == pytest.approx(1000.0) and p["broker_step_factor"] == 1.7
    assert "broker_step_after_MB" not in H.parameters(_profile(0.005, step=False))


def test_the_spread_is_over_the_same_machine_and_model_within_the_window(tmp_path):
    path = tmp_path / "history.jsonl"
    for service_s in (0.004, 0.005, 0.006):
        H.append(_profile(service_s), path)
    H.append(_profile(0.050, hostname="other"), path)  # another machine
    H.append(_profile(0.050, model="cnn"), path)  # another model
    with open(path, "a") as fp:
        fp.write("not json\n")
    entries = H.load(path)
    assert len(entries) == 5  # the bad line skipped
    summary = H.across(entries, entries[0])
    service = summary["parameters"]["service_edge_b1_ms"]
    assert summary["calibrations"] == 3 and service["n"] == 3
    assert service["mean"] == pytest.approx(5.0) and service["cv"] == pytest.approx(0.2) and (service["min"], service["max"]) == (4.0, 6.0)
    # a day later none of them is within the window
    assert H.across(entries, entries[0], now_s=entries[-1]["unix_s"] + 25 * 3600)["calibrations"] == 0
    assert "service_edge_b1_ms" in H.table(summary) and "20.0%" in H.table(summary)


def test_one_calibration_has_no_spread_to_report(tmp_path):
    entry = H.append(_profile(0.004), tmp_path / "h.jsonl")
    service = H.across(H.load(tmp_path / "h.jsonl"), entry)["parameters"]["service_edge_b1_ms"]
    assert service["n"] == 1 and service["sd"] is None and service["cv"] is None
