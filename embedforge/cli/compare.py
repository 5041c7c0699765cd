"""``embedforge compare``: runs side by side (per task and dimension, deltas, seed spread), Markdown + HTML.

Thin over :func:`embedforge.evaluation.compare.write_comparison`.

Examples::

    embedforge compare runs/quickstart runs/quickstart-seed1 runs/quickstart-seed2 --output runs/compare
    embedforge compare runs/minilm/results.json runs/quickstart/eval/quickstart
"""

from __future__ import annotations

import argparse
import sys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "runs",
        nargs="+",
        metavar="RUN_OR_RESULTS",
        help="run folders (embedforge train output), evaluation folders or results.json files; the first is the "
        "reference of the deltas; runs differing only in seed are grouped",
    )
    parser.add_argument("--output", metavar="DIR", help="also write compare.md and compare.html (self-contained) here")
    parser.add_argument("--quiet", action="store_true", help="warnings only")


def run(args: argparse.Namespace) -> int:
    from embedforge.evaluation.compare import write_comparison

    _, text = write_comparison(args.runs, args.output)
    sys.stdout.write(text)
    if args.output:
        sys.stdout.write(f"\nwrote {args.output}/compare.md and compare.html\n")
    return 0
