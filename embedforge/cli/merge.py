"""``embedforge merge``: a model soup — the (weighted) average of models of one architecture.

Thin over :func:`embedforge.merging.merge_models` and :func:`embedforge.merging.save_soup`. LoRA adapter folders
are merged into their base weights first; the first model's modules and prompts are kept.

Examples::

    embedforge merge runs/x/finetune/final runs/x/finetune2/final --output runs/x/soup
    embedforge merge runs/a/final runs/b/final runs/c/final --weights 0.5 0.3 0.2 --output runs/soup
"""

from __future__ import annotations

import argparse
import sys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("models", nargs="+", metavar="MODEL", help="model folders or presets (at least two)")
    parser.add_argument("--output", required=True, metavar="DIR", help="folder for the merged SentenceTransformer")
    parser.add_argument("--weights", nargs="+", type=float, metavar="W", help="one weight per model (weighted soup)")
    parser.add_argument(
        "--method", choices=("uniform", "weighted"), help="default: weighted with --weights, else uniform"
    )
    parser.add_argument("--device", default="cpu", help="where to load and average (default cpu)")
    parser.add_argument("--quiet", action="store_true", help="warnings only")


def run(args: argparse.Namespace) -> int:
    from embedforge.merging import merge_models, save_soup

    method = args.method or ("weighted" if args.weights else "uniform")
    result = merge_models(args.models, method=method, weights=args.weights, device=args.device)
    save_soup(result, args.output)
    weights = ", ".join(f"{name}: {weight:.4f}" for name, weight in zip(result.names, result.weights, strict=True))
    sys.stdout.write(f"wrote {args.output} ({method} soup; {weights})\n")
    return 0
