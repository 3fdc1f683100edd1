"""Errors that say which side misused the API.

A bad setting is ``spec.validation.ConfigError``, the one config-error class of both backends."""

from __future__ import annotations

__all__ = ["PolicyError", "DriverError"]


class PolicyError(Exception):
    """Base of errors raised while a policy handles events."""


class DriverError(PolicyError):
    """The driver reported an event that is impossible in the policy's state,
    for example a finished batch the policy never dispatched, or time going
    backwards. The driver is wrong, not the policy."""

