"""``embedforge train RECIPE.yaml``: run a training recipe (thin over :func:`embedforge.train`).

Examples::

    embedforge train recipes/quickstart.yaml
    embedforge train recipes/quickstart.yaml --set stages.finetune.loss.gamma=0.5 --set seed=1
    embedforge train recipes/quickstart.yaml --resume          # after a crash or kill: continue
    torchrun --nproc_per_node 8 -m embedforge train recipes/kalm-v2.yaml   # multi-GPU (DDP)
"""

from __future__ import annotations

import argparse
import logging
import sys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("recipe", help="recipe YAML file")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a recipe value, e.g. stages.finetune.loss.gamma=0.5 (repeatable)",
    )
    parser.add_argument("--output-dir", help="override output_dir (relative to the current directory)")
    parser.add_argument(
        "--resume", action="store_true", help="continue a run: skip finished stages, resume checkpoints"
    )
    parser.add_argument("--overwrite", action="store_true", help="delete an existing output folder first")
    parser.add_argument("--quiet", action="store_true", help="warnings only")


def run(args: argparse.Namespace) -> int:
    from embedforge.recipes.context import TrainSummary
    from embedforge.recipes.runner import train

    for noisy in ("mteb", "datasets", "matplotlib", "httpx"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    overrides = list(args.overrides)
    if args.output_dir:
        overrides.append(f"output_dir={args.output_dir}")
    result = train(args.recipe, overrides, resume=args.resume, overwrite=args.overwrite)
    out = sys.stdout
    out.write(f"\nrecipe finished in {result.seconds:.0f} s; final model: {result.final_model}\n")
    for name, stage in result.stages.items():
        summary = stage.summary
        if isinstance(summary, TrainSummary):
            facts = {
                "steps": summary.steps,
                "train_seconds": summary.train_seconds,
                "samples_per_second": summary.samples_per_second,
                "final_loss": summary.final_loss,
            }
            out.write(f"  {name}: {facts}\n")
    if result.eval_reports:
        from embedforge.evaluation.report import leaderboard_markdown

        out.write("\n" + leaderboard_markdown({r.model: r.records for r in result.eval_reports.values()}))
    return 0
