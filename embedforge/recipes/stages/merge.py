"""The ``merge`` stage: a model soup of earlier stages' models and checkpoints (KaLM-Embedding-V2 §3.3).

``models`` entries are stage names (their final model), ``<stage>/<sub folder>`` (e.g. a checkpoint:
``finetune/checkpoint-400``), ``<stage>/checkpoint-*`` (every complete checkpoint the stage kept, oldest first:
KaLM-Embedding-V2 averages "multiple fine-tuning checkpoints"), ``base``, or model folders. The result is
``<stage>/final``, a SentenceTransformer folder with the first ingredient's modules and prompts and a model card
listing the ingredients; later stages start from it::

    soup:
      type: merge
      models: [finetune, finetune2, "finetune/checkpoint-400", /models/other-run/final]
      weights: [0.4, 0.3, 0.2, 0.1]  # method: weighted (implied by weights); uniform without; or cocktail

``method: cocktail`` takes its weights from each ingredient's InfoNCE loss on a few examples (LM-Cocktail)::

    soup:
      type: merge
      models: [finetune_a, finetune_b]
      method: cocktail
      datasets: [{name: target, path: data/target.jsonl, kind: triplets, max_rows: 8}]
"""

from __future__ import annotations

import logging
from pathlib import Path

from embedforge.errors import ConfigError, did_you_mean
from embedforge.recipes.context import MergeSummary, StageContext, StageResult
from embedforge.recipes.schema import STAGE_TYPES, MergeStageConfig, StageType, register_stage_type

logger = logging.getLogger(__name__)


def validate(config: MergeStageConfig, where: str) -> None:
    """Check the method, the weights and the examples when the recipe is loaded."""
    from embedforge.merging.soup import check_merge_options

    method = merge_method(config)
    globs = [ref for ref in config.models if ref.endswith(CHECKPOINT_GLOB)]
    if globs and config.weights is not None:
        raise ConfigError(f"{where}.weights: {globs[0]!r} stands for an unknown number of checkpoints; drop weights")
    count = max(len(config.models), 2) if globs else len(config.models)  # a glob may stand for several models
    check_merge_options(method, count, config.weights, bool(config.datasets), where)
    if config.datasets and method != "cocktail":
        raise ConfigError(f"{where}.datasets: only method 'cocktail' uses example datasets")
    if not config.temperature > 0:
        raise ConfigError(f"{where}.temperature: must be > 0, got {config.temperature}")


def merge_method(config: MergeStageConfig) -> str:
    """The method, with the default filled in (weighted when weights are given, else uniform)."""
    return config.method or ("weighted" if config.weights is not None else "uniform")


CHECKPOINT_GLOB = "/checkpoint-*"


def expand_ingredients(refs: list[str], context: StageContext, where: str) -> list[str]:
    """``<stage>/checkpoint-*`` -> ``<stage>/checkpoint-N`` for every complete checkpoint of that stage, in order."""
    from embedforge.training.checkpoints import COMPLETE_MARKER, checkpoints

    expanded: list[str] = []
    for index, ref in enumerate(refs):
        if not ref.endswith(CHECKPOINT_GLOB):
            expanded.append(ref)
            continue
        stage = ref[: -len(CHECKPOINT_GLOB)]
        if stage not in context.summaries:
            raise ConfigError(f"{where}[{index}]: {ref!r}: stage {stage!r} has not run before this one")
        found = [p for p in checkpoints(context.directory.parent / stage) if (p / COMPLETE_MARKER).is_file()]
        if not found:
            raise ConfigError(f"{where}[{index}]: {ref!r}: stage {stage!r} kept no complete checkpoint")
        expanded.extend(f"{stage}/{path.name}" for path in found)
    return expanded


def resolve_ingredient(ref: str, context: StageContext, where: str) -> str:
    """A ``models`` entry -> a model path (or preset name), with errors that say which entry and why."""
    from embedforge.models.presets import get_preset

    stages = context.recipe.stages
    head = ref.split("/", 1)[0]
    if ref == "base" or ref in stages:
        if ref in stages and not STAGE_TYPES[stages[ref].type].produces_model:
            raise ConfigError(f"{where}: stage {ref!r} ({stages[ref].type}) makes no model to merge")
        return context.model_ref(ref)
    if head in stages and "/" in ref:
        if head not in context.summaries:
            raise ConfigError(f"{where}: {ref!r} is in stage {head!r}, which has not run before this one")
        path = context.directory.parent / ref
        if not path.is_dir():
            found = sorted(p.name for p in (context.directory.parent / head).iterdir() if p.is_dir())
            raise ConfigError(f"{where}: {path} does not exist; stage {head!r} has: {', '.join(found) or 'nothing'}")
        return str(path)
    if Path(ref).is_dir() or get_preset(ref) is not None:
        return ref
    raise ConfigError(
        f"{where}: {ref!r} is neither a stage before this one nor a model folder."
        f"{did_you_mean(Path(ref).name, [*context.models, *(s for s in stages if s != context.name)])}"
    )


def run(config: MergeStageConfig, context: StageContext) -> StageResult:
    """Resolve the ingredients, average them, save ``<stage>/final`` with a model card."""
    import torch
    from accelerate import PartialState

    from embedforge.merging.cocktail import load_examples
    from embedforge.merging.soup import merge_models, save_soup
    from embedforge.recipes.stage_paths import resolve_stage_paths

    where = f"{context.recipe.source}: stages.{context.name}.models"
    refs = expand_ingredients(list(config.models), context, where)
    paths = [resolve_ingredient(ref, context, f"{where}[{i}]") for i, ref in enumerate(refs)]
    if len(paths) < 2:
        raise ConfigError(f"{where}: a soup needs at least two models, got {refs}")
    final = context.directory / "final"
    method = merge_method(config)
    summary = MergeSummary(method=method)
    state = PartialState(cpu=not torch.cuda.is_available())
    if state.is_main_process:  # one process merges; under torchrun the others wait for the folder
        examples = None
        if config.datasets:
            datasets = resolve_stage_paths(config.datasets, context.directory.parent)
            examples = load_examples(datasets, seed=context.recipe.seed)
        result = merge_models(
            paths,
            method=method,
            weights=config.weights,
            names=refs,
            examples=examples,
            temperature=config.temperature,
        )
        save_soup(result, final, title=f"{context.recipe.name} ({context.name})", paths=paths)
        summary.ingredients = [
            {"model": ref, "path": path, "weight": round(weight, 6)}
            for ref, path, weight in zip(refs, paths, result.weights, strict=True)
        ]
        if result.example_losses is not None:
            summary.example_losses = [round(loss, 6) for loss in result.example_losses]
        logger.info("stage %s: saved the %s soup of %d models to %s", context.name, method, len(paths), final)
    state.wait_for_everyone()
    return StageResult(model_path=str(final), summary=summary)


run.validate = validate  # checked by the recipe loader

register_stage_type(
    StageType(name="merge", config_class=MergeStageConfig, run=run, produces_model=True, summary_class=MergeSummary)
)
