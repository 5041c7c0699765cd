"""Decoder LLMs (dense or mixture-of-experts) as embedding models, with bidirectional attention.

KaLM-Embedding-V2 (Qwen2-0.5B) and Seed1.5-Embedding (a small-active-parameter MoE LLM) remove the
causal mask of a decoder LLM and mean-pool its last hidden states. :func:`load_decoder` does that
for any decoder family of transformers; the result is an ordinary ``SentenceTransformer``
(Transformer -> Pooling -> Normalize).

How attention becomes bidirectional — and stays so without our code
--------------------------------------------------------------------
transformers >= 5.2 reads ``is_causal`` from a decoder's config: the model's ``forward`` is wrapped
by ``merge_with_config_defaults``, which passes ``is_causal`` on to the attention kernels (SDPA /
eager / flash), and ``masking_utils.create_causal_mask`` then builds a *bidirectional* mask that
still masks padding. We set ``is_causal=False`` on the config at load time, so it is written to
``config.json`` when the model is saved, and plain ``SentenceTransformer(path)`` — or any reader of
``config.json`` that honours the key — loads the same bidirectional model without embedforge.

Each family in :data:`DECODER_FAMILIES` is verified by ``tests/models/test_decoder_attention.py``
(transformers 5.23, SDPA and eager): the hidden state of token 0 changes when a later token changes
with ``is_causal: false`` and does not with the causal config, and a padded batch (left or right)
gives the same hidden states for the real tokens as the unpadded text (``docs/backbones.md`` has the
table). A decoder family that is not registered is probed when loaded (:func:`probe_bidirectional`);
if the probe shows causal attention the load fails instead of silently training a causal model.

Padding: the tokenizer pads on the right (``padding_side="right"``), so every real token keeps the
position it has when encoded alone. sentence-transformers' pooling handles both sides: mean and
weighted pooling mask pads, ``lasttoken`` takes the last *real* token, ``cls`` the first real one,
and ``include_prompt=False`` skips pads *and* the prompt under left padding (tested).
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from embedforge.errors import ConfigError, did_you_mean
from embedforge.utils.registry import Registry

if TYPE_CHECKING:
    import torch
    from sentence_transformers import SentenceTransformer
    from transformers import PreTrainedModel

logger = logging.getLogger(__name__)

PADDING_SIDES = ("right", "left")
# sentence-transformers' default modality config for a text model (what it infers without a chat template)
_TEXT_MODALITY = {"text": {"method": "forward", "method_output_name": "last_hidden_state"}}


@dataclass(frozen=True)
class DecoderFamily:
    """A transformers decoder family whose bidirectional mode has been verified.

    Attributes:
        model_type: ``config.model_type`` (e.g. ``qwen2``).
        mechanism: how bidirectional attention is switched on, in words (written to the docs table).
        moe: whether the family is a mixture-of-experts model (router auxiliary loss applies).
        note: anything a user should know (sliding windows, attention kernels, ...).
    """

    model_type: str
    mechanism: str = "config.json `is_causal: false` (transformers >= 5.2)"
    moe: bool = False
    note: str = ""


#: model_type -> verified family. Add one with :func:`register_decoder_family` *and* add its tiny
#: config to ``embedforge.models.tiny.TINY_CONFIGS`` so the attention tests cover it.
DECODER_FAMILIES: Registry[DecoderFamily] = Registry("decoder family")


def register_decoder_family(family: DecoderFamily) -> DecoderFamily:
    """Add ``family`` to :data:`DECODER_FAMILIES` (model types must be unique)."""
    return DECODER_FAMILIES.register(family.model_type, family)


for _family in (
    DecoderFamily("llama", note="also SmolLM2 (the SmolLM2-135M-Instruct preset)"),
    DecoderFamily("qwen2", note="KaLM-Embedding-V2's base (Qwen2-0.5B)"),
    DecoderFamily("qwen3"),
    DecoderFamily(
        "mistral",
        note="with a `sliding_window` the bidirectional mask is a symmetric window (|i-j| < window); "
        "full attention when `sliding_window` is null",
    ),
    DecoderFamily("gemma", note="`use_bidirectional_attention` is not needed; `is_causal: false` suffices"),
    DecoderFamily("qwen2_moe", moe=True),
    DecoderFamily("olmoe", moe=True),
    DecoderFamily("mixtral", moe=True, note="sliding window as for mistral"),
):
    register_decoder_family(_family)


def read_config(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The ``config.json`` of a Hugging Face model folder as a dict (``{}`` if there is none)."""
    config_file = Path(path) / "config.json"
    if not config_file.is_file():
        return {}
    try:
        return json.loads(config_file.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise ConfigError(f"{config_file}: not valid JSON ({error})") from None


def is_decoder_config(config: dict[str, Any]) -> bool:
    """Whether a ``config.json`` dict describes a decoder LLM.

    True for a registered family, and for any model type that transformers maps to a causal-LM class
    but not to a masked-LM class (so BERT-style encoders, which have both, stay encoders).
    """
    from transformers.models.auto.modeling_auto import (
        MODEL_FOR_CAUSAL_LM_MAPPING_NAMES,
        MODEL_FOR_MASKED_LM_MAPPING_NAMES,
    )

    model_type = config.get("model_type")
    if model_type in DECODER_FAMILIES:
        return True
    return model_type in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES and model_type not in MODEL_FOR_MASKED_LM_MAPPING_NAMES


def is_decoder_folder(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is a plain Hugging Face folder holding a decoder LLM (see :func:`is_decoder_config`)."""
    return is_decoder_config(read_config(path))


def load_decoder(
    path: str | os.PathLike[str],
    *,
    bidirectional: bool = True,
    pooling: str = "mean",
    include_prompt: bool = True,
    normalize: bool = True,
    max_seq_length: int | None = None,
    dtype: str | torch.dtype | None = None,
    device: str | None = None,
    padding_side: str = "right",
    attn_implementation: str | None = None,
) -> SentenceTransformer:
    """Load a decoder LLM folder (or preset) as a SentenceTransformer embedding model.

    Args:
        path: a plain Hugging Face model folder (``config.json`` + weights, e.g. a ``*ForCausalLM``
            checkpoint) or an offline preset such as ``SmolLM2-135M-Instruct``.
        bidirectional: remove the causal mask (``is_causal=False``, saved in ``config.json``). ``False``
            keeps (and records) causal attention.
        pooling: ``mean`` (the papers' choice), ``lasttoken``, ``cls`` (first token) or another
            sentence-transformers pooling mode.
        include_prompt: ``False`` leaves instruction/prompt tokens out of the pooling.
        normalize: append an L2 ``Normalize`` module.
        max_seq_length: maximum tokens per text (default: the tokenizer's limit, capped by the model's).
        dtype: weights dtype (``"float32"``, ``"bfloat16"``, ``torch.float16``, ``"auto"``); default float32.
        device: torch device; ``None`` picks CUDA when available.
        padding_side: ``right`` (default: real tokens keep their unpadded positions) or ``left``.
        attn_implementation: ``sdpa`` (default), ``eager``, ``flash_attention_2``, ...

    Returns:
        The model, in eval mode.

    Raises:
        ConfigError: bad argument, not a model folder, or a decoder family whose attention cannot be
            made bidirectional through its config.
    """
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.base.modules import Normalize, Transformer
    from sentence_transformers.sentence_transformer.modules import Pooling

    from embedforge.models.loading import POOLING_MODES
    from embedforge.models.presets import resolve_model_path

    if pooling not in POOLING_MODES:
        raise ConfigError(f"unknown pooling {pooling!r}.{did_you_mean(pooling, POOLING_MODES)}")
    if padding_side not in PADDING_SIDES:
        raise ConfigError(f"padding_side must be one of {PADDING_SIDES}, got {padding_side!r}")
    if max_seq_length is not None and max_seq_length <= 0:
        raise ConfigError(f"max_seq_length must be a positive integer, got {max_seq_length}")
    folder = resolve_model_path(path)
    config = read_config(folder)
    if not config:
        raise ConfigError(f"{folder}: no config.json; pass a Hugging Face decoder model folder")
    if not is_decoder_config(config):
        raise ConfigError(
            f"{folder}: model_type {config.get('model_type')!r} is not a decoder LLM; load it with "
            "embedforge.models.load_model instead"
        )

    model_kwargs: dict[str, Any] = {"local_files_only": True, "dtype": resolve_dtype(dtype)}
    if attn_implementation is not None:
        model_kwargs["attn_implementation"] = attn_implementation
    transformer = Transformer(
        str(folder),
        model_kwargs=model_kwargs,
        processor_kwargs={"local_files_only": True},
        max_seq_length=max_seq_length,
        # Text only. An instruct LLM's chat template would otherwise add a "message" modality, which
        # is saved as a non-default modality_config that older sentence-transformers and serving
        # stacks cannot read (and that embedforge.models.save_model's legacy rewrite mangles).
        modality_config=dict(_TEXT_MODALITY),
        module_output_name="token_embeddings",
    )
    # The switch that transformers reads on every forward pass and writes into config.json on save.
    # (Passing it through ``config_kwargs`` does not work: ``from_pretrained`` drops keys that the
    # config class does not declare, and no decoder config declares ``is_causal``.)
    transformer.model.config.is_causal = not bidirectional
    _prepare_tokenizer(transformer.tokenizer, padding_side, folder)
    if bidirectional:
        _check_bidirectional(transformer.model, folder)
    modules: list[Any] = [
        transformer,
        Pooling(transformer.get_embedding_dimension(), pooling, include_prompt=include_prompt),
    ]
    if normalize:
        modules.append(Normalize())
    model = SentenceTransformer(modules=modules, device=device)
    model.eval()
    logger.info(
        "loaded decoder %s (%s, %s attention, %s pooling%s)",
        folder,
        config.get("model_type"),
        "bidirectional" if bidirectional else "causal",
        pooling,
        "" if include_prompt else ", prompt excluded",
    )
    return model


def set_bidirectional(model: SentenceTransformer, enabled: bool = True) -> SentenceTransformer:
    """Switch a loaded decoder SentenceTransformer between bidirectional and causal attention, in place.

    The switch is ``config.is_causal`` of the transformers model, read on every forward pass, so it
    takes effect at once and is saved with the model.
    """
    hf_model = transformers_model(model)
    config = hf_model.config
    if not is_decoder_config(config.to_dict()):
        raise ConfigError(f"model_type {config.model_type!r} is not a decoder LLM; its attention is fixed")
    config.is_causal = not enabled
    if enabled:
        _check_bidirectional(hf_model, config.model_type)
    return model


def is_bidirectional(model: SentenceTransformer) -> bool:
    """Whether the model's transformer attends bidirectionally (encoders always do)."""
    config = transformers_model(model).config
    if not is_decoder_config(config.to_dict()):
        return True
    return getattr(config, "is_causal", True) is False


def prompt_boundary_ok(model: SentenceTransformer, prompt: str, sample: str = "hello world") -> bool:
    """Whether ``prompt``'s tokens are a prefix of ``prompt + sample``'s tokens.

    sentence-transformers leaves a prompt out of the pooling (``include_prompt=False``) by counting
    the tokens of the prompt alone. With byte-level BPE tokenizers (SmolLM2, Qwen, Llama 3, GPT-2) a
    prompt ending in a space, e.g. ``"Query: "``, tokenizes alone as ``[..., ":", " "]`` but merges
    the space into the next word in the full text (``[..., ":", " hello"]``), so the count is one too
    high and the first word of every text is dropped from the pooling. Prompts that end in a newline
    or without whitespace are safe; this function tells which case a prompt is in.
    """
    tokenizer = model[0].tokenizer
    alone = list(tokenizer(prompt)["input_ids"])
    if alone and alone[-1] in set(tokenizer.all_special_ids):
        alone = alone[:-1]  # the trailing EOS/SEP that sentence-transformers also discounts
    full = list(tokenizer(prompt + sample)["input_ids"])
    return full[: len(alone)] == alone


def check_prompts(model: SentenceTransformer) -> list[str]:
    """Names of the model's prompts whose token boundary is unsafe for ``include_prompt=False`` (warned)."""
    pooling = next((module for module in model if hasattr(module, "include_prompt")), None)
    if pooling is None or pooling.include_prompt:
        return []
    prompts = model.prompts or {}
    unsafe = [name for name, prompt in prompts.items() if prompt and not prompt_boundary_ok(model, prompt)]
    for name in unsafe:
        logger.warning(
            "prompt %r (%r) does not end on a token boundary for this tokenizer: with include_prompt=False "
            "the first token of each text would be left out of the pooling too; end the prompt with a "
            "newline or without trailing whitespace",
            name,
            model.prompts[name],
        )
    return unsafe


def transformers_model(model: SentenceTransformer) -> PreTrainedModel:
    """The transformers model inside the first (Transformer) module of ``model``."""
    first = model[0]
    hf_model = getattr(first, "model", None)
    if hf_model is None or not hasattr(hf_model, "config"):
        raise ConfigError(f"the first module of the model is {type(first).__name__}, not a transformers Transformer")
    return hf_model


def probe_bidirectional(hf_model: PreTrainedModel, *, length: int = 6) -> bool:
    """Whether ``hf_model`` attends bidirectionally: does token 0's output change with the last token?

    Runs two tiny sequences (``length`` tokens, differing only in the last one) in eval mode and
    without gradients; the model's training mode is restored.
    """
    import torch

    vocab = int(hf_model.config.vocab_size)
    device = next(hf_model.parameters()).device
    generator = torch.Generator().manual_seed(0)
    first = torch.randint(3, vocab, (1, length), generator=generator)
    second = first.clone()
    second[0, -1] = (first[0, -1] + 1 + vocab // 2) % vocab
    batch = torch.cat([first, second]).to(device)
    was_training = hf_model.training
    hf_model.eval()
    try:
        with torch.no_grad():
            hidden = hf_model(input_ids=batch, attention_mask=torch.ones_like(batch)).last_hidden_state
    finally:
        hf_model.train(was_training)
    scale = hidden[:, 0].float().abs().max().clamp_min(1e-12)
    return bool(((hidden[0, 0] - hidden[1, 0]).float().abs().max() / scale) > 1e-5)


def _check_bidirectional(hf_model: PreTrainedModel, source: object) -> None:
    model_type = hf_model.config.model_type
    if model_type in DECODER_FAMILIES:
        return
    logger.warning(
        "%s: decoder family %r is not in embedforge's verified table; probing its attention", source, model_type
    )
    if not probe_bidirectional(hf_model):
        raise ConfigError(
            f"{source}: transformers does not honour `is_causal: false` for model_type {model_type!r} "
            "(token 0 still ignores later tokens), so a saved model would not load bidirectionally; "
            "use bidirectional=False or a family from embedforge.models.decoder.DECODER_FAMILIES"
        )


def _prepare_tokenizer(tokenizer: Any, padding_side: str, source: object) -> None:
    if tokenizer is None:
        raise ConfigError(f"{source}: no tokenizer found next to the model")
    tokenizer.padding_side = padding_side
    if tokenizer.pad_token is None:
        # Pads are masked out of attention and pooling, so any existing token will do; EOS is the
        # usual choice. Saved with the tokenizer, so plain loaders pad the same way.
        fallback = tokenizer.eos_token or tokenizer.unk_token
        if fallback is None:
            raise ConfigError(f"{source}: the tokenizer has no pad, eos or unk token to pad with")
        tokenizer.pad_token = fallback
        logger.info("%s: tokenizer has no pad token; padding with %r", source, fallback)


def resolve_dtype(dtype: str | torch.dtype | None) -> Any:
    """A torch dtype from a name (``"bfloat16"``), a dtype, ``"auto"``, or ``None`` (float32)."""
    import torch

    if dtype is None:
        return torch.float32
    if isinstance(dtype, torch.dtype) or dtype == "auto":
        return dtype
    resolved = getattr(torch, str(dtype), None)
    if not isinstance(resolved, torch.dtype) or not resolved.is_floating_point:
        raise ConfigError(f"dtype must be a floating torch dtype name such as 'bfloat16' or 'auto', got {dtype!r}")
    return resolved
