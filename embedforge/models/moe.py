"""Router load-balancing (auxiliary) loss for mixture-of-experts backbones, for any training loss.

transformers computes the MoE auxiliary loss only in ``*ForCausalLM.forward`` (``aux_loss``, added
to the LM loss as ``router_aux_loss_coef * aux_loss``). An embedding model runs the *base* model
(``Qwen2MoeModel``, ``OlmoeModel``, ``MixtralModel``, ...), which returns the per-layer router logits
only when asked (``output_router_logits=True``) and never the loss. sentence-transformers' losses call
``model(features)`` and read only the embeddings, so there is no place in them to add it.

:class:`RouterAuxLossCollector` fills the gap without touching any loss: forward hooks collect the
router logits of each layer and, after each forward pass that records gradients, compute the
family's own ``load_balancing_loss_func(router_logits, num_experts, top_k, attention_mask)``
(Switch Transformer eq. 4-6, padding excluded) — the very function and arguments ``*ForCausalLM``
uses (a test checks equality with its ``aux_loss``). The loss modifier
:class:`embedforge.losses.router_aux.RouterAuxLoss` resets the collector before the wrapped loss and adds
``coef * collector.pop()`` after it, returning ``{"loss": ..., "router_aux_loss": ...}`` so both parts are
logged.

    aux = (num_experts / L) * sum_layers sum_i f_i * P_i
    f_i: share of (real) tokens routed to expert i (top-k), P_i: mean router probability of expert i

With several forward passes per step (anchor, positive, negatives embedded separately) the step's
auxiliary loss is the mean over them. Forward passes without gradients (evaluation, the first pass of
GradCache-style cached losses) are not recorded.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from embedforge.errors import ConfigError

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer
    from transformers import PreTrainedModel

logger = logging.getLogger(__name__)


def _hf_model(model: SentenceTransformer | PreTrainedModel) -> PreTrainedModel:
    from transformers import PreTrainedModel

    from embedforge.models.decoder import transformers_model

    if isinstance(model, PreTrainedModel):
        return model

    return transformers_model(model)


def _experts(config: Any) -> tuple[int, int]:
    """(number of experts, experts per token) from a MoE config; naming differs between families."""
    num_experts = getattr(config, "num_experts", None) or getattr(config, "num_local_experts", None)
    top_k = getattr(config, "num_experts_per_tok", None)
    return int(num_experts or 0), int(top_k or 0)


def _load_balancing_loss_func(hf_model: PreTrainedModel) -> Callable[..., Any] | None:
    # every transformers MoE family defines its own copy next to its model class
    return getattr(sys.modules.get(type(hf_model).__module__), "load_balancing_loss_func", None)


def is_moe(model: SentenceTransformer | PreTrainedModel) -> bool:
    """Whether the model is a mixture-of-experts transformer whose router loss embedforge can compute."""
    hf_model = _hf_model(model)
    num_experts, top_k = _experts(hf_model.config)
    has_loss = _load_balancing_loss_func(hf_model) is not None
    return num_experts > 1 and top_k > 0 and has_loss and bool(_router_modules(hf_model))


def router_aux_loss_coef(model: SentenceTransformer | PreTrainedModel) -> float:
    """The model's own coefficient (``config.router_aux_loss_coef``, e.g. 0.001 for Qwen2-MoE)."""
    return float(getattr(_hf_model(model).config, "router_aux_loss_coef", 0.0) or 0.0)


