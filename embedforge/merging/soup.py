"""Model soups of SentenceTransformer folders: load, merge LoRA, check the architecture, average, save.

Methods are registered by name in :data:`MERGE_METHODS`; each only decides the weights (the averaging is always
:func:`~embedforge.merging.weighted.weighted_average`):

============ ============================================================ ==================================
method       weights                                                      reference
============ ============================================================ ==================================
``uniform``  ``1/n`` each                                                 Wortsman et al. 2022; KaLM-V2 §3.3
``weighted`` the given ``weights``, normalized to sum to 1                Wortsman et al. 2022
``cocktail`` ``softmax(-L_i / T)`` of each model's loss on a few examples Xiao et al. 2024 (LM-Cocktail)
============ ============================================================ ==================================

Why not sentence-transformers' own ``SentenceTransformer.merge`` (``sentence_transformers/base/merging.py``):
it delegates the arithmetic to mergekit, which is not a dependency here (not installed, and it pins its own
torch/transformers ranges), and it loads every ingredient at once. A linear soup is a weighted sum, which we
stream one model at a time. We check compatibility the way it does (module types and configs, transformer
config, tokenizer vocabulary, state-dict keys and shapes), and merge LoRA adapters first, as it requires.

Example::

    result = merge_models(["runs/x/finetune/final", "runs/x/finetune2/final"], method="weighted", weights=[1, 3])
    save_soup(result, "runs/x/soup")                  # SentenceTransformer("runs/x/soup") loads it
"""

from __future__ import annotations

import copy
import logging
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from embedforge.errors import ConfigError, did_you_mean
from embedforge.merging.cocktail import DEFAULT_TEMPERATURE, cocktail_weights, example_loss
from embedforge.merging.uniform import uniform_weights
from embedforge.merging.weighted import normalize_weights, weighted_average
from embedforge.utils.registry import Registry

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

    ModelSource = str | os.PathLike[str] | SentenceTransformer  # a folder, a preset name, or a model

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class MergeMethod:
    """A registered merge method: how it picks the ingredients' weights."""

    name: str
    description: str  # one line for the model card
    needs_weights: bool = False  # the user gives `weights`
    needs_examples: bool = False  # weights come from example losses


MERGE_METHODS: Registry[MergeMethod] = Registry("merge method")


def register_merge_method(method: MergeMethod) -> MergeMethod:
    """Add a merge method; names are unique."""
    return MERGE_METHODS.register(method.name, method)


register_merge_method(MergeMethod("uniform", "uniform soup: θ = (1/n) Σ θ_i (Wortsman et al., 2022)"))
register_merge_method(
    MergeMethod("weighted", "weighted soup: θ = Σ w_i θ_i / Σ w_j (Wortsman et al., 2022)", needs_weights=True)
)
register_merge_method(
    MergeMethod(
        "cocktail",
        "LM-Cocktail: θ = Σ softmax(-L_i/T) θ_i, L_i = InfoNCE loss on a few examples (Xiao et al., 2024)",
        needs_examples=True,
    )
)


@dataclass
class SoupResult:
    """A merged model and what went into it."""

    model: SentenceTransformer
    method: str
    names: list[str]  # ingredient names (paths or labels), in order
    weights: list[float]  # normalized weights, in order
    example_losses: list[float] | None = None  # cocktail: each ingredient's example loss
    notes: dict[str, Any] = field(default_factory=dict)


def check_merge_options(
    method: str, count: int, weights: Sequence[float] | None, has_examples: bool, where: str = ""
) -> MergeMethod:
    """Check a method name and its inputs; returns the method.

    Raises:
        ConfigError: an unknown method, fewer than two models, weights where none are used or missing, a weight
            count different from the model count, missing examples for ``cocktail``.
    """
    prefix = f"{where}." if where else ""
    if method not in MERGE_METHODS:
        raise ConfigError(f"{prefix}method: unknown merge method {method!r}.{did_you_mean(method, MERGE_METHODS)}")
    spec = MERGE_METHODS[method]
    if count < 2:
        raise ConfigError(f"{prefix}models: a soup needs at least two models, got {count}")
    if spec.needs_weights:
        if weights is None:
            raise ConfigError(f"{prefix}weights: method {method!r} needs one weight per model")
        if len(weights) != count:
            raise ConfigError(f"{prefix}weights: {len(weights)} weights for {count} models; give one per model")
        normalize_weights(weights)
    elif weights is not None:
        raise ConfigError(f"{prefix}weights: method {method!r} picks its own weights; use method: weighted")
    if spec.needs_examples and not has_examples:
        raise ConfigError(f"{prefix}datasets: method {method!r} needs a few examples (a dataset with max_rows)")
    return spec


