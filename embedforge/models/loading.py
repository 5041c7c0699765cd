"""Load any local model (or offline preset) as a ``SentenceTransformer``.

* a SentenceTransformer folder (``modules.json``) loads as saved, prompts included;
* a plain Hugging Face model folder (``config.json`` + weights) becomes Transformer -> Pooling ->
  Normalize, with the pooling given (mean by default, as in all three papers);
* a decoder LLM folder (see :func:`embedforge.models.decoder.is_decoder_folder`) goes through
  :func:`embedforge.models.decoder.load_decoder`: bidirectional attention by default.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from embedforge.errors import ConfigError
from embedforge.models.presets import resolve_model_path

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

logger = logging.getLogger(__name__)

POOLING_MODES = ("mean", "cls", "lasttoken", "max", "weightedmean", "mean_sqrt_len_tokens")


def load_model(
    name_or_path: str | os.PathLike[str],
    *,
    device: str | None = None,
    max_seq_length: int | None = None,
    pooling: str | None = None,
    normalize: bool = True,
    bidirectional: bool | None = None,
    dtype: str | None = None,
    padding_side: str | None = None,
    attn_implementation: str | None = None,
) -> SentenceTransformer:
    """Load a model for encoding or training.

    Args:
        name_or_path: a local folder (SentenceTransformer or plain Hugging Face model) or an offline
            preset name such as ``all-MiniLM-L6-v2`` (see ``embedforge models``).
        device: torch device; ``None`` picks CUDA when available, else CPU.
        max_seq_length: override the maximum number of tokens per text.
        pooling: for a plain Hugging Face folder, the pooling mode (default ``mean``). Ignored,
            with an error if it disagrees, for a SentenceTransformer folder.
        normalize: for a plain Hugging Face folder, append an L2 ``Normalize`` module.
        bidirectional: for a decoder LLM, remove (``True``, the default for a plain folder) or keep
            (``False``) the causal mask; ``None`` keeps what a SentenceTransformer folder was saved with.
            Encoders are always bidirectional.
        dtype: weights dtype (``"float32"``, ``"bfloat16"``, ``"float16"``, ``"auto"``); ``None`` keeps the
            default (float32; a SentenceTransformer folder: as transformers loads it).
        padding_side: the tokenizer's padding side (``right``/``left``); ``None`` keeps the saved one
            (plain decoder folders: right).
        attn_implementation: attention kernel (``sdpa``, ``eager``, ``flash_attention_2``); ``None``: default.

    Returns:
        The model, in eval mode.
    """
    from sentence_transformers import SentenceTransformer

    path = resolve_model_path(name_or_path)
    if padding_side is not None and padding_side not in ("right", "left"):
        raise ConfigError(f"padding_side must be 'right' or 'left', got {padding_side!r}")
    if (path / "modules.json").is_file():
        model = SentenceTransformer(
            str(path), device=device, local_files_only=True, model_kwargs=_model_kwargs(dtype, attn_implementation)
        )
        if padding_side is not None:
            model[0].tokenizer.padding_side = padding_side
        if bidirectional is not None:
            from embedforge.models.decoder import is_bidirectional, set_bidirectional

            if bidirectional != is_bidirectional(model):
                set_bidirectional(model, bidirectional)
    elif (path / "config.json").is_file():
        from embedforge.models.decoder import is_decoder_folder, load_decoder

        if is_decoder_folder(path):
            bidirectional = True if bidirectional is None else bidirectional
            model = load_decoder(
                path,
                bidirectional=bidirectional,
                pooling=pooling or "mean",
                normalize=normalize,
                device=device,
                dtype=dtype,
                padding_side=padding_side or "right",
                attn_implementation=attn_implementation,
            )
        elif bidirectional is False:
            raise ConfigError(f"{path}: an encoder model is always bidirectional; bidirectional=False needs a decoder")
        else:
            model = build_sentence_transformer(
                path,
                pooling=pooling or "mean",
                normalize=normalize,
                device=device,
                model_kwargs=_model_kwargs(dtype, attn_implementation),
            )
    else:
        raise ConfigError(
            f"{path}: not a model folder (no modules.json or config.json); pass a SentenceTransformer "
            "or Hugging Face model folder, or a preset name (see 'embedforge models')"
        )
    if max_seq_length is not None:
        if max_seq_length <= 0:
            raise ConfigError(f"max_seq_length must be a positive integer, got {max_seq_length}")
        model.max_seq_length = max_seq_length
    model.eval()
    return model


def _model_kwargs(dtype: str | None, attn_implementation: str | None) -> dict[str, Any] | None:
    """transformers ``from_pretrained`` keyword arguments for the options given (``None`` if none)."""
    kwargs: dict[str, Any] = {}
    if dtype is not None:
        from embedforge.models.decoder import resolve_dtype

        kwargs["dtype"] = resolve_dtype(dtype)
    if attn_implementation is not None:
        kwargs["attn_implementation"] = attn_implementation
    return kwargs or None


def build_sentence_transformer(
    path: str | os.PathLike[str],
    *,
    pooling: str = "mean",
    normalize: bool = True,
    device: str | None = None,
    include_prompt: bool = True,
    model_kwargs: dict[str, Any] | None = None,
) -> SentenceTransformer:
    """Wrap a plain Hugging Face model folder as Transformer -> Pooling(``pooling``) [-> Normalize].

    ``model_kwargs`` go to transformers' ``from_pretrained`` (e.g. ``dtype``, ``attn_implementation``).
    """
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.base.modules import Normalize, Transformer
    from sentence_transformers.sentence_transformer.modules import Pooling

    if pooling not in POOLING_MODES:
        from embedforge.errors import did_you_mean

        raise ConfigError(f"unknown pooling {pooling!r}.{did_you_mean(pooling, POOLING_MODES)}")
    transformer = Transformer(
        str(Path(path)),
        model_kwargs={"local_files_only": True, **(model_kwargs or {})},
        processor_kwargs={"local_files_only": True},
    )
    modules = [transformer, Pooling(transformer.get_embedding_dimension(), pooling, include_prompt=include_prompt)]
    if normalize:
        modules.append(Normalize())
    return SentenceTransformer(modules=modules, device=device)
