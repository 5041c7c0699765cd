"""What a ``train`` stage does differently for LLM backbones: LoRA adapters and the MoE router loss.

The train stage calls :func:`prepare_backbone` right after loading its model, :meth:`Backbone.wrap_losses`
on the losses it built, and :meth:`Backbone.finish` before saving ``<stage>/final``.

LoRA (``model.lora`` in the recipe)
    Every ``train`` stage attaches **fresh** adapters to the model it starts from (the base, or a
    previous stage's merged ``final``) with :func:`embedforge.models.add_lora`; only the adapters
    train. Checkpoints hold the adapters only (transformers writes an adapter folder while peft
    layers are in place), and ``--resume`` loads them back into the same adapter layout
    (sentence-transformers' ``_load_from_checkpoint`` rebuilds the checkpoint's model — base plus
    adapter — and copies its state dict). Before ``final`` is saved the adapters are merged into the
    weights (:func:`embedforge.models.merge_lora`), so ``final`` is a plain model that
    ``SentenceTransformer(path)`` loads without peft, and the next stage starts from full weights.

MoE router load-balancing loss
    When the model is a mixture-of-experts transformer (:func:`embedforge.models.moe.is_moe`, read
    off its config and router modules), every dataset's loss is wrapped in
    :class:`~embedforge.models.moe.RouterAuxLoss`, all sharing one
    :class:`~embedforge.models.moe.RouterAuxLossCollector`. The wrapped loss returns
    ``{"loss": ..., "router_aux_loss": coef * aux}``; sentence-transformers' trainer sums the parts for
    the backward pass and logs each (``router_aux_loss`` in the Trainer logs and TensorBoard).
    Wrapping the loss (rather than the trainer's ``extra_losses`` hook) is what gets the term logged,
    and keeps it working for users who drive the losses themselves.

    ``coef`` is the stage's ``router_aux_loss_coef``, or the model config's own when that is ``None``
    (Qwen2-MoE 0.001, OLMoE 0.01, Mixtral 0.001); ``0`` switches the term off.

    GradCache (``gradcache_mini_batch`` or a ``cached_*`` loss) cannot carry the term: its first
    embedding pass runs without gradients, and the passes with gradients run *inside* the backward
    pass, after the loss has been returned, with the graph of each mini-batch freed as soon as its
    share of the cached gradient is pushed through. There is no point at which the auxiliary loss of
    those passes could join the loss being differentiated, so that combination is a ``ConfigError``
    (train without GradCache, or set ``router_aux_loss_coef: 0`` to train without the auxiliary loss).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from embedforge.errors import ConfigError

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer
    from torch import nn

    from embedforge.recipes.schema import ModelConfig, TrainStageConfig

logger = logging.getLogger(__name__)


@dataclass
class Backbone:
    """The backbone facts and hooks of one train stage (see the module docstring)."""

    lora: dict[str, Any] | None = None  # the LoRA settings attached, None = full fine-tuning
    moe: bool = False  # the model is a mixture-of-experts transformer
    router_aux_loss_coef: float | None = None  # weight of the router loss in use (None: not an MoE / off)
    trainable_parameters: int = 0  # parameters the optimizer updates
    total_parameters: int = 0  # all parameters of the model
    collector: Any = field(default=None, repr=False)  # the shared RouterAuxLossCollector

    def wrap_losses(self, losses: dict[str, nn.Module], model: SentenceTransformer, where: str) -> dict[str, Any]:
        """Wrap every loss in ``RouterAuxLoss`` when the router loss is on; the losses unchanged otherwise.

        Raises:
            ConfigError: a GradCache loss on an MoE model with a non-zero coefficient (see module docstring).
        """
        if not self.router_aux_loss_coef:
            return losses
        cached = [name for name, loss in losses.items() if uses_gradient_cache(loss)]
        if cached:
            raise ConfigError(
                f"{where}: the MoE router load-balancing loss cannot be added to GradCache losses (datasets "
                f"{', '.join(cached)}): GradCache embeds without gradients first and re-embeds inside the "
                "backward pass, where no extra loss term can join. Remove gradcache_mini_batch / the cached_* "
                "loss, or set router_aux_loss_coef: 0 to train this MoE model without the router loss."
            )
        from embedforge.models.moe import RouterAuxLoss, RouterAuxLossCollector

        self.collector = RouterAuxLossCollector(model)
        return {
            name: RouterAuxLoss(model, loss, coef=self.router_aux_loss_coef, collector=self.collector)
            for name, loss in losses.items()
        }

    def finish(self, model: SentenceTransformer) -> SentenceTransformer:
        """Remove the router hooks and merge LoRA adapters into the weights (in place) before saving."""
        if self.collector is not None:
            self.collector.remove()
            self.collector = None
        if self.lora is not None:
            from embedforge.models.lora import merge_lora

            merge_lora(model)
        return model

    def summary(self) -> dict[str, Any]:
        """Facts for the run log and the model card."""
        facts: dict[str, Any] = {
            "lora": self.lora,
            "trainable_parameters": self.trainable_parameters,
            "total_parameters": self.total_parameters,
        }
        if self.moe:
            facts["router_aux_loss_coef"] = self.router_aux_loss_coef
        return facts


def prepare_backbone(
    model: SentenceTransformer, model_config: ModelConfig, stage: TrainStageConfig, where: str
) -> Backbone:
    """Attach LoRA adapters (if the recipe asks) and find out whether the router loss applies.

    Args:
        model: the stage's freshly loaded model (changed in place when LoRA is on).
        model_config: the recipe's ``model`` section (``lora``).
        stage: the train stage's config (``router_aux_loss_coef``).
        where: the recipe location for error messages (``recipe.yaml: stages.finetune``).
    """
    from embedforge.models.moe import is_moe, router_aux_loss_coef

    backbone = Backbone()
    if model_config.lora is not None:
        from embedforge.models.lora import add_lora, has_lora

        if has_lora(model):  # pragma: no cover - load_model never returns adapter layers
            raise ConfigError(f"{where}: the model already carries LoRA adapters; start from a merged model")
        lora = model_config.lora
        add_lora(
            model,
            r=lora.r,
            alpha=lora.alpha,
            dropout=lora.dropout,
            target_modules=lora.target_modules,
            **lora.options,
        )
        backbone.lora = {
            "r": lora.r,
            "alpha": lora.alpha,
            "dropout": lora.dropout,
            "target_modules": lora.target_modules,
        }
        backbone.lora.update(lora.options)
    backbone.trainable_parameters = sum(p.numel() for p in model.parameters() if p.requires_grad)
    backbone.total_parameters = sum(p.numel() for p in model.parameters())

    first = model[0]
    backbone.moe = hasattr(first, "model") and hasattr(first.model, "config") and is_moe(model)
    if backbone.moe:
        coef = router_aux_loss_coef(model) if stage.router_aux_loss_coef is None else stage.router_aux_loss_coef
        if coef < 0:
            raise ConfigError(f"{where}.router_aux_loss_coef: must be >= 0, got {coef}")
        backbone.router_aux_loss_coef = float(coef)
        logger.info("mixture-of-experts backbone: router load-balancing loss with coefficient %g", coef)
    elif stage.router_aux_loss_coef:
        logger.warning(
            "%s.router_aux_loss_coef=%g is ignored: the model is not a mixture-of-experts transformer",
            where,
            stage.router_aux_loss_coef,
        )
    return backbone


def uses_gradient_cache(loss: nn.Module) -> bool:
    """Whether ``loss`` (or a loss it wraps, e.g. inside Matryoshka) embeds with GradCache."""
    from sentence_transformers.base.losses.gradcache import CachedLossMixin

    return any(
        isinstance(module, CachedLossMixin) and getattr(module, "uses_gradient_cache", True)
        for module in loss.modules()
    )
