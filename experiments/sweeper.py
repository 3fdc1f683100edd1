"""The sweeper of ``--multirun`` (``conf/hydra/sweeper/checked.yaml``): repeats, and every job checked first.

Hydra's basic sweeper (cartesian products of ``a=1,2 b=x,y``) with two
additions:

* ``repeats: R`` runs every configuration R times, with seeds ``seed``,
  ``seed+1``, ..., ``seed+R-1``, each as a job of its own (so the joblib and
  Ray launchers run them in parallel) whose ``.hydra/overrides.yaml`` holds
  ``seed=K`` (``experiments.collect`` groups repeats by the other overrides);
* before the first job runs, every job's config is composed and its run spec
  built (``policies.run_spec.build_run_spec``, which checks everything); if
  any is bad, the first bad job's error and a count are printed (two
  lines, ``experiments.errors``) and the sweep exits with status 2, having
  run nothing.

Hydra instantiates plugins only from the ``hydra_plugins`` package, so the
config file names ``TARGET``, this class's subclass in
``hydra_plugins/edgebatch`` (at the repository root); ``register_sweeper``
(called when ``experiments.run`` is imported) makes sure Hydra finds it.
"""

from __future__ import annotations

import importlib
import logging
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.plugins import Plugins
from hydra.plugins.sweeper import Sweeper
from omegaconf import DictConfig, OmegaConf, open_dict, read_write

__all__ = ["CheckedSweeper", "SWEEP_SIZE_ENV", "TARGET", "register_sweeper", "with_seed"]

#: the number of jobs of the sweep under way (set by the sweeper before the first job starts)
SWEEP_SIZE_ENV = "EDGEBATCH_SWEEP_JOBS"

#: ``_target_`` of ``conf/hydra/sweeper/checked.yaml``
TARGET = "hydra_plugins.edgebatch.CheckedSweeper"

log = logging.getLogger(__name__)


def _key(override: str) -> str:
    return override.partition("=")[0].lstrip("+~")


def with_seed(overrides: Sequence[str], seed: int) -> list[str]:
    """``overrides`` with any ``seed=`` override replaced by ``seed=<seed>`` (last)."""
    return [o for o in overrides if _key(o) != "seed"] + [f"seed={seed}"]


def _one_line(error: BaseException, overrides: Sequence[str]) -> str:
    from experiments.errors import config_error_lines

    lines = config_error_lines(error, overrides)
    if lines:
        return lines[0].removeprefix("error: ")
    text = " ".join(str(error).split()).split(" Config search path:")[0]  # Hydra's "could not find" adds it
    return text if text else type(error).__name__


class CheckedSweeper(BasicSweeper):
    """Basic sweeper, plus ``repeats`` (one job per seed) and every job's config checked before any runs."""

    def __init__(self, max_batch_size: int | None = None, params: dict[str, str] | None = None) -> None:
        # not BasicSweeper.__init__: Hydra's plugin scan re-executes its module, after which its
        # ``super(BasicSweeper, self)`` names a class this one does not derive from
        Sweeper.__init__(self)
        self.overrides = None
        self.batch_index = 0
        self.max_batch_size = max_batch_size
        self.params = dict(params or {})
        self.hydra_context = None
        self.config = None
        self.launcher = None

    def sweep(self, arguments: list[str]) -> Any:
        assert self.config is not None and self.launcher is not None and self.hydra_context is not None
        params = self._parse_config() + list(arguments)
        parser = OverridesParser.create(config_loader=self.hydra_context.config_loader)
        points = self.split_arguments(parser.parse_overrides(params), None)[0]
        tic = time.perf_counter()
        jobs, bad = self.expand_and_check(points)
        if bad:
            from experiments.errors import exit_on_config_error

            first = "the first shown" if len(bad) > 1 else "shown"
            exit_on_config_error([bad[0], f"error: {len(bad)} bad job config(s) ({first}) in a sweep of {len(points)} "
                                          "configuration(s); nothing was run"])  # fmt: skip
        log.info(f"Checked the configs of {len(jobs)} jobs in {time.perf_counter() - tic:.1f} s")
        os.environ[SWEEP_SIZE_ENV] = str(len(jobs))  # each job says "job k of N" (launchers' workers inherit it)
        self.overrides = list(self.split_overrides_to_chunks(jobs, self.max_batch_size))
        self.batch_index = 0
        sweep_dir = Path(self.config.hydra.sweep.dir)
        sweep_dir.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(self.config, sweep_dir / "multirun.yaml")
        returns, initial_job_idx = [], 0
        while not self.is_done():
            batch = self.get_job_batch()
            results = self.launcher.launch(batch, initial_job_idx=initial_job_idx)
            for r in results:
                _ = r.return_value  # raises the job's exception if it failed
            initial_job_idx += len(batch)
            returns.append(results)
        return returns

    def compose(self, overrides: Sequence[str]) -> DictConfig:
        """One job's composed config, without its ``hydra`` node (what the task receives)."""
        assert self.hydra_context is not None and self.config is not None
        cfg = self.hydra_context.config_loader.load_sweep_config(master_config=self.config, sweep_overrides=list(overrides))
        with read_write(cfg), open_dict(cfg):
            del cfg["hydra"]
        return cfg

    def expand_and_check(self, points: Sequence[Sequence[str]]) -> tuple[list[list[str]], list[str]]:
        """The jobs of ``points`` (one per seed where ``repeats`` > 1), and one line per bad job."""
        from experiments.run import check_config, repeat_seeds

        jobs: list[list[str]] = []
        bad: list[str] = []
        for point in points:
            try:
                cfg = self.compose(point)
                seeds = repeat_seeds(cfg)
            except Exception as error:  # a composition or schema error: the whole point is bad
                bad.append(f"error: bad job [{' '.join(point)}]: {_one_line(error, point)}")
                continue
            for seed in seeds:
                job = list(point) if len(seeds) == 1 else with_seed(point, seed)
                try:
                    with read_write(cfg):
                        cfg.seed = seed
                    check_config(cfg)
                except Exception as error:
                    bad.append(f"error: bad job [{' '.join(job)}]: {_one_line(error, job)}")
                    if seed == seeds[0]:
                        break  # the same error for every seed of this point, most likely: say it once
                    continue
                jobs.append(job)
        return jobs, bad


def register_sweeper() -> None:
    """Make ``TARGET`` importable and known to Hydra, whatever the working folder."""
    from experiments.paths import REPO_ROOT

    module_name, _, class_name = TARGET.rpartition(".")
    try:
        module = importlib.import_module(module_name)
    except ImportError:  # an editable install run from another folder: the plugin sits at the repository root
        sys.path.append(str(REPO_ROOT))
        importlib.invalidate_caches()
        try:
            module = importlib.import_module(module_name)
        except ImportError:  # not here (a sweep worker needs no sweeper); a sweep says so when it starts
            return
    plugins = Plugins.instance()
    if TARGET not in plugins.class_name_to_class:
        plugins.register(getattr(module, class_name))
