"""The MoE router load-balancing loss as a loss modifier (Switch Transformer; transformers' MoE families)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from embedforge.errors import ConfigError
from embedforge.losses._wrapped import ForwardsWrappedOptions
from embedforge.models.moe import RouterAuxLossCollector, router_aux_loss_coef

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer


class RouterAuxLoss(ForwardsWrappedOptions, nn.Module):
    """Wrap a loss so that it adds the mixture-of-experts router load-balancing loss.

    In plain words: an embedding model runs the MoE *base* model, which never computes the router loss that
    ``*ForCausalLM`` adds in pre-training; without it the router may send every token to a few experts. This
    modifier adds it to any training loss.

    Formula: ``L_total = L(features, labels) + coef · aux``, with ``aux`` the family's own
    ``load_balancing_loss_func`` (Switch Transformer eq. 4-6, padding excluded) averaged over the model calls
    the wrapped loss makes (:class:`~embedforge.models.moe.RouterAuxLossCollector`). Returns
    ``{"loss": L, "router_aux_loss": coef · aux}`` (the sentence-transformers trainer sums the dict and logs each
    part).

    GradCache cannot carry the term: its first embedding pass runs without gradients, and the passes with
    gradients run inside the backward pass, after the loss has been returned. ``build_objective`` refuses the
    combination; wrapping a cached loss here would silently add nothing.

    Args:
        model: the SentenceTransformer being trained (a MoE backbone).
        loss: any sentence-transformers-style loss (``forward(features, labels)``).
        coef: weight of the auxiliary loss; ``None`` takes the model's ``router_aux_loss_coef``.
        collector: a collector to share between several wrapped losses of the same model (e.g. one
            loss per dataset); ``None`` creates one. Each collector hooks the model and records every
            forward pass, so losses of one model must share one.

    References:
        - Fedus et al., Switch Transformers, JMLR 2022 (https://arxiv.org/abs/2101.03961), eq. 4-6.

    Inputs:
        +---------------------------------+---------------------------------+
        | Inputs                          | Labels                          |
        +=================================+=================================+
        | the wrapped loss's              | the wrapped loss's              |
        +---------------------------------+---------------------------------+

    Relations:
        - The outermost modifier (GradCache -> Matryoshka -> router aux): Matryoshka embeds once per step, so
          the term is counted once. Reads and writes the wrapped loss's options.

    Example:
        ::

            collector = RouterAuxLossCollector(model)
            loss = RouterAuxLoss(model, InfoNCELoss(model), coef=0.001, collector=collector)
    """

    def __init__(
        self,
        model: SentenceTransformer,
        loss: nn.Module,
        coef: float | None = None,
        collector: RouterAuxLossCollector | None = None,
    ) -> None:
        super().__init__()
        if coef is not None and coef < 0:
            raise ConfigError(f"router aux loss coef must be >= 0, got {coef}")
        self.model = model
        self.loss = loss
        self.coef = router_aux_loss_coef(model) if coef is None else float(coef)
        self.collector = RouterAuxLossCollector(model) if collector is None else collector

    def forward(self, features: Any, labels: torch.Tensor | None) -> dict[str, torch.Tensor]:
        self.collector.reset()
        base = self.loss(features, labels)
        aux = self.collector.pop()
        parts = dict(base) if isinstance(base, dict) else {"loss": base}
        if aux is not None:
            parts["router_aux_loss"] = self.coef * aux
        return parts

    def get_config_dict(self) -> dict[str, Any]:
        return {"coef": self.coef}
