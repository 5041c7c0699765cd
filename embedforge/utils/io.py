"""File helpers: atomic writes and jsonl reading that reports ``path:line`` on bad data."""

from __future__ import annotations

import gzip
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from embedforge.errors import DataError


def open_text(path: str | Path):
    """Open a text file for reading, transparently un-gzipping ``*.gz``."""
    path = Path(path)
    if not path.is_file():
        raise DataError("file not found", path, hint="check the path; task and data directories must contain it")
    if path.suffix == ".gz":
        return gzip.open(path, "rt", encoding="utf-8")
    return open(path, encoding="utf-8")


def iter_jsonl(path: str | Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield ``(line_number, object)`` for each non-blank line of a (possibly gzipped) jsonl file.

    Raises:
        DataError: naming ``path:line`` when a line is not valid JSON or not a JSON object.
    """
    with open_text(path) as handle:
        for line_number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as error:
                raise DataError(f"malformed JSON ({error.msg} at column {error.colno})", path, line_number) from None
            if not isinstance(obj, dict):
                raise DataError(f"expected a JSON object, got {type(obj).__name__}", path, line_number)
            yield line_number, obj


def read_json(path: str | Path) -> Any:
    """Read a JSON file, reporting ``path:line`` on a syntax error."""
    with open_text(path) as handle:
        text = handle.read()
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise DataError(f"malformed JSON ({error.msg} at column {error.colno})", path, error.lineno) from None


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (temp file in the same folder, fsync, rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | Path, obj: Any) -> None:
    """Write ``obj`` as indented JSON to ``path`` atomically."""
    atomic_write_text(path, json.dumps(obj, indent=2, ensure_ascii=False) + "\n")


@contextmanager
def staged_directory(target: str | Path) -> Iterator[Path]:
    """Stage files for ``target`` in a temporary sibling folder, then publish them all at once.

    Inside the ``with`` block write into the yielded folder. On success every staged file is moved
    into ``target`` with ``os.replace`` (files already in ``target`` that were not staged are kept).
    On failure the staging folder is removed and ``target`` is left exactly as it was, so a failed
    run never leaves half-written output behind.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.staging-", dir=target.parent))
    try:
        yield staging
        target.mkdir(parents=True, exist_ok=True)
        for source in sorted(staging.rglob("*")):
            if source.is_file():
                destination = target / source.relative_to(staging)
                destination.parent.mkdir(parents=True, exist_ok=True)
                os.replace(source, destination)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
