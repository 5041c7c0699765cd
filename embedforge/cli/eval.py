"""``embedforge eval``: score a model on MTEB-style task directories.

Thin over :func:`embedforge.evaluation.evaluate`.

Examples::

    embedforge eval --model all-MiniLM-L6-v2 --task-root ../shared/data/eval --output runs/minilm
    embedforge eval --model runs/quickstart/final --tasks data/eval/STSBenchmark --dims 384 256 128 \\
        --reference ../shared/data/reference_scores/scores_long.json
"""

from __future__ import annotations

import argparse
import logging
import sys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model", required=True, help="model folder, run folder (its final model) or offline preset name"
    )
    parser.add_argument("--tasks", nargs="+", default=[], metavar="DIR", help="task directories (with task.json)")
    parser.add_argument("--task-root", metavar="DIR", help="evaluate every task directory under this folder")
    parser.add_argument(
        "--output", required=True, metavar="OUT", help="folder for results.json, leaderboard.md, scores.png"
    )
    parser.add_argument("--dims", nargs="+", type=int, metavar="D", help="Matryoshka dimensions (default: full)")
    parser.add_argument("--batch-size", type=int, default=32, help="encoding batch size (default 32)")
    parser.add_argument("--max-seq-length", type=int, help="override the model's maximum tokens per text")
    parser.add_argument("--device", help="torch device (default: cuda if available, else cpu)")
    parser.add_argument(
        "--cache-dir", default="default", help="embedding cache folder (default ~/.cache/embedforge/embeddings)"
    )
    parser.add_argument("--no-cache", action="store_true", help="keep embeddings in memory only")
    parser.add_argument(
        "--reference", metavar="FILE", help="reference scores (scores_long.json, results.json or {task: score})"
    )
    parser.add_argument("--reference-model", help="which model's scores in --reference (default: matched by name)")
    parser.add_argument("--quiet", action="store_true", help="only warnings and the final tables")


def run(args: argparse.Namespace) -> int:
    from embedforge.evaluation import evaluate
    from embedforge.evaluation.report import leaderboard_markdown, reference_markdown
    from embedforge.utils.progress import progress_enabled

    for noisy in ("mteb", "datasets", "sentence_transformers", "matplotlib"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    from embedforge.utils.run_folder import is_run_folder, read_run_folder

    # a run folder is evaluated as its final model, named after its recipe and stage
    name = read_run_folder(args.model).label if is_run_folder(args.model) else None
    report = evaluate(
        args.model,
        args.tasks,
        args.output,
        task_root=args.task_root,
        dims=args.dims,
        batch_size=args.batch_size,
        max_seq_length=args.max_seq_length,
        device=args.device,
        cache_dir=None if args.no_cache else args.cache_dir,
        reference=args.reference,
        reference_model=args.reference_model,
        show_progress_bar=progress_enabled(),
        model_name=name,
    )
    out = sys.stdout
    out.write(leaderboard_markdown({report.model: report.records}))
    if report.reference_rows:
        out.write("\n" + reference_markdown(report.reference_rows, report.model))
    out.write(f"\nwrote {report.output_dir}/results.json, leaderboard.md, scores.png ({report.seconds:.0f} s)\n")
    return 0
