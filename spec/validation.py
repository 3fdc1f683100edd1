"""Checks for settings, raising errors that name the field and the allowed values."""

from __future__ import annotations

import difflib
import math
from collections.abc import Iterable
from typing import Any

__all__ = [
    "ConfigError",
    "did_you_mean",
    "check_positive",
    "check_non_negative",
    "check_int_at_least",
    "check_probability",
    "check_choice",
]


def did_you_mean(word: Any, choices: Iterable[Any]) -> str | None:
    """The choice closest to ``word`` (difflib), or None when none is close or ``word`` is a choice."""
    names = [str(c) for c in choices]
    if not isinstance(word, str) or not word or word in names:
        return None
    close = difflib.get_close_matches(word, names, n=1, cutoff=0.6)
    return close[0] if close else None


class ConfigError(ValueError):
    """A setting is out of range; the message names the field and what is allowed.

    ``choices`` (the allowed names, where there is a list) adds a did-you-mean for ``near`` (default: the value
    when it is text; for an unknown key, pass the key).
    """

    def __init__(self, field: str, value: Any, allowed: str, *, choices: Iterable[Any] = (), near: Any = None):
        self.field = field
        self.value = value
        self.allowed = allowed
        self.choices = tuple(str(c) for c in choices)
        self.suggestion = did_you_mean(value if near is None else near, self.choices)
        hint = f"; did you mean {self.suggestion!r}?" if self.suggestion else ""
        super().__init__(f"{field}={value!r} is not allowed: {allowed}{hint}")


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def check_positive(field: str, value: Any, *, finite: bool = True) -> float:
    """Return ``value`` as a float if it is > 0, else raise ``ConfigError``."""
    if not _is_number(value) or math.isnan(value) or value <= 0 or (finite and math.isinf(value)):
        raise ConfigError(field, value, "a number > 0" + (" (finite)" if finite else ""))
    return float(value)


def check_non_negative(field: str, value: Any, *, finite: bool = True) -> float:
    """Return ``value`` as a float if it is >= 0, else raise ``ConfigError``."""
    if not _is_number(value) or math.isnan(value) or value < 0 or (finite and math.isinf(value)):
        raise ConfigError(field, value, "a number >= 0" + (" (finite)" if finite else ""))
    return float(value)


def check_int_at_least(field: str, value: Any, minimum: int) -> int:
    """Return ``value`` if it is an integer >= ``minimum``, else raise ``ConfigError``."""
    if isinstance(value, bool) or not isinstance(value, int):
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        else:
            raise ConfigError(field, value, f"an integer >= {minimum}")
    if value < minimum:
        raise ConfigError(field, value, f"an integer >= {minimum}")
    return int(value)


def check_probability(field: str, value: Any) -> float:
    """Return ``value`` if it lies in [0, 1], else raise ``ConfigError``."""
    if not _is_number(value) or math.isnan(value) or not 0.0 <= value <= 1.0:
        raise ConfigError(field, value, "a probability in [0, 1]")
    return float(value)


def check_choice(field: str, value: Any, choices: Iterable[str]) -> str:
    """Return ``value`` if it is one of ``choices``, else raise ``ConfigError``."""
    choices = tuple(choices)
    if value not in choices:
        raise ConfigError(field, value, "one of " + ", ".join(repr(c) for c in choices), choices=choices)
    return value
