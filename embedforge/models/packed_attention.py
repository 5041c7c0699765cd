"""Padding-free ("packed") forward passes: a batch's texts run as one unpadded token sequence.

A padded batch of ``B`` texts costs ``B x L_max`` token positions in every linear layer; packed, the same
texts cost ``sum_i L_i`` (their real tokens). The texts are concatenated into one row ``(1, T)`` with
per-text ``position_ids`` (each text restarts at 0, so every token sits where it sits when encoded
alone) and the cumulative sequence lengths ``cu_seq_lens_q = [0, L_1, L_1 + L_2, ...]`` — the format of
transformers' ``DataCollatorWithFlattening`` and of flash-attention's varlen kernels. Only attention mixes
tokens, so only attention needs the boundaries; sentence-transformers' ``Pooling`` already pools such a
row per text (``cu_seq_lens_q`` in the features).

:func:`enable_packed_attention` switches a transformers model to the attention function registered here
(``embedforge_packed``, through transformers' public ``AttentionInterface`` / ``AttentionMaskInterface``):

* a packed call (``cu_seq_lens_q`` among the attention kwargs) runs each text's attention on its own:
  with ``torch.nn.attention.varlen.varlen_attn`` (flash-attention varlen, CUDA, fp16/bf16, no dropout)
  where it exists, else by regrouping the row into a ``(texts, L_max)`` batch for
  ``scaled_dot_product_attention`` (key-padding mask when bidirectional, ``is_causal`` when causal: right
  padding never reaches a real query) and back. The regrouped attention pads only *inside* attention,
  which is a small share of the FLOPs for short texts (``4 L d`` per token against ``24 d^2`` in the
  linear layers); the linear layers, norms and MLPs (MoE experts included) see only real tokens.
* any other call (a padded batch with an attention mask, e.g. ``encode`` at evaluation) is transformers'
  own SDPA attention, unchanged.

Causal or bidirectional is read the way SDPA reads it (the ``is_causal`` kwarg, else the module's
``is_causal``), so encoders, causal decoders and decoders made bidirectional with ``is_causal: false``
(``embedforge.models.decoder``) all work. ``tests/models/test_packed_attention.py`` checks embeddings and
gradients against the padded forward for an encoder, a decoder and an MoE decoder, causal and
bidirectional.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Sequence
from typing import Any

import torch

logger = logging.getLogger(__name__)

#: the attention implementation name registered with transformers
PACKED_ATTENTION = "embedforge_packed"
#: feature keys a packed batch carries besides ``input_ids`` / ``position_ids``
PACKED_KEYS = ("cu_seq_lens_q", "cu_seq_lens_k", "max_length_q", "max_length_k")

_varlen_state: dict[str, Any] = {}  # "fn": varlen_attn or None, "params": its parameter names, "failed": reason


def _varlen_fn() -> Any:
    """``torch.nn.attention.varlen.varlen_attn`` and its parameter names, or None (older torch)."""
    if "fn" not in _varlen_state:
        try:
            from torch.nn.attention.varlen import varlen_attn
        except ImportError:
            varlen_attn = None
        _varlen_state["fn"] = varlen_attn
        _varlen_state["params"] = set(inspect.signature(varlen_attn).parameters) if varlen_attn else set()
    return _varlen_state["fn"]


def _use_varlen(query: torch.Tensor, dropout: float) -> bool:
    return (
        query.is_cuda
        and query.dtype in (torch.float16, torch.bfloat16)
        and dropout == 0.0
        and "failed" not in _varlen_state
        and _varlen_fn() is not None
    )


def _varlen_attention(q, k, v, cu, max_len, causal, scaling, groups):
    """(T, H, D) queries, (T, H_kv, D) keys/values -> (T, H, D) with flash-attention varlen."""
    fn, params = _varlen_state["fn"], _varlen_state["params"]
    kwargs: dict[str, Any] = {"scale": scaling}
    if groups > 1:
        if "enable_gqa" in params:
            kwargs["enable_gqa"] = True
        else:
            k, v = k.repeat_interleave(groups, dim=1), v.repeat_interleave(groups, dim=1)
    if "is_causal" in params:  # torch 2.10/2.11
        kwargs["is_causal"] = causal
    elif causal:
        kwargs["window_size"] = (-1, 0)
    cu = cu.to(torch.int32)
    return fn(q, k, v, cu, cu, max_len, max_len, **kwargs)


class _Regroup(torch.autograd.Function):
    """``(1, H, T, D)`` packed rows -> ``(H, S * L, D)`` zero-padded, head-major; the gradient comes back token-major.

    The input is the attention module's ``(1, T, H * D)`` projection seen as ``(1, H, T, D)`` (transformers'
    ``view(...).transpose(1, 2)``). Its gradient is gathered into ``(T, H, D)`` memory and returned as the
    same ``(1, H, T, D)`` view, so the projection's ``view`` backward needs no copy; autograd's own
    ``index_copy`` (and ``select``) backward hand back head-major gradients, which that ``view`` then copied.
    """

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, slots: torch.Tensor, padded: int) -> torch.Tensor:
        ctx.save_for_backward(slots)
        heads, dim = x.shape[1], x.shape[-1]
        out = x.new_zeros(heads, padded, dim)
        out.transpose(0, 1).index_copy_(0, slots, x[0].transpose(0, 1))
        return out

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None, None]:
        (slots,) = ctx.saved_tensors
        return grad.transpose(0, 1).index_select(0, slots).transpose(0, 1).unsqueeze(0), None, None


class _Ungroup(torch.autograd.Function):
    """``(H, S * L, D)`` padded attention output -> ``(T, H, D)`` packed and contiguous (the caller's layout)."""

    @staticmethod
    def forward(ctx: Any, out: torch.Tensor, slots: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(slots)
        ctx.padded = out.shape[1]
        return out.transpose(0, 1).index_select(0, slots)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        (slots,) = ctx.saved_tensors
        padded = grad.new_zeros(grad.shape[1], ctx.padded, grad.shape[-1])
        padded.transpose(0, 1).index_copy_(0, slots, grad)
        return padded, None


def _regrouped_attention(q, k, v, cu, max_len, causal, scaling, dropout, groups, fast_dropout=False):
    """(1, H, T, D) queries, (1, H_kv, T, D) keys/values -> (T, H, D): each text's attention as a padded batch.

    The packed row is regrouped head-major, ``(H, S, L_max, D)`` with the heads as the batch dimension and the
    texts as SDPA's "heads" (attention is independent per (head, text), so the order of the two is free). In
    this layout every tensor the matmuls see is contiguous or a plain transpose of its last two dimensions;
    text-major ``(S, H, L, D)``, a transpose of the ``(S, L, H, D)`` regrouped rows, made ``matmul`` copy
    queries, keys, values and outputs in the forward pass and their gradients in the backward pass.
    :class:`_Regroup` / :class:`_Ungroup` move the rows so that the tensors handed back to the model (the
    output, the projections' gradients) are in its token-major layout.

    With ``fast_dropout`` (CPU training with attention dropout), the math path of
    :func:`embedforge.models.fast_dropout.math_attention` instead of SDPA's slow dropout.
    """
    texts = cu.shape[0] - 1
    lengths = cu[1:] - cu[:-1]  # (S,)
    steps = torch.arange(max_len, device=q.device)  # (L,)
    valid = steps[None, :] < lengths[:, None]  # (S, L) real token positions
    # slot of each packed token in the flattened (S * L) padded batch; index_copy / index_select move whole
    # (D,) rows per head and their backward passes are the other one (no accumulating scatter, which on CPU
    # cost more than the padding packing saves)
    slots = (torch.arange(texts, device=q.device)[:, None] * max_len + steps[None, :])[valid]  # (T,)

    def regroup(x: torch.Tensor) -> torch.Tensor:  # (1, H, T, D) -> (H, S, L, D), zeros in the padding
        return _Regroup.apply(x, slots, texts * max_len).view(x.shape[1], texts, max_len, x.shape[-1])

    qs, ks, vs = regroup(q), regroup(k), regroup(v)
    if groups > 1:
        ks, vs = ks.repeat_interleave(groups, dim=0), vs.repeat_interleave(groups, dim=0)
    mask = None if causal else valid[None, :, None, :]  # (1, S, 1, L) keys that exist
    if fast_dropout:
        from embedforge.models.fast_dropout import math_attention

        out = math_attention(qs, ks, vs, mask, dropout=dropout, scaling=scaling, is_causal=causal)
    else:
        out = torch.nn.functional.scaled_dot_product_attention(
            qs, ks, vs, attn_mask=mask, dropout_p=dropout, is_causal=causal, scale=scaling
        )  # (H, S, L, D)
    return _Ungroup.apply(out.reshape(out.shape[0], texts * max_len, out.shape[-1]), slots)  # (T, H, D)


def packed_attention_forward(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    dropout: float = 0.0,
    scaling: float | None = None,
    is_causal: bool | None = None,
    **kwargs: Any,
) -> tuple[torch.Tensor, None]:
    """transformers attention function: packed rows per text (see the module docstring), else SDPA.

    Shapes follow transformers' attention interface: ``query`` ``(B, H, T, D)``, ``key``/``value``
    ``(B, H_kv, T, D)``; returns ``(B, T, H, D)``.
    """
    cu = kwargs.get("cu_seq_lens_q")
    if cu is None:
        from transformers.integrations.sdpa_attention import sdpa_attention_forward

        return sdpa_attention_forward(
            module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, is_causal=is_causal, **kwargs
        )
    if query.shape[0] != 1:
        raise ValueError(f"a packed batch is one row of tokens, got {query.shape[0]} rows")
    causal = bool(is_causal if is_causal is not None else getattr(module, "is_causal", True))
    max_len = kwargs.get("max_length_q")
    max_len = int(max_len) if max_len is not None else int((cu[1:] - cu[:-1]).max())
    groups = query.shape[1] // key.shape[1]
    if _use_varlen(query, dropout):
        try:
            q, k, v = query[0].transpose(0, 1), key[0].transpose(0, 1), value[0].transpose(0, 1)  # (T, H, D)
            out = _varlen_attention(q, k, v, cu, max_len, causal, scaling, groups)
            return out.unsqueeze(0), None
        except (RuntimeError, TypeError, NotImplementedError) as error:  # pragma: no cover - GPU only
            _varlen_state["failed"] = repr(error)
            logger.warning("varlen flash attention failed (%s); using regrouped SDPA attention instead", error)
    from embedforge.models.fast_dropout import uses_fast_dropout

    fast = uses_fast_dropout(module, query, dropout)
    out = _regrouped_attention(query, key, value, cu, max_len, causal, scaling, dropout, groups, fast)
    return out.unsqueeze(0), None  # (1, T, H, D)


def _packed_mask(*args: Any, attention_mask: torch.Tensor | None = None, **kwargs: Any) -> torch.Tensor | None:
    """Mask function: no mask for an unpadded (packed) row, SDPA's mask for a padded batch."""
    from transformers.masking_utils import sdpa_mask

    if attention_mask is None:
        return None
    return sdpa_mask(*args, attention_mask=attention_mask, **kwargs)


def register_attention(name: str, forward: Any, mask: Any) -> str:
    """Register an attention function and its mask function with transformers under ``name``; returns ``name``.

    transformers' registries are plain mappings, so registering again is harmless.
    """
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface

    AttentionInterface.register(name, forward)
    AttentionMaskInterface.register(name, mask)
    return name


def register_packed_attention() -> str:
    """Register ``embedforge_packed`` with transformers; returns the name."""
    return register_attention(PACKED_ATTENTION, packed_attention_forward, _packed_mask)


def hf_model(model: Any) -> Any:
    """The transformers model inside a SentenceTransformer (or the model itself)."""
    from transformers import PreTrainedModel

    if isinstance(model, PreTrainedModel):
        return model
    for module in model.modules():
        if isinstance(module, PreTrainedModel):
            return module
    raise ValueError(f"{type(model).__name__} holds no transformers model")


def enable_packed_attention(model: Any) -> str:
    """Switch ``model`` (a SentenceTransformer or transformers model) to packed-capable attention.

    Returns the previous attention implementation, for :func:`disable_packed_attention`.
    """
    inner = hf_model(model)
    previous = inner.config._attn_implementation
    if previous == PACKED_ATTENTION:
        return previous
    if previous not in ("sdpa", "eager", None):
        logger.info("packed batches replace attention implementation %r by %s", previous, PACKED_ATTENTION)
    inner.set_attn_implementation(register_packed_attention())
    return previous or "sdpa"


def disable_packed_attention(model: Any, previous: str = "sdpa") -> None:
    """Restore the attention implementation ``enable_packed_attention`` replaced (before saving)."""
    inner = hf_model(model)
    if inner.config._attn_implementation == PACKED_ATTENTION:
        inner.set_attn_implementation(previous if previous != PACKED_ATTENTION else "sdpa")


def pack_token_ids(
    sequences: Sequence[Sequence[int]],
    *,
    position_offset: int = 0,
    token_type_ids: bool = False,
    device: torch.device | str | None = None,
) -> dict[str, Any]:
    """Pack token id lists into one unpadded row: the features a packed forward takes.

    Args:
        sequences: one token id list per text (already truncated, special tokens included).
        position_offset: added to every position (RoBERTa-style embeddings count from ``padding_idx + 1``).
        token_type_ids: also return all-zero ``token_type_ids`` (BERT-style models; their default buffer
            only covers ``max_position_embeddings`` tokens, a packed row can be longer).
        device: where the tensors go.

    Returns:
        ``input_ids`` and ``position_ids`` ``(1, T)``, ``cu_seq_lens_q`` / ``cu_seq_lens_k`` ``(S + 1,)`` int32,
        ``max_length_q`` / ``max_length_k`` (ints), and ``token_type_ids`` when asked.
    """
    if not sequences or any(len(s) == 0 for s in sequences):
        raise ValueError("every packed text needs at least one token")
    lengths = [len(s) for s in sequences]
    flat = [token for sequence in sequences for token in sequence]
    positions = [position + position_offset for length in lengths for position in range(length)]
    cu = [0]
    for length in lengths:
        cu.append(cu[-1] + length)
    cu_tensor = torch.tensor(cu, dtype=torch.int32, device=device)
    features: dict[str, Any] = {
        "input_ids": torch.tensor([flat], dtype=torch.long, device=device),
        "position_ids": torch.tensor([positions], dtype=torch.long, device=device),
        "cu_seq_lens_q": cu_tensor,
        "cu_seq_lens_k": cu_tensor,
        "max_length_q": max(lengths),
        "max_length_k": max(lengths),
    }
    if token_type_ids:
        features["token_type_ids"] = torch.zeros((1, len(flat)), dtype=torch.long, device=device)
    return features
