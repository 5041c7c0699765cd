"""Documents to write queries for: jsonl / jsonl.gz / parquet / a BEIR directory / one column of a pairs file.

Every source becomes a list of :class:`Document` (a stable id and a text). The id keys resumption and
provenance: the ``_id`` / ``id`` field when the file has one (BEIR corpora do), else a 16-hex-digit hash of the
text, so the same text gets the same id in every run. Files are read with :mod:`embedforge.data.readers`
(the same readers and ``path:line`` errors as training data); a BEIR directory's ``corpus.jsonl`` is read as a
jsonl file, its ``title`` prepended to the text as mteb does.
"""

from __future__ import annotations

import hashlib
import os
import random
from dataclasses import dataclass
from pathlib import Path

from embedforge.errors import DataError, did_you_mean

ID_COLUMNS = ("_id", "id", "doc_id")


@dataclass(frozen=True)
class Document:
    """One document: its id (stable across runs) and its text."""

    id: str
    text: str


def text_id(text: str) -> str:
    """A stable id for a text without one: the first 16 hex digits of its blake2b hash."""
    return hashlib.blake2b(text.encode("utf-8"), digest_size=8).hexdigest()


def read_documents(
    path: str | os.PathLike[str],
    *,
    text_column: str = "text",
    id_column: str | None = None,
    format: str | None = None,
    min_chars: int = 1,
) -> list[Document]:
    """Read the documents of ``path`` (duplicates by id dropped, file order kept).

    Args:
        path: a jsonl / jsonl.gz / parquet file, or a BEIR directory (its ``corpus.jsonl``).
        text_column: the column holding a document's text (a pairs file: e.g. ``description``).
        id_column: the column holding its id; None = the first of ``_id``, ``id``, ``doc_id`` present, else a
            hash of the text.
        format: ``jsonl`` | ``parquet`` | ``beir``; None = detected from the path.
        min_chars: texts shorter than this (after stripping) are skipped.

    Raises:
        DataError: a missing file, a missing column (naming the columns present), no documents.
    """
    from embedforge.data.readers import LINE_COLUMN, detect_format, read_jsonl, read_parquet

    path = Path(path)
    fmt = format or detect_format(path)
    with_title = False
    if fmt == "beir":
        path, fmt, with_title = path / "corpus.jsonl", "jsonl", True
    readers = {"jsonl": read_jsonl, "parquet": read_parquet}
    if fmt not in readers:
        raise DataError(f"cannot read documents from format {fmt!r}.{did_you_mean(fmt, [*readers, 'beir'])}", path)
    dataset = readers[fmt](path, line_numbers=True)
    columns = [c for c in dataset.column_names if c != LINE_COLUMN]
    if text_column not in columns:
        raise DataError(
            f"no column {text_column!r}; columns present: {', '.join(columns)}.{did_you_mean(text_column, columns)}",
            path,
            hint="pass the text column, e.g. --text-column description",
        )
    if id_column is not None and id_column not in columns:
        raise DataError(f"no id column {id_column!r}; columns present: {', '.join(columns)}", path)
    id_column = id_column or next((c for c in ID_COLUMNS if c in columns), None)
    texts = dataset[text_column]
    ids = dataset[id_column] if id_column else [None] * len(texts)
    titles = dataset["title"] if with_title and "title" in columns else [None] * len(texts)
    lines = dataset[LINE_COLUMN]
    documents: dict[str, Document] = {}
    for text, doc_id, title, line in zip(texts, ids, titles, lines, strict=True):
        if text is not None and not isinstance(text, str):
            raise DataError(f"column {text_column!r} holds a {type(text).__name__}, not text", path, line)
        text = f"{title} {text}".strip() if title else (text or "").strip()
        if len(text) < min_chars:
            continue
        key = str(doc_id) if doc_id is not None else text_id(text)
        documents.setdefault(key, Document(key, text))
    if not documents:
        raise DataError(f"no documents with text in column {text_column!r}", path)
    return list(documents.values())


def sample_documents(documents: list[Document], max_docs: int | None, seed: int) -> list[Document]:
    """A seeded random subset of ``max_docs`` documents (all when None or larger), in corpus order.

    The subset for ``max_docs=m`` is contained in the one for any larger ``m`` with the same seed, so raising
    ``--max-docs`` on a resumed run only adds documents.
    """
    if max_docs is None or max_docs >= len(documents):
        return list(documents)
    order = list(range(len(documents)))
    random.Random(seed).shuffle(order)
    chosen = sorted(order[:max_docs])
    return [documents[i] for i in chosen]
