"""Reasoning-intensive training data: LLM-judged positives and hard negatives among mined candidates.

Seed1.5-Embedding, "Synthetic Data": for challenging queries without reference answers, candidate documents are
mined from the corpora and an LLM selects the positives and the hard negatives. Here the embedding model
retrieves the top ``num_candidates`` documents of the corpus for each query; the generator judges them

* ``pointwise``: one prompt per (query, candidate), a score (``judge_pointwise``: 0-3); a candidate scoring at
  least ``positive_min`` is a positive, one scoring at most ``negative_max`` a hard negative, the rest unused;
* ``listwise``: one prompt per query listing the numbered candidates (``judge_listwise``); the numbers in the
  reply are the positives, every other candidate a hard negative.

Each query with at least one positive becomes one row per positive: ``anchor`` (query), ``positive``,
``negative_1..n`` (the hard negatives, in retrieval order, at most ``num_negatives``), with provenance columns.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from embedforge.errors import ConfigError
from embedforge.synth.relevance import parse_score

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

    from embedforge.synth.generators import Generator, GeneratorConfig
    from embedforge.synth.templates import Template

logger = logging.getLogger(__name__)

JUDGE_MODES = ("pointwise", "listwise")
_INTEGER = re.compile(r"\d+")


@dataclass
class JudgeConfig:
    """How mined candidates are judged into positives and hard negatives."""

    mode: str = "pointwise"  # pointwise | listwise
    template: str | None = None  # template name/file; None: judge_<mode>
    num_candidates: int = 10  # candidates retrieved per query
    num_negatives: int = 3  # hard negatives kept per row (at most)
    positive_min: float = 2.0  # pointwise: a score >= this is a positive
    negative_max: float = 0.0  # pointwise: a score <= this is a hard negative
    max_doc_chars: int = 1000  # a candidate is cut to this many characters in the prompt

    def __post_init__(self) -> None:
        if self.mode not in JUDGE_MODES:
            raise ConfigError(f"judge.mode: {self.mode!r} is not one of {', '.join(JUDGE_MODES)}")
        if self.num_candidates < 1 or self.num_negatives < 0:
            raise ConfigError("judge.num_candidates must be >= 1 and judge.num_negatives >= 0")
        if self.negative_max >= self.positive_min:
            raise ConfigError(
                f"judge.negative_max ({self.negative_max}) must be below judge.positive_min ({self.positive_min})"
            )


def parse_listwise(reply: str | None, count: int) -> list[int] | None:
    """0-based indices of the candidates a listwise reply names (1-based numbers in ``1..count``); None: unparsable."""
    if reply is None:
        return None
    if reply.strip().lower().startswith("none"):
        return []
    numbers = [int(n) for n in _INTEGER.findall(reply)]
    if not numbers:
        return None
    return sorted({n - 1 for n in numbers if 1 <= n <= count})


def judge_candidates(
    generator: Generator,
    model: SentenceTransformer,
    queries: Sequence[str],
    corpus: Sequence[str],
    config: JudgeConfig,
    template: Template,
    *,
    seed: int = 0,
    query_prompt: str = "",
    batch_size: int = 64,
) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """Judge the top candidates of each query; return the rows and counts (see the module docstring)."""
    from sentence_transformers.util import semantic_search

    options = {"batch_size": batch_size, "convert_to_tensor": True, "normalize_embeddings": True}
    documents = model.encode(list(corpus), **options)  # (corpus, dim)
    encoded = model.encode(list(queries), prompt=query_prompt or None, **options)  # (queries, dim)
    hits = semantic_search(encoded, documents, top_k=min(config.num_candidates, len(corpus)))
    candidates = [[h["corpus_id"] for h in row] for row in hits]
    verdicts: list[tuple[list[int], list[int], list[float | None]]] = []  # positives, negatives, scores
    if config.mode == "pointwise":
        pairs = [(q, corpus[c]) for q, row in zip(queries, candidates, strict=True) for c in row]
        prompts = [template.render(query=q, document=d[: config.max_doc_chars]) for q, d in pairs]
        scores = [parse_score(c.text) for c in generator.generate(prompts, seed=seed, temperature=0.0)]
        offset = 0
        for row in candidates:
            row_scores = scores[offset : offset + len(row)]
            offset += len(row)
            positives = [c for c, s in zip(row, row_scores, strict=True) if s is not None and s >= config.positive_min]
            negatives = [c for c, s in zip(row, row_scores, strict=True) if s is not None and s <= config.negative_max]
            verdicts.append((positives, negatives, row_scores))
    else:
        prompts = []
        for query, row in zip(queries, candidates, strict=True):
            listed = "\n".join(f"[{i + 1}] {corpus[c][: config.max_doc_chars]}" for i, c in enumerate(row))
            prompts.append(template.render(query=query, candidates=listed))
        for row, completion in zip(candidates, generator.generate(prompts, seed=seed, temperature=0.0), strict=True):
            chosen = parse_listwise(completion.text, len(row))
            if chosen is None:
                verdicts.append(([], [], [None] * len(row)))
                continue
            positives = [row[i] for i in chosen]
            negatives = [c for c in row if c not in positives]
            verdicts.append((positives, negatives, [1.0 if c in positives else 0.0 for c in row]))
    rows: list[dict[str, Any]] = []
    counts = {"queries": len(queries), "queries_without_positive": 0, "unjudged_replies": 0}
    for query, row, (positives, negatives, scores) in zip(queries, candidates, verdicts, strict=True):
        counts["unjudged_replies"] += sum(s is None for s in scores)
        if not positives:
            counts["queries_without_positive"] += 1
            continue
        for positive in positives:
            record: dict[str, Any] = {"anchor": query, "positive": corpus[positive]}
            for i, negative in enumerate(negatives[: config.num_negatives]):
                record[f"negative_{i + 1}"] = corpus[negative]
            record.update(
                generator=generator.name,
                template=template.name,
                judge_mode=config.mode,
                judge_score=scores[row.index(positive)],
                candidate_rank=row.index(positive),
                seed=seed,
            )
            rows.append(record)
    counts["rows"] = len(rows)
    logger.info("judged %d queries: %s", len(queries), counts)
    return rows, counts


def judge_query_file(
    queries: str,
    corpus: str,
    output: str,
    *,
    generator: GeneratorConfig | Generator,
    model: str | SentenceTransformer,
    config: JudgeConfig | None = None,
    query_column: str = "text",
    text_column: str = "text",
    max_queries: int | None = None,
    seed: int = 42,
    query_prompt: str = "",
) -> dict[str, int]:
    """Read queries and a corpus from files, judge the mined candidates, write the rows (jsonl, atomically).

    Queries and documents are read with :func:`embedforge.synth.read_documents` (jsonl / parquet / BEIR; a
    BEIR directory as ``queries`` reads its ``queries.jsonl``). Returns the counts of :func:`judge_candidates`.
    """
    import json
    from pathlib import Path

    from embedforge.synth.corpus import read_documents, sample_documents
    from embedforge.synth.generators import GeneratorConfig, load_generator
    from embedforge.synth.templates import load_template
    from embedforge.utils.io import atomic_write_text

    config = config or JudgeConfig()
    query_path = Path(queries)
    if query_path.is_dir():
        query_path = query_path / "queries.jsonl"
    texts = [d.text for d in sample_documents(read_documents(query_path, text_column=query_column), max_queries, seed)]
    documents = [d.text for d in read_documents(corpus, text_column=text_column)]
    if isinstance(generator, GeneratorConfig):
        generator = load_generator(generator)
    if isinstance(model, str):
        from embedforge.models import load_model

        model = load_model(model)
    template = load_template(config.template or f"judge_{config.mode}", config.mode)
    rows, counts = judge_candidates(
        generator, model, texts, documents, config, template, seed=seed, query_prompt=query_prompt
    )
    atomic_write_text(output, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    return counts
