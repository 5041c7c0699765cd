"""``embedforge synth``: synthetic (query, document) training pairs for a corpus, written by an LLM.

Thin over :func:`embedforge.synth.synthesize`. Writes jsonl rows ``anchor`` (query), ``positive`` (document),
``negative_1..n`` (with ``--num-negatives``) and provenance columns, which ``embedforge train`` reads as
``kind: pairs`` (or ``kind: triplets``). Rerunning the same command resumes: documents already in
``OUT.generations.jsonl`` are not generated again.

With ``--queries FILE`` it makes reasoning-intensive data instead: candidates mined from the corpus for each given
query are judged by the LLM (``--judge pointwise|listwise``) into positives and hard negatives.

Examples::

    embedforge synth --corpus docs.jsonl --text-column text --generator SmolLM2-135M-Instruct \\
        --queries-per-doc 3 --max-docs 500 --output synth.jsonl
    embedforge synth --corpus ../shared/data/eval/SciFact --generator openai:Qwen/Qwen2.5-7B-Instruct \\
        --base-url http://127.0.0.1:8000/v1 --concurrency 32 --request-budget 20000 \\
        --num-negatives 4 --decontaminate-against ../shared/data/eval --output scifact.synth.jsonl
    embedforge synth --queries hard_questions.jsonl --corpus docs.jsonl --judge listwise --output reasoning.jsonl
"""

from __future__ import annotations

import argparse
import json
import sys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    data = parser.add_argument_group("documents")
    data.add_argument("--corpus", required=True, metavar="FILE", help="jsonl/jsonl.gz/parquet file or BEIR directory")
    data.add_argument("--text-column", default="text", help="column of a document's text (default text)")
    data.add_argument("--id-column", help="column of a document's id (default _id/id/doc_id, else a text hash)")
    data.add_argument("--max-docs", type=int, help="a seeded random subset of this many documents (default all)")
    data.add_argument("--output", required=True, metavar="OUT.jsonl", help="where the pairs go")
    data.add_argument("--overwrite", action="store_true", help="start over: forget the generation log of OUT")
    gen = parser.add_argument_group("generation")
    gen.add_argument(
        "--generator",
        default="SmolLM2-135M-Instruct",
        help="preset or model folder (transformers), or openai:MODEL with --base-url (default SmolLM2-135M-Instruct)",
    )
    gen.add_argument(
        "--templates",
        nargs="+",
        default=None,
        metavar="T",
        help="query types in turn: built-in names (question keywords reasoning), .txt files or folders",
    )
    gen.add_argument("--queries-per-doc", type=int, default=3, help="replies per document (default 3)")
    gen.add_argument("--max-new-tokens", type=int, default=48, help="tokens per reply (default 48)")
    gen.add_argument("--temperature", type=float, default=0.8, help="sampling temperature, 0 = greedy (default 0.8)")
    gen.add_argument("--batch-size", type=int, default=16, help="prompts per generate call, local models (default 16)")
    gen.add_argument("--docs-per-batch", type=int, default=16, help="documents per step and log flush (default 16)")
    gen.add_argument("--dtype", help="local model weights dtype: float32 (default) | bfloat16 | float16")
    gen.add_argument("--base-url", help="OpenAI-compatible endpoint, e.g. http://127.0.0.1:8000/v1")
    gen.add_argument("--api-key-env", default="OPENAI_API_KEY", help="env variable with the API key")
    gen.add_argument("--concurrency", type=int, default=8, help="endpoint requests in flight (default 8)")
    gen.add_argument("--max-retries", type=int, default=4, help="retries of a failed request (default 4)")
    gen.add_argument("--request-budget", type=int, help="at most this many endpoint requests in this run")
    gen.add_argument("--seed", type=int, default=42, help="document subset and sampling seed (default 42)")
    keep = parser.add_argument_group("filter, decontamination, mining")
    keep.add_argument(
        "--filter-model", default="all-MiniLM-L6-v2", help="embedding model of the round-trip filter; 'none': off"
    )
    keep.add_argument(
        "--filter-top-k", type=_optional_int, default=3, help="keep pairs whose document ranks < k (default 3; none)"
    )
    keep.add_argument("--judge-threshold", type=float, help="also keep only pairs the LLM judge scores >= this (0-3)")
    keep.add_argument("--query-prompt", default="", help="prompt on queries when filtering/mining (the instruction)")
    keep.add_argument("--decontaminate-against", nargs="*", default=[], metavar="DIR", help="eval task directories")
    keep.add_argument("--num-negatives", type=int, default=0, help="hard negatives mined per pair (default 0: none)")
    keep.add_argument("--range-min", type=int, default=10, help="first rank a negative may take (default 10)")
    keep.add_argument("--range-max", type=int, default=50, help="ranks below this one (default 50)")
    keep.add_argument(
        "--strip-lead-ins",
        action="store_true",
        help="cut lead-ins about the source ('The document supports the finding that X' -> 'X'); measured: no gain",
    )
    reason = parser.add_argument_group("reasoning-intensive data (given queries; no generation)")
    reason.add_argument("--queries", metavar="FILE", help="queries (jsonl/parquet/BEIR dir): judge mined candidates")
    reason.add_argument("--query-column", default="text", help="column of a query's text (default text)")
    reason.add_argument("--max-queries", type=int, help="a seeded random subset of this many queries")
    reason.add_argument("--judge", default="pointwise", choices=("pointwise", "listwise"), help="default pointwise")
    reason.add_argument("--num-candidates", type=int, default=10, help="candidates mined per query (default 10)")
    parser.add_argument("--quiet", action="store_true", help="warnings only, no progress bar")


