"""Dropout with cheap random bits, for training on CPU: the same distribution, a quarter of the RNG work.

On CPU, ``torch.nn.functional.dropout`` draws one Mersenne-Twister number per element (``bernoulli_``), and
``scaled_dot_product_attention`` with ``dropout_p > 0`` leaves its fused kernel for the materializing math path
with that same slow draw. For a BERT-style encoder (hidden and attention-probability dropout 0.1) that is half of
the forward pass: all-MiniLM-L6-v2, length-grouped batches of 32 Debian pairs up to 128 tokens, 2 cores, forward
613 ms with ``nn.Dropout``, 412 ms with a first version of this module (torch's own random words, masks applied
with ``where``), 310 ms with no dropout at all; SFC64 words and one float multiplier then took a further 3% off
whole training steps (``python benchmarks/train_vs_sentence_transformers.py --speed default fast_dropout=false``
measures whole runs with and without it).

What is the same: every element is dropped independently with probability ``p`` and the kept ones scaled by
``1 / (1 - p)``, in the forward of the training step only (``eval()`` is the identity). What differs: the bits are
64-bit words of numpy's SFC64 generator cut into four 16-bit draws, so ``p`` is rounded to a multiple of
``1/65536`` (0.1 -> 0.100006; the scale uses the rounded value, so the expectation is preserved exactly), and the
mask is applied as a multiplication by a boolean keep mask, then by ``1/(1-p)`` (autograd saves the boolean).
Each mask's SFC64 seed is drawn from torch's default generator, so seeds, checkpoint RNG states and GradCache's
replayed forward passes behave as with ``nn.Dropout``.

:func:`enable_fast_dropout` swaps a model's ``nn.Dropout`` modules for :class:`FastDropout` (a subclass, same
``p``) and its SDPA attention for ``embedforge_sdpa`` (registered with transformers' ``AttentionInterface``):
SDPA itself whenever no dropout applies (evaluation, ``p = 0``, CUDA), and on CPU training with attention dropout
the math path ``softmax(q k^T * scale + mask)``, dropped with the cheap bits, times ``v``.
:func:`disable_fast_dropout` restores both (the trainer calls it when training ends).
"""

from __future__ import annotations

import logging
import math
from typing import Any

import numpy as np
import torch

logger = logging.getLogger(__name__)

#: the attention implementation name registered with transformers
FAST_DROPOUT_ATTENTION = "embedforge_sdpa"
#: attribute set on every module of a model whose dropout is fast (read by the attention functions)
FLAG = "embedforge_fast_dropout"
_LEVELS = 65536  # draws are 16-bit


