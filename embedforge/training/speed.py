"""Training speed options: tokenize once, padding-free batches, fast dropout, bf16 weights, fused AdamW, compile,
Liger.

One dataclass, :class:`TrainingSpeed`, passed whole to :class:`~embedforge.training.trainer.EmbedforgeTrainer`
(a train stage's ``speed:`` mapping). What each option does and why:

``pretokenize`` (default on)
    Every training text is tokenized once, before the first step, and cached
    (:class:`~embedforge.data.collator.PretokenizedCollator`); batches are list look-ups. The length-grouped
    sampler reads its token counts from the same cache.
``packing`` (``auto``: when the model supports it)
    Padding-free batches (:mod:`embedforge.models.packed_attention`): every column of a batch is one unpadded
    row, attention runs per text. Supported: a ``Transformer`` module followed by ``Pooling`` (any mode), SDPA or
    eager attention (switched to ``embedforge_packed``) or flash-attention (native), no sliding window shorter
    than the training length.
``fast_dropout`` (``auto``: on CPU, when the model has dropout)
    Dropout masks from cheap 16-bit random draws instead of one Mersenne-Twister draw per element, in the
    hidden layers and in attention (:mod:`embedforge.models.fast_dropout`; same distribution, ``p`` rounded to
    1/65536). CPU dropout was half of a BERT-style forward pass; CUDA's dropout is already cheap.
``merged_embedding_grad`` (``auto``: on CPU, in a single process)
    The input-embedding gradient is built once per backward pass from all of the step's lookups (one zero-filled
    ``vocab x hidden`` tensor and one ``index_add_``) instead of once per column plus full-size additions
    (:mod:`embedforge.models.embedding_grad`; the same gradient). Bypasses ``AccumulateGrad``, so never with
    DDP / FSDP / DeepSpeed.
``bf16_weights`` (``auto``: with bf16 training on CUDA)
    Keep the model's weights in bf16 and the optimizer's master weights and moments in fp32
    (:class:`MasterWeightAdamW`), instead of fp32 weights under autocast: autocast casts every fp32 weight to
    bf16 in every forward (14% of CUDA time on the first GPU run). Autocast is switched off (the weights
    already are bf16); the loss upcasts its logits to fp32 as before.
``fused_optimizer`` (``auto``: on CUDA)
    ``torch.optim.AdamW(fused=True)`` (one kernel for all parameters; ``optim="adamw_torch_fused"``, which is
    also the Trainer's own default since transformers 5).
``compile`` (default off)
    ``torch.compile`` the transformer in place (``nn.Module.compile``, dynamic shapes: packed rows change length
    every step). Compilation takes minutes; worth it only for long runs.
``liger`` (default off)
    Liger's Triton kernels (fused RMSNorm, SwiGLU MLP, rotary) for decoder families Liger supports
    (``pip install liger-kernel``; CUDA only).
"""

from __future__ import annotations

import dataclasses
import inspect
import logging
from dataclasses import dataclass
from typing import Any

import torch

from embedforge.errors import ConfigError

logger = logging.getLogger(__name__)

_AUTO = "auto"


@dataclass
class TrainingSpeed:
    """How a train stage runs fast (see the module docstring); ``auto`` decides from the model and device."""

    pretokenize: bool = True  # tokenize every text once before training (cached), never in the training step
    packing: bool | str = _AUTO  # padding-free batches; auto = when the model supports them
    bf16_weights: bool | str = _AUTO  # bf16 weights + fp32 master weights instead of autocast; auto = bf16 on CUDA
    fused_optimizer: bool | str = _AUTO  # fused AdamW kernel; auto = on CUDA
    fast_dropout: bool | str = _AUTO  # dropout from cheap random bits; auto = on CPU when the model has dropout
    merged_embedding_grad: bool | str = _AUTO  # one embedding gradient per backward; auto = CPU, one process
    compile: bool = False  # torch.compile the transformer (dynamic shapes)
    liger: bool = False  # Liger Triton kernels for supported decoder families (pip install liger-kernel)

    @classmethod
    def from_dict(cls, values: dict[str, Any] | None, where: str = "speed") -> TrainingSpeed:
        """Build from a recipe mapping; unknown keys and bad values are errors naming the key."""
        from embedforge.errors import did_you_mean

        values = dict(values or {})
        names = {f.name: f for f in dataclasses.fields(cls)}
        for key, value in values.items():
            if key not in names:
                raise ConfigError(f"{where}.{key}: unknown speed option.{did_you_mean(key, names)}")
            allows_auto = "str" in str(names[key].type)
            if not isinstance(value, bool) and not (allows_auto and value == _AUTO):
                expected = "true, false or 'auto'" if allows_auto else "true or false"
                raise ConfigError(f"{where}.{key}: expected {expected}, got {value!r}")
        return cls(**values)