def load_ingredient(source: ModelSource, device: str = "cpu") -> SentenceTransformer:
    """Load a soup ingredient (LoRA adapters merged into the base weights; a given model is never modified)."""
    from embedforge.models import load_model
    from embedforge.models.lora import has_lora, merge_lora

    if isinstance(source, str | os.PathLike):
        model = load_model(source, device=device)
        if has_lora(model):
            logger.info("%s: merging its LoRA adapter into the base weights before the soup", source)
            merge_lora(model)
        return model
    return merge_lora(source, copy=True) if has_lora(source) else source


def check_compatible(reference: SentenceTransformer, model: SentenceTransformer, name: str, first: str) -> None:
    """Same module pipeline, module configs, transformer config and tokenizer vocabulary as ``reference``.

    (State-dict keys and shapes are checked while averaging.)

    Raises:
        ConfigError: naming ``name`` and what differs from ``first``.
    """
    kinds = [type(m).__name__ for m in reference], [type(m).__name__ for m in model]
    if kinds[0] != kinds[1]:
        raise ConfigError(f"cannot merge {name!r}: modules {kinds[1]} differ from {first!r}'s {kinds[0]}")
    for index, (ours, theirs) in enumerate(zip(reference, model, strict=True)):
        hf_ours, hf_theirs = getattr(ours, "model", None), getattr(theirs, "model", None)
        if hf_ours is not None and hasattr(hf_ours, "config"):
            a, b = _architecture(hf_ours.config), _architecture(hf_theirs.config)
            if a != b:
                diff = {k: (a.get(k), b.get(k)) for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)}
                raise ConfigError(f"cannot merge {name!r}: its transformer config differs from {first!r}'s: {diff}")
            vocab_ours = _vocab(ours)
            if vocab_ours is not None and vocab_ours != _vocab(theirs):
                raise ConfigError(f"cannot merge {name!r}: its tokenizer vocabulary differs from {first!r}'s")
        elif hasattr(ours, "get_config_dict") and ours.get_config_dict() != theirs.get_config_dict():
            raise ConfigError(
                f"cannot merge {name!r}: module {index} ({kinds[0][index]}) is configured differently "
                f"from {first!r}'s: {theirs.get_config_dict()} vs {ours.get_config_dict()}"
            )


def merge_models(
    models: Sequence[ModelSource],
    *,
    method: str = "uniform",
    weights: Sequence[float] | None = None,
    names: Sequence[str] | None = None,
    examples: Sequence[tuple[Any, dict[str, str]]] | None = None,
    temperature: float = DEFAULT_TEMPERATURE,
    device: str = "cpu",
) -> SoupResult:
    """Average the parameters of ``models`` (see the module docstring for the methods).

    Args:
        models: folders, preset names or SentenceTransformers of one architecture (the first is the template:
            its modules, configuration and prompts are kept).
        method: ``uniform`` | ``weighted`` | ``cocktail`` (see :data:`MERGE_METHODS`).
        weights: one per model, for ``weighted`` (normalized to sum to 1).
        names: labels for logs, errors and the model card (default: the paths).
        examples: for ``cocktail``, ``(rows, prompts)`` pairs: ``rows`` a ``Dataset`` with anchor, positive and
            optional negative_* columns, ``prompts`` its ``{column: prompt}``.
        temperature: ``cocktail``'s ``T``.
        device: where models are loaded and averaged.

    Returns:
        :class:`SoupResult` (the merged model is a new object; given models are not modified).

    Raises:
        ConfigError: see :func:`check_merge_options`; models of different architectures (naming the model).
    """
    spec = check_merge_options(method, len(models), weights, bool(examples))
    names = list(names) if names is not None else [_label(m, i) for i, m in enumerate(models)]
    losses = None
    if spec.needs_examples:
        losses = [
            _examples_loss(model, examples or []) for model in _ingredients(models, names, device, compare=False)
        ]
        chosen = cocktail_weights(losses, temperature)
        logger.info("LM-Cocktail example losses %s -> weights %s", _rounded(losses), _rounded(chosen))
    elif spec.needs_weights:
        chosen = normalize_weights(weights or [])
    else:
        chosen = uniform_weights(len(models))
    template: list[Any] = []

    def state_dicts() -> Iterator[dict[str, Any]]:
        for index, model in enumerate(_ingredients(models, names, device)):
            if index == 0:
                template.append(model if isinstance(models[0], str | os.PathLike) else copy.deepcopy(model))
            yield model.state_dict()

    logger.info("%s soup of %d models, weights %s", method, len(models), _rounded(chosen))
    merged = weighted_average(state_dicts(), chosen, names=names)
    model = template[0]
    model.load_state_dict(merged)
    model.eval()
    return SoupResult(model, method, names, chosen, losses)


