"""Hard-negative mining with the model being trained: a rank window, a false-negative filter, a seed.

The search itself is sentence-transformers' :func:`sentence_transformers.util.mine_hard_negatives`: it embeds
the anchors and the candidate pool (the dataset's positives plus an optional corpus, de-duplicated), retrieves
the ``range_max + max_positives`` nearest candidates per anchor (faiss or chunked ``torch.topk``), removes the
anchor's own positives, drops candidates that fail the margin / score filters, keeps the ranks
``[range_min, range_max)`` of what is left and samples ``num_negatives`` of them ("random") or takes the first
("top"). Rows that cannot fill ``num_negatives`` are dropped. KaLM-Embedding-V2 (§3.4.1, §4.1) mines with the
previously trained model and samples M = 7 negatives from ranks 50-100 "after a filtering process":
``range_min=50, range_max=100, num_negatives=7, sampling="random"``, our defaults.

What this module adds, and why sentence-transformers' function alone does not do it:

* **the data side**: a :class:`~embedforge.data.DatasetConfig` (any of our readers and converters: pairs,
  triplets, retrieval/BEIR, NLI, STS) becomes (anchor, positive) rows, and the anchor/corpus prompts are the
  ones training uses (the dataset's instruction on the anchor; on both sides for symmetric data), passed
  explicitly so that the model's saved default prompts are *not* applied (training does not apply them either);
  a BEIR directory's whole corpus joins the candidate pool;
* **a seed**: sentence-transformers samples with the global :mod:`random` state; we seed it for the call and
  restore it afterwards, so a run is reproducible without disturbing the caller's RNG;
* **statistics as data**: sentence-transformers prints its report (how many candidates each filter skipped,
  how many rows fell short) to stdout; we capture it into the log, read the per-filter counts from it, and count
  rows, dropped rows and mean scores ourselves (:class:`MiningStats`, saved in the stage summary);
* **the anchor is never its own negative**: on symmetric data (STS, NLI) every anchor is also a candidate text;
  sentence-transformers only excludes the positives, so a row whose negatives contain its anchor is dropped
  (counted) — the default margin filter already removes such candidates;
* **clear errors**: a candidate pool too small for the rank window is a ``ConfigError`` naming the options,
  instead of an output that silently lost every row.

The false-negative filter (Seed1.5-Embedding drops negatives "excessively similar to positives") is
sentence-transformers' margin filter: with ``s⁺`` the anchor's (lowest) positive score, a candidate ``d`` is
dropped when ``s(q, d) > s⁺ - |s⁺| · relative_margin`` (NV-Retriever's TopK-PercPos; 0.05 = "95 % of the
positive", our default) or ``s(q, d) > s⁺ - absolute_margin`` (the rule of
:class:`~embedforge.losses.InfoNCELoss`'s ``false_negative_margin``); ``max_score`` / ``min_score`` bound
``s(q, d)`` directly. Ranks are counted among the candidates that survive the filter, positives excluded.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import logging
import os
import random
import re
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from embedforge.data.config import DatasetConfig
from embedforge.errors import ConfigError, DataError, did_you_mean

if TYPE_CHECKING:
    from datasets import Dataset
    from sentence_transformers import SentenceTransformer

logger = logging.getLogger(__name__)

# source kinds whose rows are (query, positive) pairs; classification/clustering negatives come from other labels
MINABLE_KINDS = ("pairs", "triplets", "retrieval", "nli", "sts")
SAMPLING = ("random", "top")
OUTPUT_FORMATS = ("n-tuple", "triplet")  # the formats a later train stage reads (kind: triplets)

_SKIPPED = re.compile(r"Skipped ([\d,]+) potential negatives .*? due to the (\w+) of")


@dataclass
class MiningStats:
    """What a mining run did (logged, and saved in the ``mine`` stage's summary)."""

    pairs: int  # distinct (anchor, positive) pairs offered
    queries: int  # distinct anchors
    corpus_size: int  # candidate texts after de-duplication (positives included)
    rows: int  # rows returned
    rows_without_enough_negatives: int  # pairs that got fewer than num_negatives negatives (dropped in n-tuple)
    filtered_candidates: dict[str, int]  # retrieved candidates removed per filter (relative_margin, max_score, ...)
    anchor_as_negative: int  # rows dropped because their anchor text came back as a negative (symmetric data)
    mean_positive_score: float | None  # mean s(anchor, positive) over returned rows
    mean_negative_score: float | None  # mean s(anchor, negative) over returned negatives
    seconds: float  # wall time
    settings: dict[str, Any] = field(default_factory=dict)  # the options used

    def to_dict(self) -> dict[str, Any]:
        """Plain data (JSON)."""
        return dataclasses.asdict(self)


@dataclass
class MiningResult:
    """The mined rows (``anchor, positive, negative_1..n``, or ``anchor, positive, negative``) and the stats."""

    dataset: Dataset
    stats: MiningStats


@dataclass(kw_only=True)
class MiningOptions:
    """How negatives are chosen: one object, passed whole (the ``mine`` stage's config is one, so is the CLI's)."""

    range_min: int = 50  # first rank (0-based; positives and filtered candidates excluded) a negative may take
    range_max: int = 100  # ranks up to, not including, this one (KaLM-V2: 50-100)
    num_negatives: int = 7  # negatives per row (KaLM-V2: 7); rows that cannot fill them are dropped
    sampling: str = "random"  # random: a seeded sample of the window | top: its first num_negatives
    relative_margin: float | None = 0.05  # false negatives: drop s(q,d) > s+ - |s+| * margin (NV-Retriever 95%)
    absolute_margin: float | None = None  # false negatives: drop s(q,d) > s+ - margin (the loss's rule)
    max_score: float | None = None  # drop candidates with s(q,d) above this
    min_score: float | None = None  # drop candidates with s(q,d) below this
    output_format: str = "n-tuple"  # n-tuple: anchor, positive, negative_1..n | triplet: one row per negative
    batch_size: int = 64  # encoding batch size
    use_faiss: bool = False  # faiss inner-product search (large pools) instead of chunked torch.topk

    def check(self, where: str = "") -> None:
        """Raise :class:`ConfigError` naming the option when the options cannot work together."""
        prefix = f"{where}." if where else ""
        if self.range_min < 0:
            raise ConfigError(f"{prefix}range_min: must be >= 0, got {self.range_min}")
        if self.range_max <= self.range_min:
            raise ConfigError(
                f"{prefix}range_max: must be greater than range_min ({self.range_min}), got {self.range_max}"
            )
        if self.num_negatives < 1:
            raise ConfigError(f"{prefix}num_negatives: must be >= 1, got {self.num_negatives}")
        if self.num_negatives > self.range_max - self.range_min:
            raise ConfigError(
                f"{prefix}num_negatives: {self.num_negatives} negatives do not fit in ranks "
                f"[{self.range_min}, {self.range_max}); lower num_negatives or widen the window"
            )
        if self.sampling not in SAMPLING:
            raise ConfigError(
                f"{prefix}sampling: {self.sampling!r} is not valid.{did_you_mean(str(self.sampling), SAMPLING)}"
            )
        if self.output_format not in OUTPUT_FORMATS:
            raise ConfigError(
                f"{prefix}output_format: {self.output_format!r} is not valid."
                f"{did_you_mean(str(self.output_format), OUTPUT_FORMATS)}"
            )
        if self.batch_size < 1:
            raise ConfigError(f"{prefix}batch_size: must be >= 1, got {self.batch_size}")

    def values(self) -> dict[str, Any]:
        """The options alone (a subclass, e.g. the ``mine`` stage's config, may carry more fields)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(MiningOptions)}


def load_pairs(config: DatasetConfig, seed: int = 0) -> tuple[Dataset, str, str, list[str]]:
    """The (anchor, positive) rows of a dataset config, with the prompts training would use.

    The dataset is read and converted exactly as for training (same readers, converters, ``max_rows`` subset and
    seed), with its own hard negatives left out: mining replaces them.

    Returns:
        ``(rows, anchor_prompt, corpus_prompt, extra_candidates)``: the prompts are ``""`` when the dataset has
        no instruction (the corpus gets the instruction only for symmetric data); ``extra_candidates`` is the
        whole corpus of a BEIR directory (empty otherwise).

    Raises:
        ConfigError: for a kind that is not mined (classification / clustering).
    """
    from embedforge.data.instructions import dataset_prompts
    from embedforge.data.loading import load_training_datasets
    from embedforge.data.readers import detect_format
    from embedforge.mining.corpus import read_corpus

    if config.kind not in MINABLE_KINDS:
        raise ConfigError(
            f"dataset {config.name!r}: kind {config.kind!r} is not mined; its negatives are texts of other labels "
            f"(KaLM-V2 §3.4.2), built by the converter. Mined kinds: {', '.join(MINABLE_KINDS)}"
        )
    pairs_config = dataclasses.replace(config, num_negatives=0, loss="infonce", negatives_fill="drop", weight=None)
    datasets, _ = load_training_datasets([pairs_config], seed=seed)
    rows = datasets[config.name].select_columns(["anchor", "positive"])
    prompts = dataset_prompts(config, ["anchor", "positive"])
    extra: list[str] = []
    if (config.format or detect_format(config.path)) == "beir":
        extra = read_corpus(config.path)
    return rows, prompts.get("anchor", ""), prompts.get("positive", ""), extra


def mine_hard_negatives(
    model: SentenceTransformer | str | os.PathLike[str],
    data: DatasetConfig | Mapping[str, Any] | Dataset,
    options: MiningOptions | None = None,
    *,
    corpus: Sequence[str] | None = None,
    query_prompt: str | None = None,
    corpus_prompt: str | None = None,
    seed: int = 0,
    keep_scores: bool = False,
    **option_values: Any,
) -> MiningResult:
    """Mine hard negatives for (anchor, positive) data with ``model`` (see the module docstring).

    Args:
        model: the model whose preferences pick the negatives (a SentenceTransformer, folder or preset).
        data: a dataset config (read and converted as for training; its instruction gives the prompts), its YAML
            mapping, or a ``datasets.Dataset`` with ``anchor`` and ``positive`` columns.
        corpus: extra candidate texts (e.g. :func:`~embedforge.mining.corpus.read_corpus`); the positives are
            always candidates.
        options: how negatives are chosen (:class:`MiningOptions`); or give its fields as keywords
            (``range_min=10, num_negatives=4``), not both.
        query_prompt: prompt prepended to anchors; None = the dataset's (a ``Dataset``: no prompt).
        corpus_prompt: prompt prepended to candidates; None = the dataset's (a ``Dataset``: no prompt).
        seed: seed for the random sampling (and for a dataset config's ``max_rows`` subset).
        keep_scores: keep sentence-transformers' ``scores`` column ``[s⁺, s⁻_1, ...]``.

    Returns:
        :class:`MiningResult` with the rows and :class:`MiningStats`.

    Raises:
        ConfigError: bad options, a kind that is not mined, a pool too small for the window.
        DataError: empty data, missing columns, no row left.
    """
    from datasets import Dataset

    if options is not None and option_values:
        raise ConfigError(f"pass the mining options as one MiningOptions or as keywords, not both: {option_values}")
    if options is None:
        valid = [f.name for f in dataclasses.fields(MiningOptions)]
        for key in option_values:
            if key not in valid:
                raise ConfigError(f"unknown mining option {key!r}.{did_you_mean(key, valid)}")
        options = MiningOptions(**option_values)
    options.check()
    started = time.perf_counter()
    if isinstance(data, Mapping):
        data = DatasetConfig.from_dict(data)
    extra: list[str] = []
    if isinstance(data, DatasetConfig):
        name, source = data.name, data.path
        rows, anchor_prompt, document_prompt, extra = load_pairs(data, seed)
    elif isinstance(data, Dataset):
        name, source = data.info.dataset_name or "dataset", None
        missing = [c for c in ("anchor", "positive") if c not in data.column_names]
        if missing:
            raise DataError(
                f"mining needs 'anchor' and 'positive' columns; missing {missing}, present: {data.column_names}",
                hint="rename the columns, or pass a DatasetConfig with a 'columns' mapping",
            )
        rows, anchor_prompt, document_prompt = data.select_columns(["anchor", "positive"]), "", ""
    else:
        raise ConfigError(f"data: expected a DatasetConfig, a mapping or a Dataset, got {type(data).__name__}")
    query_prompt = anchor_prompt if query_prompt is None else query_prompt
    corpus_prompt = document_prompt if corpus_prompt is None else corpus_prompt
    if len(rows) == 0:
        raise DataError(f"dataset {name!r} has no (anchor, positive) rows to mine for", source)

    anchors, positives = list(rows["anchor"]), list(rows["positive"])
    pairs = list(dict.fromkeys(zip(anchors, positives, strict=True)))
    max_positives = max(Counter(anchor for anchor, _ in pairs).values())
    pool = list(dict.fromkeys([*(corpus or []), *extra, *positives]))
    if len(pool) - max_positives < options.range_min + options.num_negatives:
        raise ConfigError(
            f"dataset {name!r}: the candidate pool has {len(pool)} texts (up to {max_positives} positives per "
            f"anchor), too few for {options.num_negatives} negatives from rank {options.range_min} on; "
            "lower range_min / num_negatives, or add a corpus"
        )
    if isinstance(model, str | os.PathLike):
        from embedforge.models import load_model

        model = load_model(model)
    search = {k: v for k, v in options.values().items() if k not in ("batch_size", "use_faiss")}
    settings = {**search, "query_prompt": query_prompt, "corpus_prompt": corpus_prompt, "seed": seed}
    logger.info(
        "%s: mining %d negatives from ranks [%d, %d) for %d pairs over %d candidates (%s)",
        name,
        options.num_negatives,
        options.range_min,
        options.range_max,
        len(pairs),
        len(pool),
        ", ".join(f"{k}={v!r}" for k, v in settings.items() if v is not None and "prompt" not in k),
    )
    mined, report = _run_sentence_transformers(
        rows,
        model,
        corpus=[*(corpus or []), *extra] or None,
        **options.values(),
        query_prompt=query_prompt,
        corpus_prompt=corpus_prompt,
        seed=seed,
    )
    complete = _complete_pairs(mined, options.num_negatives)
    mined, anchor_as_negative = _drop_anchor_negatives(mined)
    if anchor_as_negative:
        logger.warning(
            "%s: %d rows dropped because their own anchor came back as a negative (symmetric data); "
            "a margin filter (relative_margin / absolute_margin) removes such candidates",
            name,
            anchor_as_negative,
        )
    stats = _stats(mined, pairs, complete, len(pool), report, anchor_as_negative, settings, started)
    if not keep_scores:
        mined = mined.remove_columns("scores")
    logger.info(
        "%s: %d rows; %d pairs without %d negatives; filtered candidates %s; mean score positive %s, negative %s",
        name,
        stats.rows,
        stats.rows_without_enough_negatives,
        options.num_negatives,
        stats.filtered_candidates or "none",
        _fmt(stats.mean_positive_score),
        _fmt(stats.mean_negative_score),
    )
    if stats.rows == 0:
        raise DataError(
            f"dataset {name!r}: no row got {options.num_negatives} negatives from ranks "
            f"[{options.range_min}, {options.range_max}) "
            f"(filtered: {stats.filtered_candidates or 'none'})",
            source,
            hint="widen the window, lower num_negatives, or loosen relative_margin / absolute_margin / max_score",
        )
    mined.info.dataset_name = name
    return MiningResult(mined, stats)


def write_jsonl(dataset: Dataset, path: str | os.PathLike[str]) -> Path:
    """Write ``dataset`` as jsonl (one object a row, UTF-8), atomically; returns the path."""
    from embedforge.utils.io import atomic_write_text

    lines = [json.dumps(row, ensure_ascii=False) for row in dataset]
    atomic_write_text(path, "".join(line + "\n" for line in lines))
    return Path(path)


def _run_sentence_transformers(rows: Dataset, model: SentenceTransformer, *, seed: int, **options: Any):
    """sentence-transformers' miner, with the global ``random`` seeded (and restored) and its report captured."""
    from sentence_transformers.util import mine_hard_negatives as st_mine_hard_negatives

    state = random.getstate()
    report = io.StringIO()
    random.seed(seed)
    try:
        with contextlib.redirect_stdout(report):
            mined = st_mine_hard_negatives(
                rows,
                model,
                anchor_column_name="anchor",
                positive_column_name="positive",
                corpus=options.pop("corpus"),
                sampling_strategy=options.pop("sampling"),
                output_scores=True,
                verbose=True,
                **options,
            )
    finally:
        random.setstate(state)
    text = report.getvalue()
    for line in text.splitlines():
        if line.strip():
            logger.info("sentence-transformers: %s", line.rstrip())
    return mined, text


def _drop_anchor_negatives(mined: Dataset) -> tuple[Dataset, int]:
    negative_columns = [c for c in mined.column_names if c == "negative" or c.startswith("negative_")]
    bad = [
        i
        for i, row in enumerate(mined.select_columns(["anchor", *negative_columns]))
        if any(row[c] == row["anchor"] for c in negative_columns)
    ]
    if not bad:
        return mined, 0
    drop = set(bad)
    return mined.select([i for i in range(len(mined)) if i not in drop]), len(bad)


def _complete_pairs(mined: Dataset, num_negatives: int) -> int:
    """Distinct (anchor, positive) pairs that got all their negatives."""
    negatives_per_pair = Counter(zip(mined["anchor"], mined["positive"], strict=True))
    if "negative" in mined.column_names:  # triplet: one row per negative
        return sum(1 for count in negatives_per_pair.values() if count >= num_negatives)
    return len(negatives_per_pair)


def _stats(
    mined: Dataset,
    pairs: list[tuple[str, str]],
    complete: int,
    corpus_size: int,
    report: str,
    anchor_as_negative: int,
    settings: dict[str, Any],
    started: float,
) -> MiningStats:
    scores = mined["scores"] if len(mined) else []
    positive_scores = [s[0] for s in scores]
    negative_scores = [x for s in scores for x in s[1:]]
    filtered = {name: int(count.replace(",", "")) for count, name in _SKIPPED.findall(report)}
    return MiningStats(
        pairs=len(pairs),
        queries=len({anchor for anchor, _ in pairs}),
        corpus_size=corpus_size,
        rows=len(mined),
        rows_without_enough_negatives=len(pairs) - complete,
        filtered_candidates=filtered,
        anchor_as_negative=anchor_as_negative,
        mean_positive_score=_mean(positive_scores),
        mean_negative_score=_mean(negative_scores),
        seconds=round(time.perf_counter() - started, 2),
        settings=settings,
    )


def _mean(values: list[float]) -> float | None:
    return round(sum(values) / len(values), 4) if values else None


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"
