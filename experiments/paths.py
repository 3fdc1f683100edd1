"""Where shared data and results live, and the OmegaConf resolvers that point there."""

from __future__ import annotations

import os
from pathlib import Path

from omegaconf import OmegaConf

__all__ = ["REPO_ROOT", "DATA_DIR", "RESULTS_DIR", "register_resolvers"]

REPO_ROOT = Path(__file__).resolve().parent.parent
#: the real traces (../shared/data next to the checkout); EDGEBATCH_DATA overrides
DATA_DIR = Path(os.environ.get("EDGEBATCH_DATA", REPO_ROOT.parent / "shared" / "data")).resolve()
RESULTS_DIR = REPO_ROOT / "results"


def register_resolvers() -> None:
    """``${data:file.json}``: the absolute path of a shared data file; ``${mul:a,b}``, ``${div:a,b}``."""
    if not OmegaConf.has_resolver("data"):
        OmegaConf.register_new_resolver("data", lambda name: str(DATA_DIR / name))
    # ${mul:a,b}, ${div:a,b}: arithmetic on knobs (an MMPP's phases around ${rate_rps})
    if not OmegaConf.has_resolver("mul"):
        OmegaConf.register_new_resolver("mul", lambda a, b: float(a) * float(b))
    if not OmegaConf.has_resolver("div"):
        OmegaConf.register_new_resolver("div", lambda a, b: float(a) / float(b))


register_resolvers()
