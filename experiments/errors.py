"""Config errors in at most three lines: the field, its value, what is allowed and a did-you-mean; status 2.

Hydra reports a bad override (an unknown key, a group option that does not
exist, a value of the wrong type) with its own multi-line text and status 1;
``experiments.run`` lets those exceptions through to ``config_error_lines``,
which turns them, and edgebatch's own ``spec.validation.ConfigError``, into
``error: <field>=<value> is not allowed: <allowed>; did you mean <x>?``.
Anything else is not a config error (``None``): the caller re-raises it.
"""

from __future__ import annotations

import dataclasses
import re
import sys
from collections.abc import Sequence
from contextlib import contextmanager
from typing import Any, NoReturn

import yaml
from hydra.errors import CompactHydraException, MissingConfigException, OverrideParseException
from omegaconf.errors import ConfigAttributeError, ConfigKeyError, OmegaConfBaseException, ValidationError

from spec.validation import ConfigError

__all__ = ["CONFIG_ERROR_STATUS", "config_error_lines", "exit_on_config_error"]

#: the exit status of every config error (argparse's for a bad argument)
CONFIG_ERROR_STATUS = 2


def _first_line(text: object) -> str:
    lines = [line.strip() for line in str(text).splitlines() if line.strip()]
    return lines[0] if lines else ""


def _override_value(full_key: str, overrides: Sequence[str]) -> Any:
    for override in reversed(list(overrides)):
        key, equals, value = override.partition("=")
        if equals and key.lstrip("+~") == full_key:
            try:
                return yaml.safe_load(value)
            except yaml.YAMLError:
                return value
    return None


def _unknown_key(cause: ConfigKeyError | ConfigAttributeError, overrides: Sequence[str]) -> ConfigError:
    full_key = str(cause.full_key)
    kind = cause.object_type
    value = _override_value(full_key, overrides)
    key = full_key.rpartition(".")[2]
    if dataclasses.is_dataclass(kind):
        known = [f.name for f in dataclasses.fields(kind)]
        allowed = f"not a setting of {kind.__name__}, whose keys are " + ", ".join(known)
        return ConfigError(full_key, value, allowed, choices=known, near=key)
    # an open mapping (a policy's parameters, live.executors): its keys so far; a new one is added with +
    parent = cause.parent_node
    known, owner = [str(k) for k in parent.keys()] if parent is not None else [], full_key.rpartition(".")[0] or "the config"
    allowed = f"not a key of {owner}" + (" (" + ", ".join(known) + ")" if known else "") + f"; a new key: +{full_key}=..."
    return ConfigError(full_key, value, allowed, choices=known, near=key)


def _omegaconf_error(cause: OmegaConfBaseException, overrides: Sequence[str]) -> ConfigError | None:
    full_key = getattr(cause, "full_key", None)
    if not full_key:
        return None
    if isinstance(cause, (ConfigKeyError, ConfigAttributeError)):  # a key the schema does not have
        return _unknown_key(cause, overrides)
    if isinstance(cause, ValidationError):  # a value of the wrong type
        message = _first_line(getattr(cause, "msg", cause))
        converts = re.search(r"could not be converted to (\w+)", message)
        allowed = f"a value of type {converts.group(1)}" if converts else message
        return ConfigError(str(full_key), _override_value(str(full_key), overrides), allowed)
    return None


def _as_config_error(error: BaseException, overrides: Sequence[str]) -> ConfigError | str | None:
    if isinstance(error, ConfigError):
        return error
    if isinstance(error, MissingConfigException):
        missing = str(error.missing_cfg_file or "")
        group, _, option = missing.rpartition("/")
        if error.options and group:
            return ConfigError(group, option, "one of " + ", ".join(error.options), choices=error.options)
        return _first_line(error)  # a primary config that is not there
    if isinstance(error, OverrideParseException):
        return f"cannot parse the override {error.override!r}: {_first_line(error.message)}"
    if isinstance(error, OmegaConfBaseException):
        return _omegaconf_error(error, overrides)
    if isinstance(error, CompactHydraException):  # ConfigCompositionException and the like
        already = re.match(r"Could not append to config\. An item is already at '(\S+)'", _first_line(error))
        if already:  # +key=value for a key the config has: say to drop the +
            key = already.group(1)
            return ConfigError(f"+{key}", _override_value(key, overrides), f"{key} is a setting already: write {key}=... (no +)")
        cause = error.__cause__
        merging = re.match(r"Error merging override (\S+)", _first_line(error))  # the override Hydra was applying
        if merging:
            overrides = [*overrides, merging.group(1)]
        if isinstance(cause, OmegaConfBaseException):
            found = _omegaconf_error(cause, overrides)
            if found is not None:
                return found
        return _first_line(error) + (f" ({_first_line(cause)})" if cause is not None else "")
    return None


def config_error_lines(error: BaseException, overrides: Sequence[str] = ()) -> list[str] | None:
    """At most three lines saying what is wrong with the config, or None if ``error`` is not a config error."""
    found = _as_config_error(error, overrides)
    if found is None:
        return None
    return [f"error: {found}"]


@contextmanager
def config_errors_exit(overrides: Sequence[str] = ()):
    """Inside it, a config error (ours, Hydra's, OmegaConf's) exits as ``exit_on_config_error``; others propagate."""
    try:
        yield
    except Exception as error:
        lines = config_error_lines(error, overrides)
        if lines is None:
            raise
        exit_on_config_error(lines)


def exit_on_config_error(lines: Sequence[str]) -> NoReturn:
    """Print ``lines`` (at most three) on stderr and exit with ``CONFIG_ERROR_STATUS``."""
    for line in list(lines)[:3]:
        print(line, file=sys.stderr)
    raise SystemExit(CONFIG_ERROR_STATUS)
