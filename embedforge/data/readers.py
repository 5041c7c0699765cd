"""Readers: jsonl / jsonl.gz, parquet, BEIR directories and ``datasets.save_to_disk`` folders -> ``datasets.Dataset``.

Every reader returns a :class:`datasets.Dataset`; :func:`read_dataset` picks the reader from the format (or
detects it from the path) and applies a column mapping (canonical name -> file column). Bad input is a
:class:`~embedforge.errors.DataError` that names the file (and the line where there is one): a missing file, a
malformed JSON line, a missing or misnamed column (with the columns present and the mapping to write), a qrels row
naming an unknown query or document.

With ``line_numbers=True`` the dataset gets an extra int column ``__line__``: the 1-based line of each row in a
jsonl file, the 1-based row number of a parquet file or saved dataset, and the first qrels line of each query of a
BEIR directory. Converters use it to point at ``path:line`` when a row is bad.

We read jsonl with our own loop (not ``datasets.load_dataset("json")``) because the library's errors do not say
which line is broken and it writes a cache next to the user's home; the files here are small enough for Python.
"""

from __future__ import annotations

import difflib
import logging
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from embedforge.errors import DataError, did_you_mean
from embedforge.utils.io import iter_jsonl, open_text

if TYPE_CHECKING:
    from datasets import Dataset

logger = logging.getLogger(__name__)

LINE_COLUMN = "__line__"

# file name endings -> format (checked in order; the first match wins)
_SUFFIX_FORMATS = (
    (".jsonl.gz", "jsonl"),
    (".jsonl", "jsonl"),
    (".ndjson", "jsonl"),
    (".json.gz", "jsonl"),
    (".parquet", "parquet"),
    (".pq", "parquet"),
)


def detect_format(path: str | Path) -> str:
    """Guess the format of ``path``: ``jsonl``, ``parquet``, ``beir`` or ``disk``.

    Raises:
        DataError: if the path does not exist or its format cannot be told from its name/contents.
    """
    path = Path(path)
    if not path.exists():
        raise DataError("file not found", path, hint="check the dataset 'path'")
    if path.is_dir():
        if (path / "corpus.jsonl").is_file() and (path / "queries.jsonl").is_file():
            return "beir"
        if any((path / marker).is_file() for marker in ("dataset_info.json", "state.json", "dataset_dict.json")):
            return "disk"
        raise DataError(
            "directory is neither a BEIR directory (corpus.jsonl, queries.jsonl, qrels/) nor a dataset saved with "
            "datasets.save_to_disk",
            path,
            hint="point 'path' at a data file or one of those directories",
        )
    name = path.name.lower()
    for suffix, fmt in _SUFFIX_FORMATS:
        if name.endswith(suffix):
            return fmt
    raise DataError(
        "cannot tell the format from the file name",
        path,
        hint="use a .jsonl, .jsonl.gz or .parquet file, or set 'format' (jsonl|parquet|beir|disk)",
    )


def read_jsonl(path: str | Path, *, line_numbers: bool = False) -> Dataset:
    """Read a (possibly gzipped) jsonl file, one JSON object a line; blank lines are skipped."""
    from datasets import Dataset

    rows: list[dict[str, Any]] = []
    lines: list[int] = []
    for line_number, obj in iter_jsonl(path):
        rows.append(obj)
        lines.append(line_number)
    if not rows:
        raise DataError("no rows", path, hint="the file is empty")
    columns = _union_keys(rows)
    data = {column: [row.get(column) for row in rows] for column in columns}
    if line_numbers:
        data[LINE_COLUMN] = lines
    try:
        return Dataset.from_dict(data)
    except Exception as error:  # pyarrow: a column mixing types (e.g. int labels in some rows, strings in others)
        column, line = _find_mixed_column(data, lines)
        raise DataError(
            f"column {column!r} mixes value types ({error.__class__.__name__}: {str(error)[:200]})",
            path,
            line,
            hint="every row must give a column the same type",
        ) from None


def read_parquet(path: str | Path, *, line_numbers: bool = False) -> Dataset:
    """Read a parquet file."""
    import pyarrow.parquet as pq
    from datasets import Dataset

    path = Path(path)
    if not path.is_file():
        raise DataError("file not found", path, hint="check the dataset 'path'")
    try:
        table = pq.read_table(path)
    except Exception as error:
        raise DataError(f"cannot read parquet ({error})", path) from None
    dataset = Dataset(table)
    if line_numbers:
        dataset = dataset.add_column(LINE_COLUMN, list(range(1, len(dataset) + 1)))
    return dataset


