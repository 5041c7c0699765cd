"""Decontamination: drop training rows whose texts occur in evaluation data (KaLM-V2 §3.4, SEA App. A).

Texts are compared after normalization (Unicode NFKC, lowercase, whitespace collapsed, stripped), through a set
of 64-bit hashes (blake2b), so the index of even a large evaluation suite is a few MB and a lookup is one hash.

Which evaluation texts are collected from a task directory (``task.json`` + data files, the layout of
``shared/data/eval``): the rows of its evaluation split (``eval_split`` in ``task.json``; ``splits`` overrides)
for every type: STS and PairClassification ``sentence1``/``sentence2``, Classification and Clustering
``text``, Retrieval the queries judged in ``qrels/<split>.tsv``; for any other type every string field of the
split's rows (ids and labels excepted). Retrieval *documents* are not collected by default
(``retrieval_documents="none"``): a BEIR corpus is shared by its train and test queries (SciFact's train qrels
point at 182 documents that its test qrels also judge), and training on corpus documents for training queries is
the benchmark's intended use. ``"judged"`` also collects the documents judged for the evaluation queries, ``"all"``
the whole corpus. Training splits of evaluation tasks (``train_split``) are never collected: they are training
data.

Near duplicates (``near_duplicates=J``, beside the exact match): a training text is also contaminated when the
Jaccard similarity of its word 3-gram set (normalized text; texts of fewer than three words are one shingle) with
some evaluation text's reaches ``J`` — "A man is playing a guitar." against the test set's "A man is playing the
guitar.". Candidates come from MinHash locality-sensitive hashing (Broder, 1997; 64 hashes in 16 bands of 4:
a pair at ``J = 0.8`` becomes a candidate with probability ``1 - (1 - 0.8^4)^16 > 0.999``), and every candidate is
confirmed with the exact Jaccard of the two shingle sets, so there are no false positives.
"""

from __future__ import annotations

import hashlib
import logging
import re
import unicodedata
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from embedforge.errors import ConfigError, DataError
from embedforge.utils.io import iter_jsonl, open_text, read_json

if TYPE_CHECKING:
    from datasets import Dataset

logger = logging.getLogger(__name__)

_WHITESPACE = re.compile(r"\s+")
_NOT_TEXT_FIELDS = {"_id", "id", "label", "labels", "label_text", "score", "scores", "query-id", "corpus-id"}
_TEXT_FIELDS_BY_TYPE = {
    "STS": ("sentence1", "sentence2"),
    "PairClassification": ("sentence1", "sentence2"),
    "Classification": ("text",),
    "Clustering": ("text",),
}


def normalize_text(text: str) -> str:
    """The form texts are compared in: NFKC, lowercase, whitespace runs -> one space, stripped."""
    return _WHITESPACE.sub(" ", unicodedata.normalize("NFKC", text).lower()).strip()


def text_hash(text: str) -> int:
    """64-bit hash of the normalized text (stable across processes and runs)."""
    digest = hashlib.blake2b(normalize_text(text).encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "little")


_SHINGLE_WORDS = 3
_MINHASH_BANDS, _MINHASH_ROWS = 16, 4
_MASKS = [int.from_bytes(hashlib.blake2b(bytes([i]), digest_size=8).digest(), "little") for i in range(64)]
_MASK_ARRAY = np.array(_MASKS, dtype=np.uint64)
_LOW64 = (1 << 64) - 1
_MULTIPLIER = np.uint64(0x9E3779B97F4A7C15)  # odd: x -> x * M mod 2^64 is a permutation


def shingles(text: str) -> frozenset[int]:
    """Hashes of the normalized text's word 3-grams (the whole text when it has fewer words).

    Python's own string hash (salted per process, fast): an index and its queries live in one process.
    """
    words = normalize_text(text).split(" ")
    count = max(1, len(words) - _SHINGLE_WORDS + 1)
    return frozenset(hash(tuple(words[i : i + _SHINGLE_WORDS])) & _LOW64 for i in range(count))


