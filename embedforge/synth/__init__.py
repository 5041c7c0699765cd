"""Synthetic training data written and judged by an LLM (Seed1.5-Embedding, "Synthetic Data").

* :func:`synthesize`: documents only -> (query, document) pairs: an LLM writes queries from replaceable prompt
  templates per query type, a round-trip filter (and optionally an LLM judge) keeps the relevant pairs, the miner
  adds hard negatives; resumable, with provenance on every row (:mod:`embedforge.synth.pipeline`).
* :func:`judge_candidates`: reasoning-intensive data: candidates mined for given queries, judged by an LLM
  (pointwise or listwise) into positives and hard negatives (:mod:`embedforge.synth.reasoning`).
* Generators: a local Hugging Face causal LM or an OpenAI-compatible endpoint (:mod:`embedforge.synth.generators`).

CLI: ``embedforge synth``; in a recipe: the ``synth`` stage, read later as ``path: "@<stage>/<name>.jsonl"``.
"""

from __future__ import annotations

from embedforge.synth.corpus import Document, read_documents, sample_documents
from embedforge.synth.generators import (
    GENERATORS,
    Completion,
    GeneratorConfig,
    HFGenerator,
    OpenAIGenerator,
    load_generator,
    register_generator,
)
from embedforge.synth.pipeline import SynthConfig, SynthResult, clean_query, log_path, stats_path, synthesize
from embedforge.synth.reasoning import JudgeConfig, judge_candidates
from embedforge.synth.relevance import judge_pairs, round_trip_ranks
from embedforge.synth.templates import QUERY_TYPES, Template, load_template, load_templates

__all__ = [
    "GENERATORS",
    "QUERY_TYPES",
    "Completion",
    "Document",
    "GeneratorConfig",
    "HFGenerator",
    "JudgeConfig",
    "OpenAIGenerator",
    "SynthConfig",
    "SynthResult",
    "Template",
    "clean_query",
    "judge_candidates",
    "judge_pairs",
    "load_generator",
    "load_template",
    "load_templates",
    "log_path",
    "read_documents",
    "register_generator",
    "round_trip_ranks",
    "sample_documents",
    "stats_path",
    "synthesize",
]