def packing_unsupported(model: Any) -> str | None:
    """Why ``model`` (a SentenceTransformer) cannot train on packed batches, or None when it can."""
    from sentence_transformers.sentence_transformer.modules import Pooling

    from embedforge.models.packed_attention import PACKED_ATTENTION

    modules = list(model.children()) if hasattr(model, "children") else []
    if len(modules) < 2 or not hasattr(modules[0], "modality_config") or not isinstance(modules[1], Pooling):
        return "the model is not Transformer -> Pooling"
    first = modules[0]
    if list(first.modality_config) != ["text"] or first.modality_config["text"].get("method") != "forward":
        return "the transformer is not a plain text model"
    config = first.auto_model.config
    implementation = getattr(config, "_attn_implementation", None) or "sdpa"
    if implementation not in ("sdpa", "eager", PACKED_ATTENTION) and not implementation.startswith("flash_attention"):
        return f"attention implementation {implementation!r} has no packed path"
    window = getattr(config, "sliding_window", None)
    if window and (model.max_seq_length or 0) > window and getattr(config, "use_sliding_window", True):
        return f"sliding-window attention ({window} tokens) is shorter than the training length"
    return None


def resolve_packing(speed: TrainingSpeed, model: Any) -> bool:
    """Whether to pack: as given (True on an unsupported model is an error); auto = when the model supports it.

    ``auto`` packs on CPU too since the regrouped attention moves rows with ``index_copy``/``index_select``
    (before, its accumulating scatters made packed CPU steps slower than length-grouped padding). On this
    project's idle 2-core CPU (MiniLM-L6, 3,000 Debian pairs + 3,000 SNLI triplets, 187 steps of 32), packed
    batches trained in 142.7 s and padded ones in 153.3 s in one run (``python
    benchmarks/train_vs_sentence_transformers.py --speed default packing=false``; docs/BENCHMARKS.md).
    """
    reason = packing_unsupported(model) if speed.packing else None
    if speed.packing is True and reason is not None:
        raise ConfigError(f"speed.packing: {reason}; set packing: false (or auto)")
    if speed.packing == _AUTO and reason is not None:
        logger.info("padding-free batches off: %s", reason)
    return bool(speed.packing) and reason is None


def resolve_bf16_weights(speed: TrainingSpeed, bf16: bool) -> bool:
    """bf16 weights: as given, or (auto) with bf16 training on CUDA."""
    if speed.bf16_weights == _AUTO:
        return bool(bf16 and torch.cuda.is_available())
    return bool(speed.bf16_weights)


def resolve_fused(speed: TrainingSpeed) -> bool:
    """Fused AdamW: as given, or (auto) on CUDA."""
    return torch.cuda.is_available() if speed.fused_optimizer == _AUTO else bool(speed.fused_optimizer)


def resolve_fast_dropout(speed: TrainingSpeed, model: Any) -> bool:
    """Fast dropout: as given, or (auto) when training on CPU a model that has dropout."""
    if speed.fast_dropout != _AUTO:
        return bool(speed.fast_dropout)
    from embedforge.models.fast_dropout import has_dropout

    return not torch.cuda.is_available() and has_dropout(model)


def resolve_merged_embedding_grad(speed: TrainingSpeed, world_size: int) -> bool:
    """Merged embedding gradient: as given (refused with several processes), or (auto) on CPU in one process."""
    if speed.merged_embedding_grad is True and world_size > 1:
        raise ConfigError(
            "speed.merged_embedding_grad: not with several processes (DDP/FSDP/DeepSpeed read gradients through "
            "autograd's accumulation hooks, which it bypasses); set it to auto or false"
        )
    if speed.merged_embedding_grad == _AUTO:
        return not torch.cuda.is_available() and world_size == 1
    return bool(speed.merged_embedding_grad)


