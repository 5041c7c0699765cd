"""``embedforge export MODEL OUTPUT --backend onnx|openvino [--quantize int8]``: see ``serving.export``.

Examples::

    embedforge export all-MiniLM-L6-v2 exported/minilm-onnx --backend onnx
    embedforge export runs/kalm/soup exported/kalm-int8 --backend onnx --quantize int8
    embedforge serve exported/minilm-onnx --backend onnx
"""

from __future__ import annotations

import argparse
import json
import sys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``export``'s options to ``parser``."""
    parser.add_argument("model", help="model folder or offline preset name (e.g. all-MiniLM-L6-v2)")
    parser.add_argument("output", help="folder to write (sentence-transformers layout plus the exported graph)")
    parser.add_argument("--backend", choices=["onnx", "openvino"], default="onnx", help="default: %(default)s")
    parser.add_argument("--quantize", choices=["int8"], help="onnx only: dynamic int8 quantization of the weights")
    parser.add_argument("--overwrite", action="store_true", help="replace OUTPUT if it exists")


def run(args: argparse.Namespace) -> int:
    """Export, then print the manifest (files, versions, agreement with the torch model)."""
    from embedforge.serving.export import export_model

    manifest = export_model(
        args.model, args.output, backend=args.backend, quantize=args.quantize, overwrite=args.overwrite
    )
    sys.stdout.write(json.dumps(manifest, indent=2) + "\n")
    return 0
