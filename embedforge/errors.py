"""User-facing errors.

Everything a user can fix (a bad path, a malformed data row, an unknown option) is raised as an
:class:`EmbedforgeError`. The CLI prints its message on one line and exits with status 2 instead of
showing a traceback; Python callers can catch it (it is also a ``ValueError``).
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from pathlib import Path


class EmbedforgeError(ValueError):
    """An error the user can act on; the message says what is wrong and how to fix it."""


class ConfigError(EmbedforgeError):
    """A bad argument, option or configuration key."""


class DataError(EmbedforgeError):
    """A problem in a data file, located by ``path`` and (1-based) ``line`` when known."""

    def __init__(self, message: str, path: str | Path | None = None, line: int | None = None, hint: str | None = None):
        self.path = Path(path) if path is not None else None
        self.line = line
        self.hint = hint
        where = ""
        if path is not None:
            where = f"{path}:{line}: " if line is not None else f"{path}: "
        text = f"{where}{message}"
        if hint:
            text = f"{text} ({hint})"
        super().__init__(text)


def did_you_mean(value: str, choices: Iterable[str]) -> str:
    """Return a ' Did you mean ...?' suffix (or a list of valid choices) for an unknown name."""
    choices = sorted(choices)
    close = difflib.get_close_matches(value, choices, n=1)
    if close:
        return f" Did you mean {close[0]!r}? Valid choices: {', '.join(choices)}."
    return f" Valid choices: {', '.join(choices)}."
