"""LoRA adapters on a SentenceTransformer's transformer, and merging them back for saving.

Attaching goes through sentence-transformers' PEFT mixin (``SentenceTransformer.add_adapter``), which
calls transformers' ``add_adapter`` and so peft's ``inject_adapter_in_model``: the LoRA layers are
injected *in place* into the transformers model, the base weights are frozen, and the
SentenceTransformer keeps working with every sentence-transformers loss and trainer.

peft's ``merge_and_unload`` exists only on a ``PeftModel`` wrapper, which the in-place injection does
not create; :func:`merge_lora` therefore does the same two steps itself — ``merge()`` on each
injected tuner layer, then put its base layer back — and clears transformers' adapter bookkeeping, so
that ``save_pretrained`` writes the full merged weights instead of an adapter-only folder. (A
transformer already wrapped in a ``PeftModel`` is merged with peft's own ``merge_and_unload``.)

KaLM-Embedding-V2 fine-tunes its LoRA checkpoints with rank 16 and alpha 32, our defaults.

Example::

    model = load_model("SmolLM2-135M-Instruct")      # bidirectional decoder, mean pooling
    add_lora(model, r=16, alpha=32)                   # train it with any sentence-transformers loss
    save_model(merge_lora(model), "out/merged")      # plain SentenceTransformer(path) reads this
"""

from __future__ import annotations

import copy as copy_module
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from embedforge.errors import ConfigError

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

logger = logging.getLogger(__name__)


@dataclass
class LoraConfig:
    """LoRA adapters for every ``train`` stage, merged into the weights before the stage saves ``final``.

    Defaults are KaLM-Embedding-V2's (rank 16, alpha 32; §4.4); see :func:`add_lora`.
    """

    r: int = 16  # adapter rank
    alpha: float = 32.0  # scaling numerator: the update is scaled by alpha / r
    dropout: float = 0.0  # dropout on the adapter input
    target_modules: str | list[str] = "all-linear"  # layer names to adapt, or every linear layer
    options: dict[str, Any] = field(default_factory=dict)  # further peft.LoraConfig fields (e.g. use_rslora)

    def __post_init__(self) -> None:
        if self.r < 1:
            raise ConfigError(f"r: must be a positive integer, got {self.r}")
        if not self.alpha > 0:
            raise ConfigError(f"alpha: must be > 0, got {self.alpha}")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"dropout: must be in [0, 1), got {self.dropout}")


def add_lora(
    model: SentenceTransformer,
    *,
    r: int = 16,
    alpha: float = 32,
    dropout: float = 0.0,
    target_modules: str | list[str] = "all-linear",
    adapter_name: str = "default",
    **lora_kwargs: Any,
) -> SentenceTransformer:
    """Attach a fresh LoRA adapter to ``model``'s transformer (in place) and make only it trainable.

    Args:
        model: a SentenceTransformer whose first module is a transformers ``Transformer``.
        r: LoRA rank.
        alpha: LoRA scaling numerator (the update is scaled by ``alpha / r``).
        dropout: dropout on the LoRA input.
        target_modules: module names to adapt, or ``"all-linear"`` (every linear layer of the
            transformer; for transformers' MoE models the fused expert weights are not linear
            layers, so attention, shared experts and dense MLPs are adapted).
        adapter_name: the adapter's name (``default``).
        **lora_kwargs: further ``peft.LoraConfig`` fields (e.g. ``use_rslora=True``).

    Returns:
        ``model`` itself.
    """
    from peft import LoraConfig as PeftLoraConfig

    if r <= 0:
        raise ConfigError(f"LoRA rank r must be a positive integer, got {r}")
    if not 0.0 <= dropout < 1.0:
        raise ConfigError(f"LoRA dropout must be in [0, 1), got {dropout}")
    if not model.has_peft_compatible_model():
        raise ConfigError("LoRA needs a model whose first module is a transformers Transformer")
    config = PeftLoraConfig(r=r, lora_alpha=alpha, lora_dropout=dropout, target_modules=target_modules, **lora_kwargs)
    model.add_adapter(config, adapter_name=adapter_name)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    logger.info(
        "LoRA r=%d alpha=%g on %s: %d trainable of %d parameters (%.2f%%)",
        r,
        alpha,
        target_modules,
        trainable,
        total,
        100 * trainable / total,
    )
    return model


def has_lora(model: SentenceTransformer) -> bool:
    """Whether ``model``'s transformer carries (unmerged) peft adapter layers."""
    from peft.tuners.tuners_utils import BaseTunerLayer

    return any(isinstance(module, BaseTunerLayer) for module in model[0].model.modules())


def merge_lora(model: SentenceTransformer, *, copy: bool = False, safe_merge: bool = True) -> SentenceTransformer:
    """Merge the active LoRA adapters into the base weights and remove the adapter layers.

    The result is a plain SentenceTransformer that saves full weights (``save_model``) and that
    ``SentenceTransformer(path)`` loads without peft. Inactive adapters are dropped. All parameters
    are left trainable, as in a freshly loaded model. A model without adapters is returned unchanged.

    Args:
        model: the model with adapters.
        copy: merge a deep copy and leave ``model`` (still with its adapters) untouched — e.g. to
            save a merged checkpoint in the middle of LoRA training.
        safe_merge: check the merged weights for NaNs before committing them (peft's ``safe_merge``).

    Returns:
        The merged model (``model`` itself unless ``copy``).
    """
    from peft import PeftModel
    from peft.tuners.tuners_utils import BaseTunerLayer

    if copy:
        model = copy_module.deepcopy(model)
    transformer = model[0]
    if isinstance(transformer.model, PeftModel):
        transformer.model = transformer.model.merge_and_unload(safe_merge=safe_merge)
        return model
    hf_model = transformer.model
    tuner_layers = [(name, module) for name, module in hf_model.named_modules() if isinstance(module, BaseTunerLayer)]
    if not tuner_layers:
        logger.debug("merge_lora: the model has no adapter layers; nothing to merge")
        return model
    merged = 0
    for name, layer in tuner_layers:
        parent_name, _, child_name = name.rpartition(".")
        parent = hf_model.get_submodule(parent_name)
        if getattr(parent, child_name, None) is not layer:  # inside a tuner layer already replaced
            continue
        layer.merge(safe_merge=safe_merge)
        setattr(parent, child_name, layer.get_base_layer())
        merged += 1
    # transformers saves only the adapter while this flag is set (see PreTrainedModel.save_pretrained)
    hf_model._hf_peft_config_loaded = False
    if hasattr(hf_model, "peft_config"):
        del hf_model.peft_config
    for parameter in hf_model.parameters():
        parameter.requires_grad_(True)
    logger.info("merged %d LoRA layers into the base weights", merged)
    return model


def save_merged(model: SentenceTransformer, path: str | os.PathLike[str], **save_kwargs: Any) -> Path:
    """Save a merged copy of a LoRA model with :func:`embedforge.models.save_model`; ``model`` keeps its adapters."""
    from embedforge.models.saving import save_model

    return save_model(merge_lora(model, copy=True), path, **save_kwargs)
