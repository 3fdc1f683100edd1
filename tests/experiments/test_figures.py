"""Figures state their configuration, mark the SLO, tell backends apart, and show what the run has."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd
import pytest
import yaml
from hydra import compose, initialize_config_dir

import experiments.plot as plot
from experiments.paths import DATA_DIR, REPO_ROOT
from experiments.run import run_config

CONF = REPO_ROOT / "conf"


def make_run(run_dir: Path, overrides: list[str]) -> Path:
    """One simulated run with its overrides saved where ``collect`` reads them."""
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("config", overrides=overrides)
    (run_dir / ".hydra").mkdir(parents=True)
    (run_dir / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    run_config(cfg, run_dir)
    return run_dir


def as_live(sim_dir: Path, live_dir: Path) -> Path:
    """A copy of a simulated run labelled live, its latencies 20% longer (no broker needed)."""
    shutil.copytree(sim_dir, live_dir)
    overrides = [o.replace("backend=sim", "backend=live") for o in yaml.safe_load((live_dir / ".hydra" / "overrides.yaml").read_text())]
    (live_dir / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    summary = json.loads((live_dir / "summary.json").read_text())
    (live_dir / "summary.json").write_text(json.dumps({**summary, "backend": "live"}))
    requests = pd.read_parquet(live_dir / "requests.parquet")
    requests["latency_s"] *= 1.2
    requests.to_parquet(live_dir / "requests.parquet")
    return live_dir


@pytest.fixture
def figures(monkeypatch):
    """The matplotlib figures the plot functions save, by name, still open."""
    saved = {}
    real_save = plot._save

    def keep(fig, out, name):
        saved[name] = fig
        paths = real_save(fig, out, name)
        return paths

    monkeypatch.setattr(plot.plt, "close", lambda fig=None: None)
    monkeypatch.setattr(plot, "_save", keep)
    yield saved
    plt.close("all")


@pytest.fixture(scope="module")
def sim_and_live(tmp_path_factory):
    root = tmp_path_factory.mktemp("svl")
    runs = []
    for seed in (0, 1):
        base = ["num_requests=400", "rate_rps=40", "slo_s=0.3", "name=svl", f"seed={seed}"]
        sim = make_run(root / f"sim{seed}", [*base, "backend=sim"])
        runs += [sim, as_live(sim, root / f"live{seed}")]
    return root


def test_the_cdf_tells_sim_and_live_apart_marks_the_slo_and_states_the_configuration(sim_and_live, figures, tmp_path):
    plot.plot_all([sim_and_live], tmp_path, timelines=0)
    fig = figures["latency_cdf"]
    ax = fig.axes[0]
    labels = [text.get_text() for text in ax.get_legend().get_texts()]
    assert sorted(labels) == ["live", "sim"]
    lines = {line.get_label(): line for line in ax.get_lines()}
    assert lines["sim"].get_linestyle() != lines["live"].get_linestyle() and lines["sim"].get_color() != lines["live"].get_color()
    assert any(list(line.get_xdata()) == [300.0, 300.0] for line in ax.get_lines())  # the SLO, in ms
    title = fig._suptitle.get_text()
    assert "simulated and live" in title and "SLO 300 ms" in title and "400 requests per run" in title and "2 seeds" in title
    assert "edge (edge, 1 slot)" in title and "poisson arrivals" in title


def test_a_timeline_without_a_link_has_no_empty_bandwidth_panel_and_a_real_title(sim_and_live, figures, tmp_path):
    plot.plot_all([sim_and_live / "sim0"], tmp_path, timelines=1)
    (name,) = [n for n in figures if n.startswith("timeline_")]
    fig = figures[name]
    assert len(fig.axes) == 2 and not any("bandwidth" in ax.get_ylabel() for ax in fig.axes)
    title = fig._suptitle.get_text()
    assert "no uplink in this set-up" in title and "seed=0" in title and "SLO 300 ms" in title and "simulated" in title
    assert "sim0" not in title  # a configuration, not a folder name


@pytest.mark.skipif(not (DATA_DIR / "lte_car_bandwidth_MBps.json").exists(), reason="needs the shared bandwidth trace")
def test_a_timeline_with_an_uplink_draws_its_bandwidth_and_the_replans(figures, tmp_path):
    run = make_run(tmp_path / "seb", ["+experiment=seb_trace", "+strategy=tail_aware", "num_requests=1500",
                                       "workload.sources.cam0.arrivals.time_scale=0.5"])  # fmt: skip
    plot.plot_all([run], tmp_path / "plots", timelines=1)
    (name,) = [n for n in figures if n.startswith("timeline_")]
    rate_ax, bw_ax, _ = figures[name].axes
    assert bw_ax.get_ylabel() == "bandwidth (MB/s)"
    (trace,) = [line for line in bw_ax.get_lines() if line.get_label().startswith("uplink to serverless")]
    assert len(trace.get_ydata()) > 5 and max(trace.get_ydata()) > 0
    replans = [t.get_text() for t in rate_ax.get_legend().get_texts() if t.get_text().startswith("re-plan")]
    plans = len(pd.read_parquet(run / "plans.parquet"))
    assert replans == [f"re-plan, periodic or initial ({plans})"] and plans > 1


def test_the_load_plot_has_its_slo_currency_and_configuration(tmp_path, figures):
    for rate in (20, 40):
        make_run(tmp_path / "runs" / f"r{rate}", [f"rate_rps={rate}", "num_requests=300"])
    plot.plot_all([tmp_path / "runs"], tmp_path / "plots", timelines=0)
    fig = figures["load"]
    assert "cost per 1,000 requests (USD)" in [ax.get_ylabel() for ax in fig.axes]
    latency_ax = fig.axes[1]
    assert any(list(line.get_ydata()) == [800.0, 800.0] for line in latency_ax.get_lines())  # SLO 0.8 s, in ms
    assert "SLO 800 ms" in fig._suptitle.get_text() and "300 requests per run" in fig._suptitle.get_text()
    cost_ax = [ax for ax in fig.axes if ax.get_ylabel().startswith("cost")][0]
    assert any("every run cost 0 USD" in t.get_text() for t in cost_ax.texts)  # edge only, no price: said, not a bare 0


def test_the_quickstart_tour_has_its_figure(tmp_path):
    from experiments.quickstart import batching_tour, plot_tour

    if not (DATA_DIR / "interarrivals_49rps_s.json").exists():
        pytest.skip("needs the shared request trace")
    table, requests = batching_tour(2000)
    written = plot_tour(requests, tmp_path, num_requests=2000)
    assert [p.name for p in written] == ["batching_tour.png", "batching_tour.svg"] and all(p.stat().st_size > 1000 for p in written)
    assert set(requests) == set(table.index)


def test_the_quickstarts_figure_count_is_the_files_written(tmp_path):
    from experiments.quickstart import figures_line

    for name in ("plots/latency_cdf", "plots/timeline_sim_seed0", "calibration/fit"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / f"{name}.png").write_bytes(b"png")
        (tmp_path / f"{name}.svg").write_text("svg")
    (tmp_path / "plots" / "lonely.png").write_bytes(b"png")
    assert figures_line(tmp_path) == ("3 figures, each as PNG and SVG: calibration/fit, plots/latency_cdf, plots/timeline_sim_seed0; "
                                      "1 as PNG only")  # fmt: skip