def soup_card(result: SoupResult, *, title: str = "Model soup", paths: Sequence[str] | None = None) -> str:
    """A short model card (``README.md``): the ingredients, their weights and the method."""
    method = MERGE_METHODS[result.method]
    lines = [
        "---",
        "library_name: sentence-transformers",
        "pipeline_tag: sentence-similarity",
        "tags: [sentence-transformers, feature-extraction, embedforge, model-soup]",
        "---",
        "",
        f"# {title}",
        "",
        f"A parameter average of {len(result.names)} models of one architecture, made with embedforge.",
        "",
        f"Method `{result.method}`: {method.description}.",
        "",
        "| # | ingredient | weight |" + (" example loss |" if result.example_losses else ""),
        "|---:|---|---:|" + ("---:|" if result.example_losses else ""),
    ]
    for index, (name, weight) in enumerate(zip(result.names, result.weights, strict=True)):
        where = f" (`{paths[index]}`)" if paths and paths[index] != name else ""
        row = f"| {index} | `{name}`{where} | {weight:.4f} |"
        if result.example_losses:
            row += f" {result.example_losses[index]:.4f} |"
        lines.append(row)
    lines += ["", "Modules, configuration and prompts are those of ingredient 0.", ""]
    prompts = result.model.prompts or {}
    if prompts:
        lines += ["## Prompts", "", "| key | prompt |", "|---|---|"]
        lines += [f"| `{k}` | `{v!r}` |" for k, v in prompts.items()]
        lines.append("")
    return "\n".join(lines)


def save_soup(result: SoupResult, path: str | os.PathLike[str], *, title: str = "Model soup", **card: Any) -> Path:
    """Save the merged model (:func:`embedforge.models.save_model`, widely-read format) with its model card."""
    from embedforge.models import save_model

    return save_model(result.model, path, extra_files={"README.md": soup_card(result, title=title, **card)})


def _ingredients(
    models: Sequence[ModelSource], names: Sequence[str], device: str, *, compare: bool = True
) -> Iterator[SentenceTransformer]:
    """Load the models one at a time (LoRA merged), checking each against the first."""
    first = None
    for index, source in enumerate(models):
        model = load_ingredient(source, device)
        if compare and first is None:
            first = model
        elif compare:
            check_compatible(first, model, names[index], names[0])
        yield model


def _examples_loss(model: SentenceTransformer, examples: Sequence[tuple[Any, dict[str, str]]]) -> float:
    total, rows = 0.0, 0
    for dataset, prompts in examples:
        total += example_loss(model, dataset, prompts) * len(dataset)
        rows += len(dataset)
    return total / rows


def _architecture(config: Any) -> dict[str, Any]:
    ignored = {"architectures", "transformers_version", "torch_dtype", "dtype", "name_or_path"}
    return {k: v for k, v in config.to_dict().items() if k not in ignored and not k.startswith("_")}


def _vocab(module: Any) -> dict[str, int] | None:
    tokenizer = getattr(module, "tokenizer", None)
    return tokenizer.get_vocab() if tokenizer is not None and hasattr(tokenizer, "get_vocab") else None


def _label(model: ModelSource, index: int) -> str:
    return str(model) if isinstance(model, str | os.PathLike) else f"model {index}"


def _rounded(values: Sequence[float]) -> list[float]:
    return [round(v, 4) for v in values]
