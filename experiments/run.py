"""Run one configuration (``python -m experiments.run``, or ``edgebatch``); sweep with ``--multirun``.

Each run writes into its Hydra output folder (``results/runs/...`` or
``results/multirun/.../<job>``): ``config.yaml`` (composed and resolved),
``requests.parquet``, ``batches.parquet``, ``plans.parquet`` and
``summary.json``; a run that fails writes ``error.json`` (message, exception
type, overrides) instead of the summary. ``repeats: R`` runs R seeds (``seed``
to ``seed+R-1``): one job each under ``--multirun`` (``experiments.sweeper``),
else one after the other into ``<run dir>/seed=<K>/``.
"""

from __future__ import annotations

import copy
import json
import logging
import math
import os
import shutil
import statistics
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NoReturn

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf, read_write

import experiments.paths  # noqa: F401  (registers the ${data:...} resolver)
import experiments.schema  # noqa: F401  (registers the structured schema)
from experiments.errors import config_error_lines, config_errors_exit, exit_on_config_error
from experiments.progress import RunProgress, live_snapshot
from experiments.schema import check_known_keys
from experiments.sweeper import SWEEP_SIZE_ENV
from experiments.sweeper import TARGET as CHECKED_SWEEPER
from experiments.sweeper import register_sweeper, with_seed
from live.wire.broker import BrokerError  # stdlib only at import: no Pulsar needed to run the simulator
from policies.run_spec import build_run_spec
from spec.fleet import FLEET_KEYS
from spec.record_files import write_records
from spec.validation import ConfigError, check_choice, check_int_at_least

__all__ = ["main", "run_config", "IncompleteRunError", "to_run_config", "write_results", "write_error", "check_config", "repeat_seeds",
           "BACKENDS"]  # fmt: skip

BACKENDS = ("sim", "live")

log = logging.getLogger("edgebatch.run")


def _drop_none(mapping: Mapping) -> dict:
    # unset schema fields (None, or {} for nested components) take the class defaults
    return {k: v for k, v in mapping.items() if v is not None and v != {}}


def to_run_config(cfg: DictConfig | Mapping) -> dict:
    """The plain mapping ``sim.simulate`` and ``live.deploy.local.run_live`` take, from a composed config."""
    container = OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else dict(cfg)
    cluster = container["cluster"]
    return {
        "seed": container["seed"],
        "workload": _drop_none(container["workload"]),
        "cluster": {
            "executors": {name: _drop_none(e) for name, e in cluster["executors"].items()},
            "links": {name: _drop_none(link) for name, link in (cluster.get("links") or {}).items()},
            **({"hosts": cluster["hosts"]} if cluster.get("hosts") else {}),  # spec.host_spec; none: no hosts
            **({k: cluster[k] for k in FLEET_KEYS if k in cluster} if cluster.get("devices") is not None else {}),  # spec.fleet
        },
        "policy": _drop_none(container["policy"]),
        "sim": container.get("sim") or {},
        "live": _model_paths_absolute(container.get("live") or {}),
        **({"pipeline": container["pipeline"]} if container.get("pipeline") else {}),  # spec.pipeline; none: no stages
    }


def _model_paths_absolute(live: dict) -> dict:
    """Your own model's ``path``, relative to the folder you run from, made absolute (the roles run elsewhere)."""
    live = copy.deepcopy(live)
    entries = [live] + [e for e in (live.get("executors") or {}).values() if isinstance(e, dict)]
    for entry in entries:
        model = entry.get("model")
        if isinstance(model, dict) and isinstance(model.get("path"), str):
            model["path"] = str(Path(model["path"]).expanduser().resolve())
    return live


