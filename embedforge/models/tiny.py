"""Tiny randomly initialised models for tests, smoke runs and CI (no download, built from a config).

They reuse the tokenizer of the offline ``all-MiniLM-L6-v2`` preset (WordPiece, 30,522 tokens), so
they tokenize real text; their weights are random, so only mechanics (not quality) can be judged.
Add an architecture by adding a config factory to :data:`TINY_CONFIGS`.

Decoder LLMs (``llama``, ``qwen2``, ``qwen3``, ``mistral``, ``gemma``) and mixture-of-experts LLMs
(``qwen2_moe``, ``olmoe``, ``mixtral``) are saved as ``*ForCausalLM`` checkpoints with tied input /
output embeddings, i.e. laid out like a real LLM release, and with a causal config (no
``is_causal`` key) — :func:`embedforge.models.load_model` makes them bidirectional. Their tokenizer
pads on the **right** with ``[PAD]`` (id 0): every real token then keeps the position it has
unpadded, so a padded batch gives the same embeddings as texts encoded one by one (see
``docs/backbones.md``).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from embedforge.errors import ConfigError, did_you_mean

# Shared shape of every tiny decoder: 2 layers, hidden 32, 4 query heads of 8 dims over 2 key/value
# heads (grouped-query attention, as in the real models), tied embeddings.
_DECODER_SHAPE: dict[str, Any] = {
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "max_position_embeddings": 512,
    "tie_word_embeddings": True,
}
# The MiniLM WordPiece tokenizer's [PAD], [CLS] and [SEP] ids.
_SPECIAL_IDS = {"pad_token_id": 0, "bos_token_id": 101, "eos_token_id": 102}

# MoE routing of the tiny MoE models: 4 experts, 2 active per token.
_MOE_SHAPE: dict[str, Any] = {"num_experts_per_tok": 2}


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


def _decoder_config(model_type: str, **extra: Any) -> Callable[[int], Any]:
    def factory(vocab_size: int) -> Any:
        from transformers import AutoConfig

        return AutoConfig.for_model(model_type, vocab_size=vocab_size, **_DECODER_SHAPE, **_SPECIAL_IDS, **extra)

    factory.__name__ = f"_{model_type}_config"
    return factory


# architecture name -> config factory(vocab_size)
TINY_CONFIGS: dict[str, Callable[[int], Any]] = {
    "bert": _bert_config,
    "llama": _decoder_config("llama"),
    "qwen2": _decoder_config("qwen2"),
    "qwen3": _decoder_config("qwen3", head_dim=8),
    # Mistral's default 4,096-token sliding window does not matter at test lengths; switch it off so
    # the tiny model is plain full attention.
    "mistral": _decoder_config("mistral", sliding_window=None),
    "gemma": _decoder_config("gemma", head_dim=8),
    "qwen2_moe": _decoder_config(
        "qwen2_moe", num_experts=4, moe_intermediate_size=32, shared_expert_intermediate_size=32, **_MOE_SHAPE
    ),
    "olmoe": _decoder_config("olmoe", num_experts=4, **_MOE_SHAPE),
    "mixtral": _decoder_config("mixtral", num_local_experts=4, **_MOE_SHAPE),
}

#: The tiny architectures that are decoder LLMs (everything but ``bert``).
TINY_DECODERS: tuple[str, ...] = tuple(arch for arch in TINY_CONFIGS if arch != "bert")
#: The tiny architectures that are mixture-of-experts LLMs.
TINY_MOE: tuple[str, ...] = ("qwen2_moe", "olmoe", "mixtral")


def build_tiny_model(
    arch: str,
    output_dir: str | os.PathLike[str],
    *,
    seed: int = 0,
    tokenizer_from: str | os.PathLike[str] = "all-MiniLM-L6-v2",
) -> Path:
    """Write a tiny random Hugging Face model of architecture ``arch`` (+ tokenizer) to ``output_dir``.

    Encoders are saved as the bare model (``BertModel``); decoder LLMs as ``*ForCausalLM`` with tied
    embeddings, the layout of a real LLM checkpoint, and a right-padding tokenizer.

    Args:
        arch: a key of :data:`TINY_CONFIGS`.
        output_dir: folder to write.
        seed: torch seed for the random weights.
        tokenizer_from: model (folder or preset) whose tokenizer is copied.

    Returns:
        The folder, which :func:`embedforge.models.load_model` (or transformers) can load.
    """
    import torch
    from transformers import AutoModel, AutoModelForCausalLM, AutoTokenizer

    from embedforge.models.presets import resolve_model_path

    if arch not in TINY_CONFIGS:
        raise ConfigError(f"unknown tiny architecture {arch!r}.{did_you_mean(arch, TINY_CONFIGS)}")
    tokenizer = AutoTokenizer.from_pretrained(str(resolve_model_path(tokenizer_from)), local_files_only=True)
    config = TINY_CONFIGS[arch](len(tokenizer))
    torch.manual_seed(seed)
    if arch in TINY_DECODERS:
        model = AutoModelForCausalLM.from_config(config)
        tokenizer.padding_side = "right"
        if tokenizer.pad_token is None:  # pragma: no cover - the MiniLM tokenizer has [PAD]
            tokenizer.pad_token = tokenizer.eos_token
    else:
        model = AutoModel.from_config(config)
    out = Path(output_dir)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out