def run(args: argparse.Namespace) -> int:
    from embedforge.synth import GeneratorConfig, SynthConfig, synthesize
    from embedforge.synth.templates import QUERY_TYPES

    generator = GeneratorConfig(
        spec=args.generator,
        max_new_tokens=args.max_new_tokens,
        temperature=args.temperature,
        batch_size=args.batch_size,
        dtype=args.dtype,
        base_url=args.base_url,
        api_key_env=args.api_key_env,
        concurrency=args.concurrency,
        max_retries=args.max_retries,
        request_budget=args.request_budget,
    )
    filter_model = None if args.filter_model.lower() in ("none", "off") else args.filter_model
    if args.queries:
        return _judge(args, generator, filter_model)
    config = SynthConfig(
        corpus=args.corpus,
        output=args.output,
        text_column=args.text_column,
        id_column=args.id_column,
        generator=generator,
        templates=args.templates or list(QUERY_TYPES),
        queries_per_doc=args.queries_per_doc,
        max_docs=args.max_docs,
        docs_per_batch=args.docs_per_batch,
        seed=args.seed,
        filter_model=filter_model,
        filter_top_k=args.filter_top_k if filter_model else None,
        judge_threshold=args.judge_threshold,
        query_prompt=args.query_prompt,
        decontaminate_against=args.decontaminate_against,
        num_negatives=args.num_negatives,
        range_min=args.range_min,
        range_max=args.range_max,
        strip_lead_ins=args.strip_lead_ins,
        overwrite=args.overwrite,
    )
    result = synthesize(config, progress=not args.quiet)
    generation = result.stats["generation"]
    summary = {
        "rows": result.rows,
        "documents": generation["documents"],
        "resumed": generation["documents_done_before"],
        "failed": generation["documents_failed"],
        "queries": result.stats["pairs_generated"],
        **({"filter": result.stats["filter"]} if "filter" in result.stats else {}),
    }
    sys.stdout.write(f"wrote {args.output}: {json.dumps(summary)}\n")
    if generation["documents_failed"]:
        sys.stderr.write(
            f"embedforge synth: {generation['documents_failed']} documents got no reply "
            f"({generation['last_error']}); rerun the same command to retry them\n"
        )
        return 1
    return 0


def _judge(args: argparse.Namespace, generator, model: str | None) -> int:
    from embedforge.errors import ConfigError
    from embedforge.synth import JudgeConfig
    from embedforge.synth.reasoning import judge_query_file

    if model is None:
        raise ConfigError("--queries: candidates are mined with --filter-model, which cannot be 'none'")
    counts = judge_query_file(
        args.queries,
        args.corpus,
        args.output,
        generator=generator,
        model=model,
        config=JudgeConfig(mode=args.judge, num_candidates=args.num_candidates, num_negatives=args.num_negatives or 3),
        query_column=args.query_column,
        text_column=args.text_column,
        max_queries=args.max_queries,
        seed=args.seed,
        query_prompt=args.query_prompt,
    )
    sys.stdout.write(f"wrote {args.output}: {json.dumps(counts)}\n")
    return 0


def _optional_int(text: str) -> int | None:
    return None if text.lower() in ("none", "off", "null") else int(text)
