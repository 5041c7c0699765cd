"""Task types: how each MTEB task type's directory is read and which MTEB task class scores it.

A task type is a small class registered under its MTEB name with :func:`register_task_type`. It
reads the task directory into the dataset layout of its MTEB abstract task (validating every row:
bad rows are :class:`~embedforge.errors.DataError` naming ``path:line``) and names that class.
Scoring itself is MTEB's own code, so scores are the ones the leaderboard prints.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable
from pathlib import Path
from typing import Any, ClassVar

from embedforge.errors import DataError
from embedforge.evaluation.spec import TaskSpec
from embedforge.utils.io import iter_jsonl
from embedforge.utils.registry import Registry


class TaskType:
    """Base class of a task type. Subclasses set the class variables and implement :meth:`load`."""

    name: ClassVar[str]  # MTEB task type, e.g. "STS"
    abstask: ClassVar[str]  # "module:Class" of the MTEB abstract task that scores it
    default_main_score: ClassVar[str]  # MTEB's main metric for the type
    files: ClassVar[str]  # one line describing the files, for error messages and docs

    def load(self, spec: TaskSpec) -> Any:
        """Read ``spec.directory`` into the ``dataset`` layout of :attr:`abstask`."""
        raise NotImplementedError

    def protocol(self, spec: TaskSpec, data: Any) -> dict[str, Any]:
        """Attributes to set on the generic MTEB task class (used when MTEB has no task of that name)."""
        return {}

    def mteb_methods(self, base: type) -> dict[str, Any]:
        """Methods that replace ``base``'s (an MTEB task class) on our task class: same results, less time.

        Only for costs of MTEB's bookkeeping around the model, never its math; a test compares every type's
        scores with plain ``mteb.evaluate`` on the same data.
        """
        return {}

    def abstask_class(self) -> type:
        module, _, cls = self.abstask.partition(":")
        return getattr(importlib.import_module(module), cls)


TASK_TYPES: Registry[TaskType] = Registry("task type")


def register_task_type(cls: type[TaskType]) -> type[TaskType]:
    """Class decorator adding a task type to :data:`TASK_TYPES` (names must be unique)."""
    TASK_TYPES.register(cls.name, cls())
    return cls


def get_task_type(spec: TaskSpec) -> TaskType:
    """The registered type of ``spec``; an unknown type is a :class:`DataError` naming task.json."""
    _load_builtin_types()
    return TASK_TYPES.lookup(spec.type, DataError, path=spec.task_json)


def read_rows(path: Path, text_fields: Iterable[str], other_fields: Iterable[str] = ()) -> list[dict[str, Any]]:
    """Read a jsonl file whose rows must have non-empty string ``text_fields`` and present ``other_fields``.

    Returns the rows (only the named fields). Errors name ``path:line`` and the field.
    """
    text_fields, other_fields = tuple(text_fields), tuple(other_fields)
    rows = []
    for line, obj in iter_jsonl(path):
        for name in (*text_fields, *other_fields):
            if name not in obj:
                raise DataError(f"row lacks the field {name!r} (fields present: {sorted(obj)})", path, line)
        for name in text_fields:
            check_text(obj[name], path, line, name)
        rows.append({name: obj[name] for name in (*text_fields, *other_fields)})
    if not rows:
        raise DataError("file holds no rows", path)
    return rows


def check_text(value: Any, path: Path, line: int, field: str) -> None:
    """A text must be a non-empty, non-blank string."""
    if not isinstance(value, str):
        raise DataError(f"field {field!r} must be a string, got {type(value).__name__}", path, line)
    if not value.strip():
        raise DataError(f"field {field!r} is an empty text", path, line, hint="remove the row or fill in the text")


def _load_builtin_types() -> None:
    # imported here (not at module import) so the registry can be imported without mteb's cost
    from embedforge.evaluation.types import (  # noqa: F401
        classification,
        clustering,
        pair_classification,
        reranking,
        retrieval,
        sts,
        summarization,
    )
