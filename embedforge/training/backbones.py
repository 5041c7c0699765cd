"""What a ``train`` stage does differently for LLM backbones: LoRA adapters.

The train stage calls :func:`prepare_backbone` right after loading its model and :meth:`Backbone.finish`
before saving ``<stage>/final``. (The MoE router load-balancing loss is a loss modifier:
:mod:`embedforge.losses.objective`.)

LoRA (``model.lora`` in the recipe)
    Every ``train`` stage attaches **fresh** adapters to the model it starts from (the base, or a
    previous stage's merged ``final``) with :func:`embedforge.models.add_lora`; only the adapters
    train. Checkpoints hold the adapters only (transformers writes an adapter folder while peft
    layers are in place), and ``--resume`` loads them back into the same adapter layout
    (sentence-transformers' ``_load_from_checkpoint`` rebuilds the checkpoint's model — base plus
    adapter — and copies its state dict). Before ``final`` is saved the adapters are merged into the
    weights (:func:`embedforge.models.merge_lora`), so ``final`` is a plain model that
    ``SentenceTransformer(path)`` loads without peft, and the next stage starts from full weights.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from embedforge.errors import ConfigError

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

    from embedforge.models.lora import LoraConfig

logger = logging.getLogger(__name__)


@dataclass
class Backbone:
    """The backbone facts of one train stage (see the module docstring)."""

    lora: dict[str, Any] | None = None  # the LoRA settings attached, None = full fine-tuning
    trainable_parameters: int = 0  # parameters the optimizer updates
    total_parameters: int = 0  # all parameters of the model

    def finish(self, model: SentenceTransformer) -> SentenceTransformer:
        """Merge LoRA adapters into the weights (in place) before saving."""
        if self.lora is not None:
            from embedforge.models.lora import merge_lora

            merge_lora(model)
        return model

    def summary(self) -> dict[str, Any]:
        """Facts for the run log and the model card."""
        return {
            "lora": self.lora,
            "trainable_parameters": self.trainable_parameters,
            "total_parameters": self.total_parameters,
        }


def prepare_backbone(model: SentenceTransformer, lora: LoraConfig | None, where: str) -> Backbone:
    """Attach LoRA adapters (if asked) and count the parameters.

    Args:
        model: the stage's freshly loaded model (changed in place when LoRA is on).
        lora: the LoRA settings (None: full fine-tuning).
        where: the recipe location for error messages (``recipe.yaml: stages.finetune``).
    """
    backbone = Backbone()
    if lora is not None:
        from embedforge.models.lora import add_lora, has_lora

        if has_lora(model):  # pragma: no cover - load_model never returns adapter layers
            raise ConfigError(f"{where}: the model already carries LoRA adapters; start from a merged model")
        add_lora(
            model,
            r=lora.r,
            alpha=lora.alpha,
            dropout=lora.dropout,
            target_modules=lora.target_modules,
            **lora.options,
        )
        backbone.lora = {k: v for k, v in dataclasses.asdict(lora).items() if k != "options"} | lora.options
    backbone.trainable_parameters = sum(p.numel() for p in model.parameters() if p.requires_grad)
    backbone.total_parameters = sum(p.numel() for p in model.parameters())
    return backbone
