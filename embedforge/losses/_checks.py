"""Argument checks shared by the losses: a bad value raises ConfigError (a ValueError) naming it."""

from __future__ import annotations

from typing import Any

from embedforge.errors import ConfigError


def is_number(value: Any) -> bool:
    """A real int/float (not a bool, not NaN)."""
    return isinstance(value, int | float) and not isinstance(value, bool) and value == value


def check(ok: bool, loss: str, argument: str, value: Any, requirement: str) -> None:
    """Raise ``ConfigError("<loss>: <argument>=<value> is invalid; it must be <requirement>.")`` unless ``ok``."""
    if not ok:
        raise ConfigError(f"{loss}: {argument}={value!r} is invalid; it must be {requirement}.")