def random_bits(count: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """``count`` uniform 16-bit draws (int16, every value equally likely).

    On CPU: one 62-bit seed from torch's default generator, then numpy's SFC64 generator for the words (2.6x
    faster than torch's Mersenne Twister here: 2.9 ms against 7.6 ms for 1.5 M 64-bit words), so
    ``torch.manual_seed`` and restored RNG states still decide every mask. Elsewhere: torch's own ``random_``.
    (Filling chunks of the words on two threads made a mask 2x faster alone but whole training steps only 0.4%:
    measured, not kept.)
    """
    words = (count + 3) // 4
    if torch.device(device).type == "cpu":
        seed = int(torch.randint(0, 2**62, (1,)))
        raw = np.random.SFC64(seed).random_raw(words).view(np.int64)
        return torch.from_numpy(raw).view(torch.int16)[:count]
    return torch.empty(words, dtype=torch.int64, device=device).random_(-(2**63), None).view(torch.int16)[:count]


def dropout_keep(
    shape: torch.Size | tuple[int, ...], p: float, device: torch.device | str = "cpu"
) -> tuple[torch.Tensor, float]:
    """Dropout's draw as ``(keep, scale)``: a boolean tensor, False with probability ``p`` (rounded to 1/65536),
    and the ``1 / (1 - p)`` of the rounded ``p``; ``x * keep * scale`` is dropout, with expectation exactly ``x``.

    Multiplying by the boolean tensor directly (type promotion casts it on the fly), autograd keeps one byte per
    element for the backward pass instead of a float multiplier's four (training steps took the same time).
    """
    if not 0.0 <= p < 1.0:
        raise ValueError(f"dropout probability must be in [0, 1), got {p}")
    numel = math.prod(int(size) for size in shape)
    threshold = round(p * _LEVELS)
    bits = random_bits(numel, device).view(shape)
    return bits >= (threshold - _LEVELS // 2), _LEVELS / (_LEVELS - threshold)


def dropout_mask(
    shape: torch.Size | tuple[int, ...],
    p: float,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str = "cpu",
) -> torch.Tensor:
    """The multiplier of dropout: 0 with probability ``p`` (rounded to 1/65536), else ``1 / (1 - p)``.

    ``x * dropout_mask(x.shape, p, x.dtype, x.device)`` is dropout; its expectation is exactly 1 (the scale is
    computed from the rounded ``p``). The same draw as :func:`dropout_keep`.
    """
    keep, scale = dropout_keep(shape, p, device)
    return keep.to(dtype).mul_(scale)


def fast_dropout(x: torch.Tensor, p: float, training: bool = True) -> torch.Tensor:
    """Functional form of :class:`FastDropout`."""
    if not training or p == 0.0:
        return x
    keep, scale = dropout_keep(x.shape, p, x.device)
    return (x * keep).mul_(scale)  # autograd keeps the boolean mask for the backward pass


class FastDropout(torch.nn.Dropout):
    """``nn.Dropout`` drawing its mask from cheap 16-bit random draws (see the module docstring)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.inplace or x.device.type != "cpu":
            return super().forward(x)  # CUDA's Philox dropout is already cheap
        return fast_dropout(x, self.p, self.training)


class _MaskedScores(torch.autograd.Function):
    """``bias + scale * q k^T`` for ``(N, L, D)`` queries and keys as one ``baddbmm`` (no pass for the scale or
    the mask), whose backward gives both gradients in the ``(N, L, D)`` layout the inputs came in.

    Autograd's own ``baddbmm`` backward scales each gradient in a pass of its own and hands back the keys'
    gradient transposed (``q^T g``), which the reshape before it then copies; here both are a ``baddbmm``
    with ``beta = 0``: ``g k * scale`` and ``g^T q * scale``. The (mask) bias gets no gradient.
    """

    @staticmethod
    def forward(ctx: Any, bias: torch.Tensor, query: torch.Tensor, key: torch.Tensor, scale: float) -> torch.Tensor:
        ctx.save_for_backward(query, key)
        ctx.scale = scale
        return torch.baddbmm(bias, query, key.transpose(1, 2), alpha=scale)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[None, torch.Tensor, torch.Tensor, None]:
        query, key = ctx.saved_tensors
        unused = grad.new_zeros(())
        grad_query = torch.baddbmm(unused, grad, key, beta=0, alpha=ctx.scale)
        grad_key = torch.baddbmm(unused, grad.transpose(1, 2), query, beta=0, alpha=ctx.scale)
        return None, grad_query, grad_key, None


def math_attention(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    mask: torch.Tensor | None,
    *,
    dropout: float,
    scaling: float | None,
    is_causal: bool = False,
) -> torch.Tensor:
    """``softmax(q k^T * scaling + mask)`` with fast dropout, times ``v``: ``(B, H, L, D)`` -> ``(B, H, L, D)``.

    ``mask`` is boolean (True = attend) or additive, broadcastable to ``(B, H, Lq, Lk)``; ``is_causal`` (without a
    mask) masks future keys. Masked scores are set to the dtype's lowest value, as transformers' eager attention
    does (a query with no visible key gets uniform weights instead of NaN).
    """
    groups = query.shape[1] // key.shape[1]
    if groups > 1:
        key, value = key.repeat_interleave(groups, dim=1), value.repeat_interleave(groups, dim=1)
    scale = scaling if scaling is not None else query.shape[-1] ** -0.5
    q_len, k_len = query.shape[-2], key.shape[-2]
    if mask is None and is_causal:
        mask = torch.ones(q_len, k_len, dtype=torch.bool, device=query.device).tril(k_len - q_len)
    if mask is None:
        scores = (query * scale) @ key.transpose(-1, -2)
    else:
        if mask.dtype == torch.bool:
            zero = torch.zeros((), dtype=query.dtype, device=query.device)
            bias = torch.where(mask, zero, zero + torch.finfo(query.dtype).min)
        else:
            bias = mask.to(query.dtype)
        batch = torch.broadcast_shapes(query.shape[:-2], key.shape[:-2])
        bias = bias.expand(*batch, bias.shape[-2], k_len).reshape(-1, bias.shape[-2], k_len)
        q3 = query.expand(*batch, q_len, query.shape[-1]).reshape(-1, q_len, query.shape[-1])
        k3 = key.expand(*batch, k_len, key.shape[-1]).reshape(-1, k_len, key.shape[-1])
        if bias.requires_grad:  # a learned additive bias keeps autograd's own baddbmm
            scores = torch.baddbmm(bias, q3, k3.transpose(1, 2), alpha=scale)
        else:
            scores = _MaskedScores.apply(bias, q3, k3, scale)
        scores = scores.view(*batch, q_len, k_len)
    weights = scores.softmax(dim=-1)
    if dropout > 0.0:  # the 1 / (1 - p) on the (L x D) output rather than the (L x L) weights
        keep, keep_scale = dropout_keep(weights.shape, dropout, weights.device)
        return ((weights * keep) @ value).mul_(keep_scale)
    return weights @ value


def uses_fast_dropout(module: torch.nn.Module, query: torch.Tensor, dropout: float) -> bool:
    """Whether an attention call should take the math path with fast dropout."""
    return dropout > 0.0 and query.device.type == "cpu" and module.training and getattr(module, FLAG, False)


def fast_dropout_attention_forward(
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
    """transformers attention function: SDPA, except CPU training with attention dropout (the math path).

    Shapes follow transformers' attention interface: ``query`` ``(B, H, L, D)``; returns ``(B, L, H, D)``.
    """
    if not uses_fast_dropout(module, query, dropout):
        from transformers.integrations.sdpa_attention import sdpa_attention_forward

        return sdpa_attention_forward(
            module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, is_causal=is_causal, **kwargs
        )
    causal = bool(is_causal if is_causal is not None else getattr(module, "is_causal", False))
    causal = causal and attention_mask is None and query.shape[2] > 1
    out = math_attention(query, key, value, attention_mask, dropout=dropout, scaling=scaling, is_causal=causal)
    return out.transpose(1, 2).contiguous(), None


def register_fast_dropout_attention() -> str:
    """Register ``embedforge_sdpa`` (SDPA's masks, :func:`fast_dropout_attention_forward`); returns the name."""
    from transformers.masking_utils import sdpa_mask

    from embedforge.models.packed_attention import register_attention

    return register_attention(FAST_DROPOUT_ATTENTION, fast_dropout_attention_forward, sdpa_mask)


def has_dropout(model: torch.nn.Module) -> bool:
    """Whether ``model`` drops anything in training (a dropout module or a config dropout above 0)."""
    if any(isinstance(m, torch.nn.Dropout) and m.p > 0 for m in model.modules()):
        return True
    from embedforge.models.packed_attention import hf_model

    try:
        config = hf_model(model).config
    except ValueError:
        return False
    names = ("attention_probs_dropout_prob", "attention_dropout")
    return any(float(getattr(config, name, 0.0) or 0.0) > 0 for name in names)


def enable_fast_dropout(model: torch.nn.Module) -> dict[str, Any]:
    """Give ``model`` (a SentenceTransformer or transformers model) fast dropout; returns what to restore.

    Every ``nn.Dropout`` becomes a :class:`FastDropout` of the same ``p``; SDPA attention becomes ``embedforge_sdpa``
    (packed attention takes the same math path by itself; eager or flash attention keep their own dropout).
    """
    from embedforge.models.packed_attention import hf_model

    swapped = []
    for parent in model.modules():
        for name, child in list(parent.named_children()):
            if type(child) is torch.nn.Dropout:
                replacement = FastDropout(child.p, child.inplace)
                replacement.train(child.training)
                setattr(parent, name, replacement)
                swapped.append((parent, name, child))
    for module in model.modules():
        setattr(module, FLAG, True)
    state: dict[str, Any] = {"swapped": swapped, "attention": None}
    try:
        inner = hf_model(model)
    except ValueError:
        return state
    current = inner.config._attn_implementation or "sdpa"
    if current == "sdpa":
        inner.set_attn_implementation(register_fast_dropout_attention())
        state["attention"] = current
    return state


def disable_fast_dropout(model: torch.nn.Module, state: dict[str, Any]) -> None:
    """Undo :func:`enable_fast_dropout` (the saved or served model is back to ``nn.Dropout`` and its attention)."""
    from embedforge.models.packed_attention import hf_model

    for parent, name, original in state.get("swapped", []):
        current = getattr(parent, name, None)
        if isinstance(current, FastDropout):
            original.train(current.training)
            setattr(parent, name, original)
    for module in model.modules():
        if hasattr(module, FLAG):
            delattr(module, FLAG)
    if state.get("attention"):
        inner = hf_model(model)
        if inner.config._attn_implementation == FAST_DROPOUT_ATTENTION:
            inner.set_attn_implementation(state["attention"])