def minhash_bands(shingle_set: frozenset[int]) -> list[tuple[int, ...]]:
    """The 16 LSH band keys of a shingle set's 64-value MinHash signature (h_i(x) = ((x XOR m_i) * M) mod 2^64)."""
    values = np.fromiter(shingle_set, dtype=np.uint64, count=len(shingle_set))  # (n,)
    with np.errstate(over="ignore"):  # the multiplication wraps around mod 2^64 on purpose
        signature = ((values[None, :] ^ _MASK_ARRAY[:, None]) * _MULTIPLIER).min(axis=1)  # (64,)
    rows = signature.reshape(_MINHASH_BANDS, _MINHASH_ROWS).tolist()  # (16, 4)
    return [(band, *row) for band, row in enumerate(rows)]


def jaccard(a: frozenset[int], b: frozenset[int]) -> float:
    """|a ∩ b| / |a ∪ b| (0 for two empty sets)."""
    union = len(a | b)
    return len(a & b) / union if union else 0.0


@dataclass
class EvalTextIndex:
    """Hashes of normalized evaluation texts (exact match), with how many came from each task; with
    ``near_duplicates`` also their shingle sets in a MinHash LSH index (see the module docstring)."""

    hashes: set[int] = field(default_factory=set)
    per_task: dict[str, int] = field(default_factory=dict)
    near_duplicates: float | None = None  # Jaccard threshold on word 3-grams; None = exact match only
    _shingles: list[frozenset[int]] = field(default_factory=list, repr=False)
    _bands: dict[tuple[int, ...], list[int]] = field(default_factory=lambda: defaultdict(list), repr=False)

    def __post_init__(self) -> None:
        if self.near_duplicates is not None and not 0.0 < self.near_duplicates <= 1.0:
            raise ConfigError(f"near_duplicates: a Jaccard threshold in (0, 1], got {self.near_duplicates!r}")

    def add(self, texts: Iterable[str], task: str = "texts") -> None:
        """Add texts (non-strings and empty strings are ignored)."""
        before = len(self.hashes)
        for text in texts:
            if isinstance(text, str) and text.strip():
                digest = text_hash(text)
                if digest in self.hashes:
                    continue
                self.hashes.add(digest)
                if self.near_duplicates is not None:
                    shingle_set = shingles(text)
                    for key in minhash_bands(shingle_set):
                        self._bands[key].append(len(self._shingles))
                    self._shingles.append(shingle_set)
        self.per_task[task] = self.per_task.get(task, 0) + len(self.hashes) - before

    def contains(self, text: str) -> bool:
        """Whether ``text`` matches an evaluation text: exactly (normalized), or as a near duplicate when enabled."""
        if text_hash(text) in self.hashes:
            return True
        if self.near_duplicates is None:
            return False
        shingle_set = shingles(text)
        candidates = {i for key in minhash_bands(shingle_set) for i in self._bands.get(key, ())}
        return any(jaccard(shingle_set, self._shingles[i]) >= self.near_duplicates for i in candidates)

    def __contains__(self, text: object) -> bool:
        return isinstance(text, str) and self.contains(text)

    def __len__(self) -> int:
        return len(self.hashes)

    @classmethod
    def from_task_dirs(
        cls,
        task_dirs: Iterable[str | Path],
        *,
        splits: Sequence[str] | None = None,
        retrieval_documents: str = "none",
        near_duplicates: float | None = None,
    ) -> EvalTextIndex:
        """Index the evaluation texts of task directories (see the module docstring for what is collected).

        Args:
            task_dirs: task directories, or directories *containing* task directories (e.g. ``shared/data/eval``).
            splits: splits to collect; ``None`` = each task's ``eval_split``.
            retrieval_documents: ``none`` | ``judged`` | ``all``.
            near_duplicates: also match near duplicates at this word-3-gram Jaccard (None: exact match only).
        """
        if retrieval_documents not in ("none", "judged", "all"):
            raise ConfigError(f"retrieval_documents must be none|judged|all, got {retrieval_documents!r}")
        index = cls(near_duplicates=near_duplicates)
        for directory in _expand_task_dirs(task_dirs):
            meta = read_json(directory / "task.json")
            name = str(meta.get("name", directory.name))
            task_type = str(meta.get("type", ""))
            task_splits = list(splits) if splits is not None else [str(meta.get("eval_split", "test"))]
            for split in task_splits:
                if task_type == "Retrieval" or (directory / "qrels").is_dir():
                    texts = _retrieval_texts(directory, split, retrieval_documents)
                else:
                    texts = _split_texts(directory, split, _TEXT_FIELDS_BY_TYPE.get(task_type))
                index.add(texts, task=name)
        logger.info("decontamination index: %d distinct texts from %d tasks", len(index), len(index.per_task))
        return index


