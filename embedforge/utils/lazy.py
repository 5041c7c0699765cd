"""Lazy package exports: ``import embedforge.x`` stays instant, the heavy module loads on first use."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any


def lazy_exports(
    package: str, exports: Mapping[str, str], *, install_hint: str | None = None
) -> tuple[Callable[[str], Any], list[str]]:
    """A module-level ``__getattr__`` and ``__all__`` for ``{public name: defining module}``.

    Usage in a package ``__init__``: ``__getattr__, __all__ = lazy_exports(__name__, _EXPORTS)``.
    ``install_hint`` turns an ImportError of an optional dependency into one that says what to install.
    """

    def __getattr__(name: str) -> Any:
        if name not in exports:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        try:
            module = importlib.import_module(exports[name])
        except ImportError as error:
            if install_hint is None:
                raise
            raise ImportError(f"{package} needs {install_hint} ({error})") from error
        return getattr(module, name)

    return __getattr__, sorted(exports)