def _jsonable(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None if math.isnan(value) else str(value)
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


def write_results(out_dir: Path, result, extra: Mapping) -> dict:
    """Write the tables and the summary of ``result`` into ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    records_dir = result.extra.get("records_dir")
    streamed = records_dir is not None and Path(records_dir).resolve() == out_dir.resolve()  # written as the run went
    if not streamed:
        write_records(result.requests, out_dir / "requests.parquet")
        write_records(result.batches, out_dir / "batches.parquet")
    plans = result.plans
    if len(plans):
        plans = plans.copy()
        for column in plans.columns:  # nested plan fields (per-executor maps) as JSON text
            if plans[column].map(lambda v: isinstance(v, (dict, list))).any():
                plans[column] = plans[column].map(json.dumps)
    plans.to_parquet(out_dir / "plans.parquet", index=False)
    summary = {**extra, **result.summary, "wall_s": result.wall_s}
    (out_dir / "summary.json").write_text(json.dumps(_jsonable(summary), indent=2))
    return summary


def write_error(out_dir: Path, error: BaseException, overrides: list[str]) -> None:
    """``error.json`` in ``out_dir``: why the run failed (``experiments.collect`` lists it)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    record = {"error": str(error), "type": type(error).__name__, "overrides": list(overrides)}
    (out_dir / "error.json").write_text(json.dumps(record, indent=2))


def repeat_seeds(cfg: DictConfig | Mapping) -> list[int]:
    """The seeds of a config's repeats: ``seed``, ``seed+1``, ..., ``seed+repeats-1``."""
    repeats = check_int_at_least("repeats", cfg.get("repeats", 1), 1)
    return [int(cfg["seed"]) + k for k in range(repeats)]


def check_config(cfg: DictConfig) -> None:
    """Check a composed config (``ConfigError`` naming the field) as a run would, running nothing.

    Also a key the schema does not know (``+rate_rsp=100``), and for the live backend its own section and the
    executors' models (which needs torch, imported here only then).
    """
    check_known_keys(cfg)
    backend = check_choice("backend.kind", cfg.backend.kind, BACKENDS)
    config = to_run_config(cfg)
    if backend == "sim":
        build_run_spec(config)
        return
    from live.config import build_run
    from live.deploy.local import check_models

    check_models(build_run(config))  # each model builds and serves one input, on a device that exists


def run_config(cfg: DictConfig, out_dir: Path) -> dict:
    """Run a composed config on its backend and write its results into ``out_dir``."""
    backend = check_choice("backend.kind", cfg.backend.kind, BACKENDS)
    spec = build_run_spec(to_run_config(cfg))  # built and checked once, here; the backends take the spec
    progress = {"total": len(spec.arrivals), "label": f"{cfg.name} {backend} seed={cfg.seed}",
                "after_s": cfg.progress.after_s, "period_s": cfg.progress.period_s}  # fmt: skip
    if backend == "sim":
        from sim import build_simulation

        simulation = build_simulation(spec, default_records_dir=out_dir)  # a run beyond sim.max_records_in_memory streams here
        with RunProgress(simulation.recorder.progress, **progress):
            result = simulation.run()
    else:
        from live.deploy.local import LiveRunInterrupted, run_live

        try:
            log.info(f"[{cfg.name}] live: starting the broker and the role processes ({progress['total']} requests)")
            with RunProgress(live_snapshot(out_dir), **progress):
                result = run_live(spec, out_dir)
        except LiveRunInterrupted as stopped:
            # Ctrl-C or SIGTERM: keep what was gathered (the summary says incomplete), then stop
            (out_dir / "config.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))
            if stopped.result is not None:
                write_results(out_dir, stopped.result, _extra(cfg, backend))
            print(f"error: {stopped}", file=sys.stderr)
            raise SystemExit(128 + stopped.signum) from None
    (out_dir / "config.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))
    summary = write_results(out_dir, result, _extra(cfg, backend))
    if not summary.get("complete", True):
        raise IncompleteRunError(summary, out_dir)
    return summary


class IncompleteRunError(RuntimeError):
    """A run that ended before every request did (a live run timed out or was stopped): never a success.

    Its tables and summary are written (``"complete": false``); the exit status is 1.
    """

    def __init__(self, summary: Mapping, out_dir: Path):
        ended = int(summary.get("completed", 0)) + int(summary.get("dropped", 0))
        why = "it timed out (live.timeout_s)" if summary.get("timed_out") else "a stop came on its control topic"
        super().__init__(f"the run ended before every request did: {ended} of {summary.get('count')} ended, "
                         f"{summary.get('completed')} completed; {why}; records in {out_dir}")  # fmt: skip
        self.summary = dict(summary)


def _extra(cfg: DictConfig, backend: str) -> dict:
    return {"name": cfg.name, "backend": backend, "seed": cfg.seed, "rate_rps": cfg.rate_rps, "slo_s": cfg.slo_s,
            **OmegaConf.to_container(cfg.tags, resolve=True)}  # fmt: skip


def _job_of_sweep() -> str:
    """`` job k of N`` in a checked sweep (its progress, one line per job), else nothing."""
    total = os.environ.get(SWEEP_SIZE_ENV)
    if not total or not HydraConfig.initialized() or HydraConfig.get().mode != RunMode.MULTIRUN:
        return ""
    return f" job {int(HydraConfig.get().job.num) + 1} of {total}:"


def _run_one(cfg: DictConfig, out_dir: Path, overrides: list[str]) -> float:
    try:
        summary = run_config(cfg, out_dir)
    except Exception as error:
        write_error(out_dir, error, overrides)
        raise
    log.info(
        f"[{cfg.name}]{_job_of_sweep()} {summary['completed']}/{summary['count']} completed, p50 {summary['latency_p50_s']:.4f} s, "
        f"p95 {summary['latency_p95_s']:.4f} s, SLO {summary['slo_attainment']:.3f}, cost {summary['total_cost']:.6f}"
        f" -> {out_dir}"
    )
    return float(summary["latency_p95_s"])


def _config_error_exit(error: ConfigError, out_dir: Path) -> NoReturn:
    """A bad setting: one line naming the field and what is allowed, status 2, and no results folder left behind."""
    if not any(out_dir.rglob("summary.json")):  # nothing ran: the folder holds only Hydra's own files
        shutil.rmtree(out_dir, ignore_errors=True)
    exit_on_config_error(config_error_lines(error) or [f"error: {error}"])


def main(argv: list[str] | None = None) -> float | None:
    """Run (``python -m experiments.run [--multirun] [overrides]``); a config error is at most 3 lines, status 2.

    Hydra raises its composition errors (``HYDRA_FULL_ERROR``, set for this call) instead of printing its own
    report, so they are told as edgebatch's own: ``experiments.errors``.
    """
    argv = sys.argv[1:] if argv is None else list(argv)
    saved_argv, saved_full_error = sys.argv, os.environ.get("HYDRA_FULL_ERROR")
    sys.argv = [saved_argv[0] if saved_argv else "edgebatch", *argv]
    os.environ["HYDRA_FULL_ERROR"] = "1"
    try:
        with config_errors_exit(argv):
            return _hydra_main()
    finally:
        sys.argv = saved_argv
        if saved_full_error is None:
            os.environ.pop("HYDRA_FULL_ERROR", None)
        else:
            os.environ["HYDRA_FULL_ERROR"] = saved_full_error


@hydra.main(config_path="pkg://conf", config_name="config", version_base="1.3")  # the configs ship in the package
def _hydra_main(cfg: DictConfig) -> float:
    hydra_cfg = HydraConfig.get()
    out_dir = Path(hydra_cfg.runtime.output_dir)
    try:
        if hydra_cfg.mode != RunMode.MULTIRUN:  # the sweeper checked every job already
            check_config(cfg)
        return _run_repeats(cfg, hydra_cfg, out_dir)
    except ConfigError as error:
        if hydra_cfg.mode == RunMode.MULTIRUN:
            raise  # the sweeper checked every job first; a job's error.json says what went wrong
        _config_error_exit(error, out_dir)
    except (BrokerError, IncompleteRunError) as error:
        if hydra_cfg.mode == RunMode.MULTIRUN:
            raise
        print(f"error: {error}", file=sys.stderr)  # the job's error.json keeps it too
        raise SystemExit(1) from None


def _run_repeats(cfg: DictConfig, hydra_cfg, out_dir: Path) -> float:
    overrides = list(hydra_cfg.overrides.task)
    seeds = repeat_seeds(cfg)
    swept = hydra_cfg.mode == RunMode.MULTIRUN and hydra_cfg.sweeper.get("_target_") == CHECKED_SWEEPER
    if len(seeds) == 1 or swept:  # the checked sweeper made one job per seed already
        return _run_one(cfg, out_dir, overrides)
    p95 = []
    for seed in seeds:
        seed_cfg = copy.deepcopy(cfg)
        with read_write(seed_cfg):
            seed_cfg.seed = seed
        seed_dir, seed_overrides = out_dir / f"seed={seed}", with_seed(overrides, seed)
        (seed_dir / ".hydra").mkdir(parents=True, exist_ok=True)  # what collect reads to group the repeats
        OmegaConf.save(OmegaConf.create(seed_overrides), seed_dir / ".hydra" / "overrides.yaml")
        p95.append(_run_one(seed_cfg, seed_dir, seed_overrides))
    return statistics.fmean(p95)


register_sweeper()

if __name__ == "__main__":
    main()
