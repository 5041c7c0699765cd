"""File helpers: atomic writes and jsonl reading that reports ``path:line`` on bad data.

Files written here get the permissions a plain ``open()`` would give (``0666`` and ``0777`` less the umask),
not the ``0600``/``0700`` of :mod:`tempfile`, so a teammate or a serving container can read them.
"""

from __future__ import annotations

import errno
import gzip
import json
import logging
import os
import shutil
import tempfile
import threading
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from embedforge.errors import DataError, EmbedforgeError

logger = logging.getLogger(__name__)


class TextFile:
    """Lines of a UTF-8 text file (``*.gz`` un-gzipped); bad bytes and broken gzip data name ``path:line``.

    Each line is decoded on its own, so a non-UTF-8 byte is reported at its own line (a text-mode file
    decodes ahead in blocks and raises a bare ``UnicodeDecodeError`` without one). ``\r\n`` ends become ``\n``.
    """

    def __init__(self, path: Path):
        self.path = path
        self.line = 0  # lines read so far
        self._raw = gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")  # noqa: SIM115

    def __enter__(self) -> TextFile:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        self._raw.close()

    def __iter__(self) -> Iterator[str]:
        while True:
            try:
                raw = self._raw.readline()
            except (EOFError, zlib.error, gzip.BadGzipFile) as error:
                raise DataError(
                    f"truncated or corrupt gzip data after line {self.line} ({error})",
                    self.path,
                    hint="the file was cut short (an interrupted download or copy?); fetch or compress it again",
                ) from None
            if not raw:
                return
            self.line += 1
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as error:
                raise DataError(
                    f"not UTF-8 text: byte 0x{raw[error.start]:02x} at byte {error.start + 1} of the line",
                    self.path,
                    self.line,
                    hint="save the file as UTF-8, e.g. iconv -f latin1 -t utf-8 IN > OUT",
                ) from None
            yield text[:-2] + "\n" if text.endswith("\r\n") else text

    def read(self) -> str:
        return "".join(self)


def open_text(path: str | Path) -> TextFile:
    """Open a UTF-8 text file for reading line by line, transparently un-gzipping ``*.gz``."""
    path = Path(path)
    if not path.is_file():
        raise DataError("file not found", path, hint="check the path; task and data directories must contain it")
    return TextFile(path)


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
        os.fchmod(fd, 0o666 & ~current_umask())  # mkstemp makes 0600; the user's umask decides, as open() does
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
    staging = make_staging_dir(target, "staging")
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


_UMASK_LOCK = threading.Lock()


def current_umask() -> int:
    """The process umask (read by setting it and putting it back, under a lock)."""
    with _UMASK_LOCK:
        mask = os.umask(0o022)
        os.umask(mask)
    return mask


def make_staging_dir(target: str | Path, kind: str) -> Path:
    """A hidden sibling ``.<name>.<kind>-XXXX`` of ``target`` with the umask's permissions (mkdtemp makes 0700).

    Rename it over ``target`` once it is complete; :func:`remove_stale_staging` clears ones a killed process left.
    """
    target = Path(target)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.{kind}-", dir=target.parent))
    staging.chmod(0o777 & ~current_umask())
    return staging


def remove_stale_staging(directory: str | Path) -> list[Path]:
    """Remove the hidden staging folders (``.<name>.<kind>-XXXX``) a killed run left in ``directory``.

    Only for a folder no other process is writing to (a resumed stage's own folder). Returns what was removed.
    """
    directory = Path(directory)
    if not directory.is_dir():
        return []
    removed = []
    for path in directory.iterdir():
        name = path.name
        if name.startswith(".") and path.is_dir() and any(f".{kind}-" in name for kind in _STAGING_KINDS):
            logger.warning("removing %s, left by a run that stopped while saving", path)
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed


_STAGING_KINDS = ("saving", "staging", "old", "converting")


class DiskFullError(EmbedforgeError):
    """No space left on the device being written."""


def is_disk_full(error: BaseException, path: str | Path | None = None) -> bool:
    """Whether ``error`` (or an error it came from) is a full disk.

    ``ENOSPC`` anywhere in the chain, a message saying so (safetensors: ``StorageFull``), or an I/O error from a
    writer that loses the errno (torch.save: ``file write failed``) while ``path``'s file system has under 1 MiB free.
    """
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, OSError) and current.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        text = str(current)
        if any(sign in text for sign in ("No space left on device", "StorageFull", "database or disk is full")):
            return True
        current = current.__cause__ or current.__context__
    if path is not None and isinstance(error, OSError | RuntimeError):
        probe = Path(path)
        while not probe.exists() and probe != probe.parent:
            probe = probe.parent
        try:
            return shutil.disk_usage(probe).free < 2**20
        except OSError:
            return False
    return False


@contextmanager
def reporting_full_disk(path: str | Path) -> Iterator[None]:
    """Turn a full disk while writing under ``path`` into a one-line :class:`DiskFullError` naming the path.

    Whatever was half written stays where it was (an unmarked checkpoint is never resumed from).
    """
    try:
        yield
    except EmbedforgeError:
        raise
    except Exception as error:
        if not is_disk_full(error, path):
            raise
        where = getattr(error, "filename", None) or path
        raise DiskFullError(
            f"no space left on device at {where}; free some space and rerun (with --resume for a training run: "
            "a checkpoint cut short is not used)"
        ) from error