def apply_kernels(model: Any, speed: TrainingSpeed) -> list[str]:
    """Liger kernels and ``torch.compile`` on the transformer inside ``model``; returns what was applied."""
    from embedforge.models.packed_attention import hf_model

    inner = hf_model(model)
    applied = []
    if speed.liger:
        applied.append(apply_liger(inner))
    if speed.compile:
        inner.compile(dynamic=True)
        applied.append("torch.compile(dynamic=True)")
    return applied


def apply_liger(inner: torch.nn.Module) -> str:
    """Patch ``inner`` (a transformers model) with Liger's kernels for its family (rotary, RMSNorm, SwiGLU)."""
    try:
        import liger_kernel.transformers as liger
    except ImportError as error:
        raise ImportError("speed.liger needs Liger's kernels: pip install liger-kernel (CUDA only)") from error
    model_type = inner.config.model_type
    apply = getattr(liger, f"apply_liger_kernel_to_{model_type}", None)
    if apply is None:
        raise ConfigError(f"speed.liger: Liger has no kernels for model type {model_type!r}; set liger: false")
    wanted = {"rope": True, "rms_norm": True, "swiglu": True, "cross_entropy": False}
    wanted["fused_linear_cross_entropy"] = False
    params = inspect.signature(apply).parameters
    apply(model=inner, **{k: v for k, v in wanted.items() if k in params})
    return f"liger ({model_type})"


class MasterWeightAdamW(torch.optim.Optimizer):
    """AdamW over fp32 master copies of (bf16) model parameters.

    Each step: the parameters' (bf16) gradients are copied into the fp32 masters, ``torch.optim.AdamW`` (fused
    when asked) updates the masters and its fp32 moments, and the masters are rounded back into the model's
    parameters. The model computes in bf16 without autocast; small updates accumulate in fp32 instead of
    vanishing below bf16's 8-bit mantissa (mixed precision with master weights, Micikevicius et al. 2018,
    "Mixed Precision Training").

    Args:
        params: the model's parameters or parameter groups (as for any optimizer).
        fused: use the fused AdamW kernel.
        **defaults: AdamW's ``lr``, ``betas``, ``eps``, ``weight_decay``.
    """

    def __init__(self, params: Any, *, fused: bool | None = None, **defaults: Any) -> None:
        groups = list(params)
        if groups and not isinstance(groups[0], dict):
            groups = [{"params": groups}]
        self._pairs: list[tuple[torch.nn.Parameter, torch.Tensor]] = []
        master_groups = []
        for group in groups:
            masters = []
            for param in group["params"]:
                master = param.detach().float().clone().requires_grad_(True)
                self._pairs.append((param, master))
                masters.append(master)
            master_groups.append({**group, "params": masters})
        self.inner = torch.optim.AdamW(master_groups, fused=fused, **defaults)
        super().__init__([p for p, _ in self._pairs], self.inner.defaults)
        self.param_groups = self.inner.param_groups  # the scheduler's lr changes reach the inner optimizer
        self.state = self.inner.state

    @torch.no_grad()
    def step(self, closure: Any = None) -> Any:
        loss = closure() if closure is not None else None
        for param, master in self._pairs:
            master.grad = None if param.grad is None else param.grad.detach().to(torch.float32)
        self.inner.step()
        for param, master in self._pairs:
            param.copy_(master)  # rounds to the parameter's dtype
        return loss

    def zero_grad(self, set_to_none: bool = True) -> None:
        for param, master in self._pairs:
            master.grad = None
            if param.grad is not None:
                if set_to_none:
                    param.grad = None
                else:
                    param.grad.zero_()

    def state_dict(self) -> dict[str, Any]:
        return {"inner": self.inner.state_dict(), "masters": [master.detach().clone() for _, master in self._pairs]}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.inner.load_state_dict(state_dict["inner"])
        with torch.no_grad():
            for (param, master), saved in zip(self._pairs, state_dict["masters"], strict=True):
                master.copy_(saved)
                param.copy_(saved)
