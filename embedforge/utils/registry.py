"""One small registry: a name -> entry mapping with unique names and an unknown-name error that suggests.

Every registry of the project (losses, merge methods, stage types, task types, decoder families, tiny
architectures) is a :class:`Registry`::

    MERGE_METHODS = Registry("merge method")
    MERGE_METHODS.register("uniform", UNIFORM)
    MERGE_METHODS.lookup("unifrom")   # ConfigError: unknown merge method 'unifrom'. Did you mean 'uniform'? ...

It is a ``dict``, so membership, iteration and ``registry[name]`` read as before.
"""

from __future__ import annotations

from typing import Generic, TypeVar

from embedforge.errors import ConfigError, EmbedforgeError, did_you_mean

T = TypeVar("T")


class Registry(dict[str, T], Generic[T]):
    """Name -> entry; :meth:`register` refuses duplicates, :meth:`lookup` names the unknown name and the choices.

    Args:
        kind: what an entry is, in words, for the messages (``"loss"``, ``"merge method"``).
    """

    def __init__(self, kind: str) -> None:
        super().__init__()
        self.kind = kind

    def register(self, name: str, entry: T) -> T:
        """Add ``entry`` under ``name``; a name already taken is a :class:`ConfigError`."""
        if name in self:
            raise ConfigError(f"a {self.kind} named {name!r} is already registered ({self[name]!r})")
        self[name] = entry
        return entry

    def lookup(self, name: str, error: type[EmbedforgeError] = ConfigError, **error_options: object) -> T:
        """The entry registered as ``name``, or ``error`` (a :class:`ConfigError` by default) with a suggestion."""
        if name not in self:
            raise error(f"unknown {self.kind} {name!r}.{did_you_mean(str(name), self)}", **error_options)
        return self[name]
