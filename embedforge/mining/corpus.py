"""Candidate pools for hard-negative mining: extra texts read from files.

A mining run always draws candidates from the positives of its dataset; a corpus adds more texts (the
documents of a retrieval collection, say). Accepted sources:

* a jsonl / jsonl.gz file, one object a line, the text in ``column`` (default ``text``); a ``title`` field is
  prepended as BEIR / mteb do (``title + " " + text``);
* a BEIR directory (``corpus.jsonl`` inside is read as above);
* a ``.txt`` file (or ``.txt.gz``), one text a line.

Empty or missing texts are a :class:`~embedforge.errors.DataError` naming ``file:line``; a source with no text
at all is an error too (an empty pool cannot give negatives).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from embedforge.errors import DataError
from embedforge.utils.io import iter_jsonl, open_text

CorpusSource = str | os.PathLike[str]


def read_corpus(sources: CorpusSource | Iterable[CorpusSource], column: str = "text") -> list[str]:
    """Read candidate texts from one or more files / BEIR directories (duplicates removed, order kept).

    Args:
        sources: a path or several (see the module docstring for the formats).
        column: the jsonl field holding the text.

    Returns:
        The texts, de-duplicated, in file order.

    Raises:
        DataError: a missing file, a line without text, or a source with no texts.
    """
    if isinstance(sources, str | os.PathLike):
        sources = [sources]
    texts: dict[str, None] = {}
    for source in sources:
        for text in _read_one(Path(source), column):
            texts.setdefault(text, None)
    return list(texts)


def _read_one(path: Path, column: str) -> list[str]:
    if path.is_dir():
        if not (path / "corpus.jsonl").is_file():
            raise DataError("a corpus directory must be a BEIR directory with corpus.jsonl", path)
        path = path / "corpus.jsonl"
    if not path.exists():
        raise DataError("corpus file not found", path, hint="check the 'corpus' path")
    name = path.name.lower()
    texts = _read_lines(path) if name.endswith((".txt", ".txt.gz")) else _read_jsonl(path, column)
    if not texts:
        raise DataError("the corpus has no texts", path, hint="an empty candidate pool cannot give hard negatives")
    return texts


def _read_lines(path: Path) -> list[str]:
    with open_text(path) as handle:
        return [line.rstrip("\n") for line in handle if line.strip()]


def _read_jsonl(path: Path, column: str) -> list[str]:
    texts = []
    for line, obj in iter_jsonl(path):
        text = obj.get(column)
        if not isinstance(text, str) or not text.strip():
            raise DataError(
                f"no text in field {column!r} (fields: {', '.join(obj) or 'none'})",
                path,
                line,
                hint="set the corpus column, e.g. corpus_column: body",
            )
        title = obj.get("title")
        texts.append(f"{title} {text}".strip() if isinstance(title, str) and title else text)
    return texts
