"""Reading numeric traces (inter-arrival gaps, bandwidth samples) from files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from spec.validation import ConfigError

__all__ = ["load_series", "resolve_path"]


def resolve_path(field: str, path: str | Path) -> Path:
    """Return ``path`` as an existing file, or raise ``ConfigError`` naming ``field``.

    Relative paths are tried against the working directory and then against
    the project root, so ``../shared/data/...`` works from either.
    """
    candidate = Path(path).expanduser()
    tried = [candidate]
    if not candidate.is_absolute():
        tried.append(Path(__file__).resolve().parent.parent / candidate)
    for option in tried:
        if option.is_file():
            return option
    raise ConfigError(field, str(path), "an existing JSON or CSV file (tried " + ", ".join(map(str, tried)) + ")")


def load_series(field: str, path: str | Path, *, allow_zero: bool) -> np.ndarray:
    """Load a 1-D series of finite numbers from a JSON list or a one-column CSV."""
    file = resolve_path(field, path)
    try:
        if file.suffix.lower() == ".json":
            values = np.asarray(json.loads(file.read_text()), dtype=float)
        else:
            values = np.loadtxt(file, delimiter=",", dtype=float, ndmin=1, comments="#")
            if values.ndim > 1:
                values = values[:, -1]
    except (ValueError, json.JSONDecodeError) as error:
        raise ConfigError(field, str(path), f"a JSON list or CSV column of numbers ({error})") from None
    if values.ndim != 1 or len(values) == 0:
        raise ConfigError(field, str(path), "a non-empty 1-D list of numbers")
    bad = ~np.isfinite(values) | (values < 0) | ((values == 0) & (not allow_zero))
    if np.any(bad):
        index = int(np.argmax(bad))
        allowed = "finite numbers >= 0" if allow_zero else "finite numbers > 0"
        raise ConfigError(f"{field}[{index}]", float(values[index]), allowed)
    return values
