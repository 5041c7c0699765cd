"""Tiny randomly initialised models for tests, smoke runs and CI (no download, built from a config).

They reuse the tokenizer of the offline ``all-MiniLM-L6-v2`` preset (WordPiece, 30,522 tokens), so
they tokenize real text; their weights are random, so only mechanics (not quality) can be judged.
Add an architecture by adding a config factory to :data:`TINY_CONFIGS`.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from embedforge.errors import ConfigError, did_you_mean


def _bert_config(vocab_size: int) -> Any:
    from transformers import BertConfig

    return BertConfig(
        vocab_size=vocab_size,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=512,
    )


# architecture name -> config factory(vocab_size)
TINY_CONFIGS: dict[str, Callable[[int], Any]] = {"bert": _bert_config}


def build_tiny_model(
    arch: str,
    output_dir: str | os.PathLike[str],
    *,
    seed: int = 0,
    tokenizer_from: str | os.PathLike[str] = "all-MiniLM-L6-v2",
) -> Path:
    """Write a tiny random Hugging Face model of architecture ``arch`` (+ tokenizer) to ``output_dir``.

    Returns the folder, which :func:`embedforge.models.load_model` (or transformers) can load.
    """
    import torch
    from transformers import AutoModel, AutoTokenizer

    from embedforge.models.presets import resolve_model_path

    if arch not in TINY_CONFIGS:
        raise ConfigError(f"unknown tiny architecture {arch!r}.{did_you_mean(arch, TINY_CONFIGS)}")
    tokenizer = AutoTokenizer.from_pretrained(str(resolve_model_path(tokenizer_from)), local_files_only=True)
    config = TINY_CONFIGS[arch](len(tokenizer))
    torch.manual_seed(seed)
    model = AutoModel.from_config(config)
    out = Path(output_dir)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out
