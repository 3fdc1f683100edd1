"""Errors that say which side misused the API."""

from __future__ import annotations

__all__ = ["PolicyError", "DriverError", "PolicyConfigError"]


class PolicyError(Exception):
    """Base of errors raised while a policy handles events."""


class DriverError(PolicyError):
    """The driver reported an event that is impossible in the policy's state,
    for example a finished batch the policy never dispatched, or time going
    backwards. The driver is wrong, not the policy."""


class PolicyConfigError(ValueError):
    """A policy was built with a bad setting; the message names the setting
    and the allowed values."""