class RouterAuxLossCollector:
    """Records the router load-balancing loss of every gradient-recording forward pass of a MoE model.

    Hooks: a pre-hook on the SentenceTransformer's ``Transformer`` module takes the batch's attention
    mask, hooks on the router modules (those transformers itself records ``router_logits`` from,
    ``PreTrainedModel._can_record_outputs``) collect each layer's router logits, and a hook after the
    module computes the loss. (Hooks on the transformers model itself would never fire:
    sentence-transformers calls ``model.forward(...)`` directly, not ``model(...)``.)

    Args:
        model: a SentenceTransformer whose transformer is a MoE family.

    Example::

        collector = RouterAuxLossCollector(model)
        collector.reset()
        loss = loss_fn(features, labels)          # any loss; calls model(features) once or more
        aux = collector.pop()                     # mean over those calls, or None
        if aux is not None:
            loss = loss + router_aux_loss_coef(model) * aux
    """

    def __init__(self, model: SentenceTransformer) -> None:
        from transformers import PreTrainedModel

        if isinstance(model, PreTrainedModel):
            raise ConfigError("RouterAuxLossCollector needs the SentenceTransformer, not the transformers model")
        hf_model = _hf_model(model)
        routers = _router_modules(hf_model)
        if not is_moe(hf_model):
            raise ConfigError(
                f"model_type {hf_model.config.model_type!r} is not a mixture-of-experts model with a router loss"
            )
        self.num_experts, self.top_k = _experts(hf_model.config)
        self._loss_func = _load_balancing_loss_func(hf_model)
        self.losses: list[torch.Tensor] = []
        self._mask: torch.Tensor | None = None
        self._logits: list[torch.Tensor] | None = None  # of the forward pass in progress
        self._handles = [
            model[0].register_forward_pre_hook(self._start),
            model[0].register_forward_hook(self._finish),
        ]
        for router, index in routers:
            self._handles.append(router.register_forward_hook(self._router_hook(index)))

    def _start(self, module: nn.Module, args: tuple) -> None:
        if not torch.is_grad_enabled():
            self._logits = None
            return
        # a dict from the trainer's collator, or a BatchEncoding (a Mapping, not a dict) from preprocess()
        features = args[0] if args and isinstance(args[0], Mapping) else {}
        mask = features.get("attention_mask")
        self._mask = mask if isinstance(mask, torch.Tensor) and mask.dim() == 2 else None
        self._logits = []

    def _router_hook(self, index: int) -> Callable[[nn.Module, tuple, Any], None]:
        def record(module: nn.Module, args: tuple, output: Any) -> None:
            if self._logits is not None:
                self._logits.append(output[index] if isinstance(output, (tuple, list)) else output)

        return record

    def _finish(self, module: nn.Module, args: tuple, output: Any) -> None:
        if self._logits:
            # rows of each layer's logits are the batch's tokens, flattened like the mask
            self.losses.append(self._loss_func(tuple(self._logits), self.num_experts, self.top_k, self._mask))
        self._logits, self._mask = None, None

    def reset(self) -> None:
        """Forget what was recorded (call before each training step's loss)."""
        self.losses.clear()

    def pop(self) -> torch.Tensor | None:
        """The mean auxiliary loss over the forward passes since :meth:`reset` (then reset), or ``None``."""
        if not self.losses:
            return None
        loss = torch.stack([loss.to(self.losses[0].device) for loss in self.losses]).mean()
        self.reset()
        return loss

    def remove(self) -> None:
        """Detach the hooks from the model."""
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        self.reset()


def _router_modules(hf_model: PreTrainedModel) -> list[tuple[nn.Module, int]]:
    """(module, output index) of every router, from transformers' own ``router_logits`` recorder spec."""
    from transformers.utils.output_capturing import OutputRecorder

    spec = (getattr(hf_model, "_can_record_outputs", None) or {}).get("router_logits")
    specs = spec if isinstance(spec, (list, tuple)) else [spec] if spec is not None else []
    found = []
    for item in specs:
        recorder = item if isinstance(item, OutputRecorder) else OutputRecorder(target_class=item)
        for name, module in hf_model.named_modules():
            by_class = recorder.target_class is not None and isinstance(module, recorder.target_class)
            by_name = recorder.class_name is not None and name.endswith(recorder.class_name)
            in_layer = recorder.layer_name is None or f".{recorder.layer_name.strip('.')}." in f".{name}."
            if (by_class or by_name) and in_layer:
                found.append((module, recorder.index))
    return found
