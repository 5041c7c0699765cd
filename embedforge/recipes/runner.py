"""Run a recipe: stages in order, each into ``<output_dir>/<stage>/``, resumable stage by stage.

A finished stage leaves ``<stage>/stage.json`` (written last, atomically); ``--resume`` skips finished
stages and continues an interrupted one from its last complete checkpoint. Starting over an existing
output folder needs ``--resume`` or ``--overwrite``, so nothing is silently replaced.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from embedforge.errors import ConfigError
from embedforge.recipes.context import StageContext, StageResult, StageSummary, summary_from_dict
from embedforge.recipes.loader import load_recipe
from embedforge.recipes.schema import STAGE_TYPES, Recipe
from embedforge.utils.config import to_plain
from embedforge.utils.io import atomic_write_json, atomic_write_text

if TYPE_CHECKING:
    pass

logger = logging.getLogger(__name__)

STAGE_DONE = "stage.json"


@dataclass
class RecipeResult:
    """Outcome of :func:`run_recipe`."""

    output_dir: Path
    final_model: str
    stages: dict[str, StageResult]
    seconds: float
    eval_reports: dict[str, Any] = field(default_factory=dict)  # label -> EvalReport (base, final)


def run_recipe(recipe: Recipe, *, resume: bool = False, overwrite: bool = False) -> RecipeResult:
    """Run every stage of ``recipe`` (and its final evaluation).

    Args:
        recipe: a validated recipe (:func:`embedforge.recipes.load_recipe`).
        resume: skip finished stages, continue the interrupted one from its last complete checkpoint.
        overwrite: delete an existing output folder first.
    """
    import torch
    from accelerate import PartialState

    started = time.perf_counter()
    # under torchrun this joins the process group (gloo on CPU, as the Trainer would); single process: a no-op
    state = PartialState(cpu=not torch.cuda.is_available())
    output = Path(recipe.output_dir or Path("runs") / recipe.name)
    existing = output.exists() and any(output.iterdir())
    if existing and not (resume or overwrite):
        raise ConfigError(f"output folder {output} already holds a run; pass --resume to continue it, or --overwrite")
    state.wait_for_everyone()  # every rank has looked before the main one changes anything
    if state.is_main_process:
        if existing and overwrite:
            shutil.rmtree(output)
        output.mkdir(parents=True, exist_ok=True)
        resolved = to_plain(recipe)
        atomic_write_text(
            output / "recipe.resolved.yaml", yaml.safe_dump(resolved, sort_keys=False, allow_unicode=True)
        )
    state.wait_for_everyone()
    _seed_everything(recipe.seed)

    models = {"base": recipe.model.base}
    previous = recipe.model.base
    results: dict[str, StageResult] = {}
    summaries: dict[str, StageSummary] = {}
    for name, config in recipe.stages.items():
        stage_type = STAGE_TYPES[config.type]
        directory = output / name
        done = directory / STAGE_DONE
        if resume and done.is_file():
            saved = json.loads(done.read_text())
            summary = summary_from_dict(stage_type.summary_class, saved.get("summary", {}))
            result = StageResult(model_path=saved.get("model_path"), summary=summary)
            logger.info("stage %s: already finished, skipping (%s)", name, done)
        else:
            directory.mkdir(parents=True, exist_ok=True)
            context = StageContext(recipe, name, directory, resume, dict(models), previous, dict(summaries))
            logger.info("stage %s (%s): starting in %s", name, config.type, directory)
            stage_started = time.perf_counter()
            result = stage_type.run(config, context)
            seconds = round(time.perf_counter() - stage_started, 1)
            if isinstance(result.summary, StageSummary):
                result.summary.seconds = seconds
            else:  # a stage type registered elsewhere may still report plain data
                result.summary.setdefault("seconds", seconds)
            if state.is_main_process:
                atomic_write_json(done, {"model_path": result.model_path, "summary": to_plain(result.summary)})
            state.wait_for_everyone()
        results[name] = result
        summaries[name] = result.summary
        if stage_type.produces_model and result.model_path:
            models[name] = result.model_path
            previous = result.model_path
    report = RecipeResult(output, previous, results, time.perf_counter() - started)
    if recipe.eval is not None and state.is_main_process:
        report.eval_reports = evaluate_recipe(recipe, previous, output / "eval")
    return report


def evaluate_recipe(recipe: Recipe, final_model: str, output: Path) -> dict[str, Any]:
    """Evaluate the final model (and the base, when ``compare_base``) on the recipe's eval tasks."""
    from embedforge.evaluation import evaluate, load_tasks
    from embedforge.evaluation.report import leaderboard_markdown
    from embedforge.utils.io import atomic_write_text

    config = recipe.eval
    tasks = load_tasks(config.tasks, config.task_root)
    targets = {"base": recipe.model.base} if config.compare_base else {}
    targets[recipe.name] = final_model
    reports = {}
    for label, model in targets.items():
        reports[label] = evaluate(
            model,
            tasks,
            output / label,
            dims=config.dims,
            batch_size=config.batch_size,
            max_seq_length=recipe.model.max_seq_length,
            model_name=f"{label} ({Path(model).name})" if label == "base" else label,
        )
    table = leaderboard_markdown({r.model: r.records for r in reports.values()})
    atomic_write_text(output / "leaderboard.md", table)
    return reports


def _seed_everything(seed: int) -> None:
    from transformers import set_seed

    set_seed(seed)


def train(
    recipe: str | Path | Recipe,
    overrides: list[str] | tuple[str, ...] = (),
    *,
    resume: bool = False,
    overwrite: bool = False,
) -> RecipeResult:
    """Load a recipe YAML (with ``--set``-style ``overrides``) and run it; what ``embedforge train`` does."""
    if not isinstance(recipe, Recipe):
        recipe = load_recipe(recipe, overrides)
    elif overrides:
        raise ConfigError("overrides apply to a recipe file; edit the Recipe object instead")
    return run_recipe(recipe, resume=resume, overwrite=overwrite)
