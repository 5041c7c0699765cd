"""Converters: one function per source kind, turning source rows into training rows.

Output columns follow sentence-transformers' convention, in the order the losses read them:

* InfoNCE: ``anchor``, ``positive``, ``negative_1`` ... ``negative_n`` (all strings; ``n`` is fixed per dataset);
* classification/clustering rows add ``label``: the class id of the anchor (and its positive), then of each
  negative — InfoNCE masks in-batch candidates of the anchor's own class (``mask_same_class``);
* CoSENT (``kind: sts`` with ``loss: cosent``): ``sentence1``, ``sentence2``, ``score`` (normalized to [0, 1]).

Source columns each kind needs (after the config's ``columns`` mapping):

============== ================================================ =============================================
kind           source columns                                   training rows
============== ================================================ =============================================
pairs          anchor, positive                                 (anchor, positive)
triplets       anchor, positive, negative (str or list) or      (anchor, positive, negative_1..n)
               negatives, or negative_1..negative_k columns
nli            premise, hypothesis, label                       (premise, entailment, contradiction_1..n),
                                                                grouped by premise (SimCSE / KaLM-V2)
sts            sentence1, sentence2, score                      cosent: (s1, s2, score/range);
                                                                infonce: score > threshold -> (s1, s2) and
                                                                (s2, s1) (KaLM-V2 §3.4.2)
classification text, label                                      example-based labels (KaLM-V2 §3.4.2, NV-Embed):
/ clustering                                                    (text, other text of the same label,
                                                                texts of n other labels, label = class ids)
retrieval      query, positives (list or str) [, negatives];    one row per (query, positive) [+ negatives]
               or a BEIR directory (read as those columns)
============== ================================================ =============================================

Hard negatives (``num_negatives``): ``None`` means as many as *every* row has (nothing invented, nothing
dropped); a number ``n`` takes ``n`` of the row's negatives (a seeded random sample, kept in file order).
Rows with fewer than ``n`` are dropped (``negatives_fill: drop``, the default: no invented negatives) or
completed with random texts of other rows (``negatives_fill: random``); either way the count is reported.

Empty texts (``""``, whitespace, ``null``): an error naming ``file:line`` by default (``on_empty: error``),
because an empty text in training data is almost always a broken export that a user wants to know about; with
``on_empty: skip`` such rows (or list items) are dropped and counted. Everything is deterministic given the seed.
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from embedforge.data.config import DatasetConfig
from embedforge.errors import DataError

logger = logging.getLogger(__name__)

# Column of classification/clustering rows holding the class ids [anchor, negative_1, ..., negative_n]; the name
# sentence-transformers' collator passes to the loss as its labels.
CLASS_COLUMN = "label"
# SNLI / MultiNLI convention on the Hugging Face Hub: 0 entailment, 1 neutral, 2 contradiction, -1 no gold label.
SNLI_INT_LABELS = {0: "entailment", 1: "neutral", 2: "contradiction"}
_NLI_NAMES = {
    "entailment": "entailment",
    "entails": "entailment",
    "neutral": "neutral",
    "contradiction": "contradiction",
    "contradicts": "contradiction",
}
_NO_GOLD_LABELS = {-1, "-", ""}


@dataclass
class Source:
    """Source rows of one dataset as Python lists, with where each row came from.

    Attributes:
        path: the file that ``lines`` refer to (the qrels file for a BEIR directory).
        columns: canonical column name -> values.
        lines: 1-based line (jsonl, qrels) or row number (parquet, saved datasets) of each row.
        numbered_rows: ``True`` when ``lines`` are row numbers rather than file lines.
    """

    path: Path
    columns: dict[str, list[Any]]
    lines: list[int]
    numbered_rows: bool = False

    def __len__(self) -> int:
        return len(self.lines)

    def error(self, index: int, message: str, hint: str | None = None) -> DataError:
        """A :class:`DataError` located at row ``index`` (``path:line``, or ``path: row N``)."""
        if self.numbered_rows:
            return DataError(f"row {self.lines[index]}: {message}", self.path, hint=hint)
        return DataError(message, self.path, self.lines[index], hint=hint)

    def select(self, indices: list[int]) -> Source:
        """A new source with only the rows at ``indices`` (in that order)."""
        columns = {name: [values[i] for i in indices] for name, values in self.columns.items()}
        return Source(self.path, columns, [self.lines[i] for i in indices], self.numbered_rows)


@dataclass
class Converted:
    """Training rows of one dataset plus counts of what was skipped, dropped or filled."""

    columns: dict[str, list[Any]]
    counts: Counter = field(default_factory=Counter)

    def __len__(self) -> int:
        return len(next(iter(self.columns.values()))) if self.columns else 0


Converter = Callable[[Source, DatasetConfig, np.random.Generator], Converted]
CONVERTERS: dict[str, Converter] = {}
# canonical source columns each kind requires (checked by the reader, which names the columns present)
REQUIRED_COLUMNS: dict[str, tuple[str, ...]] = {}


def register(kind: str, required: tuple[str, ...]) -> Callable[[Converter], Converter]:
    """Register ``function`` as the converter of source kind ``kind``."""

    def decorator(function: Converter) -> Converter:
        CONVERTERS[kind] = function
        REQUIRED_COLUMNS[kind] = required
        return function

    return decorator


def convert(source: Source, config: DatasetConfig, rng: np.random.Generator) -> Converted:
    """Convert ``source`` with the converter of ``config.kind``; ``rng`` makes every random choice."""
    return CONVERTERS[config.kind](source, config, rng)


# ------------------------------------------------------------------------------------------- kinds
@register("pairs", ("anchor", "positive"))
def convert_pairs(source: Source, config: DatasetConfig, rng: np.random.Generator) -> Converted:
    """(anchor, positive) pairs; ``num_negatives`` > 0 needs ``negatives_fill: random``."""
    counts: Counter = Counter()
    examples = []
    for i in range(len(source)):
        texts = _texts(source, i, ("anchor", "positive"), config, counts)
        if texts is not None:
            examples.append((texts[0], texts[1], []))
    return _build_infonce(examples, config, rng, counts, source)


@register("triplets", ("anchor", "positive"))
def convert_triplets(source: Source, config: DatasetConfig, rng: np.random.Generator) -> Converted:
    """(anchor, positive, negatives...) rows; negatives from a str/list column or ``negative_1..k`` columns."""
    negative_columns = _negative_columns(source)
    counts: Counter = Counter()
    examples = []
    for i in range(len(source)):
        texts = _texts(source, i, ("anchor", "positive"), config, counts)
        if texts is None:
            continue
        negatives: list[Any] = []
        for column in negative_columns:
            negatives.extend(_as_list(source.columns[column][i]))
        negatives = _clean_list(source, i, negatives, "negative", config, counts)
        if negatives is not None:
            examples.append((texts[0], texts[1], negatives))
    return _build_infonce(examples, config, rng, counts, source)


@register("nli", ("premise", "hypothesis", "label"))
def convert_nli(source: Source, config: DatasetConfig, rng: np.random.Generator) -> Converted:
    """Group NLI pairs by premise: (premise, entailed hypothesis, contradicting hypotheses).

    Every entailed hypothesis gives one row; its negatives are drawn from the same premise's contradictions
    (SimCSE's supervised NLI triplets; KaLM-V2 lists SNLI/MNLI among its symmetric fine-tuning data).
    """
    counts: Counter = Counter()
    groups: dict[str, tuple[list[str], list[str]]] = {}
    for i in range(len(source)):
        label = _nli_label(source, i, config)
        if label is None:
            counts["no_gold_label"] += 1
            continue
        texts = _texts(source, i, ("premise", "hypothesis"), config, counts)
        if texts is None:
            continue
        entailed, contradicting = groups.setdefault(texts[0], ([], []))
        if label == "entailment":
            entailed.append(texts[1])
        elif label == "contradiction":
            contradicting.append(texts[1])
    examples = []
    for premise, (entailed, contradicting) in groups.items():
        if not entailed:
            counts["premise_without_entailment"] += 1
        for hypothesis in entailed:
            examples.append((premise, hypothesis, contradicting))
    return _build_infonce(examples, config, rng, counts, source)


@register("sts", ("sentence1", "sentence2", "score"))
def convert_sts(source: Source, config: DatasetConfig, rng: np.random.Generator) -> Converted:
    """Scored pairs: kept with normalized scores for CoSENT, or turned into positive pairs for InfoNCE.

    For InfoNCE a pair whose normalized score is above ``sts_threshold`` becomes two positive pairs, one in each
    direction (KaLM-V2 §3.4.2: score > 4 of 5, or score = 1 for binary labels).
    """
    counts: Counter = Counter()
    low, high = _score_range(source, config)
    pairs: list[tuple[str, str, float]] = []
    for i in range(len(source)):
        texts = _texts(source, i, ("sentence1", "sentence2"), config, counts)
        if texts is None:
            continue
        score = source.columns["score"][i]
        if isinstance(score, bool) or not isinstance(score, int | float) or math.isnan(score):
            raise source.error(i, f"score must be a number, got {score!r}")
        if not low <= score <= high:
            raise source.error(i, f"score {score} outside score_range [{low}, {high}]", "set 'score_range'")
        pairs.append((texts[0], texts[1], (score - low) / (high - low)))
    if config.loss_name == "cosent":
        columns = {
            "sentence1": [p[0] for p in pairs],
            "sentence2": [p[1] for p in pairs],
            "score": [p[2] for p in pairs],
        }
        return Converted(columns, counts)
    examples = []
    for first, second, score in pairs:
        if score > config.sts_threshold:
            examples.append((first, second, []))
            examples.append((second, first, []))
        else:
            counts["below_threshold"] += 1
    return _build_infonce(examples, config, rng, counts, source)


@register("classification", ("text", "label"))
def convert_classification(source: Source, config: DatasetConfig, rng: np.random.Generator) -> Converted:
    """Example-based multi-class labels (KaLM-V2 §3.4.2, after NV-Embed).

    Each text is an anchor; its positive is another text of the same label and its negatives are texts of other
    labels, each from a different label while there are enough labels. A text whose label has no other text is
    skipped (counted). A label set with one class is an error.
    """
    counts: Counter = Counter()
    texts: list[str] = []
    labels: list[Hashable] = []
    for i in range(len(source)):
        row = _texts(source, i, ("text",), config, counts)
        if row is None:
            continue
        label = source.columns["label"][i]
        if label is None or isinstance(label, list | dict):
            raise source.error(i, f"label must be a single string or number, got {label!r}")
        texts.append(row[0])
        labels.append(label)
    by_label: dict[Hashable, list[int]] = {}
    for index, label in enumerate(labels):
        by_label.setdefault(label, []).append(index)
    if len(by_label) < 2:
        only = next(iter(by_label), None)
        raise DataError(
            f"only one label ({only!r}) in {len(texts)} rows: example-based labels need at least two classes",
            source.path,
            hint="check the 'label' column mapping, or train this data with another kind",
        )
    label_list = list(by_label)
    class_id = {label: index for index, label in enumerate(label_list)}
    n = config.negatives_wanted if config.negatives_wanted is not None else 1
    if config.label_names:
        return _label_name_rows(texts, labels, label_list, n, rng, counts)
    rows: list[tuple[str, str, list[str]]] = []
    classes: list[list[int]] = []
    for text, label in zip(texts, labels, strict=True):
        positive = _other_text(texts, by_label[label], text, rng)
        if positive is None:
            counts["no_other_text_with_label"] += 1
            continue
        others = [other for other in label_list if other != label]
        replace = n > len(others)
        chosen = rng.choice(len(others), size=n, replace=replace) if n else []
        negatives = [texts[by_label[others[k]][rng.integers(len(by_label[others[k]]))]] for k in chosen]
        rows.append((text, positive, negatives))
        classes.append([class_id[label], *(class_id[others[k]] for k in chosen)])
    return Converted({**_rows_to_columns(rows, n).columns, CLASS_COLUMN: classes}, counts)


def _label_name_rows(
    texts: list[str], labels: list[Hashable], label_list: list[Hashable], n: int, rng: np.random.Generator, counts
) -> Converted:
    """KaLM-V2 §3.4.2's label rows: (text, the name of its label, the names of n other labels).

    Negatives are other labels of the dataset, without repetition while there are enough (else with, counted).
    """
    names = {label: str(label).replace("_", " ").strip() for label in label_list}
    class_id = {label: index for index, label in enumerate(label_list)}
    rows: list[tuple[str, str, list[str]]] = []
    classes: list[list[int]] = []
    for text, label in zip(texts, labels, strict=True):
        others = [other for other in label_list if other != label]
        if n > len(others):
            counts["label_negatives_repeated"] += 1
        chosen = rng.choice(len(others), size=n, replace=n > len(others)) if n else []
        rows.append((text, names[label], [names[others[k]] for k in chosen]))
        classes.append([class_id[label], *(class_id[others[k]] for k in chosen)])
    return Converted({**_rows_to_columns(rows, n).columns, CLASS_COLUMN: classes}, counts)


CONVERTERS["clustering"] = convert_classification
REQUIRED_COLUMNS["clustering"] = REQUIRED_COLUMNS["classification"]


@register("retrieval", ("query",))
def convert_retrieval(source: Source, config: DatasetConfig, rng: np.random.Generator) -> Converted:
    """One row per (query, positive); negatives from the query's ``negatives`` (TREC-QA style or BEIR qrels)."""
    positive_column = _first_present(source, ("positives", "positive"), "positives")
    negative_column = next((c for c in ("negatives", "negative") if c in source.columns), None)
    counts: Counter = Counter()
    examples = []
    for i in range(len(source)):
        row = _texts(source, i, ("query",), config, counts)
        if row is None:
            continue
        positives = _clean_list(source, i, _as_list(source.columns[positive_column][i]), "positive", config, counts)
        negatives = []
        if negative_column is not None:
            negatives = _clean_list(
                source, i, _as_list(source.columns[negative_column][i]), "negative", config, counts
            )
        if positives is None or negatives is None:
            continue
        if not positives:
            counts["query_without_positive"] += 1
        for positive in positives:
            examples.append((row[0], positive, negatives))
    return _build_infonce(examples, config, rng, counts, source)


# ---------------------------------------------------------------------------------------- helpers
def _build_infonce(
    examples: list[tuple[str, str, list[str]]],
    config: DatasetConfig,
    rng: np.random.Generator,
    counts: Counter,
    source: Source,
) -> Converted:
    """Fix the number of negatives per row (sample / drop / fill) and lay the rows out as columns."""
    wanted = config.negatives_wanted
    if wanted is None:
        wanted = min((len(negatives) for _, _, negatives in examples), default=0)
        most = max((len(negatives) for _, _, negatives in examples), default=0)
        if most > wanted:
            logger.warning(
                "%s: rows have %d to %d negatives; using %d per row (set num_negatives to choose)",
                config.name,
                wanted,
                most,
                wanted,
            )
    pool: list[str] | None = None
    rows: list[tuple[str, str, list[str]]] = []
    for anchor, positive, negatives in examples:
        negatives = [n for n in dict.fromkeys(negatives) if n != anchor and n != positive]
        if len(negatives) > wanted:
            keep = np.sort(rng.choice(len(negatives), size=wanted, replace=False))
            negatives = [negatives[k] for k in keep]
        elif len(negatives) < wanted:
            if config.negatives_fill == "drop":
                counts["dropped_too_few_negatives"] += 1
                continue
            if pool is None:
                pool = _negative_pool(examples)
            missing = wanted - len(negatives)
            negatives = negatives + _random_texts(pool, missing, {anchor, positive, *negatives}, rng, source.path)
            counts["filled_negatives"] += 1
        rows.append((anchor, positive, negatives))
    if examples and not rows:
        raise DataError(
            f"every row has fewer than {wanted} negatives, so none is left",
            source.path,
            hint="lower 'num_negatives' or set negatives_fill: random",
        )
    return Converted(_rows_to_columns(rows, wanted).columns, counts)


def _rows_to_columns(rows: list[tuple[str, str, list[str]]], num_negatives: int) -> Converted:
    columns: dict[str, list[Any]] = {"anchor": [r[0] for r in rows], "positive": [r[1] for r in rows]}
    for k in range(num_negatives):
        columns[f"negative_{k + 1}"] = [r[2][k] for r in rows]
    return Converted(columns)


def _texts(
    source: Source, index: int, names: tuple[str, ...], config: DatasetConfig, counts: Counter
) -> tuple[str, ...] | None:
    """The row's texts in ``names``; ``None`` when one is empty and ``on_empty`` is ``skip``."""
    values = []
    for name in names:
        value = source.columns[name][index]
        if not isinstance(value, str) or not value.strip():
            if value is not None and not isinstance(value, str):
                raise source.error(index, f"column {name!r} must hold text, got {type(value).__name__} {value!r}")
            if config.on_empty == "skip":
                counts["skipped_empty_text"] += 1
                return None
            problem = f"no column {name!r} (or it is null)" if value is None else f"empty text in column {name!r}"
            raise source.error(index, problem, "fix the row, or set on_empty: skip")
        values.append(value)
    return tuple(values)


def _clean_list(
    source: Source, index: int, values: list[Any], name: str, config: DatasetConfig, counts: Counter
) -> list[str] | None:
    """Check a list of texts; empty items are an error, or removed (counted) with ``on_empty: skip``."""
    kept = []
    for value in values:
        if value is not None and not isinstance(value, str):
            raise source.error(index, f"{name} texts must be strings, got {type(value).__name__} {value!r}")
        if value is None or not value.strip():
            if config.on_empty == "error":
                raise source.error(index, f"empty text among the {name}s", "fix the row, or set on_empty: skip")
            counts["skipped_empty_text"] += 1
            continue
        kept.append(value)
    return kept


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return list(value) if isinstance(value, list | tuple) else [value]


def _negative_columns(source: Source) -> list[str]:
    for name in ("negative", "negatives"):
        if name in source.columns:
            return [name]
    numbered = [c for c in source.columns if c.startswith("negative_") and c[len("negative_") :].isdigit()]
    return sorted(numbered, key=lambda c: int(c[len("negative_") :]))


def _first_present(source: Source, names: tuple[str, ...], canonical: str) -> str:
    for name in names:
        if name in source.columns:
            return name
    present = ", ".join(source.columns)
    raise DataError(
        f"missing column {canonical!r}; columns present: {present}",
        source.path,
        hint=f"map it in the dataset config, e.g. columns: {{{canonical}: <file column>}}",
    )


def _nli_label(source: Source, index: int, config: DatasetConfig) -> str | None:
    value = source.columns["label"][index]
    if config.label_map is not None:
        for key in (value, str(value)):
            if isinstance(key, Hashable) and key in config.label_map:
                return config.label_map[key]
        raise source.error(
            index, f"label {value!r} is not in label_map ({', '.join(map(str, config.label_map))})", "extend label_map"
        )
    if value in _NO_GOLD_LABELS:
        return None
    if isinstance(value, bool):
        value = int(value)
    if isinstance(value, int) and value in SNLI_INT_LABELS:
        return SNLI_INT_LABELS[value]
    if isinstance(value, str) and value.strip().lower() in _NLI_NAMES:
        return _NLI_NAMES[value.strip().lower()]
    raise source.error(
        index,
        f"unknown NLI label {value!r} (expected entailment/neutral/contradiction or SNLI's 0/1/2)",
        "set label_map, e.g. label_map: {yes: entailment, no: contradiction}",
    )


def _score_range(source: Source, config: DatasetConfig) -> tuple[float, float]:
    if config.score_range is not None:
        return float(config.score_range[0]), float(config.score_range[1])
    scores = source.columns["score"]
    for i, score in enumerate(scores):
        if isinstance(score, bool) or not isinstance(score, int | float) or math.isnan(score):
            raise source.error(i, f"score must be a number, got {score!r}")
    low, high = (min(scores), max(scores)) if scores else (0.0, 1.0)
    for guess in ((0.0, 1.0), (0.0, 5.0)):
        if guess[0] <= low and high <= guess[1]:
            logger.info("%s: scores in [%g, %g]; normalizing with score_range %s", config.name, low, high, list(guess))
            return guess
    raise DataError(
        f"scores span [{low}, {high}], which is neither [0, 1] nor [0, 5]",
        source.path,
        hint="set 'score_range: [min, max]' in the dataset config",
    )


def _other_text(texts: list[str], candidates: list[int], text: str, rng: np.random.Generator) -> str | None:
    """A random text among ``candidates`` that differs from ``text`` (``None`` if there is none)."""
    for _ in range(8):
        pick = texts[candidates[rng.integers(len(candidates))]]
        if pick != text:
            return pick
    others = [texts[c] for c in candidates if texts[c] != text]
    return others[rng.integers(len(others))] if others else None


def _negative_pool(examples: list[tuple[str, str, list[str]]]) -> list[str]:
    pool: dict[str, None] = {}
    for _, positive, negatives in examples:
        pool.setdefault(positive, None)
        for negative in negatives:
            pool.setdefault(negative, None)
    return list(pool)


def _random_texts(pool: list[str], count: int, exclude: set[str], rng: np.random.Generator, path: Path) -> list[str]:
    picked: list[str] = []
    for _ in range(count * 20):
        if len(picked) == count:
            break
        text = pool[rng.integers(len(pool))]
        if text not in exclude:
            picked.append(text)
            exclude.add(text)
    if len(picked) < count:
        raise DataError(
            f"not enough distinct texts to fill {count} random negatives", path, hint="lower 'num_negatives'"
        )
    return picked
