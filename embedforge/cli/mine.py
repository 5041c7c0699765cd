"""``embedforge mine``: hard negatives for (anchor, positive) data, mined with a model.

Thin over :func:`embedforge.mining.mine_hard_negatives`. Writes jsonl rows ``anchor, positive, negative_1..n``
that a recipe reads as a ``kind: triplets`` dataset.

Examples::

    embedforge mine --model runs/x/pretrain/final --data data/train/debian/pairs.jsonl.gz --kind pairs \\
        --columns anchor=summary positive=description --max-rows 5000 \\
        --instruction "Given a package summary, retrieve its description" --output debian.mined.jsonl
    embedforge mine --model all-MiniLM-L6-v2 --data ../shared/data/eval/SciFact --kind retrieval \\
        --range-min 10 --range-max 50 --num-negatives 3 --output scifact.mined.jsonl   # BEIR dir: its corpus too
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, help="model folder or offline preset that ranks the candidates")
    parser.add_argument("--data", required=True, metavar="FILE", help="jsonl/jsonl.gz/parquet file or BEIR directory")
    parser.add_argument("--kind", default="pairs", help="pairs|triplets|retrieval|nli|sts (default pairs)")
    parser.add_argument(
        "--columns", nargs="+", default=[], metavar="NAME=COLUMN", help="column mapping, e.g. anchor=summary"
    )
    parser.add_argument("--instruction", help="task instruction put on the anchors (as in training)")
    parser.add_argument("--max-rows", type=int, help="mine for a seeded random subset of this many pairs")
    parser.add_argument("--split", default="train", help="qrels split of a BEIR directory (default train)")
    parser.add_argument("--corpus", nargs="+", default=[], metavar="FILE", help="extra candidates: jsonl, BEIR, .txt")
    parser.add_argument("--corpus-column", default="text", help="jsonl field of a corpus text (default text)")
    parser.add_argument("--output", required=True, metavar="OUT.jsonl", help="where the mined rows go")
    parser.add_argument("--range-min", type=int, default=50, help="first rank a negative may take (default 50)")
    parser.add_argument("--range-max", type=int, default=100, help="ranks below this one (default 100)")
    parser.add_argument("--num-negatives", type=int, default=7, help="negatives per row (default 7)")
    parser.add_argument("--sampling", default="random", choices=("random", "top"), help="default random")
    parser.add_argument(
        "--relative-margin", type=_optional_float, default=0.05, help="drop s > s+ - |s+|*m (default 0.05; none: off)"
    )
    parser.add_argument("--absolute-margin", type=float, help="drop candidates with s > s+ - m")
    parser.add_argument("--max-score", type=float, help="drop candidates with s above this")
    parser.add_argument("--min-score", type=float, help="drop candidates with s below this")
    parser.add_argument("--output-format", default="n-tuple", choices=("n-tuple", "triplet"), help="default n-tuple")
    parser.add_argument("--batch-size", type=int, default=64, help="encoding batch size (default 64)")
    parser.add_argument("--max-seq-length", type=int, help="override the model's maximum tokens per text")
    parser.add_argument("--faiss", action="store_true", help="search with faiss (large candidate pools)")
    parser.add_argument("--seed", type=int, default=42, help="sampling seed (default 42)")
    parser.add_argument("--quiet", action="store_true", help="warnings only")


def run(args: argparse.Namespace) -> int:
    from embedforge.data.config import DatasetConfig
    from embedforge.errors import ConfigError
    from embedforge.mining import MiningOptions, mine_hard_negatives, read_corpus, write_jsonl
    from embedforge.models import load_model

    columns = {}
    for item in args.columns:
        name, sep, column = item.partition("=")
        if not sep or not name or not column:
            raise ConfigError(f"--columns: expected NAME=COLUMN, e.g. anchor=summary, got {item!r}")
        columns[name] = column
    config = DatasetConfig(
        name=_name(args.data),
        path=args.data,
        kind=args.kind,
        columns=columns,
        instruction=args.instruction,
        max_rows=args.max_rows,
        split=args.split,
    )
    corpus = read_corpus(args.corpus, column=args.corpus_column) if args.corpus else None
    model = load_model(args.model, max_seq_length=args.max_seq_length)
    options = MiningOptions(
        range_min=args.range_min,
        range_max=args.range_max,
        num_negatives=args.num_negatives,
        relative_margin=args.relative_margin,
        absolute_margin=args.absolute_margin,
        max_score=args.max_score,
        min_score=args.min_score,
        sampling=args.sampling,
        output_format=args.output_format,
        batch_size=args.batch_size,
        use_faiss=args.faiss,
    )
    result = mine_hard_negatives(model, config, options, corpus=corpus, seed=args.seed)
    write_jsonl(result.dataset, args.output)
    stats = {k: v for k, v in result.stats.to_dict().items() if k != "settings"}
    sys.stdout.write(f"wrote {args.output}: {json.dumps(stats)}\n")
    return 0


def _optional_float(text: str) -> float | None:
    return None if text.lower() in ("none", "off", "null") else float(text)


def _name(path: str) -> str:
    name = Path(path).name
    for suffix in (".gz", ".jsonl", ".parquet", ".json"):
        name = name.removesuffix(suffix)
    return name or "data"
