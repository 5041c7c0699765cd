"""Relevance of synthetic (query, document) pairs: round-trip consistency and an LLM judge.

Seed1.5-Embedding keeps "only highly relevant query-document pairs" of its synthetic queries. Two checks:

* **round-trip consistency** (Alberti et al., 2019, "Synthetic QA Corpora Generation with Roundtrip
  Consistency"; Promptagator, Dai et al., 2022): embed the query and every document of the corpus with the
  current embedding model; the pair is kept when its document ranks in the top ``k``. The rank is the number of
  corpus documents that score strictly higher than the pair's own document (0 = first);
* **an LLM judge** (optional): the generator scores the pair with a pointwise template (a number, e.g. 0-3);
  the pair is kept when the score reaches a threshold. An unparsable reply scores None and is not kept.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

    from embedforge.synth.generators import Generator
    from embedforge.synth.templates import Template

_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")


def round_trip_ranks(
    model: SentenceTransformer,
    queries: Sequence[str],
    targets: Sequence[int],
    pool: Sequence[str],
    *,
    query_prompt: str = "",
    document_prompt: str = "",
    batch_size: int = 64,
    chunk: int = 1024,
) -> tuple[list[int], list[float]]:
    """Rank of each query's own document in ``pool`` under ``model``, and the query-document cosine score.

    Args:
        model: the embedding model (normalized embeddings are compared by dot product).
        queries: the queries.
        targets: for each query, the index in ``pool`` of its document.
        pool: every candidate document (the corpus).
        query_prompt: prompt prepended to queries (the instruction training will use).
        document_prompt: prompt prepended to documents.
        batch_size: encoding batch size.
        chunk: queries scored against the pool at once.

    Returns:
        ``(ranks, scores)``: rank 0 means no document of the pool scores higher than the query's own.
    """
    import torch

    if len(queries) != len(targets):
        raise ValueError(f"queries and targets differ in length: {len(queries)} != {len(targets)}")
    if not queries:
        return [], []
    options = {"batch_size": batch_size, "convert_to_tensor": True, "normalize_embeddings": True}
    documents = model.encode(list(pool), prompt=document_prompt or None, **options)  # (pool, dim)
    encoded = model.encode(list(queries), prompt=query_prompt or None, **options)  # (queries, dim)
    target = torch.as_tensor(list(targets), device=documents.device)  # (queries,)
    ranks: list[int] = []
    scores: list[float] = []
    for start in range(0, len(queries), chunk):
        sims = encoded[start : start + chunk] @ documents.T  # (chunk, pool)
        own = sims.gather(1, target[start : start + chunk, None])  # (chunk, 1): score of the query's document
        ranks.extend((sims > own).sum(dim=1).tolist())  # (chunk,): documents strictly above it
        scores.extend(own[:, 0].float().tolist())
    return ranks, scores


def parse_score(reply: str | None) -> float | None:
    """The first number in a judge's reply (None when there is none)."""
    if not reply:
        return None
    match = _NUMBER.search(reply)
    return float(match.group()) if match else None


def judge_pairs(
    generator: Generator,
    template: Template,
    pairs: Sequence[tuple[str, str]],
    *,
    seed: int,
    max_doc_chars: int = 2000,
) -> list[float | None]:
    """Pointwise LLM-judge scores of ``(query, document)`` pairs (greedy decoding; None: no number, or an error)."""
    prompts = [template.render(query=q, document=d[:max_doc_chars]) for q, d in pairs]
    completions = generator.generate(prompts, seed=seed, temperature=0.0)
    return [parse_score(c.text) for c in completions]
