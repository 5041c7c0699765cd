"""``embedforge quickstart``: the main job on the bundled default.

Trains ``recipes/quickstart.yaml`` (all-MiniLM-L6-v2 on the real data bundled in ``data/``; minutes on
2 CPU cores), then evaluates the base and the trained model on ``data/eval`` and prints both rows of the
leaderboard table. Run it from the repository root (``bash scripts/quickstart.sh`` does). A finished run
is reused (``--fresh`` retrains); an interrupted one resumes from its last checkpoint.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--recipe", default="recipes/quickstart.yaml", help="recipe (default recipes/quickstart.yaml)")
    parser.add_argument("--fresh", action="store_true", help="discard an earlier quickstart run and train again")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a recipe value (repeatable)",
    )
    parser.add_argument("--quiet", action="store_true", help="warnings only")


def run(args: argparse.Namespace) -> int:
    from embedforge.errors import ConfigError
    from embedforge.evaluation.report import leaderboard_markdown
    from embedforge.recipes.runner import train

    recipe = Path(args.recipe)
    if not recipe.is_file():
        raise ConfigError(
            f"{recipe}: not found; run the quickstart from the repository root (bash scripts/quickstart.sh)"
        )
    for noisy in ("mteb", "datasets", "matplotlib"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    result = train(recipe, args.overrides, resume=not args.fresh, overwrite=args.fresh)
    out = sys.stdout
    out.write(f"\nquickstart: trained model in {result.final_model} ({result.seconds:.0f} s this run)\n")
    for name, stage in result.stages.items():
        summary = stage.summary
        out.write(
            f"  stage {name}: {summary.get('steps')} steps, {summary.get('train_seconds')} s training, "
            f"{summary.get('samples_per_second')} samples/s, final loss {summary.get('final_loss')}\n"
        )
    if result.eval_reports:
        out.write("\nMTEB-protocol scores (x100) on the bundled tasks, base vs trained:\n\n")
        out.write(leaderboard_markdown({r.model: r.records for r in result.eval_reports.values()}))
        out.write(f"\nresults: {result.output_dir / 'eval'}\n")
    return 0
