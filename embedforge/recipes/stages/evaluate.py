"""The ``eval`` stage: evaluate a model of the recipe on task directories (results in the stage folder)."""

from __future__ import annotations

from embedforge.recipes.context import EvalSummary, StageContext, StageResult
from embedforge.recipes.schema import EvalStageConfig, StageType, register_stage_type


def run(config: EvalStageConfig, context: StageContext) -> StageResult:
    from embedforge.evaluation import evaluate

    model = context.model_ref(config.model)
    report = evaluate(
        model,
        config.tasks,
        context.directory,
        task_root=config.task_root,
        dims=config.dims,
        batch_size=config.batch_size,
        model_name=f"{context.recipe.name}:{context.name}",
    )
    return StageResult(model_path=None, summary=EvalSummary(model=model, scores=report.main_scores()))


register_stage_type(
    StageType(
        name="eval",
        config_class=EvalStageConfig,
        run=run,
        path_fields=("tasks", "task_root"),
        produces_model=False,
        summary_class=EvalSummary,
    )
)