def contaminated_rows(
    columns: dict[str, list[Any]], text_columns: Sequence[str], index: EvalTextIndex
) -> tuple[list[int], int]:
    """Rows to keep and list items removed, for Python column lists.

    A row whose string in any of ``text_columns`` is in ``index`` is dropped; in list-valued columns (retrieval
    ``positives``/``negatives``) only the contaminated items are removed, in place.

    Returns:
        (indices of the rows kept, number of list items removed)
    """
    keep: list[int] = []
    items_removed = 0
    size = len(next(iter(columns.values()))) if columns else 0
    present = [c for c in text_columns if c in columns]
    for i in range(size):
        dropped = False
        for column in present:
            value = columns[column][i]
            if isinstance(value, str):
                if index.contains(value):
                    dropped = True
                    break
            elif isinstance(value, list):
                cleaned = [v for v in value if not (isinstance(v, str) and index.contains(v))]
                items_removed += len(value) - len(cleaned)
                columns[column][i] = cleaned
        if not dropped:
            keep.append(i)
    return keep, items_removed


def decontaminate_dataset(
    dataset: Dataset, index: EvalTextIndex, columns: Sequence[str] | None = None
) -> tuple[Dataset, int]:
    """Drop rows of a training dataset whose texts (in ``columns``; default every string column) are in ``index``.

    Returns:
        (the kept rows, the number of rows removed)
    """
    if columns is None:
        columns = [name for name, feature in dataset.features.items() if getattr(feature, "dtype", None) == "string"]
    data = {column: dataset.data.column(column).to_pylist() for column in columns}
    keep, _ = contaminated_rows(data, columns, index)
    if len(keep) == len(dataset):
        return dataset, 0
    return dataset.select(keep), len(dataset) - len(keep)


def _expand_task_dirs(task_dirs: Iterable[str | Path]) -> list[Path]:
    found: list[Path] = []
    for entry in task_dirs:
        path = Path(entry)
        if (path / "task.json").is_file():
            found.append(path)
        elif path.is_dir():
            children = sorted(child for child in path.iterdir() if (child / "task.json").is_file())
            if not children:
                raise DataError("no task.json here or in its subdirectories", path, hint="point at task directories")
            found.extend(children)
        else:
            raise DataError("evaluation task directory not found", path)
    return found


def _split_texts(directory: Path, split: str, fields: Sequence[str] | None) -> list[str]:
    path = directory / f"{split}.jsonl"
    if not path.is_file():
        logger.debug("decontamination: %s has no %s split", directory.name, split)
        return []
    texts: list[str] = []
    for _, row in iter_jsonl(path):
        keys = fields if fields is not None else [k for k in row if k not in _NOT_TEXT_FIELDS]
        for key in keys:
            value = row.get(key)
            if isinstance(value, str):
                texts.append(value)
            elif isinstance(value, list):
                texts.extend(v for v in value if isinstance(v, str))
    return texts


def _retrieval_texts(directory: Path, split: str, documents: str) -> list[str]:
    qrels = directory / "qrels" / f"{split}.tsv"
    if not qrels.is_file():
        logger.debug("decontamination: %s has no qrels for %s", directory.name, split)
        return []
    query_ids: set[str] = set()
    doc_ids: set[str] = set()
    with open_text(qrels) as handle:
        for line_number, line in enumerate(handle, start=1):
            parts = line.rstrip("\n").split("\t")
            if len(parts) < 2 or (line_number == 1 and parts[0].strip().lower() in ("query-id", "query_id", "qid")):
                continue
            query_ids.add(parts[0].strip())
            doc_ids.add(parts[1].strip())
    texts = [row["text"] for _, row in iter_jsonl(directory / "queries.jsonl") if str(row.get("_id")) in query_ids]
    if documents != "none":
        for _, row in iter_jsonl(directory / "corpus.jsonl"):
            if documents == "all" or str(row.get("_id")) in doc_ids:
                title = row.get("title")
                text = row.get("text", "")
                texts.append(f"{title} {text}".strip() if title else text)
                texts.append(text)
    return texts