def read_disk(path: str | Path, *, split: str = "train", line_numbers: bool = False) -> Dataset:
    """Read a ``Dataset`` or one ``split`` of a ``DatasetDict`` saved with ``save_to_disk``."""
    from datasets import DatasetDict, load_from_disk

    path = Path(path)
    if not path.is_dir():
        raise DataError("directory not found", path, hint="check the dataset 'path'")
    try:
        loaded = load_from_disk(str(path))
    except Exception as error:
        raise DataError(f"cannot load a saved dataset ({error})", path) from None
    if isinstance(loaded, DatasetDict):
        if split not in loaded:
            raise DataError(
                f"saved DatasetDict has no split {split!r}.{did_you_mean(split, loaded.keys())}",
                path,
                hint="set 'split' in the dataset config",
            )
        loaded = loaded[split]
    if line_numbers:
        loaded = loaded.add_column(LINE_COLUMN, list(range(1, len(loaded) + 1)))
    return loaded


def read_beir(path: str | Path, *, split: str = "train", line_numbers: bool = False) -> Dataset:
    """Read a BEIR directory into one row per query: ``query``, ``positives`` (list), ``negatives`` (list).

    ``corpus.jsonl`` rows are ``{_id, title, text}`` (a document's text is ``title + " " + text`` when it has a
    title, as mteb embeds it); ``queries.jsonl`` rows are ``{_id, text}``; ``qrels/<split>.tsv`` has an optional
    header ``query-id corpus-id score``. A document with score > 0 is a positive; one judged with score <= 0 is a
    negative. Queries keep the order of their first qrels line.

    Raises:
        DataError: a missing file or split, a malformed line, or a qrels row naming an unknown query or document
            (``qrels/<split>.tsv:line``).
    """
    from datasets import Dataset

    path = Path(path)
    qrels_dir = path / "qrels"
    qrels_path = qrels_dir / f"{split}.tsv"
    if not qrels_path.is_file():
        available = sorted(p.stem for p in qrels_dir.glob("*.tsv")) if qrels_dir.is_dir() else []
        hint = f"set 'split' to one of: {', '.join(available)}" if available else "a BEIR directory needs qrels/"
        raise DataError(f"no qrels for split {split!r}", qrels_path, hint=hint)
    corpus = _read_id_texts(path / "corpus.jsonl", with_title=True)
    queries = _read_id_texts(path / "queries.jsonl", with_title=False)

    order: list[str] = []
    grouped: dict[str, tuple[int, list[str], list[str]]] = {}
    with open_text(qrels_path) as handle:
        for line_number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            parts = line.rstrip("\n").split("\t")
            if line_number == 1 and parts[0].strip().lower() in ("query-id", "query_id", "qid"):
                continue
            if len(parts) < 2:
                raise DataError(
                    f"expected 'query-id<TAB>corpus-id<TAB>score', got {line.strip()[:80]!r}", qrels_path, line_number
                )
            query_id, doc_id = parts[0].strip(), parts[1].strip()
            try:
                score = float(parts[2]) if len(parts) > 2 and parts[2].strip() else 1.0
            except ValueError:
                raise DataError(f"score {parts[2]!r} is not a number", qrels_path, line_number) from None
            if query_id not in queries:
                raise DataError(
                    f"unknown query id {query_id!r}", qrels_path, line_number, hint=f"not in {path / 'queries.jsonl'}"
                )
            if doc_id not in corpus:
                raise DataError(
                    f"unknown document id {doc_id!r}", qrels_path, line_number, hint=f"not in {path / 'corpus.jsonl'}"
                )
            if query_id not in grouped:
                grouped[query_id] = (line_number, [], [])
                order.append(query_id)
            _, positives, negatives = grouped[query_id]
            (positives if score > 0 else negatives).append(corpus[doc_id])
    if not order:
        raise DataError("no qrels rows", qrels_path)
    data: dict[str, list[Any]] = {
        "query": [queries[q] for q in order],
        "positives": [grouped[q][1] for q in order],
        "negatives": [grouped[q][2] for q in order],
    }
    if line_numbers:
        data[LINE_COLUMN] = [grouped[q][0] for q in order]
    return Dataset.from_dict(data)


_READERS: dict[str, Callable[..., Dataset]] = {
    "jsonl": lambda path, split, line_numbers: read_jsonl(path, line_numbers=line_numbers),
    "parquet": lambda path, split, line_numbers: read_parquet(path, line_numbers=line_numbers),
    "disk": lambda path, split, line_numbers: read_disk(path, split=split, line_numbers=line_numbers),
    "beir": lambda path, split, line_numbers: read_beir(path, split=split, line_numbers=line_numbers),
}


def location_file(path: str | Path, format: str, split: str = "train") -> Path:
    """The file that ``__line__`` numbers refer to: the qrels file of a BEIR directory, else ``path`` itself."""
    return Path(path) / "qrels" / f"{split}.tsv" if format == "beir" else Path(path)


def read_dataset(
    path: str | Path,
    format: str | None = None,
    *,
    columns: Mapping[str, str | Sequence[str]] | None = None,
    required: Sequence[str] = (),
    split: str = "train",
    line_numbers: bool = False,
) -> Dataset:
    """Read a training data source and map its columns to canonical names.

    Args:
        path: a jsonl/jsonl.gz/parquet file, a BEIR directory, or a ``save_to_disk`` directory.
        format: ``jsonl`` | ``parquet`` | ``beir`` | ``disk``; ``None`` detects it from the path.
        columns: canonical name -> file column. A list of file columns gathers them into one list column (e.g.
            ``{"negative": ["neg_a", "neg_b"]}``). Columns not named keep their names.
        required: canonical columns that must exist after the mapping.
        split: the qrels split of a BEIR directory, or the split of a saved ``DatasetDict``.
        line_numbers: add the ``__line__`` column (see the module docstring).

    Returns:
        The dataset with mapped columns (file columns renamed to their canonical names).

    Raises:
        DataError: see the module docstring.
    """
    fmt = format or detect_format(path)
    if fmt not in _READERS:
        raise DataError(f"unknown format {fmt!r}.{did_you_mean(fmt, _READERS)}", path)
    dataset = _READERS[fmt](Path(path), split, line_numbers)
    return apply_column_mapping(dataset, columns or {}, required=required, path=path)


def apply_column_mapping(
    dataset: Dataset,
    columns: Mapping[str, str | Sequence[str]],
    *,
    required: Sequence[str] = (),
    path: str | Path = "<dataset>",
) -> Dataset:
    """Rename file columns to canonical names and check that the ``required`` canonical columns exist.

    Raises:
        DataError: naming the file, the missing column, the columns present and the mapping to write.
    """
    present = [c for c in dataset.column_names if c != LINE_COLUMN]
    for canonical, source in columns.items():
        for column in [source] if isinstance(source, str) else list(source):
            if column not in dataset.column_names:
                raise DataError(
                    f"column {column!r} (mapped to {canonical!r}) not found; columns present: {', '.join(present)}",
                    path,
                    hint=_mapping_hint(canonical, column, present),
                )
    renames: dict[str, str] = {}
    for canonical, source in columns.items():
        if isinstance(source, str):
            if source != canonical:
                renames[source] = canonical
        else:
            merged = [list(values) for values in zip(*(dataset[c] for c in source), strict=True)]
            dataset = dataset.add_column(f"__merged__{canonical}", merged)
            renames[f"__merged__{canonical}"] = canonical
    clashes = [c for c in dataset.column_names if c in renames.values() and c not in renames]
    if clashes:
        dataset = dataset.remove_columns(clashes)  # a file column with a canonical name that another one replaces
    dataset = dataset.rename_columns(renames) if renames else dataset
    for canonical in required:
        if canonical not in dataset.column_names:
            raise DataError(
                f"missing column {canonical!r}; columns present: {', '.join(present)}",
                path,
                hint=_mapping_hint(canonical, None, present),
            )
    return dataset


def _mapping_hint(canonical: str, wrong: str | None, present: list[str]) -> str:
    candidates = difflib.get_close_matches(wrong or canonical, present, n=1, cutoff=0.5) or present[:1]
    example = candidates[0] if candidates else "<file column>"
    return f"map it in the dataset config, e.g. columns: {{{canonical}: {example}}}"


def _read_id_texts(path: Path, *, with_title: bool) -> dict[str, str]:
    texts: dict[str, str] = {}
    for line_number, obj in iter_jsonl(path):
        if "_id" not in obj:
            raise DataError("row has no '_id'", path, line_number)
        text = obj.get("text")
        if not isinstance(text, str):
            raise DataError(f"'text' must be a string, got {type(text).__name__}", path, line_number)
        title = obj.get("title") if with_title else None
        if isinstance(title, str) and title:
            text = f"{title} {text}".strip()
        texts[str(obj["_id"])] = text
    return texts


def _union_keys(rows: list[dict[str, Any]]) -> list[str]:
    keys: dict[str, None] = {}
    for row in rows:
        for key in row:
            keys.setdefault(key, None)
    return list(keys)


def _find_mixed_column(data: dict[str, list[Any]], lines: list[int]) -> tuple[str, int | None]:
    for column, values in data.items():
        first_type = None
        for index, value in enumerate(values):
            if value is None:
                continue
            kind = "number" if isinstance(value, int | float) and not isinstance(value, bool) else type(value).__name__
            if first_type is None:
                first_type = kind
            elif kind != first_type:
                return column, lines[index]
    return "?", None
